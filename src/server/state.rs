//! What one connection's service wrapper, supervisor and the eviction scan share: its requests
//! in flight (two atomic operations a request) and whether it was chosen for eviction. Its own
//! file so that both the registry and the supervisor can use it without importing each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Adding this to [`ConnState::requests`] counts one request started and one in flight.
const ONE_STARTED: u64 = 1 << 32;

/// What the service wrapper, the supervisor and the eviction scan share about one connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Low 32 bits: requests in flight. High 32 bits: requests started, wrapping. One word, so
    /// starting a request is one atomic add.
    pub(super) requests: AtomicU64,
    /// Answers over HTTP/1.1 say `Connection: close` from now on.
    pub(super) closing: AtomicBool,
    /// Since when (milliseconds on the registry's clock) no request has been in flight, as of
    /// the supervisor's last check.
    pub(super) idle_since_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnState {
    pub(crate) fn new(idle_since_ms: u64) -> Self {
        Self {
            requests: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(idle_since_ms),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// Counts a request until the returned guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(ONE_STARTED + 1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Requests in flight and requests started so far (wrapping).
    pub(super) fn counts(&self) -> (u32, u32) {
        let word = self.requests.load(Ordering::Relaxed);
        ((word & u64::from(u32::MAX)) as u32, (word >> 32) as u32)
    }

    pub(crate) fn idle_since_ms(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Relaxed)
    }

    /// No request in flight and not already asked to close.
    pub(crate) fn evictable(&self) -> bool {
        self.counts().0 == 0 && !self.evicted.load(Ordering::Relaxed)
    }

    /// Asks the connection to close now; false if it was already asked.
    pub(crate) fn evict(&self) -> bool {
        if self.evicted.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.evict.notify_one();
        true
    }

    #[cfg(test)]
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Resolves once the connection is chosen for eviction.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl InFlight {
    /// Whether this answer, over HTTP/1.1, should say `Connection: close`.
    pub(crate) fn says_close(&self) -> bool {
        self.0.closing.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}
