//! Accepting TCP connections and serving HTTP on them, with the limits a server exposed to
//! slow or vanished clients needs: a deadline on each request head (which also closes idle
//! keep-alive connections), a cut-off for clients that stop sending a body or stop reading a
//! response, TCP keepalive for peers that disappeared without a FIN, and a bounded graceful
//! shutdown. (`axum::serve` has none of the timeouts: a client trickling its headers, or never
//! reading a 10 GB response, would hold its connection, task and open blob for ever.)
//!
//! With `[tls]` the same, inside TLS: the handshake has the request head's deadline, so a
//! client that connects and never sends a ClientHello is dropped like one that never sends a
//! request line. Every request gets the [`ClientAddr`] extension (and [`ClientView`] when
//! something is known of how the client reached the server), see [`crate::forwarded`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::config::HttpSettings;
use crate::forwarded::{ClientView, TrustedProxies};

/// A connection silent this long gets keepalive probes...
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// ...this far apart...
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...and is dropped after this many go unanswered.
const TCP_KEEPALIVE_RETRIES: u32 = 6;
/// How long a shutdown waits for requests in flight (a long poll may hold one for minutes).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Room in a connection's buffers beyond the largest request head the limits allow: the
/// request line (hyper takes URLs up to 64 KiB) and the headers' framing (`: ` and CRLF,
/// which `limits.max_header_bytes` does not count; hyper takes at most 100 headers).
const HEAD_ROOM: usize = 68 << 10;

/// How many bytes a connection buffers, each way: a request head up to `max_header_bytes`
/// (and [`HEAD_ROOM`]) must fit, so that intact's limit answers it with a message naming the
/// setting. The same figure caps how much of a response body a connection queues ahead of
/// the socket: hyper's default (~400 KiB) made that, not the file reads, most of a crowd of
/// downloads' memory. A head larger still is refused by hyper itself (a bare 431).
pub fn connection_buffer(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_add(HEAD_ROOM)
}

/// Serves `app` on `listener` until `shutdown` turns true, on `settings.serving_threads()`
/// threads of their own, each a single-threaded runtime accepting from the same listening
/// socket and serving the connections it accepted (see [`serve`] for the rest).
///
/// Why not the process's multi-threaded runtime: there, a connection's task is woken by
/// whichever worker polled its socket and often runs on another core than last time, and
/// every request paid for that hand-over (cache misses, cross-core wake-ups, memory freed on
/// another thread than allocated it). Measured on 2 cores with `wrk` on a 200 B file, one
/// runtime per core served 20-50% more requests per second. A thread busy with a long piece
/// of work (a large page of JSON) delays only its own connections, and an idle thread is the
/// first to take the next connection. Background tasks stay on the process's runtime; what
/// a request spawns runs on its serving thread.
///
/// The threads end together, once the last one is done serving (see the note in the loop).
/// Dropping the returned future stops every serving thread: a server abandoned by its caller
/// never keeps serving.
pub async fn serve_on_threads(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    connection_buffer: usize,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    // The threads' own stop signal: sent when `shutdown` turns true, or dropped with this
    // future, which the threads take as a stop too.
    let (stop, stopping) = watch::channel(false);
    // Each thread holds a `serving` receiver while it serves; `all_served.closed()` is when
    // every one was dropped (by a thread done serving, one that panicked, or this function
    // failing before it started them all).
    let (all_served, serving) = watch::channel(());
    let all_served = Arc::new(all_served);
    let mut threads = Vec::new();
    for i in 0..settings.serving_threads().max(1) {
        let listener = listener.try_clone()?;
        let (app, settings, tls, stopping) = (app.clone(), settings.clone(), tls.clone(), stopping.clone());
        let (serving, all_served) = (serving.clone(), all_served.clone());
        // On failure, the threads already started see `stop` dropped and end.
        let thread =
            std::thread::Builder::new()
                .name(format!("intact-http-{i}"))
                .spawn(move || -> io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(async move {
                        let served = async {
                            let listener = TcpListener::from_std(listener)?;
                            serve(listener, app, &settings, connection_buffer, tls, stopping).await
                        }
                        .await;
                        drop(serving);
                        // This runtime keeps turning until every thread is done serving: what
                        // a request here spawned (a single-flight fetch, a group commit's
                        // leader) or opened (a pooled connection, a timer) may be what a
                        // request still in flight on another thread waits for; ending it
                        // would cut that request during its grace period.
                        all_served.closed().await;
                        served
                    })
                })?;
        threads.push(thread);
    }
    drop((listener, serving));
    let joined = tokio::task::spawn_blocking(move || {
        let mut outcome = Ok(());
        for thread in threads {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a serving thread panicked")));
            if outcome.is_ok() {
                outcome = ended;
            }
        }
        outcome
    });
    tokio::pin!(joined);
    tokio::select! {
        ended = &mut joined => return ended.map_err(io::Error::other)?,
        _ = stopped(&mut shutdown) => {}
    }
    let _ = stop.send(true);
    joined.await.map_err(io::Error::other)?
}

