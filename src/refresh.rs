//! The background refresher: one task per profile owns every STS call and publishes the current
//! token for request handlers to read. Handlers never call STS.
//!
//! Rules (issue #2):
//! - a token is never served with less than `min_remaining` of validity left (the SLS plugin
//!   keeps a token for five minutes and never reads `Expiration`);
//! - renewal happens at half the lifetime, or earlier so that the new token is in place before
//!   the current one stops being servable, minus a little jitter so replicas spread out;
//! - exactly one call is in flight per profile, because only this task makes calls;
//! - on failure the current token keeps being served while servable, and the task retries with
//!   capped exponential backoff and jitter.
//!
//! The schedule and the backoff ([`crate::backoff`]) are pure functions of their inputs; the loop
//! only sleeps.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::backoff;
use crate::clock::Clock;
use crate::credentials::{CredentialsError, CredentialsProvider};
use crate::sts::{AssumeRole, FailureClass, IssuedCredentials, StsClient, StsError};

/// How long before a token stops being servable its successor should be in place, at most.
const REFRESH_LEAD: Duration = Duration::from_secs(30);
/// The largest random amount a refresh is brought forward by.
const MAX_JITTER: Duration = Duration::from_secs(60);

/// A token ready to hand out: the response body is serialised once, here, not per request.
/// `Debug` leaves the body out: it holds the secret and the security token.
pub struct Token {
    /// The exact `/get_sts_token` response body. Holds secrets; never log it.
    pub body: Bytes,
    pub key_id_prefix: String,
    pub expiration: DateTime<Utc>,
    /// `expiration` as the response and the audit log write it, formatted once per token.
    pub expiration_text: String,
    /// After this moment the token has less than `min_remaining` left and is not served.
    pub serve_until: Instant,
    /// The `RoleSessionName` it was issued for, for the audit log.
    pub role_session_name: String,
    /// STS's `RequestId` for the call that issued it, for the audit log.
    pub sts_request_id: Option<String>,
    /// Set by the first request that receives the token (see [`Token::take_fresh`]).
    served: AtomicBool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("body", &"** redacted **")
            .field("key_id_prefix", &self.key_id_prefix)
            .field("expiration", &self.expiration)
            .field("serve_until", &self.serve_until)
            .field("role_session_name", &self.role_session_name)
            .field("sts_request_id", &self.sts_request_id)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn new(
        issued: &IssuedCredentials,
        role_session_name: String,
        serve_until: Instant,
    ) -> Self {
        Self {
            body: issued.response_body(),
            key_id_prefix: issued.key_id_prefix().to_owned(),
            expiration: issued.expiration,
            expiration_text: issued
                .expiration
                .format(crate::sts::response::EXPIRATION_FORMAT)
                .to_string(),
            serve_until,
            role_session_name,
            sts_request_id: issued.request_id.clone(),
            served: AtomicBool::new(false),
        }
    }

    /// True exactly once: for the first request that receives this token (the audit log calls
    /// it `fresh`; later requests are served from a cache). Reads before it writes, so the
    /// common case (already served) does not contend on the cache line.
    pub fn take_fresh(&self) -> bool {
        !self.served.load(Ordering::Relaxed) && !self.served.swap(true, Ordering::Relaxed)
    }
}

/// What the refresher is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// An `AssumeRole` call is in flight.
    Fetching,
    /// The last call succeeded; the next one is scheduled.
    Waiting,
    /// The last call failed; the next attempt is scheduled with backoff.
    Failing(FailureClass),
}

/// The published state of one profile.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub token: Option<Arc<Token>>,
    pub activity: Activity,
    /// When the refresher will call STS next (none while a call is in flight).
    pub next_attempt: Option<Instant>,
}

impl Snapshot {
    fn starting() -> Self {
        Self {
            token: None,
            activity: Activity::Fetching,
            next_attempt: None,
        }
    }

    /// The current token, if it may still be served at `now`.
    pub fn servable(&self, now: Instant) -> Option<&Arc<Token>> {
        self.token.as_ref().filter(|t| now < t.serve_until)
    }
}

/// Why no token can be handed out right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// What the last attempt ran into; `None` while the first call has not finished.
    pub class: Option<FailureClass>,
    /// When it is worth asking again.
    pub retry_after: Duration,
}

