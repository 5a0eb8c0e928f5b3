//! The accept loop shared by the public and admin listeners: plain HTTP or TLS, HTTP/1.1 and
//! HTTP/2, connection-level limits, and graceful shutdown.
//!
//! Connection limits are set here because they act before a request exists, or between
//! requests. Every connection is bounded in time, whatever the client does:
//!
//! | limit | value | what happens |
//! | --- | --- | --- |
//! | [`HANDSHAKE_TIMEOUT`] | 10 s | a TLS handshake not done by then: closed |
//! | [`HEADER_READ_TIMEOUT`] | 10 s | HTTP/1.1 headers (also the wait for the next request on a keep-alive connection) not in by then: closed at the next check, every [`IDLE_CHECK_EVERY`], so within 10–15 s (no slowloris) |
//! | [`IDLE_TIMEOUT`] | 30 s | no request in flight (an HTTP/2 connection with no open stream, a connection that never sent a request), checked every [`IDLE_CHECK_EVERY`] (5 s): graceful close, dropped [`WRITE_STALL_TIMEOUT`] later |
//! | [`H2_KEEP_ALIVE_INTERVAL`], [`H2_KEEP_ALIVE_TIMEOUT`] | 20 s, 10 s | an HTTP/2 peer that does not answer a ping within 10 s: closed |
//! | [`WRITE_STALL_TIMEOUT`] | 10 s | a write that cannot go out (the client stopped reading and the [`SEND_BUFFER_BYTES`] send buffer is full): closed |
//! | [`MAX_CONNECTION_AGE`] | 5 min | graceful close (HTTP/1.1: `Connection: close` for [`DRAIN`], then close; HTTP/2: `GOAWAY`), dropped [`MAX_AGE_GRACE`] (20 s) later |
//!
//! Headers larger than [`MAX_HEADER_BYTES`] get `431`. At most [`Listener::max_connections`]
//! connections are open at once, and at most [`Listener::max_connections_per_address`] from
//! one client address (an IPv6 /64 counts as one): a connection beyond that is closed right
//! after accept. At the global cap the connection idle longest (no request in flight) is closed
//! ([`EVICT_GRACE`]) to make room, so a crowd of idle or stalled sockets cannot lock clients
//! out; only when every connection is busy do newcomers wait in the kernel's listen backlog.
//! The address is the socket's peer: behind a load balancer it is the balancer's.

mod connection;
mod header_timer;
mod on_wake;
mod registry;
mod served;
pub mod shutdown;
mod stall;
mod state;
pub mod tls;
pub mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use self::connection::{CloseReason, Supervisor, Timeouts};
use self::registry::{Admission, Registry};
pub use self::served::{Lane, LaneFuture, Served};
use self::stall::StallGuard;
use self::state::ConnState;
use crate::server::tls::Tls;

/// How long an HTTP/1.1 request head may take to arrive; enforced at the connection's next
/// check ([`IDLE_CHECK_EVERY`]), so a slow head is cut off 10–15 s after it started.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to stsvend are small; a JWT is the largest header we expect (8 KiB at most).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a shutdown signal, how long open HTTP/1.1 connections keep being served, each answer
/// saying `Connection: close`, before idle ones are closed. Closing an idle keep-alive
/// connection at once races with a client that is sending its next request on it: that request
/// fails with "connection closed before message completed". Told to close instead, the client
/// opens a new connection, is refused (the listener is closed), and goes to another replica.
/// The same drain precedes a close for [`MAX_CONNECTION_AGE`].
pub const DRAIN: Duration = Duration::from_secs(2);
/// A connection with no request in flight for this long is closed. A browser or mini program
/// fetches a token every few minutes and need not keep its connection in between; 30 s
/// covers a page's burst of requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often each connection's idleness, age and unfinished request head are checked: once per
/// connection every 5 s costs nothing per request, at the price of closing up to 5 s late.
pub const IDLE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// HTTP/2 pings: a peer gone without a FIN (a phone that lost its network) is found within
/// interval + timeout.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A write pending this long without a byte going out fails and the connection ends: our
/// answers are a few KiB, so only a client that stopped reading takes this long.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The kernel's send buffer of each connection (Linux doubles it for bookkeeping). Left to
/// itself Linux grows it to 4 MiB, so a client that stops reading would have megabytes of
/// answers queued before a write ever waited; 64 KiB holds dozens of our answers and makes
/// [`WRITE_STALL_TIMEOUT`] start counting soon after the client stops reading.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// No connection lives longer than this, so nothing holds a slot for good, however busy.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// After a close for age, the longest the connection may still take: the request deadline
/// (15 s) and a little to send the answer.
pub const MAX_AGE_GRACE: Duration = Duration::from_secs(20);
/// How long a connection closed to make room at the cap may take to go: it had no request in
/// flight, so half a second is plenty, and the newcomer is served within it.
pub const EVICT_GRACE: Duration = Duration::from_millis(500);
/// At the cap with nothing idle to close, how often to look again.
const EVICT_RETRY_EVERY: Duration = Duration::from_secs(1);

