//! The fleet-wide STS budget and rate limits end to end (issue 15 points 3 and 4, scenarios c
//! and d): three replicas built with `App::builder(..).fleet(store)` against one real
//! redis-server and one STS emulator. Clients are told apart by `X-Forwarded-For` behind the
//! trusted loopback proxy, and tokens are bound to the caller's address, so every new address
//! is a new user whose token costs one AssumeRole.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use stsvend::clock::Clock;
use stsvend::emulator::Emulator;
use tokio::time::Instant;

use crate::helpers::{KEY_A, RedisServer};
use crate::replica::{Answer, Replica};

const BUDGET: &str = "10";
/// How long new users flood the fleet.
const FLOOD: Duration = Duration::from_secs(3);
/// New users asking each replica at once.
const WORKERS_PER_REPLICA: usize = 6;
/// The user whose token every replica holds before the flood.
const CACHED_USER: &str = "192.0.2.10";

/// Budget 10/s, tokens bound to addresses, loopback as the trusted proxy, no other limit in the
/// way than the rate limit given, plus `more`.
fn settings<'a>(
    per_minute: &'a str,
    burst: &'a str,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("STSVEND_STS_BUDGET_PER_SECOND", BUDGET),
        ("STSVEND_BIND_SOURCE_IP", "true"),
        ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("STSVEND_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        ("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "1000000"),
        ("STSVEND_RATE_LIMIT_PER_MINUTE", per_minute),
        ("STSVEND_RATE_LIMIT_BURST", burst),
    ];
    all.extend_from_slice(more);
    all
}

