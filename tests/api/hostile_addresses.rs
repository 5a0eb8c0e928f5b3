//! Issue 13, points 2 and 3, through the real router: address spraying (an IPv6 /64, an IPv4
//! /16) against the AssumeRole budget while legitimate new callers arrive, IPv6 rate-limit
//! buckets per /64, the new-token limit per network, and two subjects that used to share one
//! session name and one credential.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{
    Answer, JWT_AUDIENCE, JWT_ISSUER, MockSts, TestApp, bearer, hs256_jwt, sample, scrape,
};

const SPRAY: usize = 3000;
/// Spray requests in flight at once.
const IN_FLIGHT: usize = 400;
const LEGITIMATE: usize = 20;

fn forwarded_for(ip: &str) -> Vec<(String, String)> {
    vec![("x-forwarded-for".to_owned(), ip.to_owned())]
}

/// A profile that binds tokens to the caller's address, behind a trusted proxy on loopback.
async fn bound_app(mock: &MockSts, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ("STSVEND_BIND_SOURCE_IP", "true"),
        ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    env.extend_from_slice(extra);
    let app = TestApp::builder(&mock.endpoint()).env(&env).start().await;
    app.wait_ready().await;
    app
}

/// A legitimate newcomer from a network of its own: IPv4 and IPv6 by turns, each in its own
/// /16 or /48.
fn legitimate_address(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("10.{}.0.1", 100 + i)
    } else {
        format!("2001:db8:{:x}::1", 0x100 + i)
    }
}

