//! One connection's life after accept: its requests in flight (counted by the service wrapper,
//! two atomic operations a request), and a supervisor that closes it when it has been idle too
//! long, lived too long, was chosen for eviction, or the server is stopping.
//!
//! Closing is polite first and hard after a bound: HTTP/1.1 answers start saying
//! `Connection: close` (a client sending its next request on an idle keep-alive connection
//! would otherwise race with the close), then hyper's graceful shutdown (HTTP/2 `GOAWAY`, an
//! idle HTTP/1.1 connection closed), and at the end the connection is dropped whatever it is
//! doing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::on_wake::OnWake;
use super::registry::Registry;
use super::state::ConnState;

/// The connection-level timeouts; see the constants in [`super`] for the values and reasons.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// No request in flight for this long: close.
    pub(crate) idle: Duration,
    /// How often idleness and age are checked (so `idle` is met within this much).
    pub(crate) check_every: Duration,
    /// After an idle close starts, how long until the connection is dropped.
    pub(crate) idle_grace: Duration,
    /// Open this long: close.
    pub(crate) max_age: Duration,
    /// After a max-age close starts, how long until the connection is dropped.
    pub(crate) max_age_grace: Duration,
    /// After eviction, how long until the connection is dropped.
    pub(crate) evict_grace: Duration,
    /// How long HTTP/1.1 answers say `Connection: close` before a graceful shutdown.
    pub(crate) drain: Duration,
}

/// Why the supervisor started closing a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Idle,
    MaxAge,
}

/// A close under way: when hyper is asked to shut down gracefully, and when the connection is
/// dropped anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closing {
    graceful_at: Instant,
    hard_at: Instant,
    graceful_done: bool,
}

impl Closing {
    /// Graceful shutdown at once, dropped after `grace`.
    fn now(now: Instant, grace: Duration) -> Self {
        Self {
            graceful_at: now,
            hard_at: now + grace,
            graceful_done: false,
        }
    }

    /// `Connection: close` for `drain`, then graceful shutdown; dropped at `hard_at`.
    fn drained(now: Instant, drain: Duration, hard_at: Instant) -> Self {
        Self {
            graceful_at: (now + drain).min(hard_at),
            hard_at,
            graceful_done: false,
        }
    }

    /// The earlier of both steps of `self` and `earlier`, keeping what was already done.
    fn merge(self, earlier: Option<Self>) -> Self {
        match earlier {
            None => self,
            Some(earlier) => Self {
                graceful_at: self.graceful_at.min(earlier.graceful_at),
                hard_at: self.hard_at.min(earlier.hard_at),
                graceful_done: earlier.graceful_done,
            },
        }
    }

    fn next_deadline(&self) -> Instant {
        if self.graceful_done {
            self.hard_at
        } else {
            self.graceful_at.min(self.hard_at)
        }
    }
}

/// Follows a connection's request counts between checks to tell since when it has been idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleWatch {
    last_started: u32,
    idle_since: Instant,
}

impl IdleWatch {
    pub(crate) fn new(opened: Instant) -> Self {
        Self {
            last_started: 0,
            idle_since: opened,
        }
    }

    /// Takes in the counts seen at `now` and returns how long the connection has been idle. A
    /// request started since the last check, or one in flight, makes it busy as of `now`.
    pub(crate) fn observe(&mut self, now: Instant, in_flight: u32, started: u32) -> Duration {
        if in_flight > 0 || started != self.last_started {
            self.idle_since = now;
            self.last_started = started;
        }
        now.saturating_duration_since(self.idle_since)
    }
}

/// At a check: whether to start closing a connection opened at `opened`, idle for `idle_for`.
pub(crate) fn decide(
    timeouts: &Timeouts,
    now: Instant,
    opened: Instant,
    idle_for: Duration,
) -> Option<(CloseReason, Closing)> {
    if idle_for >= timeouts.idle {
        Some((CloseReason::Idle, Closing::now(now, timeouts.idle_grace)))
    } else if now.saturating_duration_since(opened) >= timeouts.max_age {
        let hard_at = now + timeouts.max_age_grace;
        Some((
            CloseReason::MaxAge,
            Closing::drained(now, timeouts.drain, hard_at),
        ))
    } else {
        None
    }
}

/// What one connection's supervisor watches and reports to.
pub(crate) struct Supervisor<'a> {
    pub(crate) state: &'a ConnState,
    pub(crate) registry: &'a Registry,
    /// When the connection was accepted.
    pub(crate) opened: Instant,
    pub(crate) timeouts: Timeouts,
    /// Cancelled when the listener stops: drain, then close within `grace`.
    pub(crate) stop: &'a CancellationToken,
    pub(crate) grace: Duration,
    /// Called once per connection the supervisor starts closing on its own.
    pub(crate) on_close: &'a (dyn Fn(CloseReason) + Sync),
}

enum Event {
    Stop,
    Evict,
    Check,
    Deadline,
}

