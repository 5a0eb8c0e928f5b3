//! A rate and a burst, as the rate-limit settings give them.

use std::num::NonZeroU32;

/// Requests allowed per client IP (and per JWT subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}
