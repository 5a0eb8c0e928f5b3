//! Issue 15, scenario (f), over HTTP: Redis stopped under load, then restarted, with three
//! `jwt`-mode replicas in fleet mode (`App::builder(..).fleet(store)`), one real redis-server
//! and one STS emulator that counts the AssumeRole calls it receives.
//!
//! Known users keep asking for their tokens, round-robin over the replicas, for the whole
//! outage: none of them may see an error. New users arriving meanwhile cost calls within each
//! replica's local share of the budget. Redis comes back empty on the same port, and without
//! restarting any replica the fleet shares again: the store is up on each, a new user costs one
//! call for the whole fleet, and the kill switch set on one replica reaches the others in 1 s.
//!
//! Redis is stopped with [`RedisServer::stop`] (killed, so it comes back empty); a frozen Redis
//! (`SIGSTOP`) is `limits_app`'s and `kill_switch_app`'s subject.

use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use stsvend::clock::Clock;
use stsvend::emulator::Emulator;
use stsvend::fleet::budget::local_share;
use stsvend::fleet::store::FleetStore;
use tokio::time::Instant;

use crate::apps::jwt_settings;
use crate::helpers::{KEY_A, RedisServer, settings, within};
use crate::replica::{Answer, Replica};

/// No scenario may take longer than this.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// The fleet's AssumeRole budget, and the fleet size each replica is told.
const BUDGET: u32 = 10;
const FLEET_SIZE: u32 = 3;
/// Users whose tokens the load keeps asking for, round-robin over the replicas.
const KNOWN_USERS: usize = 30;
/// Users warmed through replica A only and left out of the load.
const HELD_BY_A: usize = 6;
/// The load: this many tasks, each pausing between its requests, bounded in count and time.
const LOAD_TASKS: usize = 6;
const LOAD_PAUSE: Duration = Duration::from_millis(10);
const LOAD_MAX_REQUESTS: usize = 30_000;
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// How long new users flood the fleet while Redis is down, and how many ask each replica at once.
const FLOOD: Duration = Duration::from_secs(3);
const FLOOD_WORKERS_PER_REPLICA: usize = 3;
/// The bound on applying a kill-switch change made on another replica.
const SWITCH_WITHIN: Duration = Duration::from_secs(1);

/// The load's phases: Redis up, stopped, restarted.
const PHASES: [&str; 3] = ["before", "down", "back"];
const BEFORE: usize = 0;
const DOWN: usize = 1;
const BACK: usize = 2;

async fn bounded<T>(scenario: impl Future<Output = T>) -> T {
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .expect("the scenario finished in time")
}

fn known(user: usize) -> String {
    format!("known-user-{user}@example.com")
}

fn held_by_a(user: usize) -> String {
    format!("held-by-a-{user}@example.com")
}

/// Replica `id` in `jwt` mode on `redis`: fleet budget [`BUDGET`], fleet size hint
/// [`FLEET_SIZE`], and the limits on one address lifted (every test caller is 127.0.0.1). Its
/// store's command bound is 500 ms, as in the other app tests: a debug build on a shared
/// machine misses the 50 ms default, and what is tested is what happens past the bound.
async fn replica(redis: &RedisServer, sts: &Emulator, id: &str) -> Replica {
    let mut fleet = settings(redis, KEY_A, None);
    fleet.command_timeout = Duration::from_millis(500);
    let store = FleetStore::connect(&fleet, id).unwrap();
    let url = redis.url();
    let budget = BUDGET.to_string();
    let size = FLEET_SIZE.to_string();
    let mut extra = jwt_settings().to_vec();
    extra.extend([
        ("STSVEND_REDIS_URL", url.as_str()),
        ("STSVEND_REDIS_ENCRYPTION_KEY", KEY_A),
        ("STSVEND_FLEET_SIZE_HINT", size.as_str()),
        ("STSVEND_STS_BUDGET_PER_SECOND", budget.as_str()),
        ("STSVEND_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        ("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "1000000"),
        ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
        ("STSVEND_RATE_LIMIT_BURST", "1000000"),
    ]);
    let replica = Replica::start_on(store, sts, &extra).await;
    replica.wait_ready().await;
    replica
}