/// Returns a servable token, waiting up to `max_wait` when none is servable but a call is in
/// flight (a cold start, or the moment a renewal is due), so that a burst of first requests all
/// get the one token that call brings rather than an error.
pub async fn servable_token(
    tokens: &watch::Receiver<Snapshot>,
    max_wait: Duration,
) -> Result<Arc<Token>, Unavailable> {
    // The fast path only borrows; the receiver is cloned only when there is something to wait for.
    if let Some(token) = tokens.borrow().servable(Instant::now()) {
        return Ok(token.clone());
    }
    let deadline = Instant::now() + max_wait;
    let mut tokens = tokens.clone();
    loop {
        let waiting_for = {
            let snapshot = tokens.borrow_and_update();
            let now = Instant::now();
            if let Some(token) = snapshot.servable(now) {
                return Ok(token.clone());
            }
            match snapshot.activity {
                Activity::Fetching if now < deadline => None,
                Activity::Fetching => Some(Unavailable {
                    class: None,
                    retry_after: Duration::from_secs(1),
                }),
                Activity::Waiting | Activity::Failing(_) => Some(Unavailable {
                    class: match snapshot.activity {
                        Activity::Failing(class) => Some(class),
                        _ => None,
                    },
                    retry_after: snapshot
                        .next_attempt
                        .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
                }),
            }
        };
        if let Some(unavailable) = waiting_for {
            return Err(unavailable);
        }
        match tokio::time::timeout_at(deadline, tokens.changed()).await {
            Ok(Ok(())) => {}
            // Timed out, or the refresher is gone (shutting down).
            _ => {
                return Err(Unavailable {
                    class: None,
                    retry_after: Duration::from_secs(1),
                });
            }
        }
    }
}

/// When a token stops being served and when its successor is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub serve_until: DateTime<Utc>,
    pub refresh_at: DateTime<Utc>,
}

/// Plans the life of a token obtained at `obtained` that expires at `expiration`.
///
/// `jitter` in `[0, 1)` brings the refresh forward by up to a twentieth of the lifetime (at most
/// [`MAX_JITTER`]). Returns `None` when the token would never be servable, which happens when
/// the clocks disagree or STS granted less than `min_remaining`.
pub fn schedule(
    obtained: DateTime<Utc>,
    expiration: DateTime<Utc>,
    min_remaining: Duration,
    jitter: f64,
) -> Option<Schedule> {
    let min_remaining = chrono::Duration::from_std(min_remaining).ok()?;
    let lifetime = expiration - obtained;
    let serve_until = expiration - min_remaining;
    if serve_until <= obtained {
        return None;
    }
    let window = serve_until - obtained;
    let lead = chrono::Duration::from_std(REFRESH_LEAD)
        .ok()?
        .min(window / 2);
    let latest = serve_until - lead;
    let half = obtained + lifetime / 2;
    let base = half.min(latest);
    let span = (lifetime / 20)
        .min(chrono::Duration::from_std(MAX_JITTER).ok()?)
        .min((base - obtained) / 2);
    let jitter = jitter.clamp(0.0, 1.0);
    let forward = chrono::Duration::milliseconds((span.num_milliseconds() as f64 * jitter) as i64);
    Some(Schedule {
        serve_until,
        refresh_at: base - forward,
    })
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

/// Starts the refresher for `profile`. The task stops when `cancel` fires; `reset` drops the
/// current token and fetches a new one at once (the kill switch uses it).
pub fn spawn<F: Fetch>(
    profile: String,
    fetcher: F,
    clock: Clock,
    min_remaining: Duration,
    cancel: CancellationToken,
    reset: Arc<tokio::sync::Notify>,
) -> (watch::Receiver<Snapshot>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Snapshot::starting());
    let task = tokio::spawn(run(
        profile,
        fetcher,
        clock,
        min_remaining,
        tx,
        cancel,
        reset,
    ));
    (rx, task)
}

