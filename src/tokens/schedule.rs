//! The engine's pure maths: when a credential stops being served, when its successor is
//! fetched, how long to back off after failures, and whether a held value is fresh, due or
//! done. No clock, no I/O, no randomness: callers pass `now` and the jitter in, and the tests
//! below are fixed vectors.
//!
//! Two rule sets, because the two kinds of credential have different readers:
//! - tokens handed to callers ([`plan_token`], issue #2): never served with less than
//!   `min_remaining` left (the SLS plugin keeps a token for five minutes and never reads
//!   `Expiration`); renewed at half their life, or early enough that the successor is in place
//!   before the current one stops being servable, minus a little jitter so replicas spread out;
//! - the service's own base credentials ([`plan_base`]): used until a minute before they
//!   expire, renewed at half their life but at least five minutes before expiry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// How long before a token stops being servable its successor should be in place, at most.
const REFRESH_LEAD: Duration = Duration::from_secs(30);
/// The largest random amount a token refresh is brought forward by.
const MAX_JITTER: Duration = Duration::from_secs(60);

/// Base credentials this close to expiry are not used any more: a request signed with them
/// might arrive after they lapse.
const BASE_EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Renew base credentials at the latest this long before expiry (the official SDKs use 3 to 15
/// minutes).
const BASE_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The soonest base credentials are renewed after they were obtained: never a busy loop.
const BASE_MIN_RENEW_AFTER: Duration = Duration::from_secs(10);
/// Permanent credentials from a temporary-style source are looked at again this often.
const BASE_PERMANENT_LOOK_AGAIN: Duration = Duration::from_secs(3600);

/// First retry delay after a failure; doubles per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between failed attempts: short enough to recover quickly when STS returns,
/// long enough that a broken setup costs STS one call a minute at most per profile.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// When a credential stops being served and when its successor is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub serve_until: DateTime<Utc>,
    pub refresh_at: DateTime<Utc>,
}

fn chrono(duration: Duration) -> Option<chrono::Duration> {
    chrono::Duration::from_std(duration).ok()
}

/// Plans the life of a token obtained at `obtained` that expires at `expiration`.
///
/// `jitter` in `[0, 1)` brings the refresh forward by up to a twentieth of the lifetime (at most
/// [`MAX_JITTER`]). Returns `None` when the token would never be servable, which happens when
/// the clocks disagree or STS granted less than `min_remaining`.
pub fn plan_token(
    obtained: DateTime<Utc>,
    expiration: DateTime<Utc>,
    min_remaining: Duration,
    jitter: f64,
) -> Option<Plan> {
    let min_remaining = chrono(min_remaining)?;
    let lifetime = expiration - obtained;
    let serve_until = expiration - min_remaining;
    if serve_until <= obtained {
        return None;
    }
    let window = serve_until - obtained;
    let lead = chrono(REFRESH_LEAD)?.min(window / 2);
    let latest = serve_until - lead;
    let half = obtained + lifetime / 2;
    let base = half.min(latest);
    let span = (lifetime / 20)
        .min(chrono(MAX_JITTER)?)
        .min((base - obtained) / 2);
    let jitter = jitter.clamp(0.0, 1.0);
    let forward = chrono::Duration::milliseconds((span.num_milliseconds() as f64 * jitter) as i64);
    Some(Plan {
        serve_until,
        refresh_at: base - forward,
    })
}

/// Plans the life of base credentials obtained at `obtained` that expire at `expiration`
/// (`None`: permanent credentials, used without end and looked at again hourly).
pub fn plan_base(obtained: DateTime<Utc>, expiration: Option<DateTime<Utc>>) -> Plan {
    let Some(expiration) = expiration else {
        return Plan {
            serve_until: DateTime::<Utc>::MAX_UTC,
            refresh_at: obtained + chrono(BASE_PERMANENT_LOOK_AGAIN).unwrap_or_default(),
        };
    };
    let margin = chrono(BASE_EXPIRY_MARGIN).unwrap_or_default();
    Plan {
        serve_until: expiration - margin,
        refresh_at: base_renew_at(obtained, expiration),
    }
}

/// When to renew base credentials obtained at `obtained` that expire at `expiration`: at half
/// their life, but at least [`BASE_RENEW_BEFORE`] before expiry, and not sooner than
/// [`BASE_MIN_RENEW_AFTER`] after they were obtained.
fn base_renew_at(obtained: DateTime<Utc>, expiration: DateTime<Utc>) -> DateTime<Utc> {
    let before = chrono(BASE_RENEW_BEFORE).unwrap_or_default();
    let half = obtained + (expiration - obtained) / 2;
    half.min(expiration - before)
        .max(obtained + chrono(BASE_MIN_RENEW_AFTER).unwrap_or_default())
}

