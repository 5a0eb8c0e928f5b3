//! Shared state of the HTTP handlers: per profile, the shared token, the per-caller tokens, the
//! rate limiters and the JWT verifier.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use super::limits::RateLimits;
use crate::auth::jwt::JwtVerifier;
use crate::clock::Clock;
use crate::config::AuthMode;
use crate::fleet::switchboard::Switchboard;
use crate::tokens::shared::SharedToken;
use crate::tokens::store::Tokens;

/// Everything a request for one profile needs.
#[derive(Debug)]
pub struct ProfileState {
    pub name: String,
    /// The profile's shared (guest) token. In `jwt` mode it is never handed out; it still
    /// proves, for `/readyz`, that STS issues tokens for this profile.
    pub shared: SharedToken,
    /// Per-subject / per-address tokens; present when the profile checks JWTs or binds tokens
    /// to the caller's address.
    pub callers: Option<Arc<dyn Tokens>>,
    pub limits: RateLimits,
    pub auth: AuthMode,
    pub verifier: Option<JwtVerifier>,
    /// Login mode (`wechat`, `alipay`): the platforms, the session tokens, the attempt limit.
    pub logins: Option<Arc<super::logins::Logins>>,
    pub bind_source_ip: bool,
    /// Browser origins allowed by CORS; empty for none.
    pub cors_origins: Vec<String>,
    /// Requests `report` mode let through that `jwt` mode would have refused.
    pub would_deny: AtomicU64,
    /// The kill switch: while false, no token of this profile is handed out.
    pub enabled: AtomicBool,
}

impl ProfileState {
    /// The kill switch. Disabling stops vending at once and drops every cached token (they are
    /// fetched anew, so tokens handed out before the incident are not handed out again).
    pub async fn set_enabled(&self, enabled: bool) {
        self.apply_enabled(enabled).await;
        tracing::warn!(profile = %self.name, enabled, "kill switch changed");
    }

    /// [`Self::set_enabled`] without its log line, for callers that log the change their own
    /// way (the fleet names who changed it); `true` when the state changed.
    pub async fn apply_enabled(&self, enabled: bool) -> bool {
        let was = self
            .enabled
            .swap(enabled, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::record_profile_enabled(&self.name, enabled);
        if was && !enabled {
            if let Some(callers) = &self.callers {
                callers.clear().await;
            }
            self.shared.clear().await;
        }
        was != enabled
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The profiles by name.
pub type Profiles = HashMap<String, Arc<ProfileState>>;

/// Cheap to clone: everything is behind `Arc`s. The profiles are the current ones, shared by
/// every clone: a reload swaps them for all (admin calls, readiness, the kill-switch follower)
/// at once, while each generation's token routes hold their own profiles.
#[derive(Debug, Clone)]
pub struct AppState {
    profiles: Arc<ArcSwap<Profiles>>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub clock: Clock,
    /// Fleet mode: the kill switch shared through the fleet store.
    fleet_switch: Option<Arc<Switchboard>>,
}

impl AppState {
    pub fn new(profiles: Vec<ProfileState>, trusted_proxies: Vec<IpNet>, clock: Clock) -> Self {
        Self {
            profiles: Arc::new(ArcSwap::from_pointee(
                profiles
                    .into_iter()
                    .map(|p| (p.name.clone(), Arc::new(p)))
                    .collect(),
            )),
            trusted_proxies: Arc::new(trusted_proxies),
            clock,
            fleet_switch: None,
        }
    }

    /// Fleet mode: the kill switch follows `board` (see [`super::fleet_switch`]).
    #[must_use]
    pub fn with_fleet_switch(mut self, board: Arc<Switchboard>) -> Self {
        self.fleet_switch = Some(board);
        self
    }

    pub fn fleet_switch(&self) -> Option<&Arc<Switchboard>> {
        self.fleet_switch.as_ref()
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<Arc<ProfileState>> {
        self.profiles.load().get(name).cloned()
    }

    /// Every profile, sorted by name.
    pub fn profiles(&self) -> Vec<Arc<ProfileState>> {
        let mut all: Vec<_> = self.profiles.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The next generation after a reload: `profiles` become every clone's current ones, and
    /// the returned state (for the new routers) has the new `trusted_proxies`.
    #[must_use]
    pub fn next_generation(&self, profiles: Profiles, trusted_proxies: Vec<IpNet>) -> Self {
        self.profiles.store(Arc::new(profiles));
        Self {
            trusted_proxies: Arc::new(trusted_proxies),
            ..self.clone()
        }
    }
}