impl Supervisor<'_> {
    /// Drives `connection` until it ends (its result) or is dropped after a close ran out of
    /// time (`None`). `graceful` asks it to shut down gracefully.
    pub(crate) async fn run<C, T>(
        &self,
        mut connection: Pin<&mut C>,
        graceful: impl Fn(Pin<&mut C>),
    ) -> Option<T>
    where
        C: Future<Output = T>,
    {
        let opened = self.opened;
        let timeouts = self.timeouts;
        let mut watch = IdleWatch::new(opened);
        let mut closing: Option<Closing> = None;
        let mut stopping = false;
        let mut checks =
            tokio::time::interval_at(opened + timeouts.check_every, timeouts.check_every);
        checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The connection is polled on every wake of the task; the supervisor's own signals
        // only when one of them fired (see [`OnWake`]).
        let on_wake = OnWake::new();
        loop {
            let deadline = closing.map(|c| c.next_deadline());
            let event = {
                let signals = async {
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled(), if !stopping => Event::Stop,
                        () = self.state.evicted() => Event::Evict,
                        _ = checks.tick() => Event::Check,
                        () = tokio::time::sleep_until(deadline.unwrap_or(opened)), if deadline.is_some() => Event::Deadline,
                    }
                };
                let mut signals = std::pin::pin!(signals);
                on_wake.reset();
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                        return Poll::Ready(Err(result));
                    }
                    on_wake.poll(signals.as_mut(), cx).map(Ok)
                })
                .await
            };
            let event = match event {
                Ok(event) => event,
                Err(result) => return Some(result),
            };
            let now = Instant::now();
            match event {
                Event::Stop => {
                    stopping = true;
                    self.state.closing.store(true, Ordering::Relaxed);
                    let drain = timeouts.drain.min(self.grace / 2);
                    closing = Some(Closing::drained(now, drain, now + self.grace).merge(closing));
                }
                Event::Evict => {
                    self.state.closing.store(true, Ordering::Relaxed);
                    closing = Some(Closing::now(now, timeouts.evict_grace).merge(closing));
                }
                Event::Check => {
                    let (in_flight, started) = self.state.counts();
                    let idle_for = watch.observe(now, in_flight, started);
                    let idle_since = self.registry.millis(now - idle_for);
                    self.state
                        .idle_since_ms
                        .store(idle_since, Ordering::Relaxed);
                    if closing.is_none()
                        && let Some((reason, close)) = decide(&timeouts, now, opened, idle_for)
                    {
                        (self.on_close)(reason);
                        self.state.closing.store(true, Ordering::Relaxed);
                        closing = Some(close);
                    }
                }
                Event::Deadline => {}
            }
            if let Some(close) = &mut closing {
                if now >= close.hard_at {
                    return None;
                }
                if !close.graceful_done && now >= close.graceful_at {
                    close.graceful_done = true;
                    graceful(connection.as_mut());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        idle: Duration::from_secs(30),
        check_every: Duration::from_secs(5),
        idle_grace: Duration::from_secs(10),
        max_age: Duration::from_secs(300),
        max_age_grace: Duration::from_secs(20),
        evict_grace: Duration::from_millis(500),
        drain: Duration::from_secs(2),
    };

    #[test]
    fn a_request_started_or_in_flight_resets_the_idle_time() {
        let opened = Instant::now();
        let at = |s| opened + Duration::from_secs(s);
        let mut watch = IdleWatch::new(opened);
        assert_eq!(watch.observe(at(5), 0, 0), Duration::from_secs(5));
        // A request came and went between the checks.
        assert_eq!(watch.observe(at(10), 0, 1), Duration::ZERO);
        assert_eq!(watch.observe(at(15), 0, 1), Duration::from_secs(5));
        // One is in flight (a long one, or a stuck answer).
        assert_eq!(watch.observe(at(20), 1, 2), Duration::ZERO);
        assert_eq!(watch.observe(at(25), 1, 2), Duration::ZERO);
        assert_eq!(watch.observe(at(60), 0, 2), Duration::from_secs(35));
    }

    #[test]
    fn idle_connections_close_at_once_and_old_ones_drain_first() {
        let opened = Instant::now();
        let at = |s| opened + Duration::from_secs(s);
        assert_eq!(
            decide(&TIMEOUTS, at(29), opened, Duration::from_secs(29)),
            None
        );
        let (reason, idle) = decide(&TIMEOUTS, at(30), opened, Duration::from_secs(30)).unwrap();
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!((idle.graceful_at, idle.hard_at), (at(30), at(40)));
        assert_eq!(decide(&TIMEOUTS, at(299), opened, Duration::ZERO), None);
        let (reason, old) = decide(&TIMEOUTS, at(300), opened, Duration::ZERO).unwrap();
        assert_eq!(reason, CloseReason::MaxAge);
        assert_eq!((old.graceful_at, old.hard_at), (at(302), at(320)));
    }

    #[test]
    fn a_second_reason_to_close_only_brings_the_steps_forward() {
        let opened = Instant::now();
        let at = |s| opened + Duration::from_secs(s);
        let mut old = Closing::drained(at(300), Duration::from_secs(2), at(320));
        old.graceful_done = true;
        // Shutdown 5 s later with a 9 s grace: dropped at 314, the graceful step stays done.
        let both = Closing::drained(at(305), Duration::from_secs(2), at(314)).merge(Some(old));
        assert_eq!(both.hard_at, at(314));
        assert!(both.graceful_done);
        assert_eq!(both.next_deadline(), at(314));
        let evicted = Closing::now(at(1), Duration::from_millis(500)).merge(None);
        assert_eq!(evicted.next_deadline(), at(1));
    }
}
