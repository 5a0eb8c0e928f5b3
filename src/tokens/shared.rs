//! The shared (per-profile) token: one background keeper per profile owns every STS call for
//! it and publishes the current token; request handlers only read. The rules are the engine's
//! ([`crate::tokens::schedule::plan_token`], [`crate::tokens::keeper`]): served only while at
//! least `min_remaining` remains, renewed ahead, one call in flight, backoff on failure.
//!
//! Handlers reach it through [`Tokens`] and readiness through [`SharedToken::is_servable`];
//! both read only the `watch` channel, so a keeper that fills the channel from elsewhere (a
//! store shared between replicas) changes neither.
//!
//! In fleet mode a [`FarShared`] decides each attempt: publish the token another replica
//! stored, or fetch one (then stored for the others). Without one, every attempt fetches.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keeper::{self, Decision, Fresh, Job, Kept, attempt};
use super::schedule::{self, Plan};
use super::store::{CallerKey, Origin, Refusal, TokenFuture, Tokens, Unavailable};
use super::token::Token;
use crate::clock::Clock;
use crate::credentials::{CredentialsError, CredentialsProvider};
use crate::metrics::{self, CacheResult};
use crate::sts::{AssumeRole, FailureClass, IssuedCredentials, StsClient, StsError};

/// How long a request may wait for a shared token that is being fetched right now. STS answers
/// in well under a second; a longer wait would only pile up connections during an outage.
pub const MAX_WAIT_FOR_FETCH: Duration = Duration::from_secs(5);

/// The published state of one profile's shared token.
pub type Snapshot = keeper::Snapshot<Arc<Token>, FailureClass>;
/// What the profile's keeper is doing right now.
pub type Activity = keeper::Activity<FailureClass>;

impl<F> keeper::Snapshot<Arc<Token>, F> {
    /// The current token, if it may still be served at `now`.
    pub fn servable(&self, now: Instant) -> Option<&Arc<Token>> {
        self.value.as_ref().filter(|t| t.servable(now))
    }
}

/// Returns a servable token, waiting up to `max_wait` when none is servable but a call is in
/// flight (a cold start, or the moment a renewal is due), so that a burst of first requests all
/// get the one token that call brings rather than an error.
pub async fn servable_token(
    tokens: &watch::Receiver<Snapshot>,
    max_wait: Duration,
) -> Result<Arc<Token>, Unavailable> {
    let not_ready = || Unavailable {
        class: None,
        retry_after: Duration::from_secs(1),
    };
    keeper::read(tokens, max_wait, servable_now, not_ready).await
}

/// What a reader of `snapshot` gets right now: the token, a refusal, or a wait for the call in
/// flight.
fn servable_now(snapshot: &Snapshot) -> Decision<Arc<Token>, Unavailable> {
    let now = Instant::now();
    if let Some(token) = snapshot.servable(now) {
        return Decision::Ready(token.clone());
    }
    match snapshot.activity {
        Activity::Fetching => Decision::Wait,
        Activity::Waiting | Activity::Failing(_) => Decision::Refuse(Unavailable {
            class: match snapshot.activity {
                Activity::Failing(class) => Some(class),
                _ => None,
            },
            retry_after: snapshot
                .next_attempt
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
        }),
    }
}

/// A profile's shared token, as the HTTP layer holds it: cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedToken {
    profile: String,
    rx: watch::Receiver<Snapshot>,
    reset: Arc<Notify>,
}

impl SharedToken {
    /// Reads what `rx` publishes; `reset` reaches the keeper that publishes it.
    pub fn new(profile: String, rx: watch::Receiver<Snapshot>, reset: Arc<Notify>) -> Self {
        Self { profile, rx, reset }
    }

    pub fn receiver(&self) -> &watch::Receiver<Snapshot> {
        &self.rx
    }

    /// Whether a token may be served at `now` (readiness).
    pub fn is_servable(&self, now: Instant) -> bool {
        self.rx.borrow().servable(now).is_some()
    }

    /// [`Tokens::token`] without the boxed future (the token path calls it directly): the
    /// servable token, counted as a cache hit.
    pub async fn cached(&self) -> Result<Arc<Token>, Refusal> {
        self.counted(self.servable(MAX_WAIT_FOR_FETCH).await)
    }