/// Every known user's token asked for, round-robin over the replicas, by [`LOAD_TASKS`] tasks;
/// what they saw, by phase.
#[derive(Default)]
struct Load {
    phase: AtomicUsize,
    stop: AtomicBool,
    next: AtomicUsize,
    served: [AtomicUsize; 3],
    errors: [AtomicUsize; 3],
    /// The first few errors, described.
    first_errors: Mutex<Vec<String>>,
    /// Which (user, replica) pairs were served before Redis stopped (`user * 3 + replica`).
    covered: Mutex<HashSet<usize>>,
}

impl Load {
    fn count(counters: &[AtomicUsize; 3]) -> [usize; 3] {
        counters.each_ref().map(|n| n.load(Ordering::Relaxed))
    }

    fn covered(&self) -> usize {
        self.covered.lock().unwrap().len()
    }

    fn record(&self, phase: usize, pair: usize, answer: &Answer) {
        if answer.status == 200 {
            self.served[phase].fetch_add(1, Ordering::Relaxed);
            if phase == BEFORE {
                self.covered.lock().unwrap().insert(pair);
            }
            return;
        }
        self.errors[phase].fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 10 {
            first.push(format!(
                "{} on replica {} in phase {}: {} {}",
                known(pair / 3),
                pair % 3,
                PHASES[phase],
                answer.status,
                answer.body
            ));
        }
    }
}

async fn load_task(replicas: Arc<[Replica; 3]>, load: Arc<Load>) {
    let deadline = Instant::now() + LOAD_LIMIT;
    while !load.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let k = load.next.fetch_add(1, Ordering::Relaxed);
        if k >= LOAD_MAX_REQUESTS {
            return;
        }
        let pair = k % (KNOWN_USERS * 3);
        let phase = load.phase.load(Ordering::Relaxed);
        let answer = replicas[pair % 3].token_as(&known(pair / 3)).await;
        load.record(phase, pair, &answer);
        tokio::time::sleep(LOAD_PAUSE).await;
    }
}

/// Each replica's `store_up` in its admin `/readyz`, which must answer 200 (Redis is not a
/// hard dependency). The `stsvend_fleet_store_up` gauge follows the same state, but it is one
/// per process, and these replicas share one process.
async fn store_up(replicas: &[Replica; 3]) -> [bool; 3] {
    let mut up = [false; 3];
    for (i, replica) in replicas.iter().enumerate() {
        let ready = replica.readyz().await;
        assert_eq!(ready.status, 200, "replica {i} stays ready: {ready:?}");
        up[i] = ready.body["fleet"]["store_up"] == true;
    }
    up
}

