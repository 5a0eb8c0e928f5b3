//! Rate limits, trusted proxies and CORS (issue #4) through the real router: exact counts
//! admitted under concurrent load, per address and per user; `X-Forwarded-For` believed only
//! from a trusted proxy, and then only its right-most untrusted hop; CORS per profile.

use std::time::Instant;

use crate::helpers::{
    Answer, JWT_SECRET, LogCapture, MockSts, TestApp, assert_logged_denial, bearer, hs256_jwt, send,
};

/// Request headers, name and value.
type Headers = Vec<(String, String)>;

/// A ready service with `extra` settings and a logstore.
async fn app_with(mock: &MockSts, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("STSVEND_LOGSTORE", "my-proj/web-log")];
    env.extend_from_slice(extra);
    let app = TestApp::builder(&mock.endpoint()).env(&env).start().await;
    app.wait_ready().await;
    app
}

fn forwarded_for(value: &str) -> (String, String) {
    ("x-forwarded-for".to_owned(), value.to_owned())
}

/// Every 429 says `rate_limited` and when to retry; returns how many were admitted (200).
fn admitted(answers: &[Answer], max_retry_after: u64) -> usize {
    let mut ok = 0;
    for answer in answers {
        match answer.status {
            200 => ok += 1,
            429 => {
                assert_eq!(answer.error_code().as_deref(), Some("rate_limited"));
                let retry: u64 = answer
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", answer.headers));
                assert!(
                    (1..=max_retry_after).contains(&retry),
                    "Retry-After {retry}"
                );
            }
            other => panic!("status {other}: {}", answer.body),
        }
    }
    ok
}

/// At 60 a minute a cell comes back every second, so a slow machine may legitimately admit
/// one more per second the burst took; on a normal run that is none.
fn assert_burst(case: &str, admitted: usize, burst: usize, started: Instant) {
    let refills = usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!(
        (burst..=burst + refills).contains(&admitted),
        "{case}: {admitted} admitted, want exactly {burst} (+{refills} refilled)"
    );
}

#[tokio::test]
async fn twenty_requests_at_once_from_one_address_admit_exactly_the_burst() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    let app = app_with(
        &mock,
        &[
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "60"),
            ("STSVEND_RATE_LIMIT_BURST", "5"),
        ],
    )
    .await;
    let started = Instant::now();
    let answers = app.get_all("/get_sts_token", vec![vec![]; 20]).await;
    let ok = admitted(&answers, 2);
    assert_burst("one address", ok, 5, started);
    assert_eq!(answers.iter().filter(|a| a.status == 429).count(), 20 - ok);
    assert_eq!(mock.calls(), 1, "refused requests cost no STS call");
    for answer in &answers {
        assert_logged_denial(&logs, answer, "rate limit per address", "127.0.0.1");
    }
    // Health and readiness are not rate limited.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn in_jwt_mode_each_user_is_limited_too_whatever_addresses_they_come_from() {
    let mock = MockSts::start(vec![]).await;
    let app = app_with(
        &mock,
        &[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
            ("STSVEND_JWT_ISSUER", crate::helpers::JWT_ISSUER),
            ("STSVEND_JWT_AUDIENCE", crate::helpers::JWT_AUDIENCE),
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "60"),
            ("STSVEND_RATE_LIMIT_BURST", "5"),
            ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    // Each request from its own address, so only the per-user limit can refuse.
    let requests: Vec<Headers> = (0..20)
        .flat_map(|i| {
            [
                vec![
                    bearer(&hs256_jwt("alice")),
                    forwarded_for(&format!("198.51.100.{i}")),
                ],
                vec![
                    bearer(&hs256_jwt("bob")),
                    forwarded_for(&format!("203.0.113.{i}")),
                ],
            ]
        })
        .collect();
    let started = Instant::now();
    let answers = app.get_all("/get_sts_token", requests).await;
    let (alice, bob): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let alice: Vec<Answer> = alice.into_iter().map(|(_, a)| a).collect();
    let bob: Vec<Answer> = bob.into_iter().map(|(_, a)| a).collect();
    assert_burst("alice", admitted(&alice, 2), 5, started);
    assert_burst("bob", admitted(&bob, 2), 5, started);
    // The addresses themselves have cells left: another user from one of them gets through.
    let carol = app
        .get_with(
            "/get_sts_token",
            &[bearer(&hs256_jwt("carol")), forwarded_for("198.51.100.0")],
        )
        .await;
    assert_eq!(carol.status, 200, "{}", carol.body);
    assert_eq!(mock.calls(), 4, "shared, alice, bob, carol");
}