const TIMEOUTS: Timeouts = Timeouts {
    idle: IDLE_TIMEOUT,
    check_every: IDLE_CHECK_EVERY,
    // Nothing is in flight; what is left to send must go out as a stalled write would.
    idle_grace: WRITE_STALL_TIMEOUT,
    max_age: MAX_CONNECTION_AGE,
    max_age_grace: MAX_AGE_GRACE,
    evict_grace: EVICT_GRACE,
    drain: DRAIN,
};

/// How often, at most, reaching a connection cap is logged.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Which listener this is (`public` or `admin`, the metrics' `listener` label) and how many
/// connections it holds open at once, in all and per client address.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub name: &'static str,
    pub max_connections: usize,
    /// Only below `max_connections` does it act: at or above it, the global cap (which closes
    /// the idlest connection to make room) is the only one.
    pub max_connections_per_address: usize,
    /// How client addresses are counted (IPv6 by prefix).
    pub grouping: crate::network::Grouping,
}

/// The metric handles of one listener, made once.
#[derive(Debug)]
struct Counters {
    open: ::metrics::Gauge,
    idle: ::metrics::Counter,
    max_age: ::metrics::Counter,
    write_stall: ::metrics::Counter,
    evicted: ::metrics::Counter,
    refused_per_address: ::metrics::Counter,
}

impl Counters {
    fn new(listener: &'static str) -> Self {
        use crate::metrics::{connections_closed, connections_evicted, connections_refused};
        Self {
            open: crate::metrics::open_connections(listener),
            idle: connections_closed(listener, "idle"),
            max_age: connections_closed(listener, "max_age"),
            write_stall: connections_closed(listener, "write_stall"),
            evicted: connections_evicted(listener),
            refused_per_address: connections_refused(listener, "per_address"),
        }
    }
}

/// What every connection task of a listener shares.
#[derive(Debug)]
struct Shared {
    limits: Listener,
    builder: auto::Builder<TokioExecutor>,
    router: Routes,
    tls: Option<Tls>,
    registry: Arc<Registry>,
    counters: Counters,
    /// Cancelled when the listener stops accepting: every connection drains and closes.
    stop: CancellationToken,
    grace: Duration,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Cheaper than tokio's, and polled by the connection's supervisor (see the module).
        .timer(header_timer::CheckedTimer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    builder
}

/// The router (and its lanes) a listener serves, swapped whole by a reload. Each request takes
/// the one current when it arrives (one atomic load) and finishes on it, whatever is swapped in
/// meanwhile.
pub type Routes = Arc<ArcSwap<Served>>;

/// A [`Routes`] that starts with `served`: a router, or a router and its lanes.
pub fn routes(served: impl Into<Served>) -> Routes {
    Arc::new(ArcSwap::from_pointee(served.into()))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets open
/// connections finish their requests for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Routes,
    tls: Option<Tls>,
    mut limits: Listener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    limits.max_connections_per_address = limits
        .max_connections_per_address
        .clamp(1, limits.max_connections);
    // At or above the global cap the per-address one would only refuse a newcomer that the
    // global cap serves by closing an idle connection: leave it to the global cap.
    let per_address = if limits.max_connections_per_address < limits.max_connections {
        limits.max_connections_per_address
    } else {
        usize::MAX
    };
    let shared = Arc::new(Shared {
        limits,
        builder: builder(),
        router,
        tls,
        registry: Arc::new(Registry::new(per_address, limits.grouping)),
        counters: Counters::new(limits.name),
        stop: CancellationToken::new(),
        grace,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut warnings = Warnings::default();
    tokio::pin!(shutdown);
    loop {
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
        let Some(admission) = shared.registry.admit(peer.ip()) else {
            // Dropping the stream closes it: the cheapest answer there is.
            shared.counters.refused_per_address.increment(1);
            if warnings.per_address.due() {
                tracing::warn!(
                    listener = limits.name,
                    peer = %peer.ip(),
                    max_connections_per_address = limits.max_connections_per_address,
                    "a client address holds its cap of connections; closing its new ones (raise STSVEND_MAX_CONNECTIONS_PER_ADDRESS if this is a proxy or a NAT)"
                );
            }
            continue;
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                match wait_for_slot(&slots, &shared, &mut warnings, shutdown.as_mut()).await {
                    Some(slot) => slot,
                    None => break,
                }
            }
        };
        let open = OpenConnection::new(slot, shared.counters.open.clone(), admission);
        tokio::spawn(shared.clone().connection(stream, peer, open));
    }
    drop(listener);
    // Every connection drains and is closed within `grace`; their tasks end just after.
    shared.stop.cancel();
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let ended = tokio::time::timeout(grace + Duration::from_secs(1), slots.acquire_many(all));
    if ended.await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "connections still open after the grace period"
        );
    }
}

