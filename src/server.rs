//! The accept loop shared by the public and admin listeners: plain HTTP or TLS, HTTP/1.1 and
//! HTTP/2, connection-level limits, and graceful shutdown.
//!
//! Connection limits are set here because they act before a request exists: a client that never
//! finishes its headers is cut off after [`HEADER_READ_TIMEOUT`] (no slowloris), headers larger
//! than [`MAX_HEADER_BYTES`] get `431`, and a TLS handshake must finish within
//! [`HANDSHAKE_TIMEOUT`]. At most [`Listener::max_connections`] connections are open at once:
//! at the cap the loop stops accepting, and newcomers wait in the kernel's listen backlog until
//! a connection closes, so a crowd of idle sockets costs bounded memory and a client beyond it
//! is served late rather than refused.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::tls::Tls;

pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to stsvend are small; a JWT is the largest header we expect (8 KiB at most).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a shutdown signal, how long open HTTP/1.1 connections keep being served, each answer
/// saying `Connection: close`, before idle ones are closed. Closing an idle keep-alive
/// connection at once races with a client that is sending its next request on it: that request
/// fails with "connection closed before message completed". Told to close instead, the client
/// opens a new connection, is refused (the listener is closed), and goes to another replica.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How often, at most, reaching the connection cap is logged.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Which listener this is (`public` or `admin`, the metrics' `listener` label) and how many
/// connections it holds open at once.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub name: &'static str,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets open
/// connections finish their requests for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    limits: Listener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let draining = Arc::new(AtomicBool::new(false));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open_gauge = crate::metrics::open_connections(limits.name);
    let mut last_cap_warning: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                crate::metrics::record_connection_cap_reached(limits.name);
                if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
                    last_cap_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        listener = limits.name,
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes (raise STSVEND_MAX_CONNECTIONS if this is real traffic)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let draining = draining.clone();
        let open = OpenConnection::new(slot, open_gauge.clone());
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => {
                    let io = TokioIo::new(stream);
                    connection(io, peer, router, &builder, watcher, draining).await;
                }
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(stream);
                            connection(io, peer, router, &builder, watcher, draining).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Drain: every answer from now on says `Connection: close`; connections still open after
    // that (idle keep-alives) are then shut down gracefully.
    draining.store(true, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let drain = DRAIN.min(grace / 2);
    while graceful.count() > 0 && started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grace = grace.saturating_sub(started.elapsed());
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs(), "requests still in flight after the grace period; closing them");
        }
    }
}

/// A connection's slot under the cap, and its count in `stsvend_connections_open`, both given
/// back when the connection's task ends however it ends.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    gauge: ::metrics::Gauge,
}

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, gauge: ::metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self { _slot: slot, gauge }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    draining: Arc<AtomicBool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        let draining = draining.clone();
        async move {
            let http1 = request.version() < hyper::Version::HTTP_2;
            let mut response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
            // HTTP/1.1 only: HTTP/2 has GOAWAY for this, and forbids the header.
            if http1 && draining.load(Ordering::Relaxed) {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
