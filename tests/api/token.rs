//! The token endpoint's contract: body and headers, what STS receives, caching, single flight,
//! refresh ahead of expiry, profiles, methods, health and readiness.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use stsvend::sts::signature;

use crate::helpers::{MockSts, ROLE_ARN, Reply, TEST_KEY_ID, TEST_KEY_SECRET, TestApp, eventually};

fn expiration_of(body: &Value) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(body["Expiration"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%SZ")
        .expect("Expiration like 2026-11-26T12:00:00Z")
        .and_utc()
}

#[allow(clippy::disallowed_methods)] // tests compare with the real clock
fn now() -> DateTime<Utc> {
    Utc::now()
}

#[tokio::test]
async fn token_has_exactly_the_four_pascal_case_keys_and_the_right_headers() {
    let app = TestApp::emulated()
        .env(&[("STSVEND_LOGSTORE", "my-proj/web-log")])
        .start()
        .await;
    let response = app.get("/get_sts_token").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let length = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(length, text.len().to_string());
    let body: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "AccessKeySecret",
            "SecurityToken",
            "Expiration"
        ]
    );
    assert!(body["AccessKeyId"].as_str().unwrap().starts_with("STS."));
    assert!(body["SecurityToken"].as_str().unwrap().len() > 500);
    let body = Value::Object(body);
    let left = expiration_of(&body) - now();
    assert!(
        left > chrono::Duration::seconds(3500) && left <= chrono::Duration::seconds(3601),
        "{left}"
    );
    // HEAD is answered like GET, without a body.
    let head = app
        .client
        .head(app.url("/get_sts_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn sts_receives_the_configured_parameters_signed_with_a_fresh_nonce() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_ROLE_SESSION_NAME", "mini-app"),
            ("STSVEND_DURATION_SECONDS", "900"),
        ])
        .start()
        .await;
    assert_eq!(app.get("/get_sts_token").await.status(), 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let params = &requests[0];
    let expect = [
        ("Action", "AssumeRole"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("AccessKeyId", TEST_KEY_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("RoleArn", ROLE_ARN),
        ("RoleSessionName", "mini-app"),
        ("DurationSeconds", "900"),
        (
            "Policy",
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":["acs:log:*:*:project/my-proj/logstore/web-log"]}]}"#,
        ),
    ];
    for (name, value) in expect {
        assert_eq!(params.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(
        !params.contains_key("SecurityToken"),
        "no token for a RAM user key"
    );
    let sent = NaiveDateTime::parse_from_str(&params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        .expect("Timestamp without fractions")
        .and_utc();
    assert!((now() - sent).num_seconds().abs() < 60);
    assert!(uuid::Uuid::parse_str(&params["SignatureNonce"]).is_ok());
    let unsigned: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params["Signature"],
        signature::sign("POST", &unsigned, TEST_KEY_SECRET)
    );
}

#[tokio::test]
async fn a_security_token_in_the_environment_is_sent_with_the_request() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("ALIBABA_CLOUD_SECURITY_TOKEN", "CAIS+base/token==")])
        .start()
        .await;
    assert_eq!(app.get("/get_sts_token").await.status(), 200);
    assert_eq!(mock.requests()[0]["SecurityToken"], "CAIS+base/token==");
    assert!(
        !mock.requests()[0].contains_key("Policy"),
        "no policy when none is configured"
    );
}

#[tokio::test]
async fn every_retry_uses_a_new_nonce_and_timestamp() {
    let mock = MockSts::start(vec![
        Reply::error(500, "InternalError"),
        Reply::error(400, "Throttling.User"),
    ])
    .await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    assert!(
        eventually(Duration::from_secs(8), || async {
            app.get("/get_sts_token").await.status() == 200
        })
        .await,
        "recovers after two failures"
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    let mut nonces: Vec<&str> = requests
        .iter()
        .map(|r| r["SignatureNonce"].as_str())
        .collect();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "a fresh nonce per attempt");
    // Backoff is at least half a second, so timestamps (1 s resolution) cannot all be equal.
    assert_ne!(requests[0]["Timestamp"], requests[2]["Timestamp"]);
}

#[tokio::test]
async fn five_hundred_concurrent_first_requests_cause_exactly_one_sts_call() {
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_millis(500),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    // All 500 come from 127.0.0.1: lift the per-address limit (default burst 300) here.
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_RATE_LIMIT_BURST", "1000")])
        .start()
        .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = app.url("/get_sts_token");
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        bodies.push(body);
    }
    assert_eq!(mock.calls(), 1, "one AssumeRole for the whole burst");
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "everyone got the same token");
}

