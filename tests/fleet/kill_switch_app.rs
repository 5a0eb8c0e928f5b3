//! The fleet-wide kill switch end to end (issue 15, scenario e): three replicas built with
//! `App::builder(..).fleet(store)` against one real redis-server, switched through their admin
//! HTTP API and watched through `GET /get_sts_token` and the admin `/readyz`.

use std::time::Duration;

use std::collections::BTreeSet;

use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::emulator::Emulator;

use stsvend::fleet::kill_switch::KillSwitchStore;

use crate::helpers::{RedisServer, store};
use crate::replica::{Answer, Replica};

/// The bound on applying a change made on another replica.
const WITHIN: Duration = Duration::from_secs(1);

async fn three(server: &RedisServer, emulator: &Emulator) -> [Replica; 3] {
    let a = Replica::start(server, emulator, "replica-a").await;
    let b = Replica::start(server, emulator, "replica-b").await;
    let c = Replica::start(server, emulator, "replica-c").await;
    for replica in [&a, &b, &c] {
        replica.wait_serving().await;
    }
    [a, b, c]
}

/// Three replicas with the default profile disabled on A and applied on B and C.
async fn disabled_by_a(server: &RedisServer, emulator: &Emulator) -> [Replica; 3] {
    let [a, b, c] = three(server, emulator).await;
    assert_eq!(a.switch("disable").await.body["fleet"]["stored"], true);
    for replica in [&b, &c] {
        let took = replica.token_until(WITHIN, Answer::is_disabled).await;
        assert!(took.is_some(), "applied within 1 s");
    }
    [a, b, c]
}

/// The property names `openapi/admin.json` documents for the object schema at `pointer`.
fn documented(pointer: &str) -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(include_str!("../../openapi/admin.json")).unwrap();
    let schema = doc.pointer(pointer).unwrap_or_else(|| panic!("{pointer}"));
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Every key of `object` is documented at `pointer` (whose schemas refuse other properties).
fn assert_documented(object: &Value, pointer: &str) {
    let keys: BTreeSet<String> = object.as_object().unwrap().keys().cloned().collect();
    let documented = documented(pointer);
    let extra: Vec<_> = keys.difference(&documented).collect();
    assert!(extra.is_empty(), "{pointer} does not document {extra:?}");
}

