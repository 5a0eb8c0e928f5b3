//! The one place that reads wall-clock time.
//!
//! Wall time is needed for the STS `Timestamp` parameter and to compare an STS `Expiration` with
//! now. Everything else sleeps on `tokio::time`, so tests can pause it. A clock that follows
//! tokio's (pausable) time lets a test drive both from one `tokio::time::advance`.

use chrono::{DateTime, Utc};

/// The furthest ahead [`Clock::deadline`] looks: a year, far beyond any STS token (12 h at most).
pub const MAX_AHEAD: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Source of wall-clock time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The operating system clock.
    System,
    /// `start` plus however much tokio time has passed since `at`; for tests with paused time.
    FollowsTokio {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `start` now and then advances with tokio's clock.
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self::FollowsTokio {
            start,
            at: tokio::time::Instant::now(),
        }
    }

    /// The current UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
            Self::System => Utc::now(),
            Self::FollowsTokio { start, at } => {
                let elapsed = chrono::Duration::from_std(at.elapsed()).unwrap_or_default();
                *start + elapsed
            }
        }
    }

    /// Converts a wall-clock moment into a tokio deadline, so timers and comparisons can use
    /// tokio time. Moments in the past map to "now"; absurdly distant ones (an upstream that
    /// claims a token lasts centuries) are capped at [`MAX_AHEAD`] rather than overflowing.
    pub fn deadline(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let now_instant = tokio::time::Instant::now();
        let ahead = (at - self.now())
            .to_std()
            .unwrap_or_default()
            .min(MAX_AHEAD);
        now_instant.checked_add(ahead).unwrap_or(now_instant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn following_clock_advances_with_tokio_time() {
        let start = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::following_tokio(start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now().to_rfc3339(), "2026-11-26T12:01:30+00:00");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_of_a_past_moment_is_now() {
        let start = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::following_tokio(start);
        let past = start - chrono::Duration::seconds(5);
        assert_eq!(clock.deadline(past), tokio::time::Instant::now());
        let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(clock.deadline(far), tokio::time::Instant::now() + MAX_AHEAD);
        let future = start + chrono::Duration::seconds(5);
        assert_eq!(
            clock.deadline(future),
            tokio::time::Instant::now() + Duration::from_secs(5)
        );
    }
}
