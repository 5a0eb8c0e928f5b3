//! The engine's async half: one fetch-and-plan step ([`attempt`]) shared by every credential
//! the service keeps fresh, and the two ways of driving it.
//!
//! - **Eagerly**, in one background task per value ([`spawn`]): the shared per-profile token and
//!   the service's base credentials. The task is the only caller upstream, so there is exactly
//!   one call in flight (single flight); it publishes each value on a `watch` channel, keeps
//!   serving the current value through failures while it is servable (stale-while-valid), and
//!   retries with capped, jittered backoff ([`schedule::backoff`]). A [`Kept`] job supplies the
//!   log lines and metrics. Readers wait on the channel, bounded, with [`read`].
//! - **On demand**, per key of a bounded cache ([`Held`]): per-caller tokens. A value is fetched
//!   when first asked for (the cache makes concurrent first requests share one call) and renewed
//!   once, in the background, by the first request that finds it due, while it keeps being
//!   served. Idle callers cost no STS calls, which is why this path has no task per key.
//!
//! The loop stops when its cancel token fires or when every reader is gone.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::schedule::{self, Freshness, Plan};
use crate::clock::Clock;

/// One thing the engine knows how to obtain: fetch it, plan its life, keep it.
pub trait Job: Send + Sync {
    /// What upstream hands back.
    type Issued: Send;
    /// What is held and served.
    type Value: Send + Sync;
    type Error: Send;

    /// One call upstream.
    fn fetch(&self) -> impl Future<Output = Result<Self::Issued, Self::Error>> + Send;

    /// When what was obtained at `obtained` stops being served and is renewed; an error when it
    /// may never be served.
    fn plan(&self, obtained: DateTime<Utc>, issued: &Self::Issued) -> Result<Plan, Self::Error>;

    /// Turns what upstream handed back into the held value.
    fn keep(&self, issued: Self::Issued, serve_until: Instant) -> Self::Value;
}

/// A value just obtained, with its deadlines in tokio time.
#[derive(Debug)]
pub struct Fresh<V> {
    pub value: V,
    pub serve_until: Instant,
    pub refresh_at: Instant,
}

/// Fetches once and plans the result: the step every keeper repeats.
pub async fn attempt<J: Job + ?Sized>(job: &J, clock: &Clock) -> Result<Fresh<J::Value>, J::Error> {
    let obtained = clock.now();
    let issued = job.fetch().await?;
    let plan = job.plan(obtained, &issued)?;
    let serve_until = clock.deadline(plan.serve_until);
    Ok(Fresh {
        refresh_at: clock.deadline(plan.refresh_at),
        value: job.keep(issued, serve_until),
        serve_until,
    })
}

/// A job kept fresh by a background task: what it logs and counts on the way.
pub trait Kept: Job<Value: Clone + 'static> + 'static {
    /// What readers learn of a failed attempt.
    type Failure: Clone + Send + Sync + 'static;

    /// While waiting, [`Kept::tick`] runs this often (the first tick at once).
    const TICK: Option<Duration> = None;

    /// A new value is about to be published.
    fn renewed(&self, fresh: &Fresh<Self::Value>);

    /// The `failures`-th attempt in a row failed; the next one is in `retry_in`.
    fn failed(
        &self,
        error: &Self::Error,
        failures: u32,
        retry_in: Duration,
        published: &Snapshot<Self::Value, Self::Failure>,
    ) -> Self::Failure;

    /// Every [`Kept::TICK`] while waiting, and after a reset.
    fn tick(&self, _published: &Snapshot<Self::Value, Self::Failure>) {}

    /// The current value is about to be dropped on request (the kill switch).
    fn resetting(&self) {}

    /// One attempt at a new value: by default [`attempt`]. A job whose value may come from
    /// elsewhere (a store shared between replicas) decides here whether to call upstream.
    fn obtain(
        &self,
        clock: &Clock,
    ) -> impl Future<Output = Result<Fresh<Self::Value>, Self::Error>> + Send {
        attempt(self, clock)
    }
}

