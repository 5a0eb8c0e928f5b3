//! Tokens for individual callers: one per JWT subject and/or per source IP.
//!
//! The engine's rules (refresh ahead, never below the minimum remaining validity, one STS call
//! in flight per key; [`crate::tokens::keeper`]), driven on demand, with three additions: the
//! cache is bounded in memory (a `quick_cache` weighed in bytes); a request that misses waits
//! only briefly for the AssumeRole budget; and a refusal that will not fix itself
//! ([`LastingRefusal`]) is remembered for a minute, so a burst of new users does not become a
//! burst of doomed STS calls.
//!
//! New tokens (misses that call STS) are limited per caller network
//! (`STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE`, see [`crate::network`]), and spend from the
//! budget's caller lane, which shares its slots fairly between profiles and networks
//! ([`crate::sts::budget`]): one network cannot take the whole budget.
//!
//! In fleet mode a [`FarCache`] sits behind the local cache (which stays the near-cache: a hit
//! asks nothing else): a miss or a due renewal asks it before calling STS, and it keeps what
//! STS issued for the other replicas. Without one, nothing changes.
//!
//! The cache is a `quick_cache` rather than moka: a hit, the per-user path's common case, is a
//! shard's read lock and one hash probe, with no expiry wheel or access log to feed. What moka
//! did besides is done here: an entry no longer servable is dropped when read (one never read
//! again is evicted by the byte bound), and the requests that miss the same key share one fetch
//! ([`Flight`]), its refusal included.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::keeper::{self, Held, Job};
use super::schedule::{self, Freshness, Plan};
use super::store::{CallerKey, CallerKeyRef, Origin, Refusal, TokenFuture, Tokens, Unavailable};
use super::token::Token;
use crate::clock::Clock;
use crate::credentials::{CredentialsError, CredentialsProvider};
use crate::metrics::{self, CacheResult};
use crate::sts::budget::{Claimant, Lane};
use crate::sts::policy::{PolicyError, SourceBoundPolicy};
use crate::sts::{AssumeRole, FailureClass, IssuedCredentials, StsClient, StsError};

/// Memory the per-caller cache may use, by [`entry_weight`].
pub const MAX_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long a request that misses the cache waits for the AssumeRole budget.
const REQUEST_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// A background renewal may wait longer; the current token is still being served meanwhile.
const RENEWAL_BUDGET_WAIT: Duration = Duration::from_secs(30);
/// How long a lasting refusal from STS is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(60);
/// When to ask again after a failure that is not remembered.
const RETRY_SOON: Duration = Duration::from_secs(1);
/// Networks tracked by the new-token limit before idle ones are swept out.
const NETWORKS_SWEEP_AT: usize = 10_000;

/// Limits and bounds of one profile's per-caller tokens.
#[derive(Debug, Clone, Copy)]
pub struct CallerSettings {
    pub min_remaining: Duration,
    /// Memory the cache may use, by its weigher.
    pub max_bytes: u64,
    /// New tokens per caller network and minute (a quarter of it at once); `None`: no limit.
    pub new_tokens_per_network_per_minute: Option<NonZeroU32>,
}

/// STS refusals that will not fix themselves within a minute: the role's trust or permissions,
/// a missing role, a parameter STS rejects. Remembered rather than retried for every caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastingRefusal {
    /// `NoPermission`.
    NoPermission,
    /// `EntityNotExist.Role`.
    RoleMissing,
    /// `InvalidParameter.*`.
    InvalidParameter,
}

impl LastingRefusal {
    /// The one place an STS error code decides whether a refusal is remembered.
    fn of(error: &StsError) -> Option<Self> {
        match error.code()? {
            "NoPermission" => Some(Self::NoPermission),
            "EntityNotExist.Role" => Some(Self::RoleMissing),
            code if code.starts_with("InvalidParameter") => Some(Self::InvalidParameter),
            _ => None,
        }
    }
}