/// When each warning was last logged.
#[derive(Debug, Default)]
struct Warnings {
    cap: Throttle,
    per_address: Throttle,
}

#[derive(Debug, Default)]
struct Throttle(Option<Instant>);

impl Throttle {
    /// True at most once per [`CAP_WARNING_EVERY`].
    fn due(&mut self) -> bool {
        let due = self.0.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY);
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
}

/// At the cap: closes the connection idle longest and waits for its slot; with none idle, waits
/// for any slot, looking again every [`EVICT_RETRY_EVERY`]. `None` if `shutdown` came first.
async fn wait_for_slot(
    slots: &Arc<Semaphore>,
    shared: &Shared,
    warnings: &mut Warnings,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    crate::metrics::record_connection_cap_reached(shared.limits.name);
    if warnings.cap.due() {
        tracing::warn!(
            listener = shared.limits.name,
            max_connections = shared.limits.max_connections,
            "connection limit reached: closing the connection idle longest, or waiting for one to close (raise STSVEND_MAX_CONNECTIONS if this is real traffic)"
        );
    }
    loop {
        if shared.registry.evict_idlest() {
            shared.counters.evicted.increment(1);
        }
        tokio::select! {
            slot = slots.clone().acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(EVICT_RETRY_EVERY) => {}
            () = shutdown.as_mut() => return None,
        }
    }
}

/// A connection's slot under the cap, its place under its address's cap, and its count in
/// `stsvend_connections_open`, all given back when the connection's task ends however it ends.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    gauge: ::metrics::Gauge,
    admission: Admission,
}

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, gauge: ::metrics::Gauge, admission: Admission) -> Self {
        gauge.increment(1.0);
        Self {
            _slot: slot,
            gauge,
            admission,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl Shared {
    /// One accepted connection, from the TLS handshake (if any) to its end.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        open: OpenConnection,
    ) {
        let opened = open.admission.accepted();
        let state = Arc::new(ConnState::new(open.admission.accepted_ms()));
        open.admission.register(state.clone());
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
        // Under TLS, so that handshake and record writes are covered too.
        let io = StallGuard::new(
            stream,
            WRITE_STALL_TIMEOUT,
            self.counters.write_stall.clone(),
        );
        let Some(tls) = &self.tls else {
            return self.http(TokioIo::new(io), peer, &state, opened).await;
        };
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(io));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            },
            () = state.evicted() => return,
            () = self.stop.cancelled() => return,
        };
        // Boxed: inline, the TLS stream's state (about 2.4 KB more than a plain connection's)
        // would size every connection's task, TLS or not (README, Performance, "Round 4").
        Box::pin(self.http(TokioIo::new(stream), peer, &state, opened)).await;
    }

    /// Serves HTTP on `io` under the connection's supervisor.
    async fn http<I>(
        &self,
        io: TokioIo<I>,
        peer: SocketAddr,
        state: &Arc<ConnState>,
        opened: Instant,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let conn = state.clone();
        // Per request: a load of the current router, an Arc clone and two atomic adds; nothing
        // locked or allocated. A lane's route is called here, the router in the future.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let http1 = request.version() < hyper::Version::HTTP_2;
            let in_flight = conn.request_started();
            let served = router.load();
            let answer = match served.lane(request.method(), request.uri().path()) {
                Some(lane) => Either::Left(lane.call(request.map(axum::body::Body::new))),
                None => Either::Right(Router::clone(&served.router).oneshot(request)),
            };
            drop(served);
            async move {
                let mut response = match answer {
                    Either::Left(lane) => lane.await,
                    Either::Right(routed) => routed.await.unwrap_or_else(|e| match e {}),
                };
                // HTTP/1.1 only: HTTP/2 has GOAWAY for this, and forbids the header.
                if http1 && in_flight.says_close() {
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let on_close = |reason| match reason {
            CloseReason::Idle => self.counters.idle.increment(1),
            CloseReason::MaxAge => self.counters.max_age.increment(1),
        };
        let supervisor = Supervisor {
            state,
            registry: &self.registry,
            opened,
            timeouts: TIMEOUTS,
            stop: &self.stop,
            grace: self.grace,
            on_close: &on_close,
        };
        match supervisor
            .run(connection.as_mut(), |connection| {
                connection.graceful_shutdown()
            })
            .await
        {
            Some(Ok(())) => {}
            Some(Err(error)) => tracing::debug!(%peer, %error, "connection ended with an error"),
            None => tracing::debug!(%peer, "connection dropped: it did not close in time"),
        }
    }
}