/// What the keeper is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity<F> {
    /// A call is in flight.
    Fetching,
    /// The last call succeeded; the next one is scheduled.
    Waiting,
    /// The last call failed; the next attempt is scheduled with backoff.
    Failing(F),
}

/// The published state of one kept value.
#[derive(Debug, Clone)]
pub struct Snapshot<V, F> {
    pub value: Option<V>,
    pub activity: Activity<F>,
    /// When the keeper will call upstream next (none while a call is in flight).
    pub next_attempt: Option<Instant>,
    /// The last attempt's failure, until one succeeds. Unlike [`Snapshot::activity`] it stays
    /// while the next attempt is in flight, for readers that fail fast rather than wait.
    pub last_failure: Option<F>,
}

impl<V, F> Snapshot<V, F> {
    /// Nothing yet; the first call is in flight.
    pub fn starting() -> Self {
        Self {
            value: None,
            activity: Activity::Fetching,
            next_attempt: None,
            last_failure: None,
        }
    }

    /// Holding `value`, renewed at `next_attempt`.
    pub fn serving(value: V, next_attempt: Option<Instant>) -> Self {
        Self {
            value: Some(value),
            activity: Activity::Waiting,
            next_attempt,
            last_failure: None,
        }
    }
}

/// The reading end of a kept job's value.
pub type Published<J> = watch::Receiver<Snapshot<<J as Job>::Value, <J as Kept>::Failure>>;

/// Starts keeping `job`'s value fresh, beginning with `first` if one was already obtained
/// (then the first call waits for its renewal time). `reset` drops the current value and fetches
/// a new one at once.
pub fn spawn<J: Kept>(
    job: J,
    clock: Clock,
    first: Option<Fresh<J::Value>>,
    cancel: CancellationToken,
    reset: Arc<Notify>,
) -> (Published<J>, tokio::task::JoinHandle<()>) {
    let (initial, first_wait) = match first {
        Some(fresh) => (
            Snapshot::serving(fresh.value, Some(fresh.refresh_at)),
            Some(fresh.refresh_at),
        ),
        None => (Snapshot::starting(), None),
    };
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(async move {
        tokio::select! {
            () = run(job, clock, &tx, first_wait, &reset) => {}
            () = tx.closed() => {}
            () = cancel.cancelled() => {}
        }
    });
    (rx, task)
}

async fn run<J: Kept>(
    job: J,
    clock: Clock,
    tx: &watch::Sender<Snapshot<J::Value, J::Failure>>,
    first_wait: Option<Instant>,
    reset: &Notify,
) {
    let mut failures: u32 = 0;
    if let Some(at) = first_wait {
        wait(&job, tx, at, reset).await;
    }
    loop {
        tx.send_modify(|s| {
            s.activity = Activity::Fetching;
            s.next_attempt = None;
        });
        let next = match job.obtain(&clock).await {
            Ok(fresh) => {
                failures = 0;
                job.renewed(&fresh);
                let at = fresh.refresh_at;
                tx.send_modify(|s| {
                    s.value = Some(fresh.value);
                    s.activity = Activity::Waiting;
                    s.next_attempt = Some(at);
                    s.last_failure = None;
                });
                at
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = schedule::backoff(failures, rand::random::<f64>());
                let failure = job.failed(&error, failures, delay, &tx.borrow());
                let at = Instant::now() + delay;
                tx.send_modify(|s| {
                    s.activity = Activity::Failing(failure.clone());
                    s.next_attempt = Some(at);
                    s.last_failure = Some(failure);
                });
                at
            }
        };
        if wait(&job, tx, next, reset).await == Woke::Reset {
            failures = 0;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Woke {
    Due,
    Reset,
}

/// Sleeps until `until`, ticking meanwhile; a reset drops the value and ends the wait early.
async fn wait<J: Kept>(
    job: &J,
    tx: &watch::Sender<Snapshot<J::Value, J::Failure>>,
    until: Instant,
    reset: &Notify,
) -> Woke {
    let mut ticks = J::TICK.map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ticks
    });
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return Woke::Due,
            () = tick(&mut ticks) => job.tick(&tx.borrow()),
            () = reset.notified() => {
                job.resetting();
                tx.send_modify(|s| s.value = None);
                job.tick(&tx.borrow());
                return Woke::Reset;
            }
        }
    }
}

