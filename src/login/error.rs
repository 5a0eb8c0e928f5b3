//! The one error type of the platforms' code exchanges, and who a successful one names.

use std::time::Duration;

use super::session::Platform;
use super::wechat::{self, ExchangeError};

/// What `Retry-After` says when a platform is busy, slow, unreachable or answers nonsense.
pub const UNAVAILABLE_RETRY_AFTER: Duration = wechat::UNAVAILABLE_RETRY_AFTER;

/// Who the platform says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformUser {
    pub platform: Platform,
    /// WeChat's `openid`; Alipay's `open_id` or `user_id`.
    pub id: String,
    /// WeChat's `unionid`, when sent.
    pub union_id: Option<String>,
}

/// Why a code was not exchanged. Holds no secret, code or session key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The profile does not accept this platform's logins.
    #[error("this profile does not accept {0} logins")]
    NotAccepted(Platform),
    /// Invalid, expired or already used: the mini program gets a new code and logs in again.
    #[error("{0} refused the login code (invalid, expired or already used)")]
    InvalidCode(Platform),
    /// WeChat's high-risk user block (40226).
    #[error("{0} blocked this user's login")]
    Blocked(Platform),
    /// The platform's own frequency limit (WeChat 45011).
    #[error("{0}'s login frequency limit was reached")]
    RateLimited(Platform),
    /// Our settings are wrong (app id, keys, permissions): the operator must act.
    #[error("{platform} login is misconfigured: {reason}")]
    Misconfigured { platform: Platform, reason: String },
    /// The platform is busy, slow, unreachable or answered nonsense.
    #[error("cannot exchange the code with {platform}: {reason}")]
    Unavailable { platform: Platform, reason: String },
}

impl LoginError {
    /// How long the client should wait before trying again, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(_) => Some(wechat::RATE_LIMITED_RETRY_AFTER),
            Self::Unavailable { .. } | Self::Misconfigured { .. } => Some(UNAVAILABLE_RETRY_AFTER),
            Self::NotAccepted(_) | Self::InvalidCode(_) | Self::Blocked(_) => None,
        }
    }

    /// The `outcome` label of `stsvend_login_exchanges_total`: a fixed word.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotAccepted(_) => "not_accepted",
            Self::InvalidCode(_) => "invalid_code",
            Self::Blocked(_) => "blocked",
            Self::RateLimited(_) => "rate_limited",
            Self::Misconfigured { .. } => "misconfigured",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

impl From<ExchangeError> for LoginError {
    fn from(error: ExchangeError) -> Self {
        let platform = Platform::Wechat;
        match error {
            ExchangeError::InvalidCode => Self::InvalidCode(platform),
            ExchangeError::Blocked => Self::Blocked(platform),
            ExchangeError::RateLimited => Self::RateLimited(platform),
            ExchangeError::Unavailable(reason) => Self::Unavailable {
                platform,
                reason: reason.to_string(),
            },
        }
    }
}
