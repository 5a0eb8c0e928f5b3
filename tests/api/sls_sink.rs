//! The dev SLS sink, driven in-process: it accepts a correctly signed batch and refuses one whose
//! token has expired — the case the Node end-to-end test cannot reach, since the emulator never
//! mints tokens shorter than 900 s. Time is moved with a test clock instead of waiting.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use md5::{Digest, Md5};
use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::emulator::Emulator;
use stsvend::emulator::sls::{sign, string_to_sign};
use stsvend::sts::{AssumeRole, StsClient};
use tower::ServiceExt as _;

use crate::helpers::jump_ahead;

/// A batch for `dev-project/dev-logstore`, signed the way the STS plugin signs it.
fn signed_batch(key_id: &str, secret: &str, token: &str, date: &str) -> Request<Body> {
    let body = r#"{"__logs__":[{"event":"expiry-check","__time__":1704164645}]}"#;
    let md5: String = Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let length = body.len().to_string();
    let log_headers = [
        ("x-log-apiversion", "0.6.0"),
        ("x-log-bodyrawsize", length.as_str()),
        ("x-log-signaturemethod", "hmac-sha1"),
        ("x-acs-security-token", token),
    ];
    let to_sign = string_to_sign(
        "POST",
        &md5,
        "application/json",
        date,
        log_headers.iter().copied(),
        "/logstores/dev-logstore",
    );
    let mut request = Request::post("/sls/dev-project/logstores/dev-logstore")
        .header("content-type", "application/json")
        .header("content-md5", &md5)
        .header("x-log-date", date)
        .header(
            "authorization",
            format!("LOG {key_id}:{}", sign(&to_sign, secret)),
        );
    for (name, value) in log_headers {
        request = request.header(name, value);
    }
    let mut request = request.body(Body::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50000))));
    request
}

async fn answer(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_sink_accepts_a_valid_batch_and_refuses_it_once_the_token_has_expired() {
    #[allow(clippy::disallowed_methods)] // the test clock starts at the real time
    let clock = Clock::following_tokio(Utc::now());
    let emulator = Emulator::start(clock.clone()).await.unwrap();
    let client = StsClient::new(emulator.endpoint(), clock.clone()).unwrap();
    let call = AssumeRole {
        role_arn: "acs:ram::1234567890123456:role/stsvend-dev".into(),
        role_session_name: "expiry-check".into(),
        duration_seconds: 900,
        policy: Some(r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"acs:log:*:*:project/dev-project/logstore/dev-logstore"}]}"#.into()),
    };
    let issued = client
        .assume_role(&emulator.credentials(), &call)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&issued.response_body()).unwrap();
    let (id, secret, token) = (
        body["AccessKeyId"].as_str().unwrap().to_owned(),
        body["AccessKeySecret"].as_str().unwrap().to_owned(),
        body["SecurityToken"].as_str().unwrap().to_owned(),
    );
    let router = stsvend::emulator::sls::router(emulator.sls_sink(None));
    let date = |clock: &Clock| clock.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();

    let (status, body) = answer(&router, signed_batch(&id, &secret, &token, &date(&clock))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = answer(
        &router,
        signed_batch(&id, "not-the-secret", &token, &date(&clock)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a wrong secret is refused"
    );

    // Fifteen minutes and a second later the 900 s token has expired; the request is fresh.
    jump_ahead(Duration::from_secs(901)).await;
    let (status, body) = answer(&router, signed_batch(&id, &secret, &token, &date(&clock))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errorCode"], "Unauthorized");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}
