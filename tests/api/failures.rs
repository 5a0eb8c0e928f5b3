//! STS failures: what the client sees for each kind, that a cached token keeps flowing while it
//! is servable, and that recovery needs no restart.

use std::time::Duration;

use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::emulator::Emulator;

use crate::helpers::{MockSts, ROLE_ARN, Reply, TestApp, eventually};

/// Fetches the token and returns status, `Retry-After` and body; checks the error shape.
async fn error_of(app: &crate::helpers::TestApp) -> (u16, Option<u64>, Value) {
    let response = app.get("/get_sts_token").await;
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .expect("Retry-After in seconds")
    });
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    if status != 200 {
        assert_eq!(body["error"]["request_id"], request_id.as_str());
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    (status, retry_after, body)
}

/// The client-visible outcome for an STS that always answers `reply`.
async fn outcome(reply: Reply) -> (u16, Option<u64>, Value, String) {
    let mock = MockSts::start(vec![]).await;
    mock.set_fallback(reply);
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let (status, retry_after, body) = error_of(&app).await;
    (status, retry_after, body, mock.endpoint())
}

#[tokio::test]
async fn each_sts_failure_kind_gives_the_right_status_and_code() {
    let cases = [
        (
            "throttled",
            Reply::error(400, "Throttling.User"),
            503,
            "sts_unavailable",
        ),
        (
            "server error",
            Reply::error(500, "InternalError"),
            503,
            "sts_unavailable",
        ),
        (
            "service unavailable",
            Reply::error(503, "ServiceUnavailable"),
            503,
            "sts_unavailable",
        ),
        (
            "garbage",
            Reply::Raw {
                status: 200,
                body: "<html>oops</html>",
            },
            503,
            "sts_unavailable",
        ),
        (
            "wrong shape",
            Reply::Raw {
                status: 200,
                body: r#"{"Credentials":{"AccessKeyId":"STS.x"}}"#,
            },
            503,
            "sts_unavailable",
        ),
        (
            "bad expiration",
            Reply::Raw {
                status: 200,
                body: r#"{"Credentials":{"AccessKeyId":"STS.x","AccessKeySecret":"s","SecurityToken":"t","Expiration":"soon"}}"#,
            },
            503,
            "sts_unavailable",
        ),
        (
            "already expired",
            Reply::Success { lifetime: -60 },
            503,
            "sts_unavailable",
        ),
        (
            "empty 502 from a proxy",
            Reply::Raw {
                status: 502,
                body: "",
            },
            503,
            "sts_unavailable",
        ),
        (
            "no permission",
            Reply::error(403, "NoPermission"),
            502,
            "sts_rejected",
        ),
        (
            "role missing",
            Reply::error(404, "EntityNotExist.Role"),
            502,
            "sts_rejected",
        ),
        (
            "duration above the role maximum",
            Reply::error(400, "InvalidParameter.DurationSeconds"),
            502,
            "sts_rejected",
        ),
    ];
    for (what, reply, status, code) in cases {
        let (got, retry_after, body, endpoint) = outcome(reply).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}");
        assert!(
            retry_after.is_some_and(|s| (1..=61).contains(&s)),
            "{what}: Retry-After {retry_after:?}"
        );
        let text = body.to_string();
        assert!(
            !text.contains(ROLE_ARN) && !text.contains(&endpoint) && !text.contains("127.0.0.1"),
            "{what}: {text}"
        );
    }
}

#[tokio::test]
async fn unreachable_sts_is_503_with_retry_after() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::builder(&endpoint).start().await;
    let (status, retry_after, body) = error_of(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "sts_unavailable");
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_emulator_and_reported_as_502() {
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let key_id = emulator.credentials().access_key_id().to_owned();
    let app = TestApp::builder(emulator.endpoint().as_str())
        .env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", &key_id),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret"),
        ])
        .start()
        .await;
    let (status, _, body) = error_of(&app).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "sts_rejected");
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn a_slow_first_call_makes_requests_wait_then_503_not_hang() {
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_secs(8),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let started = tokio::time::Instant::now();
    let (status, retry_after, body) = error_of(&app).await;
    let waited = started.elapsed();
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "token_not_ready");
    assert_eq!(retry_after, Some(2));
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    assert_eq!(mock.calls(), 1, "waiting requests do not trigger calls");
}

#[tokio::test]
async fn a_cached_token_keeps_flowing_through_an_outage_and_service_recovers_by_itself() {
    // Tokens live 8 s, 3 s must remain: servable 5 s, renewal due after ~2.5 s.
    let mock = MockSts::start(vec![Reply::Success { lifetime: 8 }]).await;
    mock.set_fallback(Reply::error(400, "Throttling.User"));
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_MIN_REMAINING_SECONDS", "3")])
        .start()
        .await;
    let first: Value = app.get("/get_sts_token").await.json().await.unwrap();

    // Renewal starts failing at ~2.5 s; the first token is still served until ~5 s.
    assert!(
        eventually(Duration::from_secs(4), || async { mock.calls() >= 2 }).await,
        "renewal attempted"
    );
    let during: Value = app.get("/get_sts_token").await.json().await.unwrap();
    assert_eq!(
        during["AccessKeyId"], first["AccessKeyId"],
        "old token still served during the outage"
    );

    // Once less than 3 s remain it is withdrawn: 503 with Retry-After.
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get("/get_sts_token").await.status() == 503
        })
        .await,
        "token withdrawn at min-remaining"
    );
    let calls_in_outage = mock.calls();
    assert!(
        calls_in_outage <= 6,
        "backoff, not a retry storm: {calls_in_outage} calls"
    );

    // STS comes back: the next attempt succeeds with no restart (backoff is at most a few s here).
    mock.set_fallback(Reply::Success { lifetime: 3600 });
    assert!(
        eventually(Duration::from_secs(12), || async {
            app.get("/get_sts_token").await.status() == 200
        })
        .await,
        "recovered"
    );
    let after: Value = app.get("/get_sts_token").await.json().await.unwrap();
    assert_ne!(after["AccessKeyId"], first["AccessKeyId"]);
}