/// Why one caller token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// The service's own credentials are not available now.
    #[error(transparent)]
    BaseCredentials(#[from] CredentialsError),
    /// The profile's session policy cannot carry the caller's address.
    #[error("cannot bind the session policy to the caller's address")]
    SourceBinding(#[source] PolicyError),
    /// stsvend's own AssumeRole budget is spent for now; STS was not called.
    #[error("the AssumeRole budget is spent; next slot in {}s", retry_after.as_secs().max(1))]
    Budget { retry_after: Duration },
    /// STS refused in a way that is remembered for [`REFUSAL_TTL`].
    #[error("{error}")]
    Refused {
        error: StsError,
        lasting: LastingRefusal,
    },
    /// Any other failed STS call.
    #[error(transparent)]
    Sts(StsError),
    /// STS issued a token that expires before it could ever be served.
    #[error("STS issued a caller token that expires too soon to serve")]
    ExpiresTooSoon,
}

impl From<StsError> for CallerError {
    fn from(error: StsError) -> Self {
        if let StsError::BudgetExhausted { retry_after } = error {
            return Self::Budget { retry_after };
        }
        match LastingRefusal::of(&error) {
            Some(lasting) => Self::Refused { error, lasting },
            None => Self::Sts(error),
        }
    }
}

impl CallerError {
    /// How long no caller of the profile should meet STS again, if at all.
    fn remembered(&self) -> Option<Duration> {
        matches!(self, Self::Refused { .. }).then_some(REFUSAL_TTL)
    }

    /// What the caller is told.
    fn unavailable(&self) -> Unavailable {
        let (class, retry_after) = match self {
            Self::BaseCredentials(_) | Self::ExpiresTooSoon => {
                (FailureClass::Unavailable, RETRY_SOON)
            }
            Self::SourceBinding(_) => (FailureClass::Rejected, REFUSAL_TTL),
            Self::Budget { retry_after } => (FailureClass::Unavailable, *retry_after),
            Self::Refused { error, .. } => (error.class(), REFUSAL_TTL),
            Self::Sts(error) => (error.class(), RETRY_SOON),
        };
        Unavailable {
            class: Some(class),
            retry_after,
        }
    }

    /// One line for the operator (none for a spent budget: the budget counts those).
    fn log(&self, profile: &str) {
        match self {
            Self::BaseCredentials(error) => {
                tracing::warn!(profile = %profile, %error, "no base credentials for a caller token");
            }
            Self::SourceBinding(error) => {
                tracing::error!(profile = %profile, %error, "cannot bind the session policy to the caller's address");
            }
            Self::Budget { .. } => {}
            Self::Refused { error, .. } | Self::Sts(error) => tracing::warn!(
                profile = %profile,
                %error,
                sts_code = error.code().unwrap_or("none"),
                hint = error.hint().unwrap_or("none"),
                remembered_s = self.remembered().map_or(0, |ttl| ttl.as_secs()),
                "AssumeRole for a caller failed"
            ),
            Self::ExpiresTooSoon => {
                tracing::warn!(profile = %profile, "STS issued a caller token that expires too soon to serve; check this host's clock");
            }
        }
    }
}

/// A held caller token.
pub type HeldToken = Held<Arc<Token>>;

/// What a [`FarCache`] is handed and returns: a token, or why there is none.
pub type HeldFuture<'a, E> = Pin<Box<dyn Future<Output = Result<HeldToken, E>> + Send + 'a>>;

/// Tokens kept beyond this process (fleet mode: sealed in Redis, shared by the replicas). The
/// `fetch` futures handed in are this cache's own STS path (new-token limit, budget, metrics,
/// remembered refusals); a far cache runs one at most, and only when it has no token to offer.
pub trait FarCache: Send + Sync + std::fmt::Debug {
    /// A servable token for `key`, which the local cache does not hold: a kept one, or the one
    /// `fetch` produces (then kept for the others).
    fn on_miss<'a>(
        &'a self,
        key: &'a CallerKey,
        fetch: HeldFuture<'a, Refusal>,
    ) -> HeldFuture<'a, Refusal>;

    /// The successor of `current`, which is due: a kept token that outlives it, or the one
    /// `fetch` produces.
    fn on_renewal<'a>(
        &'a self,
        key: &'a CallerKey,
        current: &'a HeldToken,
        fetch: HeldFuture<'a, Unavailable>,
    ) -> HeldFuture<'a, Unavailable>;

    /// No token kept so far may be handed out again (the kill switch).
    fn clear(&self);
}

/// A profile's per-caller tokens: a cheap handle; clones share one cache.
#[derive(Debug, Clone)]
pub struct CallerTokens {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    profile: String,
    template: AssumeRole,
    /// The template's policy, parsed once, for tokens bound to a caller's network.
    source_bound: Result<SourceBoundPolicy, PolicyError>,
    client: StsClient,
    credentials: CredentialsProvider,
    clock: Clock,
    min_remaining: Duration,
    cache: quick_cache::sync::Cache<CallerKey, Entry, ByWeight>,
    /// The fetches under way, one per key; an entry lives only while a request waits on it
    /// (so at most one per request in flight, which the connection cap bounds).
    in_flight: Mutex<HashMap<CallerKey, Arc<FlightCell>>>,
    refused_until: Mutex<Option<Instant>>,
    /// Identifies the profile to the budget's fair queue.
    profile_id: u64,
    new_tokens: Option<DefaultKeyedRateLimiter<IpNet>>,
    far: Option<Arc<dyn FarCache>>,
}

