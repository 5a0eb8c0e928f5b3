//! Waiting and time: polling until something holds, moving tokio time, and counting calls in a
//! time window.

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves tokio time (and so a [`stsvend::clock::Clock::following_tokio`] clock) forward by
/// `by`, at once. Current-thread runtimes only.
pub(crate) async fn jump_ahead(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// The most of `times` that fall within any window of length `window` (times in any order).
pub(crate) fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
