//! The shared per-profile token in fleet mode (issue 15, "What the fleet shares" point 2):
//! three whole replicas on one `redis-server` and one STS emulator that counts what it issues.
//! Tokens live 10 s and are served for 7 s (`STSVEND_MIN_REMAINING_SECONDS=3`), so one is
//! renewed about every 3.5 s: a refresh cycle fits in a test.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::emulator::Emulator;
use stsvend::fleet::store::FleetStore;
use tokio::time::Instant;

use crate::helpers::{KEY_A, RedisServer, settings, within};
use crate::replica::Replica;

/// No scenario may take longer than this.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// How long the emulator's tokens live.
const LIFETIME_S: u32 = 10;
/// About one refresh cycle of such a token (renewed at 3 to 3.5 s).
const CYCLE: Duration = Duration::from_millis(3500);

async fn bounded<T>(scenario: impl Future<Output = T>) -> T {
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .expect("the scenario finished in time")
}

/// Replica `id`'s store on `redis`, with a 500 ms command bound: a debug build on a shared
/// machine misses the 50 ms default, and what is tested is what happens past the bound.
fn store(redis: &RedisServer, id: &str) -> FleetStore {
    let mut settings = settings(redis, KEY_A, None);
    settings.command_timeout = Duration::from_millis(500);
    FleetStore::connect(&settings, id).unwrap()
}

/// An STS emulator whose tokens live [`LIFETIME_S`].
async fn sts() -> Emulator {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sts = Emulator::start(Clock::System).await.unwrap();
    sts.set_token_lifetime(LIFETIME_S);
    sts
}

async fn replica(redis: &RedisServer, sts: &Emulator, id: &str) -> (Replica, FleetStore) {
    let store = store(redis, id);
    // Every test caller is 127.0.0.1, and in fleet mode its rate limit is the whole fleet's:
    // lift it out of the way of a test about the shared token.
    let extra = [
        ("STSVEND_MIN_REMAINING_SECONDS", "3"),
        ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
        ("STSVEND_RATE_LIMIT_BURST", "1000000"),
    ];
    let replica = Replica::start_on(store.clone(), sts, &extra).await;
    replica.wait_serving().await;
    (replica, store)
}

/// Three replicas started at the same moment, each serving.
async fn together(redis: &RedisServer, sts: &Emulator) -> [(Replica, FleetStore); 3] {
    let (a, b, c) = tokio::join!(
        replica(redis, sts, "replica-a"),
        replica(redis, sts, "replica-b"),
        replica(redis, sts, "replica-c"),
    );
    [a, b, c]
}

/// What callers saw while asking every replica in turn for `span`.
#[derive(Debug, Default)]
struct Seen {
    requests: usize,
    errors: Vec<String>,
    keys: HashSet<String>,
}

