//! Tokens for individual callers: one per JWT subject and/or per source IP.
//!
//! The same rules as the shared token (refresh ahead, never below the minimum remaining
//! validity, one STS call in flight per key) with three additions: the cache is bounded in
//! memory (a `moka` cache weighed in bytes); a request that misses waits only briefly for the
//! AssumeRole budget; and a refusal that will not fix itself (`NoPermission`,
//! `EntityNotExist.Role`, `InvalidParameter.*`) is remembered for a minute, so a burst of new
//! users does not become a burst of doomed STS calls.
//!
//! New tokens (misses that call STS) are limited per caller network
//! (`STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE`, see [`crate::network`]), and spend from the
//! budget's caller lane, which shares its slots fairly between profiles and networks
//! ([`crate::sts::budget`]): one network cannot take the whole budget.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use moka::future::Cache;
use tokio::time::Instant;

use crate::auth::subject::CallerId;
use crate::clock::Clock;
use crate::credentials::CredentialsProvider;
use crate::metrics::{self, CacheResult};
use crate::refresh::{self, Token, Unavailable};
use crate::sts::budget::{Claimant, Lane};
use crate::sts::{AssumeRole, FailureClass, StsClient, StsError, policy};

/// Memory the per-caller cache may use (tokens are ~1-2 KiB each, so roughly 40 000 callers).
pub const MAX_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long a request that misses the cache waits for the AssumeRole budget.
const REQUEST_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// A background renewal may wait longer; the current token is still being served meanwhile.
const RENEWAL_BUDGET_WAIT: Duration = Duration::from_secs(30);
/// How long a permanent refusal from STS is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(60);
/// Networks tracked by the new-token limit before idle ones are swept out.
const NETWORKS_SWEEP_AT: usize = 10_000;

/// Whom a token is for.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct CallerKey {
    /// The exact (issuer, subject) of a JWT caller.
    pub caller: Option<CallerId>,
    /// The `RoleSessionName` derived from the JWT subject.
    pub session_name: Option<String>,
    /// The caller's address (an IPv6 caller's prefix), when the profile binds tokens to it;
    /// the token's policy allows exactly this network.
    pub ip: Option<IpNet>,
}

/// Where a request comes from, as the new-token limit and the budget's fair queue group it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// IPv4 /24, IPv6 /64 by default: what the new-token limit counts.
    pub network: IpNet,
    /// IPv4 /16, IPv6 /48: only orders waiting callers.
    pub wide: IpNet,
}

impl Origin {
    /// For callers whose address is not known (tests driving the cache directly).
    const UNKNOWN: Self = Self {
        network: IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
        wide: IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
    };
}

/// Limits and bounds of one profile's per-caller tokens.
#[derive(Debug, Clone, Copy)]
pub struct CallerSettings {
    pub min_remaining: Duration,
    /// Memory the cache may use, by its weigher.
    pub max_bytes: u64,
    /// New tokens per caller network and minute (a quarter of it at once); `None`: no limit.
    pub new_tokens_per_network_per_minute: Option<NonZeroU32>,
}

/// Why no token was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// STS or the budget could not give one now.
    Unavailable(Unavailable),
    /// The caller's network has had its share of new tokens; a 429.
    NetworkLimit { retry_after: Duration },
}

#[derive(Debug)]
struct Cached {
    token: Arc<Token>,
    refresh_at: Instant,
    refreshing: AtomicBool,
}

#[derive(Debug)]
pub struct CallerTokens {
    profile: String,
    template: AssumeRole,
    client: StsClient,
    credentials: CredentialsProvider,
    clock: Clock,
    min_remaining: Duration,
    cache: Cache<CallerKey, Arc<Cached>>,
    refused_until: Mutex<Option<Instant>>,
    /// Identifies the profile to the budget's fair queue.
    profile_id: u64,
    new_tokens: Option<DefaultKeyedRateLimiter<IpNet>>,
}

/// Entries live until their token may no longer be served.
struct UntilUnservable;

impl moka::Expiry<CallerKey, Arc<Cached>> for UntilUnservable {
    fn expire_after_create(
        &self,
        _key: &CallerKey,
        value: &Arc<Cached>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            value
                .token
                .serve_until
                .saturating_duration_since(Instant::now()),
        )
    }

    fn expire_after_update(
        &self,
        key: &CallerKey,
        value: &Arc<Cached>,
        updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, updated_at)
    }
}