    /// [`SharedToken::cached`] when it needs no waiting: `None` while a token is being fetched
    /// and none is servable.
    pub fn cached_now(&self) -> Option<Result<Arc<Token>, Refusal>> {
        keeper::read_now(&self.rx, servable_now).map(|answer| self.counted(answer))
    }

    /// A read's answer, counted as a cache hit when it is a token.
    fn counted(&self, answer: Result<Arc<Token>, Unavailable>) -> Result<Arc<Token>, Refusal> {
        let token = answer.map_err(Refusal::Unavailable)?;
        metrics::record_token_cache(&self.profile, CacheResult::Hit);
        Ok(token)
    }

    /// A servable token, waiting (bounded) for one in flight; see [`servable_token`].
    pub async fn servable(&self, max_wait: Duration) -> Result<Arc<Token>, Unavailable> {
        servable_token(&self.rx, max_wait).await
    }
}

/// The key is ignored: every caller of the profile gets the same token, fetched ahead by the
/// keeper, never for a request.
impl Tokens for SharedToken {
    fn token(&self, _key: CallerKey, _origin: Origin) -> TokenFuture<'_> {
        Box::pin(self.cached())
    }

    /// Drops the current token and has the keeper fetch a new one at once.
    fn clear(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.reset.notify_one();
        Box::pin(std::future::ready(()))
    }
}

/// Something that can obtain a fresh token; STS in production, a script in tests.
pub trait Fetch: Send + Sync + 'static {
    fn fetch(&self) -> impl Future<Output = Result<IssuedCredentials, RefreshError>> + Send;

    /// The `RoleSessionName` the tokens are issued for (for the audit log).
    fn role_session_name(&self) -> &str {
        ""
    }
}

/// Fetches tokens for one profile from STS with the service's own credentials.
#[derive(Debug)]
pub struct StsFetcher {
    pub client: StsClient,
    pub credentials: CredentialsProvider,
    pub call: AssumeRole,
}

impl Fetch for StsFetcher {
    async fn fetch(&self) -> Result<IssuedCredentials, RefreshError> {
        let credentials = self.credentials.credentials().await?;
        Ok(self.client.assume_role(&credentials, &self.call).await?)
    }

    fn role_session_name(&self) -> &str {
        &self.call.role_session_name
    }
}

/// Why a refresh attempt produced no token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Sts(#[from] StsError),
    /// The service's own credentials are not available (a renewing source is failing).
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(
        "STS issued a token expiring at {expiration}, which leaves less than the minimum remaining validity ({}s) by this host's clock",
        min_remaining.as_secs()
    )]
    ExpiresTooSoon {
        expiration: DateTime<Utc>,
        min_remaining: Duration,
    },
}

impl RefreshError {
    fn class(&self) -> FailureClass {
        match self {
            Self::Sts(e) => e.class(),
            Self::Credentials(_) | Self::ExpiresTooSoon { .. } => FailureClass::Unavailable,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Sts(e) => e.code().unwrap_or("none"),
            Self::Credentials(_) | Self::ExpiresTooSoon { .. } => "none",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Sts(e) => e.hint(),
            Self::Credentials(_) => Some(
                "the service's own credentials could not be renewed; see the `renewing base credentials failed` lines",
            ),
            Self::ExpiresTooSoon { .. } => Some(
                "check this host's clock (NTP), and that STSVEND_MIN_REMAINING_SECONDS is well below the duration the role allows",
            ),
        }
    }
}

/// What [`FarShared::obtain`] is handed and returns: a planned token, or why there is none.
pub type FreshFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Fresh<Arc<Token>>, RefreshError>> + Send + 'a>>;

/// The profile's token kept beyond this process (fleet mode: sealed in Redis, refreshed by the
/// replica holding the profile's lease). `fetch` is this keeper's own STS path (budget, plan,
/// metrics); the far store runs it only when this replica should call STS.
pub trait FarShared: Send + Sync + std::fmt::Debug {
    /// The token to publish next: a stored one, or the one `fetch` produces (then stored).
    fn obtain<'a>(&'a self, fetch: FreshFuture<'a>) -> FreshFuture<'a>;

    /// No token stored so far may be published again (the kill switch).
    fn clear(&self);
}

/// The keeper's job for one profile: its log lines and its expiry gauge.
struct Refresher<F> {
    profile: String,
    fetcher: F,
    clock: Clock,
    min_remaining: Duration,
    far: Option<Arc<dyn FarShared>>,
    /// The expiration last logged: in fleet mode an attempt may publish the token it holds.
    logged: Mutex<Option<DateTime<Utc>>>,
}