/// Sends `SPRAY` requests from `spray(i)`, `IN_FLIGHT` at a time, while `LEGITIMATE` newcomers
/// arrive one every 250 ms from the start of the spray's second second. Returns the spray's
/// statuses and the newcomers' answers with how long each took.
async fn spray_while_newcomers_arrive(
    app: &TestApp,
    spray: fn(usize) -> String,
) -> (HashMap<u16, usize>, Vec<(Answer, Duration)>) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let next = next.clone();
            let client = app.client.clone();
            let url = app.url("/get_sts_token");
            tokio::spawn(async move {
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= SPRAY {
                        return statuses;
                    }
                    let status = client
                        .get(&url)
                        .header("x-forwarded-for", spray(i))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    *statuses.entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut newcomers = Vec::new();
    for i in 0..LEGITIMATE {
        let (client, url) = (app.client.clone(), app.url("/get_sts_token"));
        newcomers.push(tokio::spawn(async move {
            let asked = Instant::now();
            let headers = forwarded_for(&legitimate_address(i));
            let answer = crate::helpers::send(&client, reqwest::Method::GET, &url, &headers).await;
            (answer, asked.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut answers = Vec::new();
    for newcomer in newcomers {
        answers.push(newcomer.await.unwrap());
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for worker in workers {
        for (status, n) in worker.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    (statuses, answers)
}

fn assert_all_newcomers_served(answers: &[(Answer, Duration)], what: &str) -> Duration {
    for (i, (answer, _)) in answers.iter().enumerate() {
        assert_eq!(
            answer.status,
            200,
            "{what}: newcomer {i} from {}: {}",
            legitimate_address(i),
            answer.body
        );
    }
    answers.iter().map(|(_, took)| *took).max().unwrap()
}

/// The addresses the mock STS was asked to bind tokens to.
fn bound_sources(mock: &MockSts) -> Vec<String> {
    mock.requests()
        .iter()
        .filter_map(|params| {
            let doc: serde_json::Value = serde_json::from_str(params.get("Policy")?).ok()?;
            doc["Statement"]
                .as_array()?
                .iter()
                .find_map(|s| s.pointer("/Condition/NotIpAddress/acs:SourceIp"))?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_from_one_ipv6_slash_64_leaves_every_new_caller_from_elsewhere_served() {
    let mock = MockSts::start(vec![]).await;
    let app = bound_app(&mock, &[]).await;
    let started = Instant::now();
    let (statuses, answers) =
        spray_while_newcomers_arrive(&app, |i| format!("2001:db8:1:2::{:x}", i + 1)).await;
    let slowest = assert_all_newcomers_served(&answers, "IPv6 /64 spray");
    let sources = bound_sources(&mock);
    let spray_tokens = sources
        .iter()
        .filter(|s| s.as_str() == "2001:db8:1:2::/64")
        .count();
    assert_eq!(spray_tokens, 1, "one token for the whole /64: {sources:?}");
    assert!(
        statuses.keys().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    println!(
        "IPv6 /64 spray of {SPRAY}: {statuses:?}, {} STS calls in all; {LEGITIMATE}/{LEGITIMATE} newcomers served, slowest {slowest:?}; {:?}",
        mock.calls(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_over_an_ipv4_slash_16_leaves_every_new_caller_from_elsewhere_served() {
    let mock = MockSts::start(vec![]).await;
    let app = bound_app(&mock, &[]).await;
    let started = Instant::now();
    // Spread over all 256 /24s of 10.7.0.0/16, so the per-network limit alone cannot stop it.
    let (statuses, answers) =
        spray_while_newcomers_arrive(&app, |i| format!("10.7.{}.{}", i % 256, i / 256 + 1)).await;
    let slowest = assert_all_newcomers_served(&answers, "IPv4 /16 spray");
    assert!(
        statuses.keys().all(|s| [200, 429, 503].contains(s)),
        "{statuses:?}"
    );
    let legitimate: HashSet<String> = (0..LEGITIMATE)
        .map(|i| {
            let ip = legitimate_address(i);
            if ip.contains(':') {
                format!("{}/64", ip.trim_end_matches('1'))
            } else {
                ip
            }
        })
        .collect();
    let sources = bound_sources(&mock);
    let served: HashSet<&String> = sources.iter().filter(|s| legitimate.contains(*s)).collect();
    assert_eq!(served.len(), LEGITIMATE, "{legitimate:?}");
    println!(
        "IPv4 /16 spray of {SPRAY}: {statuses:?}, {} STS calls in all; {LEGITIMATE}/{LEGITIMATE} newcomers served, slowest {slowest:?}; {:?}",
        mock.calls(),
        started.elapsed()
    );
}

#[tokio::test]
async fn forty_addresses_in_one_ipv6_slash_64_share_one_rate_limit_bucket() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "1"),
            ("STSVEND_RATE_LIMIT_BURST", "1"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    let mut statuses = Vec::new();
    for i in 1..=40 {
        let answer = app
            .get_with(
                "/get_sts_token",
                &forwarded_for(&format!("2001:db8:1:2:{i:x}::{i:x}")),
            )
            .await;
        if answer.status == 429 {
            assert_eq!(answer.error_code().as_deref(), Some("rate_limited"));
            assert!(answer.header("retry-after").is_some());
        }
        statuses.push(answer.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 39);
    let next = app
        .get_with("/get_sts_token", &forwarded_for("2001:db8:1:3::1"))
        .await;
    assert_eq!(next.status, 200, "the next /64 has its own bucket");
}

#[tokio::test]
async fn new_tokens_per_network_are_limited_with_a_429_and_counted() {
    let mock = MockSts::start(vec![]).await;
    // 4 a minute: one at once, the next in 15 s.
    let app = bound_app(&mock, &[("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "4")]).await;
    let counted = || {
        sample(
            &scrape(),
            "stsvend_rejections_total",
            &[
                ("profile", "default"),
                ("reason", "new_token_limit_network"),
                ("check", ""),
            ],
        )
        .unwrap_or(0.0)
    };
    let before = counted();
    let first = app
        .get_with("/get_sts_token", &forwarded_for("198.51.100.1"))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let neighbour = app
        .get_with("/get_sts_token", &forwarded_for("198.51.100.2"))
        .await;
    assert_eq!(neighbour.status, 429, "{}", neighbour.body);
    assert_eq!(neighbour.error_code().as_deref(), Some("rate_limited"));
    let retry: u64 = neighbour
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=16).contains(&retry), "Retry-After {retry}");
    assert!(counted() >= before + 1.0);
    let again = app
        .get_with("/get_sts_token", &forwarded_for("198.51.100.1"))
        .await;
    assert_eq!(again.status, 200, "a cached token is no new token");
    let elsewhere = app
        .get_with("/get_sts_token", &forwarded_for("198.51.101.1"))
        .await;
    assert_eq!(elsewhere.status, 200, "another /24");
    assert_eq!(
        bound_sources(&mock),
        ["198.51.100.1", "198.51.101.1"],
        "no STS call for the refused neighbour"
    );
}

/// The collision from issue 13: `victim-user@example.com_9638bf00` is the very name the old
/// mapping gave `victim user@example.com`.
#[tokio::test]
async fn a_subject_shaped_like_another_users_session_name_gets_its_own_credentials() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", crate::helpers::JWT_SECRET),
            ("STSVEND_JWT_ISSUER", JWT_ISSUER),
            ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "1"),
            ("STSVEND_RATE_LIMIT_BURST", "1"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    let as_user = |subject: &str, ip: &str| {
        let mut headers = forwarded_for(ip);
        headers.push(bearer(&hs256_jwt(subject)));
        headers
    };
    let victim = app
        .get_with(
            "/get_sts_token",
            &as_user("victim user@example.com", "198.51.100.1"),
        )
        .await;
    assert_eq!(victim.status, 200, "{}", victim.body);
    let lookalike = app
        .get_with(
            "/get_sts_token",
            &as_user("victim-user@example.com_9638bf00", "198.51.100.2"),
        )
        .await;
    assert_eq!(
        lookalike.status, 200,
        "its own rate bucket: {}",
        lookalike.body
    );
    assert_ne!(
        victim.access_key_id(),
        lookalike.access_key_id(),
        "two subjects, two credentials"
    );
    let names: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|p| p.get("RoleSessionName").cloned())
        .filter(|n| n != "stsvend")
        .collect();
    assert_eq!(
        names,
        [
            "victim-user@exa_9638bf0016b0d28a",
            "victim-user@example.com_9638bf00"
        ]
    );
    // The victim's bucket is the victim's, from any address.
    let again = app
        .get_with(
            "/get_sts_token",
            &as_user("victim user@example.com", "198.51.100.3"),
        )
        .await;
    assert_eq!(again.status, 429, "{}", again.body);
}

#[test]
fn an_ipv6_prefix_length_out_of_range_stops_the_binary_with_exit_code_2_naming_it() {
    for bad in ["16", "129", "sixty-four"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stsvend"))
            .arg("serve")
            .env_clear()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tHostileAddressesTest")
            .env(
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "hostile-addresses-secret",
            )
            .env("STSVEND_ROLE_ARN", crate::helpers::ROLE_ARN)
            .env("STSVEND_STS_ENDPOINT", "http://127.0.0.1:9/")
            .env("STSVEND_LISTEN", "127.0.0.1:0")
            .env("STSVEND_IPV6_PREFIX_LENGTH", bad)
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("STSVEND_IPV6_PREFIX_LENGTH") && stderr.contains("32 to 128"),
            "{bad}: {stderr}"
        );
    }
}
