//! Connections: accepting them, bounding them and serving HTTP/1.1 on each with hyper's
//! connection builder. What a client controls here is time and numbers, so each is bounded:
//! the TLS handshake and the request header block must arrive within the header-read timeout
//! (hyper's timer, which also closes a keep-alive connection that does not start its next
//! request in that time); the body within the body-read timeout (`protocol`); and at most
//! `max_connections` are open at once. When that many are open, accepting one more closes the
//! oldest connection that has no request in flight, so idle or half-sent connections can
//! never lock out a client with a valid request.
//!
//! It must not interpret requests: that is the router's.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A connection's byte stream once accepted (plain TCP, or TLS over it).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Turns an accepted TCP stream into the stream HTTP is served on: the TLS handshake, for
/// a TLS listener. Called on the connection's own task, under the header-read timeout.
pub type Handshake = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Io>>> + Send>> + Send + Sync>;

/// Whether the request arrived over TLS (for `aws:SecureTransport`), in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport(pub bool);

/// Connection limits.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The TLS handshake, and each request's header block, must complete within this; an idle
    /// keep-alive connection must start its next request within it too.
    pub header_read_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// The default connection cap: what the process's open-file limit leaves after a reserve for
/// the database, the audit log and the rest of the process.
pub fn default_max_connections() -> usize {
    const RESERVE: u64 = 128;
    let soft = open_file_limit().unwrap_or(1024);
    usize::try_from(soft.saturating_sub(RESERVE).max(16)).unwrap_or(usize::MAX).min(1 << 20)
}

/// The soft `RLIMIT_NOFILE` as /proc/self/limits reports it (no `unsafe` needed).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Conn {
    /// Requests in flight on the connection.
    busy: Arc<AtomicUsize>,
    /// Closes the connection when notified.
    close: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Conn>,
}

impl Registry {
    /// Closes the oldest connection without a request in flight; false if every one is busy.
    fn evict_one(&mut self) -> bool {
        let victim = self.open.iter().find(|(_, c)| c.busy.load(Ordering::Acquire) == 0).map(|(id, _)| *id);
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish
/// (up to `shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    handshake: Option<Handshake>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or a transient network error): pause instead of
                    // spinning; the cap normally keeps this from happening.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (id, busy, close) = {
            let Ok(mut reg) = registry.lock() else { break };
            if reg.open.len() >= config.max_connections && !reg.evict_one() {
                // Every connection has a request in flight: refuse this one (closed on drop).
                tracing::warn!(max = config.max_connections, "connection limit reached with every connection busy; refusing one");
                continue;
            }
            let id = reg.next;
            reg.next += 1;
            let conn = Conn { busy: Arc::new(AtomicUsize::new(0)), close: Arc::new(Notify::new()) };
            let handles = (id, conn.busy.clone(), conn.close.clone());
            reg.open.insert(id, conn);
            handles
        };
        let _ = tcp.set_nodelay(true);
        let (app, config, handshake, registry) = (app.clone(), config.clone(), handshake.clone(), registry.clone());
        tokio::spawn(async move {
            serve_connection(tcp, addr, app, &config, handshake, busy, close).await;
            if let Ok(mut reg) = registry.lock() {
                reg.open.remove(&id);
            }
        });
    }
    // Shutdown: close idle connections now; busy ones finish their request first.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    loop {
        let remaining = {
            let Ok(mut reg) = registry.lock() else { break };
            while reg.evict_one() {}
            reg.open.len()
        };
        if remaining == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    addr: SocketAddr,
    app: Router,
    config: &ListenerConfig,
    handshake: Option<Handshake>,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
) {
    let secure = handshake.is_some();
    let io: Box<dyn Io> = match handshake {
        None => Box::new(tcp),
        Some(h) => match tokio::time::timeout(config.header_read_timeout, h(tcp)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %addr, "TLS handshake timed out");
                return;
            }
        },
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        req.extensions_mut().insert(SecureTransport(secure));
        let guard = BusyGuard::new(busy.clone());
        let call = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // The whole request header block must fit in 64 KiB.
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
        }
        () = close.notified() => {
            // Evicted or shutting down, with no request in flight: closed now.
        }
    }
}

/// Counts a request in flight for as long as it lives (also when its handler is cancelled).
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(counter: Arc<AtomicUsize>) -> BusyGuard {
        counter.fetch_add(1, Ordering::AcqRel);
        BusyGuard(counter)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
