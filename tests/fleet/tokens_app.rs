//! Per-caller tokens shared by the fleet (issue 15, "What the fleet shares" point 1), through
//! three whole replicas on one `redis-server` and one STS that counts what it issues.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stsvend::fleet::seal::{EncryptionKey, Keyring};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::apps::{Answer, Replicas};
use crate::helpers::RedisServer;

/// No scenario may take longer than this.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

async fn bounded<T>(scenario: impl Future<Output = T>) -> T {
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .expect("the scenario finished in time")
}

fn subject(user: usize) -> String {
    format!("fleet-user-{user}@example.com")
}

/// Every answer of `set`, each of them a 200.
async fn all_ok(mut set: JoinSet<Answer>) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(set.len());
    while let Some(answer) = set.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answers.push(answer);
    }
    answers
}

/// Each of `users` asks three times, through a different replica each time (at most 32
/// requests at once); returns the AssumeRole calls that cost and every answer.
async fn three_rounds(replicas: &Arc<Replicas>, users: usize) -> (u64, Vec<Answer>) {
    let before = replicas.issued();
    // Twelve users at a time across three replicas: enough to meet each other on every
    // replica, few enough that a loaded 2-core machine never leaves one waiting past the 2 s
    // budget wait behind a queue of new users (which answers 503, and this test counts calls).
    let limit = Arc::new(Semaphore::new(12));
    let mut answers = Vec::new();
    for round in 0..3 {
        let mut set = JoinSet::new();
        for user in 0..users {
            let (replicas, limit) = (replicas.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                replicas.token((user + round) % 3, &subject(user)).await
            });
        }
        answers.extend(all_ok(set).await);
    }
    (replicas.issued() - before, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_users_over_three_replicas_cost_one_assume_role_each_in_fleet_mode() {
    bounded(async {
        let redis = RedisServer::start();
        let fleet = Arc::new(Replicas::start(Some(&redis)).await);
        let (in_fleet, answers) = three_rounds(&fleet, 300).await;
        let alone = Arc::new(Replicas::start(None).await);
        let (without, _) = three_rounds(&alone, 300).await;
        eprintln!(
            "300 JWT users, 3 requests each through 3 replicas: {in_fleet} AssumeRole calls in fleet mode, {without} without"
        );
        assert_eq!(in_fleet, 300);
        assert_eq!(without, 900);
        // Each user got one and the same token from every replica.
        let keys: HashSet<String> = answers
            .iter()
            .map(|a| a.field("AccessKeyId").unwrap())
            .collect();
        assert_eq!(keys.len(), 300);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_first_requests_for_one_new_user_over_three_replicas_make_one_call() {
    bounded(async {
        let redis = RedisServer::start();
        let fleet = Arc::new(Replicas::start(Some(&redis)).await);
        let before = fleet.issued();
        let mut set = JoinSet::new();
        for i in 0..200 {
            let fleet = fleet.clone();
            set.spawn(async move { fleet.token(i % 3, "brand-new-user").await });
        }
        let keys: HashSet<_> = all_ok(set)
            .await
            .iter()
            .map(|answer| answer.field("AccessKeyId"))
            .collect();
        let calls = fleet.issued() - before;
        eprintln!("200 concurrent first requests over 3 replicas: {calls} AssumeRole call(s)");
        assert_eq!(calls, 1);
        assert_eq!(keys.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_token_is_renewed_once_for_the_whole_fleet() {
    bounded(async {
        let redis = RedisServer::start();
        let fleet = Arc::new(
            Replicas::start_with(Some(&redis), &[("STSVEND_MIN_REMAINING_SECONDS", "3")]).await,
        );
        // Caller tokens from now on live 10 s: servable for 7 s, due after 3 to 3.5 s.
        fleet.sts.set_token_lifetime(10);
        let before = fleet.issued();
        let mut first = HashSet::new();
        for replica in 0..3 {
            first.insert(
                fleet
                    .token(replica, "renewing-user")
                    .await
                    .field("AccessKeyId"),
            );
        }
        assert_eq!(first.len(), 1, "one token for the fleet");
        assert_eq!(fleet.issued() - before, 1);

        tokio::time::sleep(Duration::from_millis(4000)).await;
        // Due: each replica still serves the current token and starts renewing it.
        let mut set = JoinSet::new();
        for replica in 0..3 {
            let fleet = fleet.clone();
            set.spawn(async move { fleet.token(replica, "renewing-user").await });
        }
        for answer in all_ok(set).await {
            assert!(
                first.contains(&answer.field("AccessKeyId")),
                "served while due"
            );
        }
        let renewed = async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut ids = HashSet::new();
                for replica in 0..3 {
                    ids.insert(
                        fleet
                            .token(replica, "renewing-user")
                            .await
                            .field("AccessKeyId"),
                    );
                }
                if ids.len() == 1 && ids.is_disjoint(&first) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), renewed)
            .await
            .expect("every replica holds the successor within 2 s");
        let calls = fleet.issued() - before;
        eprintln!("one caller over 3 replicas, issued and renewed once: {calls} AssumeRole calls");
        assert_eq!(calls, 2, "one call to issue, one to renew");
    })
    .await;
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The caller token keys (`…tok:{digest}`, not their locks).
fn token_keys(all: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    all.iter()
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .filter(|name| name.contains("tok:") && !name.ends_with(":lock"))
        .collect()
}

async fn set_px(redis: &RedisServer, name: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(name)
        .arg(value)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis.raw().await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_secret_or_subject_in_plaintext_and_a_foreign_value_is_refetched() {
    bounded(async {
        let redis = RedisServer::start();
        let fleet = Arc::new(Replicas::start(Some(&redis)).await);
        let (_, answers) = three_rounds(&fleet, 30).await;
        let mut forbidden: Vec<String> = (0..30).map(subject).collect();
        forbidden.push("example.com".into());
        for answer in &answers {
            for field in ["AccessKeyId", "AccessKeySecret", "SecurityToken"] {
                forbidden.push(answer.field(field).unwrap());
            }
        }
        let all = redis.everything().await;
        assert_eq!(token_keys(&all).len(), 30, "one stored token per user");
        let sizes: Vec<usize> = token_keys(&all)
            .iter()
            .filter_map(|name| all.iter().find(|(n, _)| n == name.as_bytes()))
            .map(|(_, value)| value.len())
            .collect();
        let token_len = answers[0].field("SecurityToken").unwrap().len();
        println!(
            "sealed per-caller tokens: {}..={} bytes each (SecurityToken of {token_len} characters)",
            sizes.iter().min().unwrap(),
            sizes.iter().max().unwrap()
        );
        for (name, value) in &all {
            for needle in &forbidden {
                assert!(
                    !contains(name, needle) && !contains(value, needle),
                    "{needle:?} in plaintext under {:?}",
                    String::from_utf8_lossy(name)
                );
            }
        }

        // One user's stored token, opened with the fleet's key (the test knows it), forged and
        // sealed again with another key; then tampered with under the right key.
        let single = RedisServer::start();
        let fleet = Arc::new(Replicas::start(Some(&single)).await);
        let real = fleet.token(0, "victim").await;
        let real_id = real.field("AccessKeyId").unwrap();
        let all = single.everything().await;
        let [name] = token_keys(&all).try_into().unwrap();
        let sealed = &all.iter().find(|(n, _)| n == name.as_bytes()).unwrap().1;
        let ours = Keyring::new(&EncryptionKey::new([b'A'; 32]), None);
        let plaintext = ours.open(&name, sealed).unwrap().plaintext;
        let forged = String::from_utf8(secrecy::ExposeSecret::expose_secret(&plaintext).to_vec())
            .unwrap()
            .replace(&real_id, "STS.forged-by-a-stranger");
        let stranger = Keyring::new(&EncryptionKey::new([b'B'; 32]), None);
        set_px(
            &single,
            &name,
            &stranger.seal(&name, forged.as_bytes()).unwrap(),
        )
        .await;
        let before = fleet.issued();
        let served = fleet.token(1, "victim").await;
        assert_eq!(served.status, 200, "{}", served.body);
        assert!(
            !served.body.contains("forged"),
            "a foreign value was served"
        );
        assert_eq!(fleet.issued() - before, 1, "refetched");

        let mut tampered = ours.seal(&name, forged.as_bytes()).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        set_px(&single, &name, &tampered).await;
        let served = fleet.token(2, "victim").await;
        assert_eq!(served.status, 200, "{}", served.body);
        assert!(
            !served.body.contains("forged"),
            "a tampered value was served"
        );
        assert_eq!(fleet.issued() - before, 2, "refetched");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_replicas_serve_locally_and_sharing_resumes_when_it_returns() {
    bounded(async {
        let mut redis = RedisServer::start();
        let fleet = Arc::new(Replicas::start(Some(&redis)).await);
        for user in 0..10 {
            let answer = fleet.token(0, &subject(user)).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }

        redis.stop();
        let before = fleet.issued();
        for user in 0..10 {
            let answer = fleet.token(0, &subject(user)).await;
            assert_eq!(
                answer.status, 200,
                "a cached caller failed: {}",
                answer.body
            );
        }
        assert_eq!(fleet.issued(), before, "cached callers cost no STS call");
        for user in 100..105 {
            let answer = fleet.token(user % 3, &subject(user)).await;
            assert_eq!(answer.status, 200, "a new caller failed: {}", answer.body);
        }
        assert_eq!(fleet.issued() - before, 5, "new callers fetched locally");
        assert!(
            !fleet.wait_store_up(Duration::ZERO).await,
            "the stores noticed Redis is gone"
        );

        redis.restart();
        assert!(
            fleet.wait_store_up(Duration::from_secs(30)).await,
            "every replica reconnected to Redis"
        );
        let before = fleet.issued();
        for replica in 0..3 {
            let answer = fleet.token(replica, "after-the-restart").await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
        assert_eq!(fleet.issued() - before, 1, "sharing resumed");
    })
    .await;
}