/// A cached caller token.
type Entry = Arc<Held<Arc<Token>>>;

/// What one fetch for a key produced, shared by every request that waited for it.
type FlightCell = OnceCell<Result<Entry, Refusal>>;

/// The weight of an entry for the cache's byte bound: the body, the session name, the token's
/// serialised audit fields, and 128 for the rest.
fn entry_weight(key: &CallerKey, value: &Entry) -> u64 {
    let token = &value.value;
    let bytes = token.body.len()
        + key.session_name.as_ref().map_or(0, |name| name.len())
        + token.audit_fields.len()
        + 128;
    bytes as u64
}

/// Weighs entries by [`entry_weight`].
#[derive(Debug, Clone)]
struct ByWeight;

impl quick_cache::Weighter<CallerKey, Entry> for ByWeight {
    fn weight(&self, key: &CallerKey, value: &Entry) -> u64 {
        entry_weight(key, value)
    }
}

/// One request's share in the fetch for its key: the first request for a key creates it, the
/// others join it, and whoever leaves last (or the first to see it finished) removes it, so a
/// request arriving later starts afresh. A request that goes away mid-fetch hands the fetch to
/// another waiter ([`OnceCell::get_or_init`]).
struct Flight<'a> {
    flights: &'a Mutex<HashMap<CallerKey, Arc<FlightCell>>>,
    key: &'a CallerKey,
    cell: Option<Arc<FlightCell>>,
}

impl<'a> Flight<'a> {
    fn join(flights: &'a Mutex<HashMap<CallerKey, Arc<FlightCell>>>, key: &'a CallerKey) -> Self {
        let mut map = flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cell = match map.get(key) {
            Some(cell) => cell.clone(),
            None => {
                let cell = Arc::new(FlightCell::new());
                map.insert(key.clone(), cell.clone());
                cell
            }
        };
        Self {
            flights,
            key,
            cell: Some(cell),
        }
    }

    fn cell(&self) -> &FlightCell {
        self.cell
            .as_deref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(cell) = self.cell.take() else { return };
        // Under the lock every share is taken and dropped, so the count is exact: 2 is the
        // map's and ours.
        if map.get(self.key).is_some_and(|current| {
            Arc::ptr_eq(current, &cell) && (cell.initialized() || Arc::strong_count(&cell) == 2)
        }) {
            map.remove(self.key);
        }
        drop(cell);
    }
}

impl CallerTokens {
    /// A per-caller cache for `profile`, bounded and limited by `settings`. With `far` (fleet
    /// mode), every local miss and due renewal asks it before STS.
    pub fn with_settings(
        profile: String,
        template: AssumeRole,
        client: StsClient,
        credentials: CredentialsProvider,
        clock: Clock,
        settings: CallerSettings,
        far: Option<Arc<dyn FarCache>>,
    ) -> Arc<Self> {
        // The estimate sizes the shards (the table grows as it fills); ~1 KiB an entry.
        let estimated = usize::try_from(settings.max_bytes / 1024).unwrap_or(usize::MAX);
        let cache =
            quick_cache::sync::Cache::with_weighter(estimated.max(1), settings.max_bytes, ByWeight);
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
        let source_bound = SourceBoundPolicy::new(template.policy.as_deref());
        Arc::new(Self {
            inner: Arc::new(Inner {
                profile,
                template,
                source_bound,
                client,
                credentials,
                clock,
                min_remaining: settings.min_remaining,
                cache,
                in_flight: Mutex::new(HashMap::new()),
                refused_until: Mutex::new(None),
                profile_id,
                new_tokens,
                far,
            }),
        })
    }

