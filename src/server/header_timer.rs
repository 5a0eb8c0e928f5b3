//! hyper's HTTP/1.1 header read timeout, polled by the connection's supervisor instead of armed
//! in the runtime's timer wheel.
//!
//! hyper asks its `Timer` for a new sleep each time it starts reading a request head (once per
//! request on a keep-alive connection) and drops it once the head is in. With tokio's timer that
//! was a boxed `Sleep` of about 100 bytes, registered in the timer wheel at its first poll (the
//! read having found nothing yet) and removed again: about 700 instructions of a cached request
//! (callgrind) and one of its heap allocations. A [`CheckedSleep`] is only its deadline: polled,
//! it reads the clock and is ready once the deadline has passed; it registers no waker.
//!
//! What polls it again is the connection's supervisor ([`super::connection`]): its check every
//! [`IDLE_CHECK_EVERY`](super::IDLE_CHECK_EVERY) wakes the connection's task, which polls hyper's
//! connection on every wake, and hyper, still waiting for a head, polls this sleep. A client that
//! does not finish its headers is cut off at the first check at or after the timeout: between
//! [`HEADER_READ_TIMEOUT`](super::HEADER_READ_TIMEOUT) and that plus one check interval. So this
//! timer is only for HTTP/1 connections run under that supervisor; HTTP/2 keeps tokio's timer,
//! whose keep-alive pings must fire on time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A check landing this much before a deadline counts as at it: the supervisor's checks run at
/// whole intervals from the connection's start, and the first head's deadline is the timeout
/// from a few microseconds later, which a strict comparison would push to the next check.
const CHECK_SLACK: Duration = Duration::from_millis(250);

/// Whether a sleep until `deadline`, polled at `now`, is over.
fn expired(now: Instant, deadline: Instant) -> bool {
    now + CHECK_SLACK >= deadline
}

/// The `hyper::rt::Timer` for HTTP/1 connections under the supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CheckedTimer;

impl hyper::rt::Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CheckedSleep { deadline })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<CheckedSleep>() {
            Some(mut checked) => checked.deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A deadline, ready when polled after it; see the module's documentation for who polls it.
#[derive(Debug)]
struct CheckedSleep {
    deadline: Instant,
}

impl Future for CheckedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // No waker kept: the supervisor's periodic check polls the connection, hence this again.
        if expired(Instant::now(), self.deadline) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for CheckedSleep {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use hyper::rt::Timer as _;

    use super::*;

    struct Counted(std::sync::atomic::AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_deadline_is_over_at_it_or_within_the_slack_before_it() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(!expired(at(0), at(10_000)));
        assert!(!expired(at(9_749), at(10_000)));
        assert!(expired(at(9_750), at(10_000)));
        assert!(expired(at(10_000), at(10_000)));
        assert!(expired(at(15_000), at(10_000)));
    }

    #[test]
    fn polling_reads_the_clock_and_never_keeps_the_waker() {
        let woken = Arc::new(Counted(0.into()));
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let timer = CheckedTimer;
        let mut later = timer.sleep(Duration::from_secs(60));
        assert!(later.as_mut().poll(&mut cx).is_pending());
        let mut past = timer.sleep(Duration::ZERO);
        assert!(past.as_mut().poll(&mut cx).is_ready());
        // hyper's reset of one of ours moves its deadline in place.
        timer.reset(&mut later, Instant::now());
        assert!(later.as_mut().poll(&mut cx).is_ready());
        timer.reset(&mut past, Instant::now() + Duration::from_secs(60));
        assert!(past.as_mut().poll(&mut cx).is_pending());
        drop((later, past));
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
