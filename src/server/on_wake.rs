//! Polls a future only when one of its own wakers fired, however often the task it runs in
//! is woken.
//!
//! A connection's task is woken for every read and write of its socket; its supervisor's
//! futures (the listener's stop, an eviction, the periodic check, a close deadline) are ready a
//! few times in the connection's life. Polled beside the connection in one `select!`, they
//! were polled on every wake: about 500 instructions a request (callgrind), for nothing. Behind
//! a waker of their own they are polled when they asked to be (README, Performance, "Round 4").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker handed to the guarded future: it notes the wake, then wakes the task.
#[derive(Debug, Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// One waker, made once, for the futures polled through [`OnWake::poll`] one after another.
#[derive(Debug)]
pub(crate) struct OnWake {
    flag: Arc<Flag>,
    waker: Waker,
}

impl OnWake {
    pub(crate) fn new() -> Self {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        Self { flag, waker }
    }

    /// The next future is polled on its first call, whatever woke the task.
    pub(crate) fn reset(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// Polls `future` if it was woken since it last returned `Pending` (or [`Self::reset`] was
    /// called); `Pending` otherwise. Either way the task's waker in `cx` is the one woken next.
    pub(crate) fn poll<F: Future>(
        &self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        // Registered first: a wake between this and the swap below is not lost.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        future.poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `open` is set, waking through the waker it was last given.
    #[derive(Default)]
    struct Gate {
        polls: AtomicUsize,
        open: AtomicBool,
        waker: std::sync::Mutex<Option<Waker>>,
    }

    impl Gate {
        fn open(&self) {
            self.open.store(true, Ordering::SeqCst);
            if let Some(waker) = self.waker.lock().unwrap().take() {
                waker.wake();
            }
        }
    }

    struct Wait<'a>(&'a Gate);

    impl Future for Wait<'_> {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.polls.fetch_add(1, Ordering::SeqCst);
            if self.0.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The task's waker: counts how often the task was woken.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_is_polled_first_then_only_after_its_own_wake() {
        let gate = Gate::default();
        let task = Arc::new(Task::default());
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        let on_wake = OnWake::new();
        on_wake.reset();
        let mut wait = std::pin::pin!(Wait(&gate));

        assert!(on_wake.poll(wait.as_mut(), &mut cx).is_pending());
        assert_eq!(gate.polls.load(Ordering::SeqCst), 1);
        // The task woken by something else (its socket): the future is left alone.
        for _ in 0..100 {
            assert!(on_wake.poll(wait.as_mut(), &mut cx).is_pending());
        }
        assert_eq!(gate.polls.load(Ordering::SeqCst), 1);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);

        // Its own wake wakes the task, and the next poll reaches the future.
        gate.open();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(on_wake.poll(wait.as_mut(), &mut cx).is_ready());
        assert_eq!(gate.polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn reset_lets_a_new_future_be_polled_at_once() {
        let task_waker = Waker::from(Arc::new(Task::default()));
        let mut cx = Context::from_waker(&task_waker);
        let on_wake = OnWake::new();
        let first = Gate::default();
        on_wake.reset();
        assert!(
            on_wake
                .poll(std::pin::pin!(Wait(&first)), &mut cx)
                .is_pending()
        );
        // A second future, never polled: without reset it would never be.
        let second = Gate::default();
        second.open.store(true, Ordering::SeqCst);
        let mut wait = std::pin::pin!(Wait(&second));
        assert!(on_wake.poll(wait.as_mut(), &mut cx).is_pending());
        assert_eq!(second.polls.load(Ordering::SeqCst), 0);
        on_wake.reset();
        assert!(on_wake.poll(wait.as_mut(), &mut cx).is_ready());
    }
}