    /// As [`CallerTokens::get_from`], for a caller whose address is unknown: no new-token limit.
    pub async fn get(&self, key: CallerKey) -> Result<Arc<Token>, Unavailable> {
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
    pub async fn get_from(&self, key: CallerKey, origin: Origin) -> Result<Arc<Token>, Refusal> {
        if let Some(token) = self.held(key.borrowed(), origin) {
            return Ok(token);
        }
        let inner = &self.inner;
        let claimant = inner.claimant(origin);
        let now = Instant::now();
        metrics::record_token_cache(&inner.profile, CacheResult::Miss);
        let flight = Flight::join(&inner.in_flight, &key);
        let fetched = flight
            .cell()
            .get_or_init(|| async {
                // Fetched and cached just before this flight began: no second STS call.
                if let Some(held) = inner.servable(key.borrowed(), now) {
                    return Ok(held);
                }
                let fetched = inner.fetch_new(&key, origin, claimant, now).await;
                if let Ok(held) = &fetched {
                    inner.cache.insert(key.clone(), held.clone());
                }
                fetched
            })
            .await
            .clone();
        drop(flight);
        fetched.map(|held| held.value.clone())
    }

    /// The cached token for `key` if it may be served now, counted as a hit; a due one is
    /// served while one request renews it in the background (stale-while-valid). Never waits.
    pub fn held(&self, key: CallerKeyRef<'_>, origin: Origin) -> Option<Arc<Token>> {
        let inner = &self.inner;
        let now = Instant::now();
        let held = inner.servable(key, now)?;
        if held.freshness(now) == Freshness::Due
            && inner.refused_for(now).is_none()
            && held.claim_renewal()
        {
            let claimant = inner.claimant(origin);
            tokio::spawn(inner.clone().renew(key.to_owned(), held.clone(), claimant));
        }
        metrics::record_token_cache(&inner.profile, CacheResult::Hit);
        Some(held.value.clone())
    }

    /// Drops every cached token (the kill switch).
    pub async fn clear(&self) {
        if let Some(far) = &self.inner.far {
            far.clear();
        }
        self.inner.cache.clear();
    }

    /// Callers with a cached token (for tests and metrics).
    pub fn entries(&self) -> u64 {
        self.inner.cache.len() as u64
    }

    /// The cache's size by its weigher (bytes, roughly).
    pub async fn cached_bytes(&self) -> u64 {
        self.inner.cache.weight()
    }
}

impl Tokens for CallerTokens {
    fn token(&self, key: CallerKey, origin: Origin) -> TokenFuture<'_> {
        Box::pin(self.get_from(key, origin))
    }

    fn held(&self, key: CallerKeyRef<'_>, origin: Origin) -> Option<Arc<Token>> {
        Self::held(self, key, origin)
    }

    fn clear(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Self::clear(self))
    }
}

impl Inner {
    /// Who a fetch for a caller from `origin` is, to the budget's fair queue.
    fn claimant(&self, origin: Origin) -> Claimant {
        Claimant {
            profile: self.profile_id,
            wide: origin.wide,
            network: origin.network,
        }
    }

    /// The cached token for `key` if it may still be served at `now`; one that may not is
    /// dropped (the cache keeps no clock of its own), unless a renewal replaced it meanwhile.
    fn servable(&self, key: CallerKeyRef<'_>, now: Instant) -> Option<Entry> {
        let held = self.cache.get(&key)?;
        if held.freshness(now) == Freshness::Unservable {
            self.cache
                .remove_if(&key, |current| Arc::ptr_eq(current, &held));
            return None;
        }
        Some(held)
    }

    /// A new token for `key` from the far cache or STS: what a miss runs, once per key at a
    /// time.
    async fn fetch_new(
        &self,
        key: &CallerKey,
        origin: Origin,
        claimant: Claimant,
        now: Instant,
    ) -> Result<Entry, Refusal> {
        let fetch = async {
            // A kept token needs no STS call, so only callers without one meet a remembered
            // refusal.
            if let Some(retry_after) = self.refused_for(now) {
                return Err(Refusal::Unavailable(Unavailable {
                    class: Some(FailureClass::Rejected),
                    retry_after,
                }));
            }
            self.admit_new_token(origin)?;
            self.fetch(key, Lane::Caller(claimant), REQUEST_BUDGET_WAIT)
                .await
                .map_err(Refusal::Unavailable)
        };
        match &self.far {
            Some(far) => far.on_miss(key, Box::pin(fetch)).await,
            None => fetch.await,
        }
        .map(Arc::new)
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

    /// How much longer a lasting refusal from STS is remembered, if one is.
    fn refused_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self
            .refused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))?;
        (until > now).then(|| until - now)
    }

    async fn renew(
        self: Arc<Self>,
        key: CallerKey,
        current: Arc<Held<Arc<Token>>>,
        claimant: Claimant,
    ) {
        let fetch = self.fetch(&key, Lane::Caller(claimant), RENEWAL_BUDGET_WAIT);
        let renewed = match &self.far {
            Some(far) => far.on_renewal(&key, &current, Box::pin(fetch)).await,
            None => fetch.await,
        };
        match renewed {
            Ok(fresh) => self.cache.insert(key, Arc::new(fresh)),
            // Let a later request try again; the current token is served while it qualifies.
            Err(_) => current.renewal_failed(),
        }
    }

    async fn fetch(
        &self,
        key: &CallerKey,
        lane: Lane,
        budget_wait: Duration,
    ) -> Result<Held<Arc<Token>>, Unavailable> {
        let call = CallerCall {
            tokens: self,
            key,
            lane,
            budget_wait,
        };
        match keeper::attempt(&call, &self.clock).await {
            Ok(fresh) => {
                tracing::debug!(profile = %self.profile, access_key_id_prefix = %fresh.value.key_id_prefix, "issued a caller token");
                Ok(Held::new(fresh))
            }
            Err(error) => {
                error.log(&self.profile);
                if let Some(ttl) = error.remembered() {
                    *self
                        .refused_until
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Instant::now() + ttl);
                }
                Err(error.unavailable())
            }
        }
    }

    /// The profile's `AssumeRole` for `key`: its session name, and its network in the policy.
    fn call_for(&self, key: &CallerKey) -> Result<AssumeRole, CallerError> {
        let mut call = self.template.clone();
        if let Some(name) = &key.session_name {
            call.role_session_name = name.to_string();
        }
        if let Some(network) = key.ip {
            let bound = self.source_bound.as_ref().map_err(Clone::clone);
            let policy = bound.and_then(|bound| bound.for_network(network));
            call.policy = Some(policy.map_err(CallerError::SourceBinding)?);
        }
        Ok(call)
    }
}

