//! A TCP relay that can be cut and restored, or made silent: a backend (PostgreSQL, S3) going
//! away and coming back, as a restart or a network failure would, or a network partition that
//! drops every packet and closes nothing, without touching the shared service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays `127.0.0.1:port` to its target until cut: then every live connection is reset and
/// new ones are refused (closed at once), until restored.
pub struct Relay {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// While set, nothing is forwarded either way and nothing is closed.
    silent: Arc<AtomicBool>,
    /// Bumped on every cut: live relays end when they see it change.
    cuts: watch::Sender<u64>,
}

impl Relay {
    /// A relay to `to` (`host:port`), on a loopback port of its own.
    pub async fn start(to: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let up = Arc::new(AtomicBool::new(true));
        let silent = Arc::new(AtomicBool::new(false));
        let cuts = watch::Sender::new(0u64);
        let (up2, silent2, cuts2) = (up.clone(), silent.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let mut cut = cuts2.subscribe();
                let silent = silent2.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = forward(client_read, server_write, silent.clone()) => {}
                        _ = forward(server_read, client_write, silent) => {}
                        _ = cut.changed() => {} // dropping both ends resets the connection
                    }
                });
            }
        });
        Self { port, up, silent, cuts }
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

    /// Drops every byte from now on, both ways, on every connection (new ones are accepted
    /// and hear nothing either); closes nothing.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, dropping what arrives while `silent` is set (as a partitioned
/// network does), until either end closes.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if silent.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
