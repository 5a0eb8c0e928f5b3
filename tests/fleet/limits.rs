//! GCRA rate limits: exact at fixed times, and shared by three replicas.

use std::time::Duration;

use stsvend::fleet::limits::{Decision, FleetLimiter, GcraQuota, LimitKind};
use tokio_util::sync::CancellationToken;

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

/// The app's limiter in fleet mode, as three replicas: one count per subject and per address
/// prefix across them, no subject, address or profile name in a Redis key, and each replica's
/// own count once Redis is gone (a refusal the fleet made still holds until its retry time).
#[tokio::test]
async fn the_apps_limits_are_counted_across_replicas() {
    use stsvend::auth::subject::caller_id;
    use stsvend::config::RateLimit;
    use stsvend::http::limits::RateLimits;

    let mut server = RedisServer::start();
    let replicas = fleet(&server).map(|store| {
        let mut limits = RateLimits::new(RateLimit {
            per_minute: 5.try_into().unwrap(),
            burst: 2.try_into().unwrap(),
        });
        limits.share(&store, "web-profile", 3, &CancellationToken::new());
        limits
    });
    let alice = caller_id(Some("https://idp.example"), "alice@example.com");
    let net: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
    let mut subject = 0;
    let mut address = 0;
    for limits in replicas.iter().cycle().take(9) {
        subject += usize::from(limits.check_subject_shared(alice).await.is_ok());
        address += usize::from(limits.check_ip_shared(net).await.is_ok());
    }
    assert_eq!(
        (subject, address),
        (2, 2),
        "the burst across three replicas"
    );
    let bob = caller_id(Some("https://idp.example"), "bob@example.com");
    assert!(replicas[0].check_subject_shared(bob).await.is_ok());

    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        for plain in ["alice", "bob", "198.51.100", "web-profile"] {
            assert!(!key.contains(plain), "{key} names {plain}");
        }
    }

    server.stop();
    for limits in &replicas {
        assert!(
            limits.check_subject_shared(alice).await.is_err(),
            "the fleet's last refusal holds until its retry time"
        );
    }
    let carol = caller_id(Some("https://idp.example"), "carol@example.com");
    let mut local = 0;
    for limits in replicas.iter().cycle().take(9) {
        local += usize::from(limits.check_subject_shared(carol).await.is_ok());
    }
    assert_eq!(local, 6, "each replica's own burst of 2");
}

/// The app's limiter in fleet mode admits on local allowances and charges Redis in batches: three
/// replicas hammering one address together cost far fewer script calls than requests, and admit
/// at most one burst beyond the fleet's exact count.
#[tokio::test]
async fn local_allowances_save_round_trips_and_overshoot_at_most_one_burst() {
    use stsvend::config::RateLimit;
    use stsvend::http::limits::RateLimits;

    const BURST: usize = 120;
    const REQUESTS_EACH: usize = 600;
    let server = RedisServer::start();
    let cancel = CancellationToken::new();
    let replicas = fleet(&server).map(|store| {
        let mut limits = RateLimits::new(RateLimit {
            per_minute: 60.try_into().unwrap(),
            burst: u32::try_from(BURST).unwrap().try_into().unwrap(),
        });
        limits.share(&store, "web-profile", 3, &cancel);
        std::sync::Arc::new(limits)
    });
    let net: ipnet::IpNet = "198.51.100.0/24".parse().unwrap();
    let started = std::time::Instant::now();
    let tasks = replicas.clone().map(|limits| {
        tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..REQUESTS_EACH {
                admitted += usize::from(limits.check_ip_shared(net).await.is_ok());
                tokio::task::yield_now().await;
            }
            admitted
        })
    });
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    // Let the last batch of charges land, then read how many script calls were made.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut raw = server.raw().await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .unwrap();
    let calls: usize = stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_eval"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    // One request a second refills while the test runs.
    let refilled = usize::try_from(elapsed.as_secs()).unwrap() + 1;
    println!(
        "3 replicas x {REQUESTS_EACH} requests, 60/min burst {BURST}: {admitted} admitted, \
         {calls} script calls, {elapsed:?}"
    );
    assert!(
        admitted >= BURST,
        "the fleet's burst is admitted: {admitted}"
    );
    assert!(
        admitted <= 2 * BURST + refilled,
        "at most one burst beyond the exact count: {admitted}"
    );
    assert!(
        calls * 10 < 3 * REQUESTS_EACH,
        "far fewer round trips than requests: {calls}"
    );
    cancel.cancel();
}
