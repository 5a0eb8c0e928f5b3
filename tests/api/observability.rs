//! Metrics and the audit log (issue #5): the series a scrape shows after real traffic, and the
//! audit line of a fresh token, a cached one and a refusal, none of them holding a secret.
//!
//! The Prometheus recorder is process-global and these tests run beside every other one, so
//! each test uses profile names of its own, or compares two scrapes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::credentials::chain::{self, ChainInputs};

use crate::helpers::{
    Answer, ClosedPort, JWT_SECRET, LogCapture, MockCredentialsUri, MockSts, ROLE_ARN, Reply,
    TempDir, TestApp, UriReply, audit_line_for, audit_lines, bearer, eventually, hs256_jwt,
    jump_ahead, sample, scrape,
};

const BROKEN_ROLE: &str = "acs:ram::1234567890123456:role/obs-broken";
/// An STS error code no other test uses, so its count is this test's alone.
const BROKEN_CODE: &str = "InvalidParameter.ObservabilityTest";

/// `http_requests_total` for one route, profile and status.
fn requests(page: &str, route: &str, profile: &str, status: &str) -> f64 {
    sample(
        page,
        "stsvend_http_requests_total",
        &[("route", route), ("profile", profile), ("status", status)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_scrape_after_traffic_shows_requests_sts_calls_cache_expiry_and_rejections() {
    let before = scrape();
    let mock = MockSts::start(vec![]).await;
    mock.for_role(BROKEN_ROLE, Reply::error(403, BROKEN_CODE));
    let file = format!(
        r#"
        [profiles.obs-web]
        role_arn = "{ROLE_ARN}"
        logstore = "obs/web"

        [profiles.obs-jwt]
        role_arn = "{ROLE_ARN}"
        logstore = "obs/jwt"
        auth = "jwt"
        jwt_hs256_secret = "{JWT_SECRET}"
        jwt_issuer = "https://login.example.com"
        jwt_audience = "stsvend"

        [profiles.obs-broken]
        role_arn = "{BROKEN_ROLE}"
        logstore = "obs/broken"
        "#
    );
    let app = TestApp::builder(&mock.endpoint()).file(&file).start().await;
    let user = vec![bearer(&hs256_jwt("obs-user-1"))];
    for _ in 0..3 {
        assert_eq!(
            app.get_with("/get_sts_token/obs-web", &[]).await.status,
            200
        );
    }
    assert_eq!(
        app.get_with("/get_sts_token/obs-jwt", &[]).await.status,
        401
    );
    for _ in 0..2 {
        assert_eq!(
            app.get_with("/get_sts_token/obs-jwt", &user).await.status,
            200
        );
    }
    assert_eq!(
        app.get_with("/get_sts_token/obs-broken", &[]).await.status,
        502
    );
    assert_eq!(
        app.get_with("/get_sts_token/obs-nope", &[]).await.status,
        404
    );
    assert_eq!(app.get_with("/no/such/path", &[]).await.status, 404);
    let page = scrape();

    // Requests: by route pattern, the profile it serves, and status.
    let route = "/get_sts_token/obs-web";
    assert_eq!(requests(&page, route, "obs-web", "200"), 3.0, "{page}");
    assert_eq!(
        requests(&page, "/get_sts_token/obs-jwt", "obs-jwt", "401"),
        1.0
    );
    assert_eq!(
        requests(&page, "/get_sts_token/obs-jwt", "obs-jwt", "200"),
        2.0
    );
    assert_eq!(
        requests(&page, "/get_sts_token/obs-broken", "obs-broken", "502"),
        1.0
    );
    // Other tests ask for unknown profiles and paths too: these only grow.
    for (route, profile) in [("/get_sts_token/{profile}", ""), ("unmatched", "")] {
        let grew =
            requests(&page, route, profile, "404") - requests(&before, route, profile, "404");
        assert!(grew >= 1.0, "{route}: {grew}");
    }
    let latency = |suffix: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("route", route)];
        labels.extend_from_slice(extra);
        sample(
            &page,
            &format!("stsvend_http_request_duration_seconds{suffix}"),
            &labels,
        )
    };
    assert_eq!(latency("_count", &[]), Some(3.0));
    assert_eq!(latency("_bucket", &[("le", "+Inf")]), Some(3.0));
    assert!(latency("_sum", &[]).is_some_and(|s| s >= 0.0));
    assert!(page.contains("# TYPE stsvend_http_request_duration_seconds histogram"));

    // Caches: the shared token is always a hit; a user's first request is a miss.
    let cache = |profile: &str, result: &str| {
        sample(
            &page,
            "stsvend_token_cache_total",
            &[("profile", profile), ("result", result)],
        )
    };
    assert_eq!(cache("obs-web", "hit"), Some(3.0));
    assert_eq!(cache("obs-web", "miss"), None);
    assert_eq!(cache("obs-jwt", "miss"), Some(1.0));
    assert_eq!(cache("obs-jwt", "hit"), Some(1.0));

    // The shared token's remaining life: the mock grants the requested 3600 s.
    let expiry = sample(
        &page,
        "stsvend_token_expiry_seconds",
        &[("profile", "obs-web")],
    )
    .expect("expiry gauge");
    assert!((3000.0..=3600.0).contains(&expiry), "{expiry}");
    // The same expiry as Unix time, which alerts compare with `time()`.
    let at = sample(
        &page,
        "stsvend_token_expiry_timestamp_seconds",
        &[("profile", "obs-web")],
    )
    .expect("expiry timestamp gauge");
    let now = Clock::System.now().timestamp() as f64;
    assert!((now + 3000.0..=now + 3601.0).contains(&at), "{at} at {now}");
    assert!(page.contains("# TYPE stsvend_token_expiry_timestamp_seconds gauge"));

    // Refusals, by reason and (for JWTs) the failed check.
    let rejections = |profile: &str, reason: &str, check: &str| {
        sample(
            &page,
            "stsvend_rejections_total",
            &[("profile", profile), ("reason", reason), ("check", check)],
        )
    };
    assert_eq!(rejections("obs-jwt", "auth", "missing_token"), Some(1.0));
    assert_eq!(rejections("obs-broken", "sts_rejected", ""), Some(1.0));
    assert_eq!(rejections("obs-web", "rate_limit_ip", ""), None);

    // STS calls, with STS's error code; the refresher retries, so at least one.
    let refused = sample(
        &page,
        "stsvend_sts_calls_total",
        &[
            ("action", "AssumeRole"),
            ("outcome", "error"),
            ("code", BROKEN_CODE),
        ],
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    let ok = |page: &str| {
        sample(
            page,
            "stsvend_sts_calls_total",
            &[
                ("action", "AssumeRole"),
                ("outcome", "success"),
                ("code", ""),
            ],
        )
        .unwrap_or(0.0)
    };
    // default, obs-web and obs-jwt shared tokens, and obs-user-1's.
    assert!(ok(&page) - ok(&before) >= 4.0, "{page}");
    let timed = sample(
        &page,
        "stsvend_sts_call_duration_seconds_count",
        &[("action", "AssumeRole")],
    );
    assert!(timed.is_some_and(|n| n >= 5.0), "{timed:?}");

    // Bounded labels: no user id and no address anywhere on the page.
    assert!(!page.contains("obs-user-1"));
    assert!(!page.contains("127.0.0.1"));
    app.stop().await;
}

/// The git revision of the checkout the tests run in, `None` outside one.
fn checkout_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test]
async fn the_admin_metrics_page_has_build_info_process_series_and_a_utf8_text_type() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).metrics().start().await;
    let answer = app
        .client
        .get(format!("http://{}/metrics", app.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let page = answer.text().await.unwrap();

    // Build info: always 1, this crate's version, the commit it was built from.
    let info = page
        .lines()
        .find(|l| l.starts_with("stsvend_build_info{"))
        .unwrap_or_else(|| panic!("no stsvend_build_info in {page}"));
    let (series, value) = info.rsplit_once(' ').unwrap();
    assert_eq!(value, "1");
    let label = |name: &str| {
        let start = series.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        series[start..].split('"').next().unwrap().to_owned()
    };
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    let revision = label("revision");
    match checkout_revision() {
        // Built from this checkout (build.rs reruns when HEAD moves): a prefix of its commit.
        Some(head) if std::env::var_os("STSVEND_BUILD_REVISION").is_none() => {
            assert!(
                revision.len() >= 7 && head.starts_with(&revision),
                "{revision} vs {head}"
            );
        }
        _ => assert!(
            revision == "unknown" || revision.bytes().all(|b| b.is_ascii_hexdigit()),
            "{revision}"
        ),
    }
    assert!(page.contains("# TYPE stsvend_build_info gauge"));

    // Process series, read from /proc at the scrape: plausible values for this test process.
    let process =
        |name: &str| sample(&page, name, &[]).unwrap_or_else(|| panic!("no {name} in {page}"));
    assert!(process("process_resident_memory_bytes") > 1_000_000.0);
    // At least the listeners and the connection of this very request.
    assert!(process("process_open_fds") >= 3.0);
    assert!(process("process_max_fds") >= process("process_open_fds"));
    let now = Clock::System.now().timestamp() as f64;
    let started = process("process_start_time_seconds");
    assert!(
        (now - 86_400.0..=now + 1.0).contains(&started),
        "{started} at {now}"
    );
    assert!(process("process_cpu_seconds_total") >= 0.0);
    assert!(page.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(page.contains("# TYPE process_resident_memory_bytes gauge"));
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_sts_is_counted_without_a_code_from_sts() {
    let closed = ClosedPort::new();
    let file = r#"
        [profiles.obs-unreachable]
        role_arn = "acs:ram::1234567890123456:role/obs-unreachable"
        logstore = "obs/unreachable"
    "#;
    let before = scrape();
    let app = TestApp::builder(closed.url().as_str())
        .file(file)
        .start()
        .await;
    let answer = app.get_with("/get_sts_token/obs-unreachable", &[]).await;
    assert_eq!(answer.status, 503);
    let page = scrape();
    let unreachable = |page: &str| {
        sample(
            page,
            "stsvend_sts_calls_total",
            &[
                ("action", "AssumeRole"),
                ("outcome", "error"),
                ("code", "unreachable"),
            ],
        )
        .unwrap_or(0.0)
    };
    assert!(unreachable(&page) - unreachable(&before) >= 1.0, "{page}");
    assert_eq!(
        sample(
            &page,
            "stsvend_rejections_total",
            &[
                ("profile", "obs-unreachable"),
                ("reason", "sts_unavailable"),
                ("check", "")
            ],
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn report_mode_counts_what_jwt_mode_would_have_refused() {
    let mock = MockSts::start(vec![]).await;
    let file = format!(
        r#"
        [profiles.obs-report]
        role_arn = "{ROLE_ARN}"
        logstore = "obs/report"
        auth = "report"
        jwt_hs256_secret = "{JWT_SECRET}"
        jwt_issuer = "https://login.example.com"
        jwt_audience = "stsvend"
        "#
    );
    let app = TestApp::builder(&mock.endpoint()).file(&file).start().await;
    let garbage = vec![("authorization".to_owned(), "Bearer not-a-jwt".to_owned())];
    assert_eq!(
        app.get_with("/get_sts_token/obs-report", &[]).await.status,
        200
    );
    assert_eq!(
        app.get_with("/get_sts_token/obs-report", &garbage)
            .await
            .status,
        200
    );
    let page = scrape();
    let would_deny = |check: &str| {
        sample(
            &page,
            "stsvend_report_mode_would_deny_total",
            &[("profile", "obs-report"), ("check", check)],
        )
    };
    assert_eq!(would_deny("missing_token"), Some(1.0));
    assert_eq!(would_deny("malformed_token"), Some(1.0));
    // Served, so not a rejection.
    assert!(!page.contains(r#"stsvend_rejections_total{profile="obs-report""#));
    app.stop().await;
}

#[tokio::test]
async fn the_base_credential_source_and_its_renewals_are_counted() {
    let uri = MockCredentialsUri::start(vec![
        UriReply::Success { lifetime: 900 },
        UriReply::Raw {
            status: 500,
            body: "try later",
        },
    ])
    .await;
    let home = TempDir::new();
    let closed = ClosedPort::new();
    let env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_CREDENTIALS_URI", uri.url()),
        ("HOME", home.path_str().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let renewals = |outcome: &str| {
        sample(
            &scrape(),
            "stsvend_base_credentials_refreshes_total",
            &[("source", "credentials_uri"), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    let (errors_before, successes_before) = (renewals("error"), renewals("success"));
    let chain = chain::load(ChainInputs {
        env: &env,
        configured: None,
        sts_endpoint: closed.url(),
        metadata_endpoint: closed.url(),
        clock: Clock::following_tokio(Clock::System.now()),
        budget: None,
    })
    .await
    .expect("the credentials URI is chosen");
    assert_eq!(
        sample(
            &scrape(),
            "stsvend_base_credentials_info",
            &[("source", "credentials_uri")]
        ),
        Some(1.0)
    );
    // Renewal is due at half the 900 s life: the first attempt fails, the retry succeeds. The
    // renewing task first gets to schedule its renewal, then time jumps past it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    jump_ahead(Duration::from_secs(451)).await;
    let renewed = eventually(Duration::from_secs(10), || async {
        renewals("error") > errors_before && renewals("success") > successes_before
    })
    .await;
    assert!(renewed, "{} calls: {}", uri.calls(), scrape());
    drop(chain);
}

/// The audit line's fields that every line has.
fn assert_common(line: &Value, answer: &Answer, profile: &str) {
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["profile"], profile, "{line}");
    assert_eq!(fields["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(
        fields["request_id"],
        answer.header("x-request-id").unwrap(),
        "{line}"
    );
    // Inside the request span too, so other lines of the request can be joined with it.
    assert_eq!(line["span"]["request_id"], fields["request_id"], "{line}");
}

#[tokio::test]
async fn a_fresh_then_a_cached_shared_token_are_audited_without_a_secret() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let first = app.get_with("/get_sts_token", &[]).await;
    let second = app.get_with("/get_sts_token", &[]).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(mock.calls(), 1, "one shared token");
    let body = first.json();
    let key_id = body["AccessKeyId"].as_str().unwrap();

    let fresh = audit_line_for(&logs, &first);
    assert_common(&fresh, &first, "default");
    let fields = &fresh["fields"];
    assert_eq!(fields["message"], "token issued");
    assert_eq!(fields["outcome"], "issued");
    assert_eq!(fields["source"], "fresh");
    assert_eq!(fields["sts_request_id"], "MOCK-0");
    assert_eq!(fields["access_key_id_prefix"], key_id[..8]);
    assert_eq!(fields["expiration"], body["Expiration"]);
    assert_eq!(fields["role_session_name"], "stsvend");
    assert!(
        fields.get("subject").is_none(),
        "no JWT, no subject: {fresh}"
    );

    let cached = audit_line_for(&logs, &second);
    assert_common(&cached, &second, "default");
    let fields = &cached["fields"];
    assert_eq!(fields["source"], "cache");
    assert!(fields.get("sts_request_id").is_none(), "{cached}");
    assert_eq!(fields["access_key_id_prefix"], key_id[..8]);

    assert_no_secret_logged(&logs, &[&first, &second]);
    app.stop().await;
}

#[tokio::test]
async fn users_are_audited_with_their_subject_and_session_name_and_refusals_with_the_reason() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    let env = [
        ("STSVEND_AUTH", "jwt"),
        ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
        ("STSVEND_JWT_ISSUER", crate::helpers::JWT_ISSUER),
        ("STSVEND_JWT_AUDIENCE", crate::helpers::JWT_AUDIENCE),
        ("STSVEND_LOGSTORE", "obs/audit"),
    ];
    let app = TestApp::builder(&mock.endpoint()).env(&env).start().await;
    let alice = vec![bearer(&hs256_jwt("alice-0001"))];
    let first = app.get_with("/get_sts_token", &alice).await;
    let second = app.get_with("/get_sts_token", &alice).await;
    let long_subject = "y".repeat(200);
    let long = app
        .get_with("/get_sts_token", &[bearer(&hs256_jwt(&long_subject))])
        .await;
    let refused = app.get_with("/get_sts_token", &[]).await;
    assert_eq!(
        [first.status, second.status, long.status, refused.status],
        [200, 200, 200, 401]
    );

    let line = audit_line_for(&logs, &first);
    assert_common(&line, &first, "default");
    let fields = &line["fields"];
    assert_eq!(fields["subject"], "alice-0001");
    assert_eq!(fields["role_session_name"], "alice-0001");
    assert_eq!(fields["source"], "fresh");
    assert!(
        fields["sts_request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("MOCK-")),
        "{line}"
    );
    assert_eq!(
        fields["access_key_id_prefix"],
        first.access_key_id().unwrap()[..8]
    );
    let line = audit_line_for(&logs, &second);
    assert_eq!(line["fields"]["source"], "cache", "{line}");
    assert_eq!(line["fields"]["subject"], "alice-0001", "{line}");

    // A subject that is not short printable text is logged as a hash; the session name is the
    // one STS was asked for.
    let line = audit_line_for(&logs, &long);
    let subject = line["fields"]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("sha1:") && subject.len() == 21,
        "{line}"
    );
    assert_eq!(
        line["fields"]["role_session_name"],
        stsvend::auth::subject::session_name(&long_subject)
    );
    assert!(!logs.text().contains(&long_subject));

    let line = audit_line_for(&logs, &refused);
    assert_common(&line, &refused, "default");
    let fields = &line["fields"];
    assert_eq!(fields["message"], "request denied");
    assert_eq!(fields["outcome"], "denied");
    assert_eq!(fields["reason"], "missing_token");
    assert!(fields.get("access_key_id_prefix").is_none(), "{line}");
    assert_eq!(audit_lines(&logs).len(), 4, "one line per request");

    assert_no_secret_logged(&logs, &[&first, &second, &long]);
    app.stop().await;
}

/// No AccessKeySecret or SecurityToken from the answers, and no full AccessKeyId, in any line.
fn assert_no_secret_logged(logs: &LogCapture, answers: &[&Answer]) {
    let text = logs.text();
    assert!(!text.is_empty());
    for answer in answers {
        let body = answer.json();
        for key in ["AccessKeySecret", "SecurityToken", "AccessKeyId"] {
            let value = body[key].as_str().unwrap();
            assert!(!text.contains(value), "{key} appears in the log");
        }
    }
}