/// Whether base credentials expiring at `expiration` may still sign a request at `now`.
pub fn base_usable(expiration: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let margin = chrono(BASE_EXPIRY_MARGIN).unwrap_or_default();
    expiration.is_none_or(|expiration| now + margin < expiration)
}

/// The pause after the `failures`-th consecutive failure: exponential from [`BASE_BACKOFF`],
/// capped at [`MAX_BACKOFF`], then scaled into `[50 %, 100 %]` by `jitter` so that replicas that
/// failed together do not retry together.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BASE_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// What a held value is good for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it; nothing to do.
    Fresh,
    /// Serve it, and fetch its successor (stale-while-valid).
    Due,
    /// Do not serve it any more.
    Unservable,
}

/// Where `now` falls in a value's life that ends at `serve_until` and is renewed at
/// `refresh_at`.
pub fn freshness(now: Instant, serve_until: Instant, refresh_at: Instant) -> Freshness {
    if now >= serve_until {
        Freshness::Unservable
    } else if now >= refresh_at {
        Freshness::Due
    } else {
        Freshness::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn default_token_is_refreshed_at_half_its_life() {
        let plan = plan_token(t(0), t(3600), secs(600), 0.0).unwrap();
        assert_eq!(plan.serve_until, t(3000));
        assert_eq!(plan.refresh_at, t(1800));
    }

    #[test]
    fn jitter_brings_the_refresh_forward_by_at_most_a_minute() {
        let plan = plan_token(t(0), t(3600), secs(600), 1.0).unwrap();
        assert_eq!(plan.refresh_at, t(1740));
        let plan = plan_token(t(0), t(43200), secs(600), 0.999_999).unwrap();
        assert!(plan.refresh_at > t(21540) && plan.refresh_at <= t(21600));
    }

    #[test]
    fn a_large_min_remaining_moves_the_refresh_before_the_serving_cutoff() {
        // 900 s token, 600 s must remain: servable for 300 s, so refresh 30 s before that.
        let plan = plan_token(t(0), t(900), secs(600), 0.0).unwrap();
        assert_eq!(plan.serve_until, t(300));
        assert_eq!(plan.refresh_at, t(270));
        assert!(plan.refresh_at < plan.serve_until);
        // The tightest valid configuration (61 s window) still refreshes inside the window.
        let plan = plan_token(t(0), t(900), secs(839), 1.0).unwrap();
        assert!(plan.refresh_at > t(0) && plan.refresh_at < plan.serve_until);
    }

    #[test]
    fn a_token_that_would_never_be_servable_is_refused() {
        assert_eq!(plan_token(t(0), t(600), secs(600), 0.0), None);
        assert_eq!(plan_token(t(0), t(-5), secs(0), 0.0), None);
    }

    #[test]
    fn renewal_is_at_half_life_but_five_minutes_before_expiry_at_the_latest() {
        let renew_at = |obtained, expiration| plan_base(obtained, Some(expiration)).refresh_at;
        assert_eq!(renew_at(t(0), t(3600)), t(1800));
        assert_eq!(renew_at(t(0), t(21600)), t(10800));
        assert_eq!(renew_at(t(0), t(900)), t(450));
        assert_eq!(renew_at(t(0), t(480)), t(180));
        assert_eq!(renew_at(t(0), t(5)), t(10), "never a busy loop");
    }

    #[test]
    fn base_credentials_are_served_until_a_minute_before_expiry_and_permanent_ones_always() {
        assert_eq!(plan_base(t(0), Some(t(3600))).serve_until, t(3540));
        let permanent = plan_base(t(0), None);
        assert_eq!(permanent.serve_until, DateTime::<Utc>::MAX_UTC);
        assert_eq!(permanent.refresh_at, t(3600), "looked at again hourly");
    }

    #[test]
    fn credentials_close_to_expiry_are_not_used() {
        assert!(base_usable(Some(t(100)), t(0)));
        assert!(!base_usable(Some(t(100)), t(40)));
        assert!(base_usable(None, t(1_000_000)));
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

    #[test]
    fn a_value_is_fresh_then_due_then_unservable() {
        let start = Instant::now();
        let at = |n: u64| start + secs(n);
        assert_eq!(freshness(at(0), at(300), at(150)), Freshness::Fresh);
        assert_eq!(freshness(at(149), at(300), at(150)), Freshness::Fresh);
        assert_eq!(freshness(at(150), at(300), at(150)), Freshness::Due);
        assert_eq!(freshness(at(299), at(300), at(150)), Freshness::Due);
        assert_eq!(freshness(at(300), at(300), at(150)), Freshness::Unservable);
        // A refresh planned after the cutoff never makes an unservable value "due".
        assert_eq!(freshness(at(400), at(300), at(500)), Freshness::Unservable);
    }
}
