//! A login profile's state (issue 16): its platforms' clients, the session tokens it issues and
//! accepts, and the limit on login attempts per address prefix (each may cost a call to the
//! platform, whose quota is per app).

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::login::{Login, Sessions};
use crate::login::alipay::{AlipayClient, AlipaySetupError};
use crate::login::exchange::PlatformClients;
use crate::login::session::{SessionSetupError, SessionTokens};
use crate::login::wechat::{WechatClient, WechatSetupError};

#[derive(Debug)]
pub struct Logins {
    pub clients: PlatformClients,
    pub sessions: SessionTokens,
    attempts: DefaultKeyedRateLimiter<IpNet>,
    clock: DefaultClock,
}

/// Why a login profile cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    #[error(transparent)]
    Wechat(#[from] WechatSetupError),
    #[error(transparent)]
    Alipay(#[from] AlipaySetupError),
    #[error("the session settings: {0}")]
    Sessions(#[from] SessionSetupError),
}

impl Logins {
    pub fn new(login: &Login, sessions: &Sessions) -> Result<Self, LoginSetupError> {
        let clients = PlatformClients {
            wechat: login.wechat.clone().map(WechatClient::new).transpose()?,
            alipay: login.alipay.clone().map(AlipayClient::new).transpose()?,
        };
        let tokens = SessionTokens::new(
            &sessions.secret,
            sessions.previous_secret.as_ref(),
            sessions.ttl,
        )?;
        let quota = Quota::per_minute(sessions.login_limit.per_minute)
            .allow_burst(sessions.login_limit.burst);
        let clock = DefaultClock::default();
        Ok(Self {
            clients,
            sessions: tokens,
            attempts: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        })
    }

    /// Counts one login attempt from the address prefix `caller`; `Err` says how long to wait.
    pub fn attempt(&self, caller: IpNet) -> Result<(), Duration> {
        self.attempts
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets prefixes whose attempts are long past; run periodically.
    pub fn forget_idle(&self) {
        self.attempts.retain_recent();
        self.attempts.shrink_to_fit();
    }
}

/// The profile's login state, when its auth is a mini program login.
pub fn for_profile(
    login: Option<&Login>,
    sessions: Option<&Sessions>,
) -> Result<Option<Arc<Logins>>, LoginSetupError> {
    match (login, sessions) {
        (Some(login), Some(sessions)) => Ok(Some(Arc::new(Logins::new(login, sessions)?))),
        _ => Ok(None),
    }
}