/// Polls [`store_up`] until every replica says `want`, at most `limit`; returns how long it took.
async fn until_store_up_is(
    replicas: &[Replica; 3],
    want: bool,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() <= limit {
        if store_up(replicas).await == [want; 3] {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Asks `replica` as `subject` until `done` holds, at most `limit`; returns how long it took.
async fn token_as_until(
    replica: &Replica,
    subject: &str,
    limit: Duration,
    done: impl Fn(&Answer) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() <= limit {
        if done(&replica.token_as(subject).await) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The most arrivals within any one second (`arrivals` oldest first).
fn busiest_second(arrivals: &[Instant]) -> usize {
    (0..arrivals.len())
        .map(|i| {
            let end = arrivals[i] + Duration::from_secs(1);
            arrivals[i..].iter().take_while(|at| **at < end).count()
        })
        .max()
        .unwrap_or(0)
}

/// What new users met while flooding every replica for [`FLOOD`].
#[derive(Debug, Default)]
struct Flood {
    served: [usize; 3],
    refused: [usize; 3],
}

/// New users asking every replica at once until [`FLOOD`] has passed. A new user is served
/// (200) or told to come back (503 with `Retry-After`) when the local share is spent.
async fn flood(replicas: &[Replica; 3]) -> Flood {
    let until = Instant::now() + FLOOD;
    let next = AtomicU32::new(0);
    let workers = replicas.iter().enumerate().flat_map(|(i, replica)| {
        let next = &next;
        (0..FLOOD_WORKERS_PER_REPLICA).map(move |_| async move {
            let (mut served, mut refused) = (0, 0);
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let answer = replica
                    .token_as(&format!("new-during-outage-{n}@example.com"))
                    .await;
                match answer.status {
                    200 => served += 1,
                    503 if answer.retry_after.is_some() => refused += 1,
                    _ => panic!("a new user is served or told when to come back: {answer:?}"),
                }
            }
            (i, served, refused)
        })
    });
    let mut seen = Flood::default();
    for (i, served, refused) in join_all(workers).await {
        seen.served[i] += served;
        seen.refused[i] += refused;
    }
    seen
}

/// What the users [`HELD_BY_A`] met on replica `i`, which never served them, asked one after
/// the other: (served, told to come back).
async fn held_elsewhere(replica: &Replica, i: usize) -> (usize, usize) {
    let (mut served, mut refused) = (0, 0);
    for user in 0..HELD_BY_A {
        let answer = replica.token_as(&held_by_a(user)).await;
        match answer.status {
            200 => served += 1,
            503 if answer.retry_after.is_some() => refused += 1,
            _ => panic!("replica {i}: served, or told when to come back: {answer:?}"),
        }
    }
    (served, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_redis_stopped_under_load_then_restarted_the_fleet_serves_throughout_and_shares_again() {
    bounded(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scenario = Instant::now();
        let mut redis = RedisServer::start();
        let sts = Emulator::start(Clock::System).await.unwrap();
        let (a, b, c) = tokio::join!(
            replica(&redis, &sts, "replica-a"),
            replica(&redis, &sts, "replica-b"),
            replica(&redis, &sts, "replica-c"),
        );
        let replicas = Arc::new([a, b, c]);
        assert_eq!(store_up(&replicas).await, [true; 3]);

        // Warm: every known user and every user held by A gets a token through replica A.
        let started = sts.issued();
        for subject in (0..KNOWN_USERS)
            .map(known)
            .chain((0..HELD_BY_A).map(held_by_a))
        {
            let answer = replicas[0].token_as(&subject).await;
            assert_eq!(answer.status, 200, "{subject}: {answer:?}");
        }
        let warm_calls = sts.issued() - started;
        assert_eq!(
            warm_calls,
            (KNOWN_USERS + HELD_BY_A) as u64,
            "one call per user"
        );

        // Load, until every known user has been served by every replica (B and C read the
        // stored tokens into their near-caches).
        let load = Arc::new(Load::default());
        let tasks: Vec<_> = (0..LOAD_TASKS)
            .map(|_| tokio::spawn(load_task(replicas.clone(), load.clone())))
            .collect();
        let coverage = within(Duration::from_secs(15), || {
            load.covered() == KNOWN_USERS * 3
        })
        .await;
        assert!(
            coverage.is_some(),
            "every known user served by every replica: {} of {}",
            load.covered(),
            KNOWN_USERS * 3
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before_calls = sts.issued() - started - warm_calls;
        assert_eq!(before_calls, 0, "the fleet shares the known users' tokens");

        // Redis stopped, under load.
        let calls_at_stop = sts.issued();
        let stopped_at = Instant::now();
        load.phase.store(DOWN, Ordering::Relaxed);
        redis.stop();
        let noticed = until_store_up_is(&replicas, false, Duration::from_secs(5)).await;
        assert!(noticed.is_some(), "every replica noticed Redis is gone");

        // The users held by A: A serves them from its cache; B and C never served them and
        // cannot read Redis, so they call STS within their local share.
        for user in 0..HELD_BY_A {
            let answer = replicas[0].token_as(&held_by_a(user)).await;
            assert_eq!(
                answer.status,
                200,
                "A holds {}: {answer:?}",
                held_by_a(user)
            );
        }
        assert_eq!(sts.issued(), calls_at_stop, "held tokens cost no call");
        let (on_b, on_c) = tokio::join!(
            held_elsewhere(&replicas[1], 1),
            held_elsewhere(&replicas[2], 2)
        );
        let held_calls = sts.issued() - calls_at_stop;
        // Asked one after another, each waits at most one window (1.1 s) for the local
        // share's caller lane, within the 2 s a request may wait for the budget: all served.
        assert_eq!([on_b, on_c], [(HELD_BY_A, 0); 2], "served on B and C");
        assert_eq!(
            held_calls,
            2 * HELD_BY_A as u64,
            "B and C each fetch their own, one call per user"
        );

        // New users while Redis is down: every replica serves some, within its local share.
        let flood_from = sts.issued();
        let flooded = flood(&replicas).await;
        let flood_calls = sts.issued() - flood_from;
        let down_calls = sts.issued() - calls_at_stop;
        let arrivals: Vec<_> = sts
            .arrivals()
            .into_iter()
            .filter(|at| *at >= stopped_at)
            .collect();
        let busiest = busiest_second(&arrivals);
        assert_eq!(
            down_calls,
            held_calls + flood_calls,
            "the known users, served from each replica's cache, cost no call"
        );
        let share = local_share(
            NonZeroU32::new(BUDGET).unwrap(),
            NonZeroU32::new(FLEET_SIZE),
        )
        .get() as usize;
        assert!(
            flooded.served.iter().all(|n| *n >= 1),
            "new users served by every replica: {flooded:?}"
        );
        assert_eq!(
            flood_calls,
            flooded.served.iter().sum::<usize>() as u64,
            "one call per new user served, none for those told to come back"
        );
        assert!(
            busiest <= FLEET_SIZE as usize * share,
            "at most {FLEET_SIZE} local shares of {share}/s in any one second: {busiest}"
        );
        let down_for = stopped_at.elapsed();

        // Redis back, empty, on the same port; no replica restarted.
        load.phase.store(BACK, Ordering::Relaxed);
        redis.restart();
        let back_in = until_store_up_is(&replicas, true, Duration::from_secs(20)).await;
        assert!(back_in.is_some(), "every replica uses Redis again");
        let resumed_from = sts.issued();
        let asks = (0..9).map(|i| replicas[i % 3].token_as("after-the-restart@example.com"));
        let answers = join_all(asks).await;
        let keys: HashSet<_> = answers
            .iter()
            .map(|answer| {
                assert_eq!(answer.status, 200, "{answer:?}");
                answer.body["AccessKeyId"].as_str().unwrap().to_owned()
            })
            .collect();
        let resumed_calls = sts.issued() - resumed_from;
        assert_eq!(keys.len(), 1, "one token for the fleet");
        assert_eq!(
            resumed_calls, 1,
            "fleet single flight and shared cache again"
        );
        // Let the load run a little longer on the restarted Redis, then stop it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        load.stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let back_calls = sts.issued() - calls_at_stop - down_calls;

        // The kill switch set on A reaches B and C within a second.
        let switched = replicas[0].switch("disable").await;
        assert_eq!(switched.status, 200, "{switched:?}");
        assert_eq!(switched.body["fleet"]["stored"], true, "{switched:?}");
        let mut applied = Vec::new();
        for replica in &replicas[1..] {
            let took = token_as_until(replica, &known(0), SWITCH_WITHIN, Answer::is_disabled).await;
            assert!(took.is_some(), "the disable applied within 1 s");
            applied.extend(took);
        }
        let enabled = replicas[1].switch("enable").await;
        assert_eq!(enabled.body["fleet"]["stored"], true, "{enabled:?}");
        for replica in replicas.iter() {
            let took = token_as_until(replica, &known(0), Duration::from_secs(10), |answer| {
                answer.status == 200
            })
            .await;
            assert!(took.is_some(), "every replica vends again");
        }

        let served = Load::count(&load.served);
        let errors = Load::count(&load.errors);
        println!(
            "scenario (f): {KNOWN_USERS} known users under load, round-robin over 3 replicas \
             ({LOAD_TASKS} tasks): served {served:?}, errors {errors:?} (before / down / back)"
        );
        println!(
            "  AssumeRole calls: warm {warm_calls}, before the stop {before_calls}, Redis down \
             {down_calls} over {down_for:.1?} (users held by A asked on B: {on_b:?}, on C: \
             {on_c:?} served/refused, {held_calls} calls; new users {flood_calls} calls), back \
             {back_calls}"
        );
        println!(
            "  Redis down: new users served per replica {:?}, told to come back {:?}; busiest \
             second {busiest} AssumeRole calls (limit {FLEET_SIZE} × local share {share}); every \
             replica noticed after {noticed:?}",
            flooded.served, flooded.refused
        );
        println!(
            "  Redis back: store up on every replica after {back_in:?}; a new user through all \
             three: {resumed_calls} call; kill switch applied on B and C after {applied:?}; \
             scenario {:.1?}",
            scenario.elapsed()
        );
        let first_errors = load.first_errors.lock().unwrap().clone();
        assert_eq!(
            errors, [0; 3],
            "no known user saw an error: {first_errors:#?}"
        );
        for (phase, served) in PHASES.iter().zip(served) {
            assert!(served > 0, "the load ran while Redis was {phase}");
        }
    })
    .await;
}
