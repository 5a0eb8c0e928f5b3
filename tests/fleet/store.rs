//! The connection: version, probe, a stopped and restarted server, the wrong key.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};
use stsvend::fleet::budget::{FleetBudget, FleetLane};
use stsvend::fleet::kill_switch::KillSwitchStore;
use stsvend::fleet::limits::{FleetLimiter, GcraQuota, LimitKind};
use stsvend::fleet::seal::SealError;
use stsvend::fleet::store::{FleetStore, StoreError};
use stsvend::fleet::tokens::{Fetched, SingleFlight, Source, TokenStore};
use tokio::time::Instant;

use crate::helpers::{KEY_A, KEY_B, RedisServer, at, settings, store};

#[tokio::test]
async fn check_reports_the_version_and_a_sealed_probe_round_trip() {
    let server = RedisServer::start();
    let store = store(&server, "replica-a");
    let version = store.version().await.unwrap();
    assert_eq!(version.server, "redis");
    assert!(
        version.version.starts_with(|c: char| c.is_ascii_digit()),
        "{version:?}"
    );
    let took = store.probe().await.unwrap();
    assert!(took < Duration::from_secs(1));
    assert!(store.is_up());
    // The probe cleans up after itself.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn a_store_is_made_without_redis_and_connects_when_it_comes_up() {
    let mut server = RedisServer::start();
    server.stop();
    let store = store(&server, "replica-a");
    assert!(store.probe().await.unwrap_err().is_down());
    assert!(!store.is_up());
    server.restart();
    let mut probed = Err(StoreError::Down(String::new()));
    for _ in 0..100 {
        probed = store.probe().await;
        if probed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    probed.unwrap();
    assert!(store.is_up());
}

/// Every operation of every part, once; each error must be "store down" and come within the
/// command timeout (plus scheduling slack), never a hang.
async fn every_operation_fails_fast(store: &FleetStore) {
    let slack = store.command_timeout() + Duration::from_millis(150);
    let tokens = TokenStore::new(store.clone(), SingleFlight::default());
    let key = tokens.caller_key("web", b"alice");
    let budget = FleetBudget::new(store.clone(), 10.try_into().unwrap());
    let limiter = FleetLimiter::new(store.clone());
    let quota = GcraQuota::per_period(
        5.try_into().unwrap(),
        Duration::from_secs(60),
        5.try_into().unwrap(),
    );
    let switches = KillSwitchStore::new(store.clone());
    let mut errors = Vec::new();
    macro_rules! timed {
        ($op:expr) => {{
            let started = Instant::now();
            let result = $op.await;
            assert!(started.elapsed() <= slack, "took {:?}", started.elapsed());
            errors.push(result.err().map(|e| e.is_down()));
        }};
    }
    timed!(store.probe());
    timed!(store.version());
    timed!(tokens.get(&key));
    timed!(tokens.put(&key, b"v", Duration::from_secs(1)));
    timed!(tokens.lease("web", Duration::from_secs(1)));
    timed!(budget.try_acquire_at(FleetLane::Caller, None));
    timed!(limiter.check(&limiter.key(LimitKind::Network, &[b"10.0.0.0/24"]), quota));
    timed!(switches.read(&["web".to_owned()]));
    timed!(switches.set("web", false, at(1)));
    assert!(errors.iter().all(|e| *e == Some(true)), "{errors:?}");
}

#[tokio::test]
async fn a_stopped_server_fails_every_command_within_the_timeout_and_a_restart_heals() {
    let mut server = RedisServer::start();
    let store = store(&server, "replica-a");
    let tokens = TokenStore::new(store.clone(), SingleFlight::default());
    let key = tokens.caller_key("web", b"alice");
    tokens
        .put(&key, b"token", Duration::from_secs(60))
        .await
        .unwrap();
    let mut down = store.watch_up();

    server.stop();
    every_operation_fails_fast(&store).await;
    assert!(!store.is_up());
    assert!(down.has_changed().unwrap() && !*down.borrow_and_update());
    // A caller is never failed for the store's sake: it fetches its own.
    let flight = tokens
        .get_or_fetch(&key, || async {
            Ok::<_, ()>(Fetched {
                plaintext: SecretSlice::from(b"own".to_vec()),
                ttl: Duration::from_secs(60),
            })
        })
        .await
        .unwrap();
    assert_eq!(flight.source, Source::FetchedAlone);

    // The same store (no new client) works again once the server is back (empty: no
    // persistence), reconnecting with backoff.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokens
            .put(&key, b"again", Duration::from_secs(60))
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the store did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokens.get(&key).await.unwrap().unwrap();
    assert_eq!(got.expose_secret(), b"again");
    assert!(store.is_up() && *down.borrow_and_update());
}

#[tokio::test]
async fn a_value_sealed_with_another_key_is_refused_then_replaced_and_a_rolled_key_reads_it() {
    let server = RedisServer::start();
    let old = TokenStore::new(store(&server, "replica-a"), SingleFlight::default());
    let stranger = TokenStore::new(
        FleetStore::connect(&settings(&server, KEY_B, None), "replica-b").unwrap(),
        SingleFlight::default(),
    );
    let rolled = TokenStore::new(
        FleetStore::connect(&settings(&server, KEY_B, Some(KEY_A)), "replica-c").unwrap(),
        SingleFlight::default(),
    );
    let key_a = old.caller_key("web", b"alice");
    old.put(&key_a, b"sealed with A", Duration::from_secs(60))
        .await
        .unwrap();

    // The rolled replica (new key B, previous A) reads what A sealed.
    let read = rolled
        .get(&rolled.caller_key("web", b"alice"))
        .await
        .unwrap();
    assert_eq!(read.unwrap().expose_secret(), b"sealed with A");

    // Moved under the name a B-only replica uses, A's value is refused, never served.
    let key_b = stranger.caller_key("web", b"alice");
    let mut raw = server.raw().await;
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let sealed: Vec<u8> = redis::cmd("GET")
        .arg(&names[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(key_b.name())
        .arg(&sealed)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        stranger.get(&key_b).await.unwrap_err(),
        StoreError::Seal(SealError::UnknownKey)
    );
    let flight = stranger
        .get_or_fetch(&key_b, || async {
            Ok::<_, ()>(Fetched {
                plaintext: SecretSlice::from(b"fresh".to_vec()),
                ttl: Duration::from_secs(60),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        flight.source,
        Source::Fetched,
        "refused, refetched, not served"
    );
    assert_eq!(flight.plaintext.expose_secret(), b"fresh");
    assert_eq!(
        stranger.get(&key_b).await.unwrap().unwrap().expose_secret(),
        b"fresh"
    );
}

#[tokio::test]
async fn one_slow_answer_after_good_ones_does_not_mark_the_store_down() {
    let server = RedisServer::start();
    let store = store(&server, "replica-a");
    store.probe().await.unwrap();
    assert!(store.is_up());
    let busy = tokio::spawn({
        let url = server.url();
        async move {
            let client = redis::Client::open(url).unwrap();
            let mut raw = client.get_multiplexed_async_connection().await.unwrap();
            let spin = "local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + 300000; \
                        repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop; return 1";
            let _: i64 = redis::cmd("EVAL")
                .arg(spin)
                .arg(0)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slow = store.probe().await;
    assert!(matches!(slow, Err(StoreError::TimedOut(_))), "{slow:?}");
    assert!(
        store.is_up(),
        "one slow answer right after a good one marked the store down"
    );
    busy.await.unwrap();
    store.probe().await.unwrap();
    assert!(store.is_up());
}
