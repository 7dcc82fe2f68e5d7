//! A TCP relay that can be cut and restored: a backend (PostgreSQL, S3) going away and coming
//! back, as a restart or a network failure would, without touching the shared service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays `127.0.0.1:port` to its target until cut: then every live connection is reset and
/// new ones are refused (closed at once), until restored.
pub struct Relay {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// Bumped on every cut: live relays end when they see it change.
    cuts: watch::Sender<u64>,
}

impl Relay {
    /// A relay to `to` (`host:port`), on a loopback port of its own.
    pub async fn start(to: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let up = Arc::new(AtomicBool::new(true));
        let cuts = watch::Sender::new(0u64);
        let (up2, cuts2) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let mut cut = cuts2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {} // dropping both ends resets the connection
                    }
                });
            }
        });
        Self { port, up, cuts }
    }

    /// Resets every live connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
