//! The fleet-wide STS budget: the local budget's lanes at fixed times, and three replicas
//! flooding it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stsvend::fleet::budget::{FleetBudget, FleetLane, PENALTY, WINDOW};
use tokio::time::Instant;

use crate::helpers::{RedisServer, fleet, store};

const T: u64 = 1_780_000_000_000; // ms

async fn grants(budget: &FleetBudget, lane: FleetLane, at: u64) -> (usize, Duration) {
    let mut granted = 0;
    loop {
        match budget.try_acquire_at(lane, Some(at)).await.unwrap() {
            Ok(()) => granted += 1,
            Err(retry) => return (granted, retry),
        }
        assert!(granted <= 100);
    }
}

#[tokio::test]
async fn callers_never_take_the_reserve_and_throttling_shrinks_the_budget() {
    let server = RedisServer::start();
    let budget = FleetBudget::new(store(&server, "replica-a"), 10.try_into().unwrap());
    // Of 10 a second, callers get 8: a fifth stays for base credentials and shared tokens.
    assert_eq!(grants(&budget, FleetLane::Caller, T).await, (8, WINDOW));
    assert_eq!(grants(&budget, FleetLane::Service, T).await, (2, WINDOW));
    assert_eq!(
        grants(&budget, FleetLane::Caller, T + 500).await,
        (0, WINDOW - Duration::from_millis(500))
    );
    // A window later, all of it is free again; one caller takes a slot.
    budget
        .try_acquire_at(FleetLane::Caller, Some(T + 1100))
        .await
        .unwrap()
        .unwrap();
    // Throttled: each call costs two slots, and the reserve doubles (caller cap 10 - 2×2 = 6).
    assert_eq!(budget.throttled_at(Some(T + 1100)).await.unwrap(), 2);
    assert_eq!(grants(&budget, FleetLane::Caller, T + 1100).await.0, 2);
    assert_eq!(grants(&budget, FleetLane::Service, T + 1100).await.0, 2);
    // At four times, the reserve is all there is: callers wait the penalty out.
    assert_eq!(budget.throttled_at(Some(T + 1200)).await.unwrap(), 4);
    assert_eq!(
        grants(&budget, FleetLane::Caller, T + 1200).await,
        (0, PENALTY)
    );
    assert_eq!(
        budget.throttled_at(Some(T + 1300)).await.unwrap(),
        4,
        "at most four times"
    );
    // After the penalty, the full budget again.
    let later = T + 1300 + 30_000;
    assert_eq!(grants(&budget, FleetLane::Caller, later).await.0, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_spend_more_than_the_budget_in_any_second() {
    let server = RedisServer::start();
    let budgets = fleet(&server).map(|s| FleetBudget::new(s, 10.try_into().unwrap()));
    let granted: Arc<Mutex<Vec<(Instant, FleetLane)>>> = Arc::default();
    let until = Instant::now() + Duration::from_millis(3500);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let budget = budgets[i % 3].clone();
            let granted = granted.clone();
            let lane = if i < 27 {
                FleetLane::Caller
            } else {
                FleetLane::Service
            };
            tokio::spawn(async move {
                while Instant::now() < until {
                    match budget.acquire(lane, Duration::from_secs(2)).await {
                        Ok(Ok(())) => granted.lock().unwrap().push((Instant::now(), lane)),
                        Ok(Err(_)) => {}
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut granted = granted.lock().unwrap().clone();
    granted.sort_by_key(|g| g.0);
    for (i, (at, _)) in granted.iter().enumerate() {
        let in_second = granted[i..]
            .iter()
            .take_while(|g| g.0 - *at < Duration::from_secs(1))
            .count();
        assert!(in_second <= 10, "{in_second} calls within one second");
    }
    let service = granted.iter().filter(|g| g.1 == FleetLane::Service).count();
    println!(
        "fleet budget 10/s, 3 replicas, 3.5 s: {} grants ({service} service lane)",
        granted.len()
    );
    assert!(granted.len() >= 25, "the budget is used: {}", granted.len());
    assert!(
        service >= 6,
        "the service lane is served while callers flood: {service}"
    );
}