#[tokio::test]
async fn a_cached_token_is_served_without_calling_sts_again() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let first = app.get("/get_sts_token").await.text().await.unwrap();
    for _ in 0..50 {
        assert_eq!(app.get("/get_sts_token").await.text().await.unwrap(), first);
    }
    assert_eq!(mock.calls(), 1);
}

#[tokio::test]
async fn the_token_is_renewed_ahead_of_expiry_and_never_served_below_min_remaining() {
    // Tokens that live 8 s with 3 s that must remain: servable for 5 s, renewed after ~2.5 s.
    let mock = MockSts::start(vec![]).await;
    mock.set_fallback(Reply::Success { lifetime: 8 });
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_MIN_REMAINING_SECONDS", "3")])
        .start()
        .await;
    let mut keys = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    while tokio::time::Instant::now() < deadline {
        let response = app.get("/get_sts_token").await;
        assert_eq!(
            response.status(),
            200,
            "a fresh token is always in place before the old one is withdrawn"
        );
        let body: Value = response.json().await.unwrap();
        // Expiration has whole seconds, so allow one second of rounding.
        let left = expiration_of(&body) - now();
        assert!(
            left >= chrono::Duration::seconds(2),
            "served with only {left} left"
        );
        let key = body["AccessKeyId"].as_str().unwrap().to_owned();
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(keys.len() >= 2, "renewed at least once in 7 s: {keys:?}");
    assert!(
        mock.calls() <= 5,
        "about one call per 2.5 s, not a storm: {}",
        mock.calls()
    );
}

#[tokio::test]
async fn named_profiles_are_served_under_their_own_path() {
    let mock = MockSts::start(vec![]).await;
    let file = r#"
        [profiles.partner]
        role_arn = "acs:ram::2222222222222222:role/partner"
        role_session_name = "partner-app"
        logstore = "partner-proj/events"
    "#;
    let app = TestApp::builder(&mock.endpoint()).file(file).start().await;
    assert_eq!(app.get("/get_sts_token").await.status(), 200);
    assert_eq!(app.get("/get_sts_token/partner").await.status(), 200);
    let roles: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r["RoleArn"].clone())
        .collect();
    assert!(roles.contains(&ROLE_ARN.to_owned()));
    assert!(roles.contains(&"acs:ram::2222222222222222:role/partner".to_owned()));
    let partner = mock
        .requests()
        .into_iter()
        .find(|r| r["RoleArn"].ends_with("/partner"))
        .unwrap();
    assert_eq!(partner["RoleSessionName"], "partner-app");
    assert!(partner["Policy"].contains("project/partner-proj/logstore/events"));

    for path in [
        "/get_sts_token/nobody",
        "/get_sts_token/%FF",
        "/get_sts_token/partner/extra",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert!(
            matches!(
                body["error"]["code"].as_str(),
                Some("unknown_profile" | "not_found")
            ),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn other_methods_get_405_with_an_allow_header_and_a_json_error() {
    let app = TestApp::emulated().start().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/get_sts_token", "/get_sts_token/default"] {
            let response = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], "GET, HEAD");
            let request_id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed");
            assert_eq!(body["error"]["request_id"], request_id.as_str());
            assert!(body["error"]["message"].as_str().unwrap().contains("GET"));
        }
    }
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let app = TestApp::emulated().start().await;
    let response = app.get("/nothing/here?x=1").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn readiness_follows_the_token_and_liveness_does_not() {
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_millis(800),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let early = app.get("/readyz").await;
    assert_eq!(early.status(), 503, "not ready before the first token");
    // Issue 13: the public answer has the overall status only; the admin one names the profile.
    let body: Value = early.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "not_ready"}));
    let admin: Value = app
        .client
        .get(format!("http://{}/readyz", app.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["profiles"]["default"], "no_token");
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get("/readyz").await.status() == 200
        })
        .await,
        "ready once the token is in"
    );
    app.stop().await;
}