/// Statuses of `requests` sent one after another.
async fn statuses(app: &TestApp, requests: &[Headers]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for headers in requests {
        statuses.push(app.get_with("/get_sts_token", headers).await.status);
    }
    statuses
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy_and_a_spoofed_left_hop_changes_nothing()
 {
    // One cell a minute: nothing refills during the test, so every count is exact.
    let limits = [
        ("STSVEND_RATE_LIMIT_PER_MINUTE", "1"),
        ("STSVEND_RATE_LIMIT_BURST", "5"),
    ];
    let distinct: Vec<Headers> = (1..=10)
        .map(|i| {
            vec![
                forwarded_for(&format!("198.51.100.{i}")),
                ("x-real-ip".to_owned(), format!("192.0.2.{i}")),
            ]
        })
        .collect();
    let ok5_then_429 =
        |n: usize| -> Vec<u16> { (0..n).map(|i| if i < 5 { 200 } else { 429 }).collect() };
    // (case, STSVEND_TRUSTED_PROXIES or "" for none, requests, statuses)
    let cases: Vec<(&str, &str, Vec<Headers>, Vec<u16>)> = vec![
        (
            "no trusted proxies: the headers are ignored, all share 127.0.0.1's bucket",
            "",
            distinct.clone(),
            ok5_then_429(10),
        ),
        (
            "a trusted list without this peer: the headers are ignored",
            "10.0.0.0/8",
            distinct.clone(),
            ok5_then_429(10),
        ),
        (
            "a trusted proxy: each forwarded address has its own bucket",
            "127.0.0.1/32",
            distinct.clone(),
            vec![200; 10],
        ),
        (
            "a trusted proxy: requests without the header are the proxy's own",
            "127.0.0.1/32",
            vec![vec![]; 6],
            ok5_then_429(6),
        ),
        (
            "a trusted proxy: a client-written left hop does not change the bucket",
            "127.0.0.1/32",
            [
                vec![vec![forwarded_for("198.51.100.7")]; 5],
                vec![
                    vec![forwarded_for("6.6.6.6, 198.51.100.7")],
                    vec![forwarded_for("6.6.6.7, 198.51.100.7")],
                    vec![forwarded_for("198.51.100.7:4242")],
                    vec![
                        forwarded_for("198.51.100.7"),
                        ("x-real-ip".to_owned(), "6.6.6.8".to_owned()),
                    ],
                    // Alone, 6.6.6.6 is a client address of its own.
                    vec![forwarded_for("6.6.6.6")],
                ],
            ]
            .concat(),
            vec![200, 200, 200, 200, 200, 429, 429, 429, 429, 200],
        ),
    ];
    for (case, trusted, requests, expected) in cases {
        let mock = MockSts::start(vec![]).await;
        let mut env = limits.to_vec();
        if !trusted.is_empty() {
            env.push(("STSVEND_TRUSTED_PROXIES", trusted));
        }
        let app = app_with(&mock, &env).await;
        assert_eq!(statuses(&app, &requests).await, expected, "{case}");
    }
}

fn preflight_headers(origin: &str) -> Headers {
    vec![
        ("origin".to_owned(), origin.to_owned()),
        ("access-control-request-method".to_owned(), "GET".to_owned()),
        (
            "access-control-request-headers".to_owned(),
            "authorization".to_owned(),
        ),
    ]
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Answer {
    send(
        &app.client,
        reqwest::Method::OPTIONS,
        &app.url(path),
        &preflight_headers(origin),
    )
    .await
}

fn cors_headers(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

fn list_contains(answer: &Answer, header: &str, item: &str) -> bool {
    answer
        .headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(item))
}

const APP_ORIGIN: &str = "https://app.example.com";
const SHOP_ORIGIN: &str = "https://shop.example.com";

#[tokio::test]
async fn cors_answers_exactly_the_allowed_origins_of_each_profile_and_never_a_wildcard() {
    let mock = MockSts::start(vec![]).await;
    let file = format!(
        r#"
        [profiles.web]
        role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
        logstore = "my-proj/web-log"
        auth = "jwt"
        jwt_hs256_secret = "{JWT_SECRET}"
        jwt_issuer = "https://login.example.com"
        jwt_audience = "stsvend"
        cors_origins = ["{APP_ORIGIN}", "http://localhost:5173"]

        [profiles.shop]
        role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
        logstore = "my-proj/shop-log"
        cors_origins = "{SHOP_ORIGIN}"
    "#
    );
    // The default profile (from the environment) has no origins: mini programs need no CORS.
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_LOGSTORE", "my-proj/mini-log")])
        .file(&file)
        .start()
        .await;
    app.wait_ready().await;

    // (path, origin, whether it is allowed, whether the profile checks JWTs)
    let cases = [
        ("/get_sts_token/web", APP_ORIGIN, true, true),
        ("/get_sts_token/web", "http://localhost:5173", true, true),
        ("/get_sts_token/web", SHOP_ORIGIN, false, true),
        (
            "/get_sts_token/web",
            "https://app.example.com.evil.com",
            false,
            true,
        ),
        ("/get_sts_token/shop", SHOP_ORIGIN, true, false),
        ("/get_sts_token/shop", APP_ORIGIN, false, false),
    ];
    for (path, origin, allowed, jwt) in cases {
        let case = format!("{path} from {origin}");
        let answer = preflight(&app, path, origin).await;
        assert!(
            (200..300).contains(&answer.status),
            "{case}: preflight {}",
            answer.status
        );
        assert!(list_contains(&answer, "vary", "origin"), "{case}: Vary");
        let acao = answer.header("access-control-allow-origin");
        assert_eq!(acao, allowed.then_some(origin), "{case}: allow-origin");
        if allowed {
            assert!(
                list_contains(&answer, "access-control-allow-methods", "GET"),
                "{case}: methods {:?}",
                answer.header("access-control-allow-methods")
            );
            assert_eq!(
                list_contains(&answer, "access-control-allow-headers", "authorization"),
                jwt,
                "{case}: Authorization allowed only where JWTs are checked"
            );
        }
        for name in cors_headers(&answer) {
            assert!(
                !answer.header(&name).unwrap_or("").contains('*'),
                "{case}: {name} has a wildcard"
            );
        }

        // The request itself: a token (or, without a JWT, the 401) the page can read.
        let origin_header = ("origin".to_owned(), origin.to_owned());
        let mut headers = vec![origin_header];
        if jwt {
            headers.push(bearer(&hs256_jwt("browser-user")));
        }
        let answer = app.get_with(path, &headers).await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.body);
        assert_eq!(
            answer.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "{case}: GET allow-origin"
        );
        assert!(list_contains(&answer, "vary", "origin"), "{case}: GET Vary");
        if jwt && allowed {
            let refused = app.get_with(path, &headers[..1]).await;
            assert_eq!(refused.status, 401);
            assert_eq!(refused.header("access-control-allow-origin"), Some(origin));
        }
    }

    // The default profile sends no CORS headers at all, to a preflight or a GET.
    let answer = preflight(&app, "/get_sts_token", APP_ORIGIN).await;
    assert_eq!(cors_headers(&answer), Vec::<String>::new(), "preflight");
    assert_eq!(
        answer.status, 204,
        "only the allowed methods: {}",
        answer.body
    );
    assert_eq!(answer.header("allow"), Some("GET, HEAD, OPTIONS"));
    let answer = app
        .get_with(
            "/get_sts_token",
            &[("origin".to_owned(), APP_ORIGIN.to_owned())],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(cors_headers(&answer), Vec::<String>::new(), "GET");
}

#[tokio::test]
async fn cors_origins_from_the_environment_apply_to_the_default_profile() {
    let mock = MockSts::start(vec![]).await;
    let app = app_with(&mock, &[("STSVEND_CORS_ORIGINS", APP_ORIGIN)]).await;
    let answer = preflight(&app, "/get_sts_token", APP_ORIGIN).await;
    assert!((200..300).contains(&answer.status), "{}", answer.status);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(list_contains(&answer, "vary", "origin"));
    assert!(list_contains(
        &answer,
        "access-control-allow-methods",
        "GET"
    ));
    assert!(
        !list_contains(&answer, "access-control-allow-headers", "authorization"),
        "no Authorization where no JWT is checked"
    );
    let origin = |o: &str| vec![("origin".to_owned(), o.to_owned())];
    let allowed = app.get_with("/get_sts_token", &origin(APP_ORIGIN)).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    let other = app.get_with("/get_sts_token", &origin(SHOP_ORIGIN)).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
    let none = app.get_with("/get_sts_token", &[]).await;
    assert_eq!(none.header("access-control-allow-origin"), None);
}