/// Serves `app` on `listener` until `shutdown` turns true: over TLS when `tls` is given
/// (HTTPS only: a plain-HTTP request fails its handshake), else plain HTTP. Each connection
/// buffers at most `connection_buffer` bytes each way (see [`connection_buffer`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    connection_buffer: usize,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let idle = Duration::from_secs(settings.idle_timeout_seconds);
    let header_timeout = Duration::from_secs(settings.header_timeout_seconds);
    // Request bodies: every frame must come within the idle timeout.
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(idle));
    // HTTP/1.1 only. Every client of intact (curl, go, the CLI, browsers) speaks it, and the
    // limits here are HTTP/1's: with HTTP/2 offered too, a connection is first sniffed for
    // the HTTP/2 preface with no deadline at all (a client that connects and sends nothing
    // was held for ever), and HTTP/2's flow control lets a client stall one response without
    // stalling the connection's writes (an unread stream pinned its open blob for ever, a
    // hundred of them per connection). For the same reasons TLS offers only `http/1.1` in
    // ALPN (see `tls::ReloadableCert::acceptor`).
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(connection_buffer);
    let proxies = Arc::new(TrustedProxies::new(settings.trusted_proxies.clone()));
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those still busy after the grace period are really
    // dropped (a detached task would keep serving, and holding the store, after `serve`
    // returned). Finished ones are reaped as new connections arrive.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or another resource): wait rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        configure_socket(&tcp);
        let stream = StallGuard::new(tcp, idle);
        let service = StampClient {
            app: app.clone(),
            peer: peer.ip(),
            tls: tls.is_some(),
            proxies: proxies.clone(),
        };
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .into_owned();
                connections.spawn(finish(watcher.watch(conn)));
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task: a slow one must not hold up
                // the accept loop.
                let handshake = acceptor.accept(stream);
                let builder = builder.clone();
                connections.spawn(async move {
                    let stream = match tokio::time::timeout(header_timeout, handshake).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not done within the header timeout");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .into_owned();
                    finish(watcher.watch(conn)).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::info!("shutdown: requests still in flight after the grace period were dropped");
    }
    connections.shutdown().await;
    Ok(())
}

async fn finish<E: std::fmt::Display>(conn: impl Future<Output = Result<(), E>>) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The router behind one connection, inserting into each request who sent it.
#[derive(Clone)]
struct StampClient {
    app: Router,
    peer: IpAddr,
    tls: bool,
    proxies: Arc<TrustedProxies>,
}

impl<B> Service<Request<B>> for StampClient
where
    Router: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (client, view) = self.proxies.identify(self.peer, self.tls, req.headers());
        req.extensions_mut().insert(client);
        if let Some(view) = view {
            req.extensions_mut().insert::<ClientView>(view);
        }
        self.app.call(req)
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

fn configure_socket(tcp: &TcpStream) {
    // TCP_NODELAY: a response's headers and body go out as separate writes; with Nagle on,
    // the body waits for the client's delayed ACK (~40 ms per keep-alive request).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    // Keepalive probes find peers that vanished without a FIN (a laptop closed mid-upload, a
    // dead NAT entry): their connection errors out instead of holding a request open.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not enable TCP keepalive");
    }
}

/// A connection whose writes fail once they have made no progress for `limit`: a client that
/// stops reading a response is dropped, releasing what the response held (an open blob).
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    /// Running while a write is blocked on the peer; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns a pending write into an error once it has been pending for the limit.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client accepted no data for {}s", limit.as_secs()),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