async fn ask_for(replicas: &[&Replica], span: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + span;
    while Instant::now() < deadline {
        for replica in replicas {
            let answer = replica.token().await;
            seen.requests += 1;
            match answer.body["AccessKeyId"].as_str() {
                Some(key) if answer.status == 200 => {
                    seen.keys.insert(key.to_owned());
                }
                _ => seen
                    .errors
                    .push(format!("{} {}", answer.status, answer.body)),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

/// The AccessKeyId each replica serves now.
async fn keys(replicas: &[&Replica]) -> Vec<String> {
    let mut keys = Vec::new();
    for replica in replicas {
        let answer = replica.token().await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        keys.push(answer.body["AccessKeyId"].as_str().unwrap().to_owned());
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_started_together_make_one_call_and_serve_one_token() {
    bounded(async {
        let redis = RedisServer::start();
        let sts = sts().await;
        let [(a, _), (b, _), (c, _)] = together(&redis, &sts).await;
        let calls = sts.issued();
        eprintln!("three replicas started together: {calls} AssumeRole call(s)");
        assert_eq!(
            calls, 1,
            "one call for the profile's first token, not one per replica"
        );
        let keys: HashSet<String> = keys(&[&a, &b, &c]).await.into_iter().collect();
        assert_eq!(
            keys.len(),
            1,
            "every replica serves the same token: {keys:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_renews_the_shared_token_once_per_cycle() {
    bounded(async {
        let redis = RedisServer::start();
        let sts = sts().await;
        let [(a, _), (b, _), (c, _)] = together(&redis, &sts).await;
        let before = sts.issued();
        let span = CYCLE * 3;
        let seen = ask_for(&[&a, &b, &c], span).await;
        let calls = sts.issued() - before;
        eprintln!(
            "{span:?} (about 3 refresh cycles) over 3 replicas: {calls} AssumeRole call(s), {} tokens seen, {} requests",
            seen.keys.len(),
            seen.requests
        );
        assert!(seen.errors.is_empty(), "callers saw errors: {:?}", seen.errors);
        assert!(
            (2..=4).contains(&calls),
            "about one call per cycle, not three: {calls}"
        );
        assert!(
            seen.keys.len() as u64 <= calls + 1,
            "no replica serves a token of its own"
        );
        let now: HashSet<String> = keys(&[&a, &b, &c]).await.into_iter().collect();
        assert!(now.len() <= 2, "the replicas serve the fleet's token: {now:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_refreshes_when_the_lease_holder_stops() {
    bounded(async {
        let redis = RedisServer::start();
        let sts = sts().await;
        // The first replica takes the lease and fetches; the others read its token.
        let (a, _) = replica(&redis, &sts, "replica-a").await;
        let (b, _) = replica(&redis, &sts, "replica-b").await;
        let (c, _) = replica(&redis, &sts, "replica-c").await;
        assert_eq!(sts.issued(), 1);

        drop(a);
        let before = sts.issued();
        let span = CYCLE * 3;
        let seen = ask_for(&[&b, &c], span).await;
        let calls = sts.issued() - before;
        eprintln!(
            "lease holder stopped; next {span:?}: {calls} AssumeRole call(s), {} tokens seen",
            seen.keys.len()
        );
        assert!(
            seen.errors.is_empty(),
            "callers saw errors: {:?}",
            seen.errors
        );
        assert!(
            calls >= 2,
            "another replica took over the refreshing: {calls}"
        );
        assert!(calls <= 4, "and only one of them: {calls}");
        assert!(
            seen.keys.len() >= 3,
            "the token was renewed: {:?}",
            seen.keys
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_each_replica_refreshes_its_own_and_sharing_resumes_after() {
    bounded(async {
        let mut redis = RedisServer::start();
        let sts = sts().await;
        let [(a, sa), (b, sb), (c, sc)] = together(&redis, &sts).await;
        let stores = [sa, sb, sc];
        let replicas = [&a, &b, &c];

        redis.stop();
        let before = sts.issued();
        let span = CYCLE * 3;
        let seen = ask_for(&replicas, span).await;
        let alone = sts.issued() - before;
        eprintln!("Redis stopped; next {span:?}: {alone} AssumeRole call(s)");
        assert!(
            seen.errors.is_empty(),
            "callers saw errors: {:?}",
            seen.errors
        );
        assert!(alone >= 5, "each replica refreshed its own: {alone}");

        redis.restart();
        let up = within(Duration::from_secs(30), || {
            stores.iter().all(FleetStore::is_up)
        })
        .await;
        assert!(up.is_some(), "every replica reconnected to Redis");
        // One cycle for the lease holder to store a token, one for the others to read it.
        let seen = ask_for(&replicas, CYCLE * 2).await;
        assert!(
            seen.errors.is_empty(),
            "callers saw errors: {:?}",
            seen.errors
        );
        let before = sts.issued();
        let seen = ask_for(&replicas, span).await;
        let shared = sts.issued() - before;
        eprintln!("Redis back; {span:?} later: {shared} AssumeRole call(s)");
        assert!(
            seen.errors.is_empty(),
            "callers saw errors: {:?}",
            seen.errors
        );
        assert!(
            shared <= 4,
            "sharing resumed: {shared} calls, {alone} alone"
        );
    })
    .await;
}