async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What a reader makes of the published state.
#[derive(Debug)]
pub enum Decision<T, E> {
    /// Here is the answer.
    Ready(T),
    /// Nothing to hand out yet, but a change is worth waiting for.
    Wait,
    /// Nothing to hand out, and waiting will not help.
    Refuse(E),
}

/// Reads `rx` through `decide`, waiting up to `max_wait` for changes while it says
/// [`Decision::Wait`]; `gave_up` is the answer when the wait ends or the keeper is gone.
pub async fn read<V, F, T, E>(
    rx: &watch::Receiver<Snapshot<V, F>>,
    max_wait: Duration,
    mut decide: impl FnMut(&Snapshot<V, F>) -> Decision<T, E>,
    gave_up: impl FnOnce() -> E,
) -> Result<T, E> {
    // The fast path only borrows; the receiver is cloned only when there is something to wait for.
    if let Some(answer) = read_now(rx, &mut decide) {
        return answer;
    }
    // Boxed: inline, the wait's timer and receiver (360 bytes) would size the future of every
    // request that reads a token, waiting or not (README, Performance, "Round 5").
    Box::pin(wait_for(rx.clone(), max_wait, decide, gave_up)).await
}

/// [`read`]'s answer when it needs no waiting: `None` when `decide` says [`Decision::Wait`].
pub fn read_now<V, F, T, E>(
    rx: &watch::Receiver<Snapshot<V, F>>,
    decide: impl FnOnce(&Snapshot<V, F>) -> Decision<T, E>,
) -> Option<Result<T, E>> {
    match decide(&rx.borrow()) {
        Decision::Ready(answer) => Some(Ok(answer)),
        Decision::Refuse(error) => Some(Err(error)),
        Decision::Wait => None,
    }
}

/// [`read`]'s slow path: waits for changes until `decide` stops saying [`Decision::Wait`] or
/// `max_wait` is over.
async fn wait_for<V, F, T, E>(
    mut rx: watch::Receiver<Snapshot<V, F>>,
    max_wait: Duration,
    mut decide: impl FnMut(&Snapshot<V, F>) -> Decision<T, E>,
    gave_up: impl FnOnce() -> E,
) -> Result<T, E> {
    let deadline = Instant::now() + max_wait;
    loop {
        match decide(&rx.borrow_and_update()) {
            Decision::Ready(answer) => return Ok(answer),
            Decision::Refuse(error) => return Err(error),
            Decision::Wait => {}
        }
        if !matches!(
            tokio::time::timeout_at(deadline, rx.changed()).await,
            Ok(Ok(()))
        ) {
            return Err(gave_up());
        }
    }
}

/// A value held for one key of an on-demand cache: served while servable, renewed by exactly
/// one request once due.
#[derive(Debug)]
pub struct Held<V> {
    pub value: V,
    pub serve_until: Instant,
    pub refresh_at: Instant,
    renewing: AtomicBool,
}

impl<V> Held<V> {
    pub fn new(fresh: Fresh<V>) -> Self {
        Self {
            value: fresh.value,
            serve_until: fresh.serve_until,
            refresh_at: fresh.refresh_at,
            renewing: AtomicBool::new(false),
        }
    }

    pub fn freshness(&self, now: Instant) -> Freshness {
        schedule::freshness(now, self.serve_until, self.refresh_at)
    }

    /// True for the one request that should renew this value; false while a renewal is under
    /// way.
    pub fn claim_renewal(&self) -> bool {
        !self.renewing.swap(true, Ordering::AcqRel)
    }

    /// The renewal failed: a later request may try again (the value is served meanwhile).
    pub fn renewal_failed(&self) {
        self.renewing.store(false, Ordering::Release);
    }
}

