//! Connections: accepting them, bounding them and serving HTTP/1.1 on each with hyper's
//! connection builder. What a client controls here is time and numbers, so each is bounded:
//! the TLS handshake and the request header block must arrive within the header-read timeout
//! (hyper's timer, which also closes a keep-alive connection that does not start its next
//! request in that time); the body within the body-read timeout (`protocol`); and at most
//! `max_connections` are open at once. When that many are open, accepting one more closes the
//! oldest connection that has no request in flight (a request is in flight once its body has
//! arrived: [`Activity`]), so idle, half-sent or slowly-sent connections can never lock out a
//! client with a valid request. A closing connection counts until its socket is closed.
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

/// The most descriptors a listener capped at `max_connections` holds at once: connections
/// evicted to make room count until their sockets close, up to an eighth more (and 8).
pub fn descriptor_ceiling(max_connections: usize) -> usize {
    max_connections + max_connections / 8 + 8
}

/// The default connection cap: the largest whose [`descriptor_ceiling`] fits in what the
/// process's open-file limit leaves after a reserve for the database, the audit log and the
/// rest of the process, and after `other_listeners` descriptors (another listener's ceiling).
pub fn default_max_connections(other_listeners: usize) -> usize {
    max_connections_within(open_file_limit().unwrap_or(1024), other_listeners)
}

/// [`default_max_connections`] for an open-file limit of `soft`.
fn max_connections_within(soft: u64, other_listeners: usize) -> usize {
    const RESERVE: u64 = 128;
    let room = soft.saturating_sub(RESERVE).saturating_sub(u64::try_from(other_listeners).unwrap_or(u64::MAX)).saturating_sub(8);
    usize::try_from((room * 8 / 9).max(16)).unwrap_or(usize::MAX).min(1 << 20)
}

/// The soft `RLIMIT_NOFILE` as /proc/self/limits reports it (no `unsafe` needed).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Conn {
    /// Requests in flight on the connection whose body has arrived (see [`Activity`]).
    busy: Arc<AtomicUsize>,
    /// Closes the connection when notified.
    close: Arc<Notify>,
    /// Asked to close; it stays counted until its task has really ended (its socket closed).
    evicted: bool,
}

#[derive(Default)]
struct Registry {
    next: u64,
    /// Every connection whose task is still running, evicted or not: what holds descriptors.
    open: BTreeMap<u64, Conn>,
}

impl Registry {
    /// Asks the oldest connection without a request in flight to close (one still in its TLS
    /// handshake, reading headers, sending its body slowly, or idle); false if every
    /// connection not already closing is busy.
    fn evict_one(&mut self) -> bool {
        let victim = self.open.values_mut().find(|c| !c.evicted && c.busy.load(Ordering::Acquire) == 0);
        match victim {
            Some(c) => {
                c.evicted = true;
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A request's claim on its connection: put in request extensions by the listener; the
/// handler calls [`Activity::begin`] once the request body has arrived. Until then the
/// connection may be evicted, so a client that sends a body slowly cannot hold connections
/// that eviction must spare.
#[derive(Clone)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    /// Marks the request in flight until the returned guard drops.
    pub fn begin(&self) -> ActivityGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ActivityGuard(self.0.clone())
    }
}

/// Counts a request in flight for as long as it lives (also when its handler is cancelled).
pub struct ActivityGuard(Arc<AtomicUsize>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
            if reg.open.len() >= config.max_connections {
                // Make room: the oldest idle connection goes. The new one is refused (closed on
                // drop) only when every connection is busy or already closing; counts include
                // closing connections until their sockets are closed, so descriptors stay
                // within the cap.
                let evicted = reg.evict_one();
                let closing = reg.open.values().filter(|c| c.evicted).count();
                if !evicted && closing == 0 {
                    tracing::warn!(max = config.max_connections, "connection limit reached with every connection busy; refusing one");
                    continue;
                }
                if reg.open.len() >= descriptor_ceiling(config.max_connections) {
                    // Closing connections have not gone yet (a burst): refuse rather than exceed
                    // the descriptor budget.
                    continue;
                }
            }
            let id = reg.next;
            reg.next += 1;
            let conn = Conn { busy: Arc::new(AtomicUsize::new(0)), close: Arc::new(Notify::new()), evicted: false };
            let handles = (id, conn.busy.clone(), conn.close.clone());
            reg.open.insert(id, conn);
            handles
        };
        let _ = tcp.set_nodelay(true);
        let (app, config, handshake, registry) = (app.clone(), config.clone(), handshake.clone(), registry.clone());
        clavis_metrics::METRICS.connections_accepted.inc();
        clavis_metrics::METRICS.connections_open.inc();
        tokio::spawn(async move {
            serve_connection(tcp, addr, app, &config, handshake, busy, close).await;
            clavis_metrics::METRICS.connections_open.dec();
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
        // The handshake can be evicted like an idle connection: a stalled handshake must not
        // keep its descriptor after eviction.
        Some(h) => tokio::select! {
            done = tokio::time::timeout(config.header_read_timeout, h(tcp)) => match done {
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
            () = close.notified() => return,
        },
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        req.extensions_mut().insert(SecureTransport(secure));
        req.extensions_mut().insert(Activity(busy.clone()));
        tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_closing_connections() {
        for soft in [256u64, 1024, 4096, 65_536, 1 << 20] {
            for other in [0, descriptor_ceiling(16)] {
                let max = max_connections_within(soft, other);
                let room = usize::try_from(soft).unwrap() - 128 - other;
                assert!(descriptor_ceiling(max) <= room, "soft {soft}, other {other}: {max} connections");
            }
        }
        assert_eq!(max_connections_within(1024, 0), 789);
    }
}