fn served(answer: &Answer) -> bool {
    answer.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_on_one_replica_stops_every_replica_within_a_second_and_a_late_one_starts_disabled()
 {
    let server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let [a, b, c] = three(&server, &emulator).await;
    let ready = b.readyz().await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["fleet"]["replica"], "replica-b");
    assert_eq!(ready.body["fleet"]["store_up"], true);
    assert_eq!(
        ready.body["fleet"]["profiles"]["default"],
        serde_json::json!({"enabled": true, "local_only": false}),
        "never switched: no one changed it"
    );

    let answer = a.switch("disable").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["profile"], "default");
    assert_eq!(answer.body["enabled"], false);
    assert_eq!(answer.body["changed_by"], "replica-a");
    assert!(
        answer.body["changed_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert_eq!(
        answer.body["fleet"],
        serde_json::json!({"stored": true, "store_up": true})
    );
    let switched = "/components/schemas/Switched";
    assert_documented(&answer.body, switched);
    assert_documented(
        &answer.body["fleet"],
        &format!("{switched}/properties/fleet"),
    );
    assert!(a.token().await.is_disabled(), "A stops at once");
    let b_took = b.token_until(WITHIN, Answer::is_disabled).await;
    let c_took = c.token_until(WITHIN, Answer::is_disabled).await;
    println!("fleet kill switch (disable): B applied it after {b_took:?}, C after {c_took:?}");
    assert!(b_took.is_some() && c_took.is_some(), "B and C within 1 s");

    // Readiness stays up (a disabled profile does not take the pod out) and says who and when.
    let ready = c.readyz().await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["profiles"]["default"], "disabled");
    let fleet = &ready.body["fleet"]["profiles"]["default"];
    assert_eq!(fleet["enabled"], false);
    assert_eq!(fleet["changed_by"], "replica-a");
    assert_eq!(fleet["changed_at"], answer.body["changed_at"]);
    assert_eq!(fleet["local_only"], false);
    let readiness = "/components/schemas/Readiness";
    assert_documented(&ready.body, readiness);
    assert_documented(
        &ready.body["fleet"],
        &format!("{readiness}/properties/fleet"),
    );
    assert_documented(fleet, "/components/schemas/FleetSwitch");

    // A replica started afterwards is disabled from its first request.
    let d = Replica::start(&server, &emulator, "replica-d").await;
    assert!(d.token().await.is_disabled(), "D's first request");
    assert_eq!(
        d.readyz().await.body["fleet"]["profiles"]["default"]["changed_by"],
        "replica-a"
    );

    // Enabled again from another replica: every replica vends again.
    let answer = b.switch("enable").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["enabled"], true);
    assert_eq!(answer.body["changed_by"], "replica-b");
    for (name, replica) in [("A", &a), ("C", &c), ("D", &d)] {
        let took = replica
            .token_until(WITHIN, |answer| !answer.is_disabled())
            .await;
        println!("fleet kill switch (enable): {name} applied it after {took:?}");
        assert!(took.is_some(), "{name} enabled within 1 s");
    }
    for replica in [&a, &b, &c, &d] {
        let took = replica.token_until(Duration::from_secs(10), served).await;
        assert!(took.is_some(), "a fresh token is served again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_a_disable_is_local_only_and_the_stored_state_wins_once_redis_is_back() {
    let mut server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let [a, b, c] = three(&server, &emulator).await;

    server.stop();
    let answer = a.switch("disable").await;
    assert_eq!(answer.status, 200, "the incident does not wait for Redis");
    assert_eq!(answer.body["enabled"], false);
    assert_eq!(answer.body["changed_by"], "replica-a");
    assert_eq!(answer.body["fleet"]["stored"], false);
    assert_eq!(answer.body["fleet"]["store_up"], false);
    let reason = answer.body["fleet"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("fleet store"), "{reason}");
    assert!(!reason.contains("127.0.0.1"), "no address in the answer");
    assert_documented(
        &answer.body["fleet"],
        "/components/schemas/Switched/properties/fleet",
    );
    assert!(a.token().await.is_disabled(), "applied locally at once");
    let ready = a.readyz().await;
    assert_eq!(ready.status, 200, "Redis is not a hard dependency");
    assert_eq!(ready.body["fleet"]["store_up"], false);
    assert_eq!(
        ready.body["fleet"]["profiles"]["default"]["local_only"],
        true
    );
    // The others never heard of it and keep serving their tokens.
    assert!(served(&b.token().await) && served(&c.token().await));

    // Back, empty: nothing is stored, so the profile is enabled, and that wins on A too.
    server.restart();
    let took = a
        .token_until(Duration::from_secs(10), |answer| !answer.is_disabled())
        .await;
    println!("fleet kill switch: A took the stored state {took:?} after Redis restarted");
    assert!(
        took.is_some(),
        "the stored state replaced A's local-only change"
    );
    let ready = a.readyz().await;
    assert_eq!(ready.body["fleet"]["store_up"], true);
    assert_eq!(
        ready.body["fleet"]["profiles"]["default"],
        serde_json::json!({"enabled": true, "local_only": false})
    );
    for replica in [&a, &b, &c] {
        let took = replica.token_until(Duration::from_secs(10), served).await;
        assert!(took.is_some(), "every replica vends");
    }
    // And the fleet works again: a change on C reaches A and B within a second.
    assert_eq!(c.switch("disable").await.body["fleet"]["stored"], true);
    for replica in [&a, &b] {
        let took = replica.token_until(WITHIN, Answer::is_disabled).await;
        assert!(took.is_some(), "after the restart, within 1 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_restarted_with_its_data_the_stored_disable_wins_over_a_local_enable() {
    let mut server = RedisServer::start_persistent();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let [a, b, c] = disabled_by_a(&server, &emulator).await;

    server.stop();
    let answer = b.switch("enable").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["fleet"]["stored"], false);
    assert!(!b.token().await.is_disabled(), "B vends on its own say-so");
    assert!(
        c.token().await.is_disabled(),
        "C keeps the last known state"
    );

    // Back with its data: the stored state (disabled by A) replaces B's local-only enable.
    server.restart();
    let took = b
        .token_until(Duration::from_secs(10), Answer::is_disabled)
        .await;
    println!("fleet kill switch: B took the stored state {took:?} after Redis restarted");
    assert!(
        took.is_some(),
        "the stored disable replaced B's local-only enable"
    );
    let fleet = &b.readyz().await.body["fleet"]["profiles"]["default"];
    assert_eq!(fleet["changed_by"], "replica-a");
    assert_eq!(fleet["local_only"], false);
    assert!(a.token().await.is_disabled() && c.token().await.is_disabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_frozen_the_admin_call_answers_within_the_timeout_and_the_fleet_then_agrees() {
    let server = RedisServer::start();
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let [a, b, c] = disabled_by_a(&server, &emulator).await;

    // A hung Redis: every command times out (about 50 ms) instead of being refused.
    server.freeze();
    let started = tokio::time::Instant::now();
    let answer = b.switch("enable").await;
    let answered_in = started.elapsed();
    println!("fleet kill switch: B answered in {answered_in:?} with Redis frozen");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["fleet"]["stored"], false);
    assert!(answered_in < WITHIN, "bounded by the command timeout");
    assert!(!b.token().await.is_disabled(), "B vends on its own say-so");
    assert!(
        c.token().await.is_disabled(),
        "C keeps the last known state"
    );

    // A command that timed out may still be carried out once Redis wakes up (B's enable sits in
    // the socket): "stored": false means "not confirmed". Whatever is stored then, every
    // replica follows it and none is left with a local-only state.
    server.thaw();
    let observer = KillSwitchStore::new(store(&server, "observer"));
    let profiles = ["default".to_owned()];
    let mut stored = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stored.is_none() && tokio::time::Instant::now() < deadline {
        stored = observer.read(&profiles).await.ok();
    }
    let stored = stored.expect("Redis answers again");
    let enabled = stored.get("default").is_none_or(|state| state.enabled);
    println!("fleet kill switch: stored after the thaw: {stored:?}");
    for (name, replica) in [("A", &a), ("B", &b), ("C", &c)] {
        let took = replica
            .token_until(Duration::from_secs(10), |answer| {
                answer.is_disabled() != enabled
            })
            .await;
        println!("fleet kill switch: {name} follows the stored state after {took:?}");
        assert!(took.is_some(), "{name} follows the stored state");
        let fleet = &replica.readyz().await.body["fleet"]["profiles"]["default"];
        assert_eq!(fleet["local_only"], false, "{name}");
    }
}