impl<F: Fetch> Job for Refresher<F> {
    type Issued = IssuedCredentials;
    type Value = Arc<Token>;
    type Error = RefreshError;

    fn fetch(&self) -> impl Future<Output = Result<IssuedCredentials, RefreshError>> + Send {
        self.fetcher.fetch()
    }

    fn plan(
        &self,
        obtained: DateTime<Utc>,
        issued: &IssuedCredentials,
    ) -> Result<Plan, RefreshError> {
        schedule::plan_token(
            obtained,
            issued.expiration,
            self.min_remaining,
            rand::random::<f64>(),
        )
        .ok_or(RefreshError::ExpiresTooSoon {
            expiration: issued.expiration,
            min_remaining: self.min_remaining,
        })
    }

    fn keep(&self, issued: IssuedCredentials, serve_until: Instant) -> Arc<Token> {
        Arc::new(Token::new(
            &issued,
            self.fetcher.role_session_name().to_owned(),
            serve_until,
        ))
    }
}

impl<F: Fetch> Kept for Refresher<F> {
    type Failure = FailureClass;

    /// Keeps the token expiry gauges current while waiting.
    const TICK: Option<Duration> = Some(metrics::EXPIRY_GAUGE_EVERY);

    fn renewed(&self, fresh: &Fresh<Arc<Token>>) {
        let token = &fresh.value;
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.replace(token.expiration) == Some(token.expiration) {
            return;
        }
        tracing::info!(
            profile = %self.profile,
            access_key_id_prefix = %token.key_id_prefix,
            expiration = %token.expiration_text,
            sts_request_id = token.sts_request_id.as_deref().unwrap_or("none"),
            next_refresh_in_s = fresh.refresh_at.saturating_duration_since(Instant::now()).as_secs(),
            "obtained a new STS token"
        );
    }

    fn failed(
        &self,
        error: &RefreshError,
        failures: u32,
        retry_in: Duration,
        published: &Snapshot,
    ) -> FailureClass {
        let class = error.class();
        let still_serving = published.servable(Instant::now()).is_some();
        let (profile, code) = (&self.profile, error.code());
        let hint = error.hint().unwrap_or("none");
        let retry_in_s = retry_in.as_secs_f32();
        if class == FailureClass::Rejected {
            tracing::error!(profile = %profile, %error, sts_code = code, hint, failures, retry_in_s, still_serving, "AssumeRole was refused");
        } else {
            tracing::warn!(profile = %profile, %error, sts_code = code, hint, failures, retry_in_s, still_serving, "AssumeRole failed");
        }
        class
    }

    /// When the published token expires (and how soon), as gauges.
    fn tick(&self, published: &Snapshot) {
        let expiration = published.value.as_ref().map(|token| token.expiration);
        metrics::record_token_expiry(&self.profile, expiration, self.clock.now());
    }

    fn resetting(&self) {
        tracing::info!(profile = %self.profile, "dropping the current token; fetching a new one");
        if let Some(far) = &self.far {
            far.clear();
        }
    }

    async fn obtain(&self, clock: &Clock) -> Result<Fresh<Arc<Token>>, RefreshError> {
        match &self.far {
            Some(far) => far.obtain(Box::pin(attempt(self, clock))).await,
            None => attempt(self, clock).await,
        }
    }
}

/// Starts the keeper for `profile`'s shared token. It stops when `cancel` fires; `reset` (or
/// [`Tokens::clear`]) drops the current token and fetches a new one at once. With `far`, each
/// attempt goes through it (fleet mode).
pub fn spawn<F: Fetch>(
    profile: String,
    fetcher: F,
    clock: Clock,
    min_remaining: Duration,
    cancel: CancellationToken,
    reset: Arc<Notify>,
    far: Option<Arc<dyn FarShared>>,
) -> (SharedToken, tokio::task::JoinHandle<()>) {
    let job = Refresher {
        profile: profile.clone(),
        fetcher,
        clock: clock.clone(),
        min_remaining,
        far,
        logged: Mutex::new(None),
    };
    let (rx, task) = keeper::spawn(job, clock, None, cancel, reset.clone());
    (SharedToken::new(profile, rx, reset), task)
}
