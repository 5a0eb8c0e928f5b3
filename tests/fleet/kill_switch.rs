//! The kill switch: a change on one replica reaches the others within a second; a replica
//! started later starts with the stored state; the follower survives a Redis restart.

use std::time::Duration;

use stsvend::fleet::kill_switch::{FleetSwitches, FollowTiming, KillSwitchStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::{RedisServer, at, fleet, store, within};

fn enabled(switches: &watch::Receiver<FleetSwitches>, profile: &str) -> bool {
    switches.borrow().get(profile).is_none_or(|s| s.enabled)
}

async fn follow(
    store: stsvend::fleet::store::FleetStore,
    cancel: &CancellationToken,
) -> watch::Receiver<FleetSwitches> {
    let (rx, first, _task) = KillSwitchStore::new(store)
        .follow(
            vec!["web".to_owned(), "app".to_owned()],
            FollowTiming::default(),
            cancel.clone(),
        )
        .await;
    first.unwrap();
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_every_replica_within_a_second_and_a_late_one_starts_with_it() {
    let server = RedisServer::start();
    let cancel = CancellationToken::new();
    let [a, b, c] = fleet(&server);
    let b_switches = follow(b, &cancel).await;
    let c_switches = follow(c, &cancel).await;
    assert!(enabled(&b_switches, "web") && enabled(&c_switches, "web"));

    let switch = KillSwitchStore::new(a.clone());
    let now = at(1);
    let state = switch.set("web", false, now).await.unwrap();
    assert_eq!(state.changed_by, "replica-a");
    let b_took = within(Duration::from_secs(1), || !enabled(&b_switches, "web")).await;
    let c_took = within(Duration::from_secs(1), || !enabled(&c_switches, "web")).await;
    println!("kill switch: replica B applied in {b_took:?}, C in {c_took:?}");
    assert!(b_took.is_some() && c_took.is_some());
    assert!(enabled(&b_switches, "app"), "only the switched profile");
    let seen = b_switches.borrow().get("web").cloned().unwrap();
    assert_eq!(seen.changed_by, "replica-a");
    assert_eq!(seen.changed_at.timestamp_millis(), now.timestamp_millis());

    // A replica started afterwards is disabled from its first read.
    let late = follow(store(&server, "replica-d"), &cancel).await;
    assert!(!enabled(&late, "web"));

    switch.set("web", true, at(2)).await.unwrap();
    for switches in [&b_switches, &c_switches, &late] {
        assert!(
            within(Duration::from_secs(1), || enabled(switches, "web"))
                .await
                .is_some()
        );
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_known_state_holds_while_redis_is_gone_and_the_stored_state_wins_after() {
    let mut server = RedisServer::start();
    let cancel = CancellationToken::new();
    let [a, b, _] = fleet(&server);
    let switch = KillSwitchStore::new(a.clone());
    switch.set("web", false, at(3)).await.unwrap();
    let b_switches = follow(b, &cancel).await;
    assert!(!enabled(&b_switches, "web"));

    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!enabled(&b_switches, "web"), "last known state kept");
    assert!(switch.set("web", true, at(4)).await.unwrap_err().is_down());

    // Back (empty, as the server keeps nothing): the follower polls, resubscribes, and obeys
    // what is stored now.
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while switch.set("app", false, at(5)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no reconnection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        within(Duration::from_millis(1500), || !enabled(&b_switches, "app"))
            .await
            .is_some(),
        "a change after the restart reaches the follower"
    );
    assert!(
        enabled(&b_switches, "web"),
        "the stored state (never switched) wins"
    );
    // And, resubscribed, changes arrive at pub/sub speed again.
    tokio::time::sleep(FollowTiming::default().resubscribe_max).await;
    switch.set("app", true, at(6)).await.unwrap();
    let took = within(Duration::from_secs(1), || enabled(&b_switches, "app")).await;
    assert!(took.is_some());
    cancel.cancel();
}

#[tokio::test]
async fn a_malformed_or_oversized_stored_state_is_refused() {
    let server = RedisServer::start();
    let switch = KillSwitchStore::new(store(&server, "replica-a"));
    let mut raw = server.raw().await;
    let _: () = redis::cmd("HSET")
        .arg("stsvend:kill_switch")
        .arg("web")
        .arg("not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(switch.read(&["web".to_owned()]).await.is_err());
    let _: () = redis::cmd("HSET")
        .arg("stsvend:kill_switch")
        .arg("web")
        .arg("x".repeat(100_000))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(switch.read(&["web".to_owned()]).await.is_err());
    assert!(switch.read(&["app".to_owned()]).await.unwrap().is_empty());
}