async fn three(
    server: &RedisServer,
    emulator: &Emulator,
    settings: &[(&str, &str)],
) -> [Replica; 3] {
    let a = Replica::start_with(server, emulator, "replica-a", settings).await;
    let b = Replica::start_with(server, emulator, "replica-b", settings).await;
    let c = Replica::start_with(server, emulator, "replica-c", settings).await;
    for replica in [&a, &b, &c] {
        replica.wait_ready().await;
    }
    [a, b, c]
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

/// A new address each time, each in its own /24.
fn new_user(n: u32) -> String {
    format!("10.{}.{}.1", (n >> 8) & 0xff, n & 0xff)
}

/// New users asking every replica at once until `FLOOD` has passed; returns how many each
/// replica served.
async fn flood(replicas: &[Replica; 3]) -> [usize; 3] {
    let until = Instant::now() + FLOOD;
    let next = AtomicU32::new(1);
    let served = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let workers = replicas.iter().zip(&served).flat_map(|(replica, served)| {
        let next = &next;
        (0..WORKERS_PER_REPLICA).map(move |_| async move {
            while Instant::now() < until {
                let user = new_user(next.fetch_add(1, Ordering::Relaxed));
                let answer = replica.token_for(&user).await;
                assert!(
                    matches!(answer.status, 200 | 503),
                    "a new user is served or told to come back: {answer:?}"
                );
                if answer.status == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    join_all(workers).await;
    served.map(AtomicUsize::into_inner)
}

/// Asks every replica for the cached user's token every 100 ms until `FLOOD` has passed;
/// returns the slowest answer.
async fn cached_user_served(replicas: &[Replica; 3]) -> Duration {
    let until = Instant::now() + FLOOD;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        for replica in replicas {
            let started = Instant::now();
            let answer = replica.token_for(CACHED_USER).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(answer.status, 200, "the cached user is served: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_the_budget_is_fleet_wide_and_cached_users_are_still_served() {
    let server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let replicas = three(&server, &emulator, &settings("6000000", "1000000", &[])).await;
    for replica in &replicas {
        assert_eq!(replica.token_for(CACHED_USER).await.status, 200);
    }
    let (served, slowest) = tokio::join!(flood(&replicas), cached_user_served(&replicas));
    let arrivals = emulator.arrivals();
    let busiest = busiest_second(&arrivals);
    eprintln!(
        "fleet budget {BUDGET}/s: {} AssumeRole calls, at most {busiest} in one second; new users served per replica {served:?}; cached user's slowest answer {slowest:?}",
        arrivals.len()
    );
    assert!(
        busiest <= 10,
        "at most the budget in any one second: {busiest}"
    );
    assert!(
        served.iter().sum::<usize>() >= 5,
        "new users are served: {served:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "never held up: {slowest:?}"
    );
}

/// Asks `replicas` in turn for `client`'s token, `n` times; returns the answers.
async fn ask_in_turn(replicas: &[Replica; 3], client: &str, n: usize) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(n);
    for replica in replicas.iter().cycle().take(n) {
        answers.push(replica.token_for(client).await);
    }
    answers
}

fn allowed(answers: &[Answer]) -> usize {
    answers.iter().filter(|answer| answer.status == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_five_a_minute_for_one_address_across_three_replicas() {
    let server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let replicas = three(&server, &emulator, &settings("5", "5", &[])).await;
    let client = "198.51.100.7";
    let answers = ask_in_turn(&replicas, client, 30).await;
    let first = allowed(&answers);
    let mut longest = 0;
    for answer in answers.iter().filter(|answer| answer.status != 200) {
        assert_eq!(answer.status, 429, "{answer:?}");
        let retry = answer.retry_after.expect("429 says when to come back");
        assert!((1..=13).contains(&retry), "one request every 12 s: {retry}");
        longest = longest.max(retry);
    }
    // One request every 12 s: once the longest Retry-After has passed, exactly one more.
    tokio::time::sleep(Duration::from_secs(longest)).await;
    let later = allowed(&ask_in_turn(&replicas, client, 3).await);
    eprintln!(
        "5/min, burst 5, three replicas: {first} of 30 allowed at once, {later} of 3 after {longest} s"
    );
    assert_eq!(first, 5, "the burst across the fleet, not per replica");
    assert_eq!(later, 1, "then one every 12 s across the fleet");
}

/// Three replicas told they are three (each takes a third of the budget, 3/s, when Redis is
/// gone), 5 requests a minute per address with a burst of 3, and the cached user's token held
/// by each.
async fn three_of_three(server: &RedisServer, emulator: &Emulator) -> [Replica; 3] {
    let url = server.url();
    let fleet = [
        ("STSVEND_REDIS_URL", url.as_str()),
        ("STSVEND_REDIS_ENCRYPTION_KEY", KEY_A),
        ("STSVEND_FLEET_SIZE_HINT", "3"),
    ];
    let replicas = three(server, emulator, &settings("5", "3", &fleet)).await;
    for replica in &replicas {
        assert_eq!(replica.token_for(CACHED_USER).await.status, 200);
    }
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_limits_and_budget_fall_back_to_local() {
    let mut server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let replicas = three_of_three(&server, &emulator).await;
    server.stop();

    for replica in &replicas {
        assert_eq!(
            replica.token_for(CACHED_USER).await.status,
            200,
            "still served"
        );
    }
    // Each replica now counts alone: its own burst of 3.
    let answers = ask_in_turn(&replicas, "198.51.100.9", 15).await;
    assert!(
        answers.iter().all(|a| matches!(a.status, 200 | 429)),
        "{answers:?}"
    );
    let limited = allowed(&answers);

    let calls_before = emulator.arrivals().len();
    let started = Instant::now();
    let served = flood(&replicas).await;
    let arrivals: Vec<_> = emulator
        .arrivals()
        .into_iter()
        .filter(|at| *at >= started)
        .collect();
    let busiest = busiest_second(&arrivals);
    eprintln!(
        "Redis stopped: {limited} of 15 allowed for one address (3 replicas × burst 3); new users served per replica {served:?}; {} AssumeRole calls (before: {calls_before}), at most {busiest} in one second",
        arrivals.len()
    );
    assert_eq!(limited, 9, "each replica's own limiter");
    assert!(
        served.iter().all(|n| *n >= 1),
        "new users served by every replica: {served:?}"
    );
    assert!(busiest <= 9, "within three local shares of 3/s: {busiest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_every_answer_is_bounded_and_the_fleet_counts_again_when_it_thaws() {
    let server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let replicas = three_of_three(&server, &emulator).await;
    server.freeze();

    let mut slowest = Duration::ZERO;
    for (i, replica) in (0..).zip(&replicas) {
        let started = Instant::now();
        assert_eq!(replica.token_for(CACHED_USER).await.status, 200, "cached");
        slowest = slowest.max(started.elapsed());
        let answer = replica.token_for(&new_user(1000 + i)).await;
        assert_eq!(
            answer.status, 200,
            "a new user within the local share: {answer:?}"
        );
    }
    let frozen = allowed(&ask_in_turn(&replicas, "198.51.100.11", 15).await);

    server.thaw();
    // Each replica pings its store every second and uses it again once it answers.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let thawed = allowed(&ask_in_turn(&replicas, "198.51.100.12", 15).await);
    eprintln!(
        "Redis frozen: cached user's slowest answer {slowest:?}; {frozen} of 15 allowed for one address; thawed: {thawed} of 15"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "one bounded command at most: {slowest:?}"
    );
    assert_eq!(frozen, 9, "each replica's own burst of 3");
    assert_eq!(thawed, 3, "the fleet's burst of 3 again");
}
