//! Sealed tokens: round trip, TTL, the fleet-wide single flight, the lease, and a scan of every
//! key for plaintext.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};
use stsvend::fleet::budget::{FleetBudget, FleetLane};
use stsvend::fleet::kill_switch::KillSwitchStore;
use stsvend::fleet::limits::{FleetLimiter, GcraQuota, LimitKind};
use stsvend::fleet::tokens::{Fetched, SingleFlight, Source, TokenStore};

use crate::helpers::{RedisServer, at, fleet, patient_fleet, store};

fn token_json(subject: &str) -> Vec<u8> {
    format!(
        r#"{{"AccessKeyId":"STS.id-{subject}","AccessKeySecret":"secret-of-{subject}","SecurityToken":"CAIS-token-of-{subject}","Expiration":"2026-01-01T01:00:00Z"}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn a_token_round_trips_and_expires_when_it_stops_being_servable() {
    let server = RedisServer::start();
    let tokens = TokenStore::new(store(&server, "replica-a"), SingleFlight::default());
    let key = tokens.caller_key("web", b"alice");
    assert!(tokens.get(&key).await.unwrap().is_none());
    tokens
        .put(&key, &token_json("alice"), Duration::from_millis(300))
        .await
        .unwrap();
    let got = tokens.get(&key).await.unwrap().unwrap();
    assert_eq!(got.expose_secret(), token_json("alice").as_slice());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(key.name())
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    assert!((1..=300).contains(&pttl), "{pttl}");
    // Other identities and profiles have other keys.
    assert!(
        tokens
            .get(&tokens.caller_key("web", b"bob"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tokens
            .get(&tokens.caller_key("app", b"alice"))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(tokens.get(&key).await.unwrap().is_none());
    // Nothing is stored for a token that is no longer servable, nor one too large.
    tokens.put(&key, b"x", Duration::ZERO).await.unwrap();
    assert!(tokens.get(&key).await.unwrap().is_none());
    assert!(
        tokens
            .put(&key, &vec![b'x'; 9000], Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_value_over_the_size_limit_is_refused_not_read_whole() {
    let server = RedisServer::start();
    let tokens = TokenStore::new(store(&server, "replica-a"), SingleFlight::default());
    let key = tokens.caller_key("web", b"alice");
    let huge = vec![b'x'; 1 << 20];
    let _: () = redis::cmd("SET")
        .arg(key.name())
        .arg(huge)
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    assert!(tokens.get(&key).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_first_requests_over_three_replicas_make_one_fetch() {
    let server = RedisServer::start();
    let replicas = patient_fleet(&server).map(|s| TokenStore::new(s, SingleFlight::default()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let tokens = replicas[i % 3].clone();
            let fetches = fetches.clone();
            tokio::spawn(async move {
                let key = tokens.caller_key("web", b"new-user");
                tokens
                    .get_or_fetch(&key, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        // An STS call takes a while.
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        Ok::<_, ()>(Fetched {
                            plaintext: SecretSlice::from(token_json("new-user")),
                            ttl: Duration::from_secs(60),
                        })
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut sources = Vec::new();
    for task in tasks {
        let flight = task.await.unwrap();
        assert_eq!(
            flight.plaintext.expose_secret(),
            token_json("new-user").as_slice()
        );
        sources.push(flight.source);
    }
    println!(
        "fleet single flight: 200 first requests over 3 replicas, {} fetch(es)",
        fetches.load(Ordering::SeqCst)
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(sources.iter().filter(|s| **s == Source::Fetched).count(), 1);
    assert_eq!(
        sources.iter().filter(|s| **s == Source::Stored).count(),
        199
    );
}

#[tokio::test]
async fn when_the_fetcher_fails_a_waiter_takes_over_and_when_the_wait_ends_callers_fetch_their_own()
{
    let server = RedisServer::start();
    let [a, b, _] = fleet(&server);
    let flight = SingleFlight {
        lock_ttl: Duration::from_secs(10),
        wait: Duration::from_millis(300),
        poll: Duration::from_millis(10),
    };
    let a = TokenStore::new(a, flight);
    let b = TokenStore::new(b, flight);
    let key = a.caller_key("web", b"carol");
    let failing = a.get_or_fetch(&key, || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err::<Fetched, _>("sts down")
    });
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.get_or_fetch(&key, || async {
            Ok::<_, ()>(Fetched {
                plaintext: SecretSlice::from(b"b's".to_vec()),
                ttl: Duration::from_secs(60),
            })
        })
        .await
    };
    let (failed, took_over) = tokio::join!(failing, waiting);
    assert_eq!(failed.unwrap_err(), "sts down");
    assert_eq!(took_over.unwrap().source, Source::Fetched);

    // A lock held by a replica that died: the others wait their bounded time, then fetch.
    let stuck = a.caller_key("web", b"dave");
    let lock = format!("{}:lock", stuck.name());
    let _: () = redis::cmd("SET")
        .arg(lock)
        .arg("dead-replica")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let own = b
        .get_or_fetch(&stuck, || async {
            Ok::<_, ()>(Fetched {
                plaintext: SecretSlice::from(b"own".to_vec()),
                ttl: Duration::from_secs(60),
            })
        })
        .await
        .unwrap();
    assert_eq!(own.source, Source::FetchedAlone);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn one_replica_holds_the_shared_tokens_lease() {
    let server = RedisServer::start();
    let [a, b, _] = fleet(&server).map(|s| TokenStore::new(s, SingleFlight::default()));
    let ttl = Duration::from_millis(300);
    assert!(a.lease("web", ttl).await.unwrap());
    assert!(!b.lease("web", ttl).await.unwrap());
    assert!(b.lease("app", ttl).await.unwrap(), "leases are per profile");
    assert!(a.lease("web", ttl).await.unwrap(), "the holder renews");
    // B releasing A's lease does nothing; A releasing it lets B take it.
    b.release_lease("web").await.unwrap();
    assert!(!b.lease("web", ttl).await.unwrap());
    a.release_lease("web").await.unwrap();
    assert!(b.lease("web", ttl).await.unwrap());
    // A holder that stops renewing loses the lease when it expires.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(a.lease("web", ttl).await.unwrap());
    // The shared token itself is read by all.
    let key = a.shared_key("web");
    a.put(&key, &token_json("shared-web"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        b.get(&b.shared_key("web"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        token_json("shared-web").as_slice()
    );
}

#[tokio::test]
async fn no_key_or_value_in_redis_holds_a_secret_or_a_subject_in_plaintext() {
    let server = RedisServer::start();
    let [a, b, c] = fleet(&server);
    let tokens = TokenStore::new(a.clone(), SingleFlight::default());
    let subjects: Vec<String> = (0..20).map(|i| format!("user-{i}@example.com")).collect();
    for subject in &subjects {
        let key = tokens.caller_key("web", subject.as_bytes());
        tokens
            .put(&key, &token_json(subject), Duration::from_secs(60))
            .await
            .unwrap();
    }
    tokens
        .put(
            &tokens.shared_key("web"),
            &token_json("shared"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    tokens.lease("web", Duration::from_secs(60)).await.unwrap();
    let budget = FleetBudget::new(b.clone(), 10.try_into().unwrap());
    budget
        .try_acquire_at(FleetLane::Caller, None)
        .await
        .unwrap()
        .unwrap();
    let limiter = FleetLimiter::new(c.clone());
    let quota = GcraQuota::per_period(
        5.try_into().unwrap(),
        Duration::from_secs(60),
        5.try_into().unwrap(),
    );
    for subject in &subjects {
        let key = limiter.key(LimitKind::Subject, &[b"web", subject.as_bytes()]);
        limiter.check(&key, quota).await.unwrap();
    }
    limiter
        .check(
            &limiter.key(LimitKind::Network, &[b"203.0.113.0/24"]),
            quota,
        )
        .await
        .unwrap();
    KillSwitchStore::new(a)
        .set("web", false, at(1))
        .await
        .unwrap();

    let everything = server.everything().await;
    assert!(everything.len() >= 45, "{} keys", everything.len());
    let mut forbidden: Vec<String> = vec![
        "secret-of".into(),
        "CAIS-token".into(),
        "STS.id".into(),
        "example.com".into(),
        "203.0.113".into(),
    ];
    forbidden.extend(subjects.iter().cloned());
    for (name, value) in everything {
        let mut content = name.clone();
        content.extend(value);
        for needle in &forbidden {
            assert!(
                !content
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "{needle:?} in plaintext under {:?}",
                String::from_utf8_lossy(&name)
            );
        }
    }
}