/// Paused-time tests of the engine: the background keeper through the shared per-profile token
/// (its real job) and a scripted base-credential-like job, and the on-demand [`Held`] value.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sts::response::ApiErrorBody;
    use crate::sts::{FailureClass, IssuedCredentials, StsError};
    use crate::tokens::shared::{self, Fetch, RefreshError, SharedToken};
    use secrecy::SecretString;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
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
    ) -> (SharedToken, Arc<AtomicUsize>, Arc<Notify>) {
        let clock = Clock::following_tokio(t(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetcher = Scripted {
            clock: clock.clone(),
            answers: Mutex::new(answers.into()),
            calls: calls.clone(),
        };
        let reset = Arc::new(Notify::new());
        let (shared, _task) = shared::spawn(
            "default".into(),
            fetcher,
            clock,
            secs(min_remaining),
            CancellationToken::new(),
            reset.clone(),
            None,
        );
        (shared, calls, reset)
    }

    fn key_of(shared: &SharedToken) -> Option<String> {
        let snapshot = shared.receiver().borrow();
        let token = snapshot.servable(Instant::now())?;
        let body: serde_json::Value = serde_json::from_slice(&token.body).unwrap();
        Some(body["AccessKeyId"].as_str().unwrap().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_renewed_at_half_life_and_not_before() {
        let (rx, calls, _) = start(vec![Ok(3600), Ok(3600), Ok(3600)], 600);
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
        let (rx, calls, _) = start(vec![Ok(3600)], 600);
        tokio::time::sleep(secs(1900)).await; // past the first refresh, failing since
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key0"), "still servable");
        assert!(matches!(
            rx.receiver().borrow().activity,
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
        let (rx, calls, _) = start(
            vec![Err("InternalError"), Err("Throttling.User"), Ok(3600)],
            600,
        );
        tokio::time::sleep(secs(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key2"));
        assert_eq!(rx.receiver().borrow().activity, Activity::Waiting);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_published_as_rejected() {
        let (rx, _calls, _) = start(vec![Err("NoPermission")], 600);
        tokio::time::sleep(Duration::from_millis(100)).await; // before the first retry
        assert_eq!(
            rx.receiver().borrow().activity,
            Activity::Failing(FailureClass::Rejected)
        );
        assert!(rx.receiver().borrow().next_attempt.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_expiring_too_soon_is_never_published() {
        let (rx, _calls, _) = start(vec![Ok(500)], 600);
        tokio::time::sleep(secs(1)).await;
        assert!(rx.receiver().borrow().value.is_none());
        assert_eq!(
            rx.receiver().borrow().activity,
            Activity::Failing(FailureClass::Unavailable)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_drops_the_token_and_fetches_a_new_one_at_once() {
        let (rx, calls, reset) = start(vec![Ok(3600), Ok(3600)], 600);
        tokio::time::sleep(secs(1)).await;
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key0"));
        reset.notify_one();
        tokio::time::sleep(secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(key_of(&rx).as_deref(), Some("STS.key1"));
    }

    #[tokio::test(start_paused = true)]
    async fn readers_wait_for_the_first_token_and_get_it() {
        let (rx, _calls, _) = start(vec![Ok(3600)], 600);
        let token = rx.servable(secs(5)).await.expect("the first token");
        assert_eq!(token.key_id_prefix, "STS.key0");
    }

    /// A base-credential-like job: values are numbers, failures are messages, from a script.
    struct Numbers {
        answers: Mutex<VecDeque<Result<u64, &'static str>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Job for Numbers {
        type Issued = u64;
        type Value = u64;
        type Error = &'static str;

        async fn fetch(&self) -> Result<u64, &'static str> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // Every call takes a second, so a reader can look while one is in flight.
            tokio::time::sleep(secs(1)).await;
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Err("down"))
        }

        fn plan(&self, obtained: DateTime<Utc>, _issued: &u64) -> Result<Plan, &'static str> {
            Ok(schedule::plan_base(
                obtained,
                Some(obtained + chrono::Duration::seconds(3600)),
            ))
        }

        fn keep(&self, issued: u64, _serve_until: Instant) -> u64 {
            issued
        }
    }

    impl Kept for Numbers {
        type Failure = &'static str;

        fn renewed(&self, _fresh: &Fresh<u64>) {}

        fn failed(
            &self,
            error: &&'static str,
            _failures: u32,
            _retry_in: Duration,
            _published: &Snapshot<u64, &'static str>,
        ) -> &'static str {
            error
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_obtained_before_start_is_renewed_at_its_time_and_a_failure_outlives_the_retry()
    {
        let clock = Clock::following_tokio(t(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let job = Numbers {
            answers: Mutex::new(vec![Err("refused"), Ok(2)].into()),
            calls: calls.clone(),
        };
        let first = Fresh {
            value: 1,
            serve_until: Instant::now() + secs(3540),
            refresh_at: Instant::now() + secs(1800),
        };
        let (rx, _task) = spawn(
            job,
            clock,
            Some(first),
            CancellationToken::new(),
            Arc::new(Notify::new()),
        );
        tokio::time::sleep(secs(1799)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "not before its renewal time"
        );
        assert_eq!(rx.borrow().value, Some(1));
        // The first renewal starts at 1800 s and is refused at 1801 s.
        tokio::time::sleep(Duration::from_millis(2250)).await;
        assert_eq!(rx.borrow().last_failure, Some("refused"));
        // The retry starts after 0.5-1 s of backoff and takes 1 s: in flight at 1802.25 s.
        tokio::time::sleep(secs(1)).await;
        assert_eq!(rx.borrow().activity, Activity::Fetching);
        assert_eq!(rx.borrow().last_failure, Some("refused"));
        assert_eq!(rx.borrow().value, Some(1), "kept while servable");
        tokio::time::sleep(secs(2)).await;
        assert_eq!(rx.borrow().value, Some(2));
        assert_eq!(rx.borrow().last_failure, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_keeper_stops_when_every_reader_is_gone() {
        let clock = Clock::following_tokio(t(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let job = Numbers {
            answers: Mutex::new(VecDeque::new()),
            calls: calls.clone(),
        };
        let (rx, task) = spawn(
            job,
            clock,
            None,
            CancellationToken::new(),
            Arc::new(Notify::new()),
        );
        tokio::time::sleep(secs(3)).await;
        drop(rx);
        tokio::time::timeout(secs(1), task)
            .await
            .expect("the task ends")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn read_waits_for_a_change_and_gives_up_at_its_deadline() {
        let (tx, rx) = watch::channel(Snapshot::<u64, ()>::starting());
        let decide = |s: &Snapshot<u64, ()>| match s.value {
            Some(v) => Decision::Ready(v),
            None => Decision::Wait,
        };
        let waiting = tokio::spawn({
            let rx = rx.clone();
            async move { read(&rx, secs(5), decide, || "gave up").await }
        });
        tokio::time::sleep(secs(1)).await;
        tx.send_modify(|s| s.value = Some(7));
        assert_eq!(waiting.await.unwrap(), Ok(7));
        tx.send_modify(|s| s.value = None);
        let started = Instant::now();
        assert_eq!(
            read(&rx, secs(5), decide, || "gave up").await,
            Err("gave up")
        );
        assert_eq!(started.elapsed(), secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_value_is_renewed_by_one_request_once_due() {
        let now = Instant::now();
        let held = Held::new(Fresh {
            value: (),
            serve_until: now + secs(300),
            refresh_at: now + secs(150),
        });
        assert_eq!(held.freshness(now), Freshness::Fresh);
        assert_eq!(held.freshness(now + secs(150)), Freshness::Due);
        assert!(held.claim_renewal());
        assert!(!held.claim_renewal(), "one renewal at a time");
        held.renewal_failed();
        assert!(held.claim_renewal(), "a failed renewal may be tried again");
        assert_eq!(held.freshness(now + secs(300)), Freshness::Unservable);
    }
}