async fn run<F: Fetch>(
    profile: String,
    fetcher: F,
    clock: Clock,
    min_remaining: Duration,
    tx: watch::Sender<Snapshot>,
    cancel: CancellationToken,
    reset: Arc<tokio::sync::Notify>,
) {
    let mut failures: u32 = 0;
    loop {
        tx.send_modify(|s| {
            s.activity = Activity::Fetching;
            s.next_attempt = None;
        });
        let obtained = clock.now();
        let result = tokio::select! {
            result = fetcher.fetch() => result,
            () = cancel.cancelled() => return,
        };
        let outcome = result.and_then(|issued| {
            let plan = schedule(
                obtained,
                issued.expiration,
                min_remaining,
                rand::random::<f64>(),
            )
            .ok_or(RefreshError::ExpiresTooSoon {
                expiration: issued.expiration,
                min_remaining,
            })?;
            Ok((issued, plan))
        });
        let next = match outcome {
            Ok((issued, plan)) => {
                failures = 0;
                let refresh_at = clock.deadline(plan.refresh_at);
                let token = Arc::new(Token::new(
                    &issued,
                    fetcher.role_session_name().to_owned(),
                    clock.deadline(plan.serve_until),
                ));
                tracing::info!(
                    profile = %profile,
                    access_key_id_prefix = %token.key_id_prefix,
                    expiration = %issued.expiration.format(crate::sts::response::EXPIRATION_FORMAT),
                    sts_request_id = issued.request_id.as_deref().unwrap_or("none"),
                    next_refresh_in_s = refresh_at.saturating_duration_since(Instant::now()).as_secs(),
                    "obtained a new STS token"
                );
                tx.send_modify(|s| {
                    s.token = Some(token);
                    s.activity = Activity::Waiting;
                    s.next_attempt = Some(refresh_at);
                });
                refresh_at
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures, rand::random::<f64>());
                let class = error.class();
                let still_serving = tx.borrow().servable(Instant::now()).is_some();
                let code = match &error {
                    RefreshError::Sts(e) => e.code().unwrap_or("none"),
                    RefreshError::Credentials(_) | RefreshError::ExpiresTooSoon { .. } => "none",
                };
                let hint = error.hint().unwrap_or("none");
                if class == FailureClass::Rejected {
                    tracing::error!(profile = %profile, %error, sts_code = code, hint, failures, retry_in_s = delay.as_secs_f32(), still_serving, "AssumeRole was refused");
                } else {
                    tracing::warn!(profile = %profile, %error, sts_code = code, hint, failures, retry_in_s = delay.as_secs_f32(), still_serving, "AssumeRole failed");
                }
                let at = Instant::now() + delay;
                tx.send_modify(|s| {
                    s.activity = Activity::Failing(class);
                    s.next_attempt = Some(at);
                });
                at
            }
        };
        // While waiting, keep `stsvend_token_expiry_seconds` current (the first tick is now).
        let mut gauge = tokio::time::interval(crate::metrics::EXPIRY_GAUGE_EVERY);
        gauge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => break,
                _ = gauge.tick() => record_expiry(&profile, &tx.borrow(), clock.now()),
                () = reset.notified() => {
                    tracing::info!(profile = %profile, "dropping the current token; fetching a new one");
                    tx.send_modify(|s| s.token = None);
                    record_expiry(&profile, &tx.borrow(), clock.now());
                    failures = 0;
                    break;
                }
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// Seconds until the published token expires (0 without one), as a gauge.
fn record_expiry(profile: &str, snapshot: &Snapshot, now: DateTime<Utc>) {
    let seconds = snapshot.token.as_ref().map_or(0.0, |token| {
        (token.expiration - now).num_milliseconds() as f64 / 1000.0
    });
    crate::metrics::record_token_expiry(profile, seconds);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sts::response::ApiErrorBody;
    use secrecy::SecretString;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_token_debug_never_shows_the_body() {
        let issued = IssuedCredentials::new(
            "STS.debugcheck",
            SecretString::from("body-secret-value"),
            SecretString::from("body-token-value"),
            t(3600),
            None,
        );
        let token = Token::new(&issued, "stsvend".into(), Instant::now());
        let shown = format!("{token:?}");
        assert!(
            std::str::from_utf8(&token.body)
                .unwrap()
                .contains("body-secret-value")
        );
        assert!(
            !shown.contains("body-secret-value") && !shown.contains("body-token-value"),
            "{shown}"
        );
    }

    #[test]
    fn default_token_is_refreshed_at_half_its_life() {
        let plan = schedule(t(0), t(3600), secs(600), 0.0).unwrap();
        assert_eq!(plan.serve_until, t(3000));
        assert_eq!(plan.refresh_at, t(1800));
    }

    #[test]
    fn jitter_brings_the_refresh_forward_by_at_most_a_minute() {
        let plan = schedule(t(0), t(3600), secs(600), 1.0).unwrap();
        assert_eq!(plan.refresh_at, t(1740));
        let plan = schedule(t(0), t(43200), secs(600), 0.999_999).unwrap();
        assert!(plan.refresh_at > t(21540) && plan.refresh_at <= t(21600));
    }

    #[test]
    fn a_large_min_remaining_moves_the_refresh_before_the_serving_cutoff() {
        // 900 s token, 600 s must remain: servable for 300 s, so refresh 30 s before that.
        let plan = schedule(t(0), t(900), secs(600), 0.0).unwrap();
        assert_eq!(plan.serve_until, t(300));
        assert_eq!(plan.refresh_at, t(270));
        assert!(plan.refresh_at < plan.serve_until);
        // The tightest valid configuration (61 s window) still refreshes inside the window.
        let plan = schedule(t(0), t(900), secs(839), 1.0).unwrap();
        assert!(plan.refresh_at > t(0) && plan.refresh_at < plan.serve_until);
    }

    #[test]
    fn a_token_that_would_never_be_servable_is_refused() {
        assert_eq!(schedule(t(0), t(600), secs(600), 0.0), None);
        assert_eq!(schedule(t(0), t(-5), secs(0), 0.0), None);
    }

    /// Answers from a script; counts calls; an empty script means STS is down.
    struct Scripted {
        clock: Clock,
        answers: Mutex<VecDeque<Result<u64, &'static str>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Fetch for Scripted {
        async fn fetch(&self) -> Result<IssuedCredentials, RefreshError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answers.lock().unwrap().pop_front();
            match answer {
                Some(Ok(lifetime)) => Ok(IssuedCredentials::new(
                    format!("STS.key{n}"),
                    SecretString::from("secret"),
                    SecretString::from("token"),
                    self.clock.now() + chrono::Duration::seconds(lifetime as i64),
                    None,
                )),
                other => {
                    let code = match other {
                        Some(Err(code)) => code,
                        _ => "Throttling.User",
                    };
                    Err(StsError::Api {
                        status: 400,
                        body: ApiErrorBody {
                            code: code.into(),
                            message: String::new(),
                            request_id: None,
                        },
                    }
                    .into())
                }
            }
        }
    }

    fn start(
        answers: Vec<Result<u64, &'static str>>,
        min_remaining: u64,
    ) -> (watch::Receiver<Snapshot>, Arc<AtomicUsize>) {
        let clock = Clock::following_tokio(t(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetcher = Scripted {
            clock: clock.clone(),
            answers: Mutex::new(answers.into()),
            calls: calls.clone(),
        };
        let (rx, _task) = spawn(
            "default".into(),
            fetcher,
            clock,
            secs(min_remaining),
            CancellationToken::new(),
            Arc::new(tokio::sync::Notify::new()),
        );
        (rx, calls)
    }

    fn key_of(rx: &watch::Receiver<Snapshot>) -> Option<String> {
        let snapshot = rx.borrow();
        let token = snapshot.servable(Instant::now())?;
        let body: serde_json::Value = serde_json::from_slice(&token.body).unwrap();
        Some(body["AccessKeyId"].as_str().unwrap().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_renewed_at_half_life_and_not_before() {
        let (rx, calls) = start(vec![Ok(3600), Ok(3600), Ok(3600)], 600);
        tokio::time::sleep(secs(1)).await;
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key0"));
        tokio::time::sleep(secs(1700)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no refresh before jittered half-life"
        );
        tokio::time::sleep(secs(200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key1"));
    }

    #[tokio::test(start_paused = true)]
    async fn old_token_is_served_through_an_outage_until_min_remaining_then_withdrawn() {
        // One good token, then STS keeps throttling.
        let (rx, calls) = start(vec![Ok(3600)], 600);
        tokio::time::sleep(secs(1900)).await; // past the first refresh, failing since
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key0"), "still servable");
        assert!(matches!(
            rx.borrow().activity,
            Activity::Failing(FailureClass::Unavailable) | Activity::Fetching
        ));
        tokio::time::sleep(secs(1101)).await; // 3001 s: less than 600 s left
        assert_eq!(
            key_of(&rx),
            None,
            "never served with less than min-remaining left"
        );
        // Backoff keeps the call rate at about one a minute, not a storm.
        let calls_so_far = calls.load(Ordering::SeqCst);
        assert!(calls_so_far <= 2 + 1300 / 30, "{calls_so_far} calls");
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_recovers_by_itself_when_sts_returns() {
        let (rx, calls) = start(
            vec![Err("InternalError"), Err("Throttling.User"), Ok(3600)],
            600,
        );
        tokio::time::sleep(secs(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key2"));
        assert_eq!(rx.borrow().activity, Activity::Waiting);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_published_as_rejected() {
        let (rx, _calls) = start(vec![Err("NoPermission")], 600);
        tokio::time::sleep(Duration::from_millis(100)).await; // before the first retry
        assert_eq!(
            rx.borrow().activity,
            Activity::Failing(FailureClass::Rejected)
        );
        assert!(rx.borrow().next_attempt.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_expiring_too_soon_is_never_published() {
        let (rx, _calls) = start(vec![Ok(500)], 600);
        tokio::time::sleep(secs(1)).await;
        assert!(rx.borrow().token.is_none());
        assert_eq!(
            rx.borrow().activity,
            Activity::Failing(FailureClass::Unavailable)
        );
    }
}