impl CallerTokens {
    pub fn new(
        profile: String,
        template: AssumeRole,
        client: StsClient,
        credentials: CredentialsProvider,
        clock: Clock,
        min_remaining: Duration,
    ) -> Arc<Self> {
        Self::with_max_bytes(
            profile,
            template,
            client,
            credentials,
            clock,
            min_remaining,
            MAX_CACHE_BYTES,
        )
    }

    /// As [`CallerTokens::new`], with the cache bounded at `max_bytes` (tests use a small bound
    /// to watch eviction happen).
    pub fn with_max_bytes(
        profile: String,
        template: AssumeRole,
        client: StsClient,
        credentials: CredentialsProvider,
        clock: Clock,
        min_remaining: Duration,
        max_bytes: u64,
    ) -> Arc<Self> {
        let settings = CallerSettings {
            min_remaining,
            max_bytes,
            new_tokens_per_network_per_minute: None,
        };
        Self::with_settings(profile, template, client, credentials, clock, settings)
    }

    /// The general form.
    pub fn with_settings(
        profile: String,
        template: AssumeRole,
        client: StsClient,
        credentials: CredentialsProvider,
        clock: Clock,
        settings: CallerSettings,
    ) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &CallerKey, value: &Arc<Cached>| {
                let bytes =
                    value.token.body.len() + key.session_name.as_ref().map_or(0, String::len) + 128;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(UntilUnservable)
            .build();
        let new_tokens = settings
            .new_tokens_per_network_per_minute
            .map(|per_minute| {
                let burst =
                    NonZeroU32::new(per_minute.get().div_ceil(4)).unwrap_or(NonZeroU32::MIN);
                RateLimiter::dashmap(Quota::per_minute(per_minute).allow_burst(burst))
            });
        let profile_id = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            profile.hash(&mut hasher);
            hasher.finish()
        };
        Arc::new(Self {
            profile,
            template,
            client,
            credentials,
            clock,
            min_remaining: settings.min_remaining,
            cache,
            refused_until: Mutex::new(None),
            profile_id,
            new_tokens,
        })
    }

    /// As [`CallerTokens::get_from`], for a caller whose address is unknown: no new-token limit.
    pub async fn get(self: &Arc<Self>, key: CallerKey) -> Result<Arc<Token>, Unavailable> {
        match self.get_from(key, Origin::UNKNOWN).await {
            Ok(token) => Ok(token),
            Err(Refusal::Unavailable(unavailable)) => Err(unavailable),
            Err(Refusal::NetworkLimit { retry_after }) => Err(Unavailable {
                class: Some(FailureClass::Unavailable),
                retry_after,
            }),
        }
    }

    /// A servable token for `key`: from the cache, or from one STS call shared by every request
    /// for the same key that arrives meanwhile (counted once against `origin`'s network).
    pub async fn get_from(
        self: &Arc<Self>,
        key: CallerKey,
        origin: Origin,
    ) -> Result<Arc<Token>, Refusal> {
        let claimant = Claimant {
            profile: self.profile_id,
            wide: origin.wide,
            network: origin.network,
        };
        let now = Instant::now();
        if let Some(cached) = self.cache.get(&key).await {
            if now < cached.token.serve_until {
                if now >= cached.refresh_at
                    && self.refused_for(now).is_none()
                    && !cached.refreshing.swap(true, Ordering::AcqRel)
                {
                    tokio::spawn(self.clone().renew(key, cached.clone(), claimant));
                }
                metrics::record_token_cache(&self.profile, CacheResult::Hit);
                return Ok(cached.token.clone());
            }
            self.cache.invalidate(&key).await;
        }
        metrics::record_token_cache(&self.profile, CacheResult::Miss);
        // A cached token needs no STS call, so only callers without one meet a remembered refusal.
        if let Some(retry_after) = self.refused_for(now) {
            return Err(Refusal::Unavailable(Unavailable {
                class: Some(FailureClass::Rejected),
                retry_after,
            }));
        }
        let this = self.clone();
        let wanted = key.clone();
        self.cache
            .try_get_with(key, async move {
                this.admit_new_token(origin)?;
                this.fetch(&wanted, Lane::Caller(claimant), REQUEST_BUDGET_WAIT)
                    .await
                    .map(Arc::new)
                    .map_err(Refusal::Unavailable)
            })
            .await
            .map(|cached| cached.token.clone())
            .map_err(|refusal: Arc<Refusal>| *refusal)
    }

    /// Counts one new token against `origin`'s network.
    fn admit_new_token(&self, origin: Origin) -> Result<(), Refusal> {
        let Some(limiter) = &self.new_tokens else {
            return Ok(());
        };
        if origin == Origin::UNKNOWN {
            return Ok(());
        }
        if limiter.len() > NETWORKS_SWEEP_AT {
            limiter.retain_recent();
        }
        limiter.check_key(&origin.network).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            tracing::debug!(profile = %self.profile, network = %origin.network, "new-token limit per network reached");
            Refusal::NetworkLimit { retry_after }
        })
    }

    /// Drops every cached token (the kill switch).
    pub async fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks().await;
    }

    /// Callers with a cached token (for tests and metrics).
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The cache's size by its weigher (bytes, roughly), once pending evictions have run.
    pub async fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }

    /// How much longer a permanent refusal from STS is remembered, if one is.
    fn refused_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self
            .refused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))?;
        (until > now).then(|| until - now)
    }

    async fn renew(self: Arc<Self>, key: CallerKey, current: Arc<Cached>, claimant: Claimant) {
        match self
            .fetch(&key, Lane::Caller(claimant), RENEWAL_BUDGET_WAIT)
            .await
        {
            Ok(fresh) => self.cache.insert(key, Arc::new(fresh)).await,
            // Let a later request try again; the current token is served while it qualifies.
            Err(_) => current.refreshing.store(false, Ordering::Release),
        }
    }

    async fn fetch(
        &self,
        key: &CallerKey,
        lane: Lane,
        budget_wait: Duration,
    ) -> Result<Cached, Unavailable> {
        let unavailable = |retry_after: Duration| Unavailable {
            class: Some(FailureClass::Unavailable),
            retry_after,
        };
        let credentials = self.credentials.credentials().await.map_err(|error| {
            tracing::warn!(profile = %self.profile, %error, "no base credentials for a caller token");
            unavailable(Duration::from_secs(1))
        })?;
        let mut call = self.template.clone();
        if let Some(name) = &key.session_name {
            call.role_session_name.clone_from(name);
        }
        if let Some(network) = key.ip {
            call.policy = Some(policy::bound_to_source_network(call.policy.as_deref(), network).map_err(|error| {
                tracing::error!(profile = %self.profile, %error, "cannot bind the session policy to the caller's address");
                Unavailable {
                    class: Some(FailureClass::Rejected),
                    retry_after: REFUSAL_TTL,
                }
            })?);
        }
        let obtained = self.clock.now();
        let issued = match self
            .client
            .assume_role_within(&credentials, &call, lane, budget_wait)
            .await
        {
            Ok(issued) => issued,
            Err(StsError::BudgetExhausted { retry_after }) => return Err(unavailable(retry_after)),
            Err(error) => {
                let class = error.class();
                let permanent = error.code().is_some_and(|code| {
                    code == "NoPermission"
                        || code == "EntityNotExist.Role"
                        || code.starts_with("InvalidParameter")
                });
                tracing::warn!(
                    profile = %self.profile,
                    %error,
                    sts_code = error.code().unwrap_or("none"),
                    hint = error.hint().unwrap_or("none"),
                    remembered_s = if permanent { REFUSAL_TTL.as_secs() } else { 0 },
                    "AssumeRole for a caller failed"
                );
                if permanent {
                    *self
                        .refused_until
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Instant::now() + REFUSAL_TTL);
                }
                return Err(Unavailable {
                    class: Some(class),
                    retry_after: if permanent {
                        REFUSAL_TTL
                    } else {
                        Duration::from_secs(1)
                    },
                });
            }
        };
        let plan = refresh::schedule(obtained, issued.expiration, self.min_remaining, rand::random::<f64>())
            .ok_or_else(|| {
                tracing::warn!(profile = %self.profile, "STS issued a caller token that expires too soon to serve; check this host's clock");
                unavailable(Duration::from_secs(1))
            })?;
        tracing::debug!(profile = %self.profile, access_key_id_prefix = %issued.key_id_prefix(), "issued a caller token");
        Ok(Cached {
            token: Arc::new(Token::new(
                &issued,
                call.role_session_name,
                self.clock.deadline(plan.serve_until),
            )),
            refresh_at: self.clock.deadline(plan.refresh_at),
            refreshing: AtomicBool::new(false),
        })
    }
}
