//! GCRA rate limits: exact at fixed times, and shared by three replicas.

use std::time::Duration;

use stsvend::fleet::limits::{Decision, FleetLimiter, GcraQuota, LimitKind};

use crate::helpers::{RedisServer, fleet, store};

const T: u64 = 1_780_000_000_000_000; // µs

fn quota(per_minute: u32, burst: u32) -> GcraQuota {
    GcraQuota::per_period(
        per_minute.try_into().unwrap(),
        Duration::from_secs(60),
        burst.try_into().unwrap(),
    )
}

fn limited(secs: u64) -> Decision {
    Decision::Limited {
        retry_after: Duration::from_secs(secs),
    }
}

#[tokio::test]
async fn gcra_is_exact() {
    let server = RedisServer::start();
    let limiter = FleetLimiter::new(store(&server, "replica-a"));
    let key = limiter.key(LimitKind::Network, &[b"198.51.100.0/24"]);
    let q = quota(5, 5);
    let at = |secs: u64| Some(T + secs * 1_000_000);
    for _ in 0..5 {
        assert_eq!(
            limiter.check_at(&key, q, at(0)).await.unwrap(),
            Decision::Allowed
        );
    }
    assert_eq!(limiter.check_at(&key, q, at(0)).await.unwrap(), limited(12));
    assert_eq!(limiter.check_at(&key, q, at(11)).await.unwrap(), limited(1));
    assert_eq!(
        limiter.check_at(&key, q, at(12)).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(
        limiter.check_at(&key, q, at(12)).await.unwrap(),
        limited(12)
    );
    assert_eq!(
        limiter.check_at(&key, q, at(30)).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(limiter.check_at(&key, q, at(30)).await.unwrap(), limited(6));
    // Another address is counted apart.
    let other = limiter.key(LimitKind::Network, &[b"198.51.101.0/24"]);
    assert_eq!(
        limiter.check_at(&other, q, at(30)).await.unwrap(),
        Decision::Allowed
    );
    // After a quiet spell, the whole burst again, and no more.
    let mut allowed = 0;
    while limiter.check_at(&key, q, at(1000)).await.unwrap() == Decision::Allowed {
        allowed += 1;
    }
    assert_eq!(allowed, 5);
    // A rate that does not divide the period evenly keeps its microseconds.
    let odd = limiter.key(LimitKind::Subject, &[b"web", b"alice"]);
    let q7 = quota(7, 1);
    assert_eq!(
        limiter.check_at(&odd, q7, at(0)).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(
        limiter.check_at(&odd, q7, at(0)).await.unwrap(),
        Decision::Limited {
            retry_after: Duration::from_micros(8_571_428)
        }
    );
}

#[tokio::test]
async fn three_replicas_share_one_limit() {
    let server = RedisServer::start();
    let limiters = fleet(&server).map(FleetLimiter::new);
    let key = limiters[0].key(LimitKind::Network, &[b"192.0.2.0/24"]);
    // The same address gets the same key on every replica.
    assert_eq!(key, limiters[2].key(LimitKind::Network, &[b"192.0.2.0/24"]));
    let mut allowed = 0;
    for i in 0..30 {
        if limiters[i % 3].check(&key, quota(5, 3)).await.unwrap() == Decision::Allowed {
            allowed += 1;
        }
    }
    println!("fleet rate limit 5/min burst 3 over 3 replicas: {allowed} of 30 allowed");
    assert_eq!(
        allowed, 3,
        "the burst, once, across the fleet (not three times)"
    );
}