/// One caller's token, as a job for the engine.
struct CallerCall<'a> {
    tokens: &'a Inner,
    key: &'a CallerKey,
    lane: Lane,
    budget_wait: Duration,
}

impl Job for CallerCall<'_> {
    type Issued = (IssuedCredentials, String);
    type Value = Arc<Token>;
    type Error = CallerError;

    async fn fetch(&self) -> Result<(IssuedCredentials, String), CallerError> {
        let credentials = self.tokens.credentials.credentials().await?;
        let call = self.tokens.call_for(self.key)?;
        let issued = self
            .tokens
            .client
            .assume_role_within(&credentials, &call, self.lane, self.budget_wait)
            .await?;
        Ok((issued, call.role_session_name))
    }

    fn plan(
        &self,
        obtained: DateTime<Utc>,
        (issued, _): &(IssuedCredentials, String),
    ) -> Result<Plan, CallerError> {
        schedule::plan_token(
            obtained,
            issued.expiration,
            self.tokens.min_remaining,
            rand::random::<f64>(),
        )
        .ok_or(CallerError::ExpiresTooSoon)
    }

    fn keep(
        &self,
        (issued, session): (IssuedCredentials, String),
        serve_until: Instant,
    ) -> Arc<Token> {
        Arc::new(Token::new(&issued, session, serve_until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sts::response::ApiErrorBody;

    fn api(code: &str) -> StsError {
        StsError::Api {
            status: 403,
            body: ApiErrorBody {
                code: code.into(),
                message: String::new(),
                request_id: None,
            },
        }
    }

    #[test]
    fn lasting_refusals_are_remembered_and_others_are_retried_soon() {
        for (code, lasting) in [
            ("NoPermission", Some(LastingRefusal::NoPermission)),
            ("EntityNotExist.Role", Some(LastingRefusal::RoleMissing)),
            (
                "InvalidParameter.PolicySize",
                Some(LastingRefusal::InvalidParameter),
            ),
            ("Throttling.User", None),
            ("SignatureDoesNotMatch", None),
        ] {
            let error = CallerError::from(api(code));
            assert_eq!(LastingRefusal::of(&api(code)), lasting, "{code}");
            let expected = if lasting.is_some() {
                REFUSAL_TTL
            } else {
                RETRY_SOON
            };
            assert_eq!(error.unavailable().retry_after, expected, "{code}");
            assert_eq!(error.remembered().is_some(), lasting.is_some(), "{code}");
        }
    }

    #[test]
    fn a_spent_budget_is_not_an_sts_failure() {
        let error = CallerError::from(StsError::BudgetExhausted {
            retry_after: Duration::from_secs(3),
        });
        assert!(matches!(error, CallerError::Budget { .. }));
        assert_eq!(
            error.unavailable(),
            Unavailable {
                class: Some(FailureClass::Unavailable),
                retry_after: Duration::from_secs(3),
            }
        );
        assert_eq!(error.remembered(), None);
    }

    #[test]
    fn a_policy_that_cannot_carry_an_address_is_a_rejection_not_remembered() {
        let error = CallerError::SourceBinding(PolicyError::TooLong { len: 3000 });
        assert_eq!(
            error.unavailable(),
            Unavailable {
                class: Some(FailureClass::Rejected),
                retry_after: REFUSAL_TTL,
            }
        );
        assert_eq!(error.remembered(), None);
    }
}
