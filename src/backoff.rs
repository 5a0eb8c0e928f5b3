//! The pause before retrying after consecutive failures: capped exponential backoff with jitter.
//! Pure maths, shared by the profile refresher and the base-credential renewal.

use std::time::Duration;

/// First retry delay after a failure; doubles per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between failed attempts: short enough to recover quickly when STS returns,
/// long enough that a broken setup costs STS one call a minute at most per profile.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The pause after the `failures`-th consecutive failure: exponential from [`BASE_BACKOFF`],
/// capped at [`MAX_BACKOFF`], then scaled into `[50 %, 100 %]` by `jitter` so that replicas that
/// failed together do not retry together.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BASE_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_halves_at_most() {
        assert_eq!(backoff(1, 1.0), secs(1));
        assert_eq!(backoff(2, 1.0), secs(2));
        assert_eq!(backoff(4, 1.0), secs(8));
        assert_eq!(backoff(7, 1.0), secs(60));
        assert_eq!(backoff(u32::MAX, 1.0), secs(60));
        assert_eq!(backoff(3, 0.0), secs(2));
    }
}
