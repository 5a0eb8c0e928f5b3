//! The secret-leak test of issue #2, point 8: the real binary, at `RUST_LOG=trace`, goes through a
//! success and every STS failure kind, then stops; its whole output and every error body it
//! served are searched for the AccessKey secret, the security token and every issued credential,
//! raw and in the encodings a log line could carry them in.

use std::collections::HashMap;
use std::time::Duration;

use stsvend::config::{self, ConfigFile, Mode};
use stsvend::sts::signature::percent_encode;

use crate::helpers::{MockSts, Reply, ServiceProcess, TempFile, eventually, http_client};

const KEY_ID: &str = "LTAI5tSecretLeakTest";
const ACCOUNT: &str = "1234567890123456";

fn arn(role: &str) -> String {
    format!("acs:ram::{ACCOUNT}:role/{role}")
}

/// The service's own secret and token, unique per run; the token has `+`, `/` and `=` so that
/// its percent-encoded forms differ from it.
struct BaseSecrets {
    secret: String,
    token: String,
}

impl BaseSecrets {
    fn new() -> Self {
        Self {
            secret: format!("BaseSecret{}", uuid::Uuid::new_v4().simple()),
            token: format!("CAIS+base/Token={}/x+y==", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// Every form of `value` that must not appear: raw, percent-encoded once and twice (the query
/// and the string-to-sign), JSON- and Debug-escaped, and the random part alone (which survives
/// any encoding and truncation).
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![
        value.to_owned(),
        percent_encode(value),
        percent_encode(&percent_encode(value)),
        form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        format!("{value:?}").trim_matches('"').to_owned(),
        serde_json::to_string(value)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        format!("{:?}", value.as_bytes()),
    ];
    if let Some(random) = value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|part| part.len() >= 32)
    {
        forms.push(random.to_owned());
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Where the first needle is found in `haystack`, described without showing the value.
fn find_leak(haystack: &str, needles: &[(String, String)]) -> Option<String> {
    needles.iter().find_map(|(what, needle)| {
        haystack.find(needle.as_str()).map(|at| {
            let line = haystack[..at].matches('\n').count() + 1;
            format!(
                "{what} ({} chars) found at byte {at}, line {line} of {} lines",
                needle.len(),
                haystack.lines().count()
            )
        })
    })
}

/// Asks `path` until its error code is `code` (the first answer may be `token_not_ready` while
/// the first call is in flight), bounded by 8 s. Returns the status and body.
async fn settled(service: &ServiceProcess, path: &str, code: &str) -> (u16, String) {
    let client = http_client(Duration::from_secs(8));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut seen = Vec::new();
    loop {
        let response = client
            .get(service.url(path))
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let got = json["error"]["code"].as_str().unwrap_or("").to_owned();
        if got == code {
            return (status, body);
        }
        seen.push(format!("{status} {got}"));
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered `{code}`; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_the_clients_at_trace_level() {
    let base = BaseSecrets::new();
    let mock = MockSts::start(vec![]).await;
    mock.set_fallback(Reply::error(500, "InternalError"));
    mock.for_role(&arn("ok"), Reply::Success { lifetime: 3600 });
    mock.for_role(&arn("denied"), Reply::error(403, "NoPermission"));
    mock.for_role(&arn("throttled"), Reply::error(400, "Throttling.User"));
    mock.for_role(
        &arn("garbage"),
        Reply::Raw {
            status: 200,
            body: "<html>not json",
        },
    );
    mock.for_role(&arn("broken"), Reply::error(500, "InternalError"));
    // What real STS answers to a bad signature: its string-to-sign, which holds the request's
    // SecurityToken (percent-encoded twice, as it is in a string-to-sign).
    let string_to_sign = format!(
        "POST&%2F&AccessKeyId%3D{KEY_ID}%26Action%3DAssumeRole%26Format%3DJSON%26RoleArn%3D{}%26SecurityToken%3D{}%26SignatureMethod%3DHMAC-SHA1",
        percent_encode(&percent_encode(&arn("sigmismatch"))),
        percent_encode(&percent_encode(&base.token)),
    );
    let mismatch = serde_json::json!({
        "RequestId": "MOCK-SIG-1",
        "HostId": "sts.aliyuncs.com",
        "Code": "SignatureDoesNotMatch",
        "Message": format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
        "Recommend": "https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch&product=Sts",
    })
    .to_string();
    mock.for_role(
        &arn("sigmismatch"),
        Reply::Raw {
            status: 400,
            body: Box::leak(mismatch.into_boxed_str()),
        },
    );

    let roles = [
        "ok",
        "denied",
        "throttled",
        "garbage",
        "broken",
        "sigmismatch",
    ];
    let mut file = String::from("# every STS outcome, one profile each\n");
    for role in roles {
        file.push_str(&format!(
            "\n[profiles.{role}]\nrole_arn = \"{}\"\nlogstore = \"leak-project/{role}-logs\"\n",
            arn(role)
        ));
    }
    let file = TempFile::new("secrets.toml", &file);
    let endpoint = mock.endpoint();
    let service = ServiceProcess::start(
        &["serve", "--config", file.path_str()],
        &[
            ("RUST_LOG", "trace"),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", &base.secret),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", &base.token),
            ("STSVEND_STS_ENDPOINT", &endpoint),
        ],
    )
    .await;
    let mut service = service;
    let client = http_client(Duration::from_secs(10));

    // Success: the one place issued secrets are meant to go.
    let response = client
        .get(service.url("/get_sts_token/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: serde_json::Value = response.json().await.unwrap();
    let served_secret = served["AccessKeySecret"].as_str().unwrap().to_owned();
    let served_token = served["SecurityToken"].as_str().unwrap().to_owned();

    // Every failure kind, until the refresher has settled on its final answer.
    let mut error_bodies = Vec::new();
    for (role, status, code) in [
        ("denied", 502, "sts_rejected"),
        ("sigmismatch", 502, "sts_rejected"),
        ("throttled", 503, "sts_unavailable"),
        ("garbage", 503, "sts_unavailable"),
        ("broken", 503, "sts_unavailable"),
    ] {
        let path = format!("/get_sts_token/{role}");
        let (got, body) = settled(&service, &path, code).await;
        assert_eq!(got, status, "{path}: {body}");
        error_bodies.push((path, body));
    }
    for (method, path, status) in [
        ("GET", "/get_sts_token", 404),
        ("GET", "/get_sts_token/nobody", 404),
        ("GET", "/get_sts_token/%2E%2E%2Fok", 404),
        ("GET", "/nothing/here", 404),
        ("POST", "/get_sts_token/ok", 405),
        ("DELETE", "/get_sts_token", 405),
        ("GET", "/readyz", 503),
    ] {
        let response = client
            .request(method.parse().unwrap(), service.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        error_bodies.push((format!("{method} {path}"), response.text().await.unwrap()));
    }

    // Let every failing profile go through its retry path (backoff 0.5-1 s) at least once.
    let retried = eventually(Duration::from_secs(8), || async {
        let requests = mock.requests();
        roles.iter().filter(|r| **r != "ok").all(|role| {
            requests
                .iter()
                .filter(|params| params.get("RoleArn") == Some(&arn(role)))
                .count()
                >= 2
        })
    })
    .await;
    assert!(retried, "every failing profile retried");

    // Stop it and collect everything it printed.
    service.signal("TERM");
    let exit = service.wait_exit(Duration::from_secs(12)).await;
    if exit.is_none() {
        service.kill().await;
    }
    let (stdout, stderr) = service.output().await;
    let output = format!("{stdout}\n{stderr}");
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "stsvend exits 0 after SIGTERM (exit: {exit:?}, {} lines of output)",
        output.lines().count()
    );

    // The net must have caught something for the search to mean anything.
    let issued = mock.issued();
    assert!(!issued.is_empty(), "the mock issued credentials");
    assert!(
        issued
            .iter()
            .any(|i| i.secret == served_secret && i.token == served_token),
        "the service served what the mock issued"
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.get("SecurityToken") == Some(&base.token)),
        "every call carried the base token, so it was in every signed query"
    );
    assert!(
        output.lines().filter(|l| l.contains("TRACE")).count() > 5,
        "trace level was on ({} lines of output)",
        output.lines().count()
    );
    assert!(
        output.contains("AssumeRole"),
        "the log talks about AssumeRole"
    );
    for code in [
        "NoPermission",
        "SignatureDoesNotMatch",
        "Throttling.User",
        "InternalError",
    ] {
        assert!(
            output.contains(code),
            "the operator is told STS's code {code}"
        );
    }

    let mut needles: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, value: &str| {
        for form in forms(value) {
            needles.push((format!("{what} (form {})", needles.len()), form));
        }
    };
    add("the AccessKey secret", &base.secret);
    add("the base security token", &base.token);
    add("the served secret", &served_secret);
    add("the served token", &served_token);
    for (n, one) in issued.iter().enumerate() {
        add(&format!("issued secret #{n}"), &one.secret);
        add(&format!("issued token #{n}"), &one.token);
    }
    assert!(
        find_leak(&served.to_string(), &needles).is_some(),
        "the search finds the served secret in the served body"
    );
    if let Some(leak) = find_leak(&output, &needles) {
        panic!("a secret leaked into the output: {leak}");
    }

    // Error bodies: no secret, and nothing about the upstream either.
    let mut body_needles = needles.clone();
    for role in roles {
        body_needles.push((format!("role ARN of {role}"), arn(role)));
    }
    body_needles.push(("the account id".into(), ACCOUNT.into()));
    body_needles.push(("the STS endpoint".into(), endpoint.clone()));
    body_needles.push(("the STS address".into(), mock.addr.to_string()));
    body_needles.push(("the STS port".into(), format!(":{}", mock.addr.port())));
    body_needles.push(("the word Signature".into(), "Signature".into()));
    body_needles.push(("the word signature".into(), "signature".into()));
    for (what, body) in &error_bodies {
        if let Some(leak) = find_leak(body, &body_needles) {
            panic!("the error body of {what} leaks: {leak}");
        }
        if !what.contains("readyz") {
            let json: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|_| panic!("{what} answers JSON"));
            assert!(json["error"]["code"].is_string(), "{what}: {body}");
            assert!(json["error"]["request_id"].is_string(), "{what}: {body}");
        }
    }
}

#[test]
fn the_debug_form_of_a_loaded_config_shows_no_secret() {
    let base = BaseSecrets::new();
    let file_secret = format!("FileSecret{}", uuid::Uuid::new_v4().simple());
    let env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", base.secret.as_str()),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", base.token.as_str()),
        (
            "STSVEND_ROLE_ARN",
            "acs:ram::1234567890123456:role/sls-web-tracking",
        ),
        ("STSVEND_LOGSTORE", "my-project/web-logs"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = config::load(None, &env, Mode::Serve).expect("valid");
    let shown = format!("{config:?} {config:#?} {:?}", config.credentials);
    assert!(shown.contains(KEY_ID), "the key id is shown");
    for value in [&base.secret, &base.token] {
        for form in forms(value) {
            assert!(!shown.contains(&form), "Debug of Config shows a secret");
        }
    }

    // Credentials from the file, overridden in part by the environment.
    let file = ConfigFile {
        path: "secrets.toml".into(),
        text: format!(
            "access_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{file_secret}\"\nsecurity_token = \"{}\"\n",
            base.token
        ),
    };
    let env: HashMap<String, String> = [(
        "STSVEND_ROLE_ARN".to_owned(),
        "acs:ram::1234567890123456:role/r".to_owned(),
    )]
    .into();
    let config = config::load(Some(&file), &env, Mode::Serve).expect("valid");
    let credentials = config
        .credentials
        .as_ref()
        .expect("credentials from the file");
    assert_eq!(credentials.access_key_secret(), file_secret);
    let shown = format!("{config:?} {config:#?}");
    for value in [&file_secret, &base.token] {
        for form in forms(value) {
            assert!(
                !shown.contains(&form),
                "Debug of Config shows a file secret"
            );
        }
    }

    // Nor do the errors of a configuration that holds a secret.
    let mut bad = env;
    bad.insert("STSVEND_ROLE_ARN".into(), "not-an-arn".into());
    bad.insert("STSVEND_DURATION_SECONDS".into(), "5".into());
    let errors = config::load(Some(&file), &bad, Mode::Serve).expect_err("invalid");
    let shown = format!("{errors:?} {errors}");
    for value in [&file_secret, &base.token] {
        assert!(
            !shown.contains(value.as_str()),
            "config errors show a secret"
        );
    }
}

/// Mini program login (issue 16): the WeChat AppSecret, the Alipay app private key and the
/// session secrets appear in no `Debug` form of the loaded config, nor in its errors.
#[test]
fn the_debug_form_of_a_login_config_shows_no_secret() {
    let fixture = |name: &str| {
        format!(
            "{}/tests/fixtures/alipay/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let private_key = std::fs::read_to_string(fixture("app_private_pkcs8.pem")).unwrap();
    let app_secret = format!("{}", uuid::Uuid::new_v4().simple());
    let session_secret = format!("Session{}{}", uuid::Uuid::new_v4().simple(), "x".repeat(8));
    let previous = format!("Previous{}{}", uuid::Uuid::new_v4().simple(), "y".repeat(8));
    let mut env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "base-secret"),
        ("STSVEND_ROLE_ARN", "acs:ram::1234567890123456:role/web"),
        ("STSVEND_LOGSTORE", "my-project/web-logs"),
        ("STSVEND_AUTH", "wechat,alipay"),
        ("STSVEND_WECHAT_APPID", "wx1234567890abcdef"),
        ("STSVEND_WECHAT_APP_SECRET", app_secret.as_str()),
        ("STSVEND_ALIPAY_APPID", "2021000000000001"),
        ("STSVEND_SESSION_SECRET", session_secret.as_str()),
        ("STSVEND_SESSION_PREVIOUS_SECRET", previous.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert(
        "STSVEND_ALIPAY_APP_PRIVATE_KEY_FILE".into(),
        fixture("app_private_pkcs8.pem"),
    );
    env.insert(
        "STSVEND_ALIPAY_PUBLIC_KEY_FILE".into(),
        fixture("alipay_public.pem"),
    );
    let config = config::load(None, &env, Mode::Serve).expect("valid");
    let shown = format!("{config:?} {config:#?}");
    let key_lines: Vec<&str> = private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty());
    for secret in [&app_secret, &session_secret, &previous]
        .into_iter()
        .map(String::as_str)
        .chain(key_lines.iter().copied())
    {
        assert!(
            !shown.contains(secret),
            "Debug of a login config shows a secret"
        );
    }

    // Nor do the errors of a login configuration that holds them.
    env.insert("STSVEND_SESSION_TTL_SECONDS".into(), "5".into());
    env.insert("STSVEND_WECHAT_APPID".into(), "not an app id".into());
    let errors = config::load(None, &env, Mode::Serve).expect_err("invalid");
    let shown = format!("{errors:?} {errors}");
    for secret in [&app_secret, &session_secret, &previous] {
        assert!(
            !shown.contains(secret.as_str()),
            "config errors show a secret"
        );
    }
}

/// Mini program login at `RUST_LOG=trace` (issue 16): the real binary in `stsvend dev` logs in
/// through the emulated WeChat (whose AppSecret rides in the request's query) and Alipay (whose
/// request is signed with the app's private key); neither the AppSecret, the private key,
/// WeChat's `session_key` nor the session token reaches the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_secret_reaches_the_logs_at_trace_level() {
    use stsvend::emulator::Emulator;

    let mut service = ServiceProcess::start(&["dev"], &[("RUST_LOG", "trace")]).await;
    let client = http_client(Duration::from_secs(10));
    let mut sessions = Vec::new();
    for platform in ["wechat", "alipay"] {
        let answer = client
            .post(service.url("/session/mini"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"platform":"{platform}","code":"dev:leak"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(body.get("session_key").is_none());
        sessions.push(body["SessionToken"].as_str().unwrap().to_owned());
    }
    service.signal("TERM");
    assert!(service.wait_exit(Duration::from_secs(10)).await.is_some());
    let (stdout, stderr) = service.output().await;
    let output = format!("{stdout}{stderr}");
    assert!(output.contains("TRACE"), "trace lines were written");
    let (_, wechat_secret) = Emulator::dev_wechat_app();
    let (_, private_key, _) = Emulator::dev_alipay_app();
    let key_lines = private_key.lines().filter(|l| !l.starts_with("-----"));
    for secret in sessions
        .iter()
        .map(String::as_str)
        .chain([wechat_secret, "session_key"])
        .chain(key_lines)
    {
        assert!(!output.contains(secret), "a login secret in the output");
    }
}
