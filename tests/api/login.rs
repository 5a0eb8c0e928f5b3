//! Mini program login (issue 16) through the real router, against in-process fakes of WeChat's
//! `jscode2session` and Alipay's gateway: `POST /session` for each platform, every platform
//! error the issue names, a replayed code, a forged Alipay answer, sessions bound to their
//! profile, expiry, secret rotation, sessions and JWTs never passing for each other, the login
//! attempt limit, bad requests, and no secret in any answer or log line.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, RawQuery, State};
use axum::routing::{get, post};
use serde_json::json;
use stsvend::clock::Clock;
use stsvend::login::alipay_sign::{AlipayPublicKey, AppPrivateKey, signing_content};

use crate::helpers::{
    Answer, FakeServer, JWT_SECRET, LogCapture, MockSts, TempFile, TestApp, bearer, hs256_jwt,
    jump_ahead, send,
};

const APPID: &str = "wx1234567890abcdef";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktbmV2ZXItbGVhaw==";
const SESSION_SECRET: &str = "session-secret-0123456789-0123456789-abcdef";
const ALIPAY_APPID: &str = "2021000000000001";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/alipay/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// WeChat's `jscode2session`: `good-<user>` once each; a few codes give WeChat's errors.
#[derive(Default)]
struct Wechat {
    used: Mutex<HashSet<String>>,
    calls: Mutex<u32>,
}

async fn jscode2session(
    State(wechat): State<Arc<Wechat>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> ([(&'static str, &'static str); 1], String) {
    *wechat.calls.lock().unwrap() += 1;
    let text = [("content-type", "text/plain")];
    if query.get("appid").map(String::as_str) != Some(APPID)
        || query.get("secret").map(String::as_str) != Some(APP_SECRET)
    {
        return (
            text,
            json!({"errcode": 40013, "errmsg": "invalid appid"}).to_string(),
        );
    }
    let code = query.get("js_code").cloned().unwrap_or_default();
    let errcode = match code.as_str() {
        "risky" => 40226,
        "frequent" => 45011,
        "busy" => -1,
        "garbage" => return (text, "<html>oops</html>".to_owned()),
        _ if !wechat.used.lock().unwrap().insert(code.clone()) => 40163,
        good if good.starts_with("good-") => 0,
        _ => 40029,
    };
    if errcode != 0 {
        return (
            text,
            json!({"errcode": errcode, "errmsg": "refused"}).to_string(),
        );
    }
    let user = &code["good-".len()..];
    let answer = json!({"openid": format!("o-{user}"), "session_key": SESSION_KEY});
    (text, answer.to_string())
}

/// Alipay's gateway: checks the request's RSA2 signature with the app's public key, answers
/// `good-<user>` once each with a signed answer; `forged` is signed with the wrong key.
struct Alipay {
    app_public: AlipayPublicKey,
    alipay_private: AppPrivateKey,
    wrong_private: AppPrivateKey,
    used: Mutex<HashSet<String>>,
}

async fn gateway(
    State(alipay): State<Arc<Alipay>>,
    RawQuery(query): RawQuery,
    body: String,
) -> String {
    let mut params: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .chain(form_urlencoded::parse(body.as_bytes()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let sign = params.remove("sign").unwrap_or_default();
    let content = signing_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let code = params.get("code").cloned().unwrap_or_default();
    let (member_name, member) = if !alipay.app_public.verifies(content.as_bytes(), &sign) {
        (
            "error_response",
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}),
        )
    } else if params.get("app_id").map(String::as_str) != Some(ALIPAY_APPID) {
        (
            "error_response",
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"}),
        )
    } else if code.starts_with("good-") && alipay.used.lock().unwrap().insert(code.clone()) {
        let user = &code["good-".len()..];
        let answer = json!({"user_id": "2088000000000001", "open_id": format!("a-{user}"), "access_token": "authusrB", "expires_in": "1296000"});
        ("alipay_system_oauth_token_response", answer)
    } else if code == "forged" {
        let answer = json!({"open_id": "a-forged", "access_token": "x"});
        let text = answer.to_string();
        let sign = alipay.wrong_private.sign(&text).unwrap();
        return format!(r#"{{"alipay_system_oauth_token_response":{text},"sign":"{sign}"}}"#);
    } else {
        (
            "error_response",
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid"}),
        )
    };
    let text = member.to_string();
    let sign = alipay.alipay_private.sign(&text).unwrap();
    format!(r#"{{"{member_name}":{text},"sign":"{sign}"}}"#)
}

struct Platforms {
    wechat: Arc<Wechat>,
    wechat_server: FakeServer,
    alipay_server: FakeServer,
    private_key_file: TempFile,
    public_key_file: TempFile,
}

impl Platforms {
    async fn start() -> Self {
        let wechat = Arc::new(Wechat::default());
        let wechat_server = FakeServer::start(
            axum::Router::new()
                .route("/sns/jscode2session", get(jscode2session))
                .with_state(wechat.clone()),
        )
        .await;
        let alipay = Arc::new(Alipay {
            app_public: AlipayPublicKey::from_text(&fixture("app_public.pem")).unwrap(),
            alipay_private: AppPrivateKey::from_text(&fixture("alipay_private_pkcs8.pem")).unwrap(),
            wrong_private: AppPrivateKey::from_text(&fixture("app_private_pkcs8.pem")).unwrap(),
            used: Mutex::default(),
        });
        let alipay_server = FakeServer::start(
            axum::Router::new()
                .route("/gateway.do", post(gateway))
                .with_state(alipay),
        )
        .await;
        Self {
            wechat,
            wechat_server,
            alipay_server,
            private_key_file: TempFile::new("app.pem", &fixture("app_private_pkcs1.pem")),
            public_key_file: TempFile::new("alipay.pem", &fixture("alipay_public.pem")),
        }
    }

    fn wechat_calls(&self) -> u32 {
        *self.wechat.calls.lock().unwrap()
    }

    /// A file with profile `default` taking both platforms and profile `wx` taking WeChat.
    fn config(&self, extra_global: &str) -> String {
        let wechat = self.wechat_server.url("");
        let gateway = self.alipay_server.url("/gateway.do");
        let private = self.private_key_file.path_str();
        let public = self.public_key_file.path_str();
        format!(
            r#"session_secret = "{SESSION_SECRET}"
{extra_global}
[profiles.default]
role_arn = "acs:ram::1234567890123456:role/web"
logstore = "my-proj/web-log"
auth = "wechat,alipay"
wechat_appid = "{APPID}"
wechat_app_secret = "{APP_SECRET}"
wechat_api_base = "{wechat}"
alipay_appid = "{ALIPAY_APPID}"
alipay_app_private_key_file = "{private}"
alipay_public_key_file = "{public}"
alipay_gateway = "{gateway}"

[profiles.wx]
role_arn = "acs:ram::1234567890123456:role/web"
logstore = "my-proj/web-log"
auth = "wechat"
wechat_appid = "{APPID}"
wechat_app_secret = "{APP_SECRET}"
wechat_api_base = "{wechat}"
"#
        )
    }

    async fn app(&self, mock: &MockSts, extra_global: &str) -> TestApp {
        self.app_with_clock(mock, extra_global, None).await
    }

    async fn app_with_clock(&self, mock: &MockSts, extra: &str, clock: Option<Clock>) -> TestApp {
        let mut builder = TestApp::builder(&mock.endpoint())
            .env(&[("STSVEND_ROLE_ARN", ""), ("STSVEND_LOGSTORE", "")])
            .file(&self.config(extra));
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        let app = builder.start().await;
        app.wait_ready().await;
        app
    }
}

async fn log_in(app: &TestApp, path: &str, platform: &str, code: &str) -> Answer {
    let body = json!({"platform": platform, "code": code}).to_string();
    post_json(app, path, &body).await
}

async fn post_json(app: &TestApp, path: &str, body: &str) -> Answer {
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn token_with(app: &TestApp, path: &str, session: &str) -> Answer {
    app.get_with(path, &[bearer(session)]).await
}

fn session_of(answer: &Answer) -> String {
    answer.json()["SessionToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_wechat_login_gives_a_session_and_the_first_token_and_the_session_refreshes_it() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let (logs, _guard) = LogCapture::start();
    let app = platforms.app(&mock, "").await;
    let before = mock.calls();

    let login = log_in(&app, "/session", "wechat", "good-alice").await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let body = login.json();
    assert!(body["SessionToken"].as_str().unwrap().starts_with("sv1."));
    assert!(body["SessionExpiration"].as_str().unwrap().ends_with('Z'));
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
    ] {
        assert!(body["Credentials"][field].is_string(), "{field}: {body}");
    }
    let refreshed = token_with(&app, "/get_sts_token", &session_of(&login)).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(
        refreshed.json()["AccessKeyId"],
        body["Credentials"]["AccessKeyId"],
        "the user's cached token"
    );
    assert_eq!(mock.calls() - before, 1, "one AssumeRole for the user");
    let names: Vec<String> = mock
        .requests()
        .iter()
        .map(|p| p["RoleSessionName"].clone())
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("o-alice"));

    let text = logs.text();
    for secret in [
        APP_SECRET,
        SESSION_KEY,
        "good-alice",
        SESSION_SECRET,
        &session_of(&login),
    ] {
        assert!(!text.contains(secret), "{secret} logged");
    }
    assert!(!login.body.contains(SESSION_KEY), "session_key answered");
}

#[tokio::test]
async fn an_alipay_login_is_verified_and_a_forged_answer_is_refused() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let (logs, _guard) = LogCapture::start();
    let app = platforms.app(&mock, "").await;

    let login = log_in(&app, "/session", "alipay", "good-bob").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let refreshed = token_with(&app, "/get_sts_token", &session_of(&login)).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let names: Vec<String> = mock
        .requests()
        .iter()
        .map(|p| p["RoleSessionName"].clone())
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("a-bob"));

    let forged = log_in(&app, "/session", "alipay", "forged").await;
    assert_eq!(forged.status, 503, "{}", forged.body);
    assert_eq!(forged.error_code().as_deref(), Some("login_unavailable"));
    assert!(forged.header("retry-after").is_some());
    let replay = log_in(&app, "/session", "alipay", "good-bob").await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert_eq!(replay.error_code().as_deref(), Some("invalid_login_code"));

    let private_key = fixture("app_private_pkcs1.pem");
    let key_line = private_key.lines().nth(1).unwrap();
    assert!(!logs.text().contains(key_line), "private key logged");
}

#[tokio::test]
async fn every_platform_error_has_its_answer() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let app = platforms.app(&mock, "").await;
    let cases = [
        ("wechat", "nonsense", 401, "invalid_login_code", false),
        ("wechat", "risky", 403, "login_blocked", false),
        ("wechat", "frequent", 429, "platform_rate_limited", true),
        ("wechat", "busy", 503, "login_unavailable", true),
        ("wechat", "garbage", 503, "login_unavailable", true),
        ("alipay", "nonsense", 401, "invalid_login_code", false),
    ];
    for (platform, code, status, error, retry) in cases {
        let answer = log_in(&app, "/session", platform, code).await;
        assert_eq!(answer.status, status, "{platform} {code}: {}", answer.body);
        assert_eq!(
            answer.error_code().as_deref(),
            Some(error),
            "{platform} {code}"
        );
        assert_eq!(
            answer.header("retry-after").is_some(),
            retry,
            "{platform} {code}"
        );
    }
    let first = log_in(&app, "/session", "wechat", "good-carol").await;
    assert_eq!(first.status, 200);
    let replay = log_in(&app, "/session", "wechat", "good-carol").await;
    assert_eq!(
        replay.status, 401,
        "a replayed code is the platform's to refuse"
    );
    assert_eq!(replay.error_code().as_deref(), Some("invalid_login_code"));
    let wx_only = log_in(&app, "/session/wx", "alipay", "good-dan").await;
    assert_eq!(wx_only.status, 400, "{}", wx_only.body);
    assert_eq!(
        wx_only.error_code().as_deref(),
        Some("platform_not_accepted")
    );
}

#[tokio::test]
async fn a_session_is_bound_to_its_profile_and_never_passes_for_a_jwt_or_the_reverse() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let app = platforms.app(&mock, "").await;
    let login = log_in(&app, "/session", "wechat", "good-erin").await;
    let session = session_of(&login);
    let elsewhere = token_with(&app, "/get_sts_token/wx", &session).await;
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.body);
    assert_eq!(elsewhere.error_code().as_deref(), Some("invalid_session"));
    let on_wx = log_in(&app, "/session/wx", "wechat", "good-erin2").await;
    assert_eq!(
        token_with(&app, "/get_sts_token/wx", &session_of(&on_wx))
            .await
            .status,
        200
    );

    let jwt = hs256_jwt("erin");
    let as_session = token_with(&app, "/get_sts_token", &jwt).await;
    assert_eq!(as_session.status, 401);
    assert_eq!(as_session.error_code().as_deref(), Some("invalid_session"));
    let none = app.get_with("/get_sts_token", &[]).await;
    assert_eq!(none.status, 401, "no session, no token: {}", none.body);

    let jwt_app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
            ("STSVEND_JWT_ACCEPT_ANY_AUDIENCE", "true"),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ])
        .start()
        .await;
    let refused = token_with(&jwt_app, "/get_sts_token", &session).await;
    assert_eq!(refused.status, 401, "a session is no JWT: {}", refused.body);
}

#[tokio::test]
async fn an_expired_session_says_so_and_rotation_keeps_old_sessions_until_they_expire() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let clock = Clock::following_tokio(Clock::System.now());
    let ttl = "session_ttl_seconds = 120";
    let app = platforms
        .app_with_clock(&mock, ttl, Some(clock.clone()))
        .await;
    let session = session_of(&log_in(&app, "/session", "wechat", "good-fay").await);
    drop(app);

    let rolled = format!("session_previous_secret = \"{SESSION_SECRET}\"\n{ttl}");
    let config = platforms.config(&rolled).replacen(
        &format!("session_secret = \"{SESSION_SECRET}\""),
        "session_secret = \"a-brand-new-session-secret-0123456789-xyz\"",
        1,
    );
    let rotated = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_ROLE_ARN", ""), ("STSVEND_LOGSTORE", "")])
        .file(&config)
        .clock(clock)
        .start()
        .await;
    rotated.wait_ready().await;
    let still = token_with(&rotated, "/get_sts_token", &session).await;
    assert_eq!(
        still.status, 200,
        "the previous secret's session: {}",
        still.body
    );

    let unrolled = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_ROLE_ARN", ""), ("STSVEND_LOGSTORE", "")])
        .file(&config.replace(
            &format!("session_previous_secret = \"{SESSION_SECRET}\""),
            "",
        ))
        .start()
        .await;
    let dropped = token_with(&unrolled, "/get_sts_token", &session).await;
    assert_eq!(
        dropped.status, 401,
        "without the previous secret: {}",
        dropped.body
    );
    assert_eq!(dropped.error_code().as_deref(), Some("invalid_session"));

    jump_ahead(Duration::from_secs(121)).await;
    let expired = token_with(&rotated, "/get_sts_token", &session).await;
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert_eq!(expired.error_code().as_deref(), Some("session_expired"));
}

#[tokio::test]
async fn login_attempts_are_limited_per_address_before_the_platform_is_asked() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let limits = "login_rate_limit_per_minute = 1\nlogin_rate_limit_burst = 3";
    let app = platforms.app(&mock, limits).await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        statuses.push(log_in(&app, "/session", "wechat", &format!("bogus-{n}")).await);
    }
    let limited = statuses.iter().filter(|a| a.status == 429).count();
    assert_eq!(
        limited,
        3,
        "{:?}",
        statuses.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let last = statuses.last().unwrap();
    assert_eq!(last.error_code().as_deref(), Some("login_attempts_limited"));
    assert!(last.header("retry-after").is_some());
    assert_eq!(
        platforms.wechat_calls(),
        3,
        "a refused attempt costs the platform nothing"
    );
}

#[tokio::test]
async fn bad_login_requests_name_what_is_wrong() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let app = platforms.app(&mock, "").await;
    let cases = [
        ("not json", "invalid_login_request", "JSON object"),
        (r#"{"code":"x"}"#, "invalid_login_request", "`platform`"),
        (
            r#"{"platform":"weibo","code":"x"}"#,
            "invalid_login_request",
            "`platform`",
        ),
        (
            r#"{"platform":"wechat"}"#,
            "invalid_login_request",
            "`code`",
        ),
        (
            r#"{"platform":"wechat","code":""}"#,
            "invalid_login_request",
            "`code`",
        ),
    ];
    for (body, code, names) in cases {
        let answer = post_json(&app, "/session", body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.error_code().as_deref(), Some(code), "{body}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(names), "{body}: {message}");
    }
    let huge = format!(r#"{{"platform":"wechat","code":"{}"}}"#, "x".repeat(10_000));
    assert_eq!(post_json(&app, "/session", &huge).await.status, 400);
    let client = &app.client;
    let plain = send(client, reqwest::Method::POST, &app.url("/session"), &[]).await;
    assert_eq!(plain.status, 415, "{}", plain.body);
    let get = app.get_with("/session", &[]).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    let unknown = log_in(&app, "/session/nobody", "wechat", "good-x").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code().as_deref(), Some("unknown_profile"));
    assert_eq!(platforms.wechat_calls(), 0, "no bad request reached WeChat");
}

#[test]
fn a_login_profile_without_its_settings_does_not_start() {
    let problems = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-test"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
            ("STSVEND_ROLE_ARN", "acs:ram::1234567890123456:role/web"),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_AUTH", "wechat"),
        ];
        env.extend_from_slice(extra);
        let env = env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        match stsvend::config::load(None, &env, stsvend::config::Mode::Serve) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        }
    };
    let missing = problems(&[]);
    for named in [
        "STSVEND_WECHAT_APPID",
        "STSVEND_WECHAT_APP_SECRET",
        "STSVEND_SESSION_SECRET",
    ] {
        assert!(missing.contains(named), "{named} not named in {missing}");
    }
    let short = problems(&[
        ("STSVEND_WECHAT_APPID", APPID),
        ("STSVEND_WECHAT_APP_SECRET", APP_SECRET),
        ("STSVEND_SESSION_SECRET", "too-short"),
    ]);
    assert!(short.contains("STSVEND_SESSION_SECRET"), "{short}");
    assert!(
        !short.contains("too-short") && !short.contains(APP_SECRET),
        "{short}"
    );
    let both = problems(&[
        ("STSVEND_WECHAT_APPID", APPID),
        ("STSVEND_WECHAT_APP_SECRET", APP_SECRET),
        ("STSVEND_SESSION_SECRET", SESSION_SECRET),
        ("STSVEND_ALIPAY_APPID", ALIPAY_APPID),
    ]);
    assert!(both.contains("does not accept alipay logins"), "{both}");
    let ok = problems(&[
        ("STSVEND_WECHAT_APPID", APPID),
        ("STSVEND_WECHAT_APP_SECRET", APP_SECRET),
        ("STSVEND_SESSION_SECRET", SESSION_SECRET),
    ]);
    assert_eq!(ok, "");
}

/// Every kind of `POST /session` answer, and a token request with a good and a bad session,
/// validates against the public OpenAPI document.
#[tokio::test]
async fn every_login_answer_matches_the_openapi_document() {
    let mock = MockSts::start(vec![]).await;
    let platforms = Platforms::start().await;
    let app = platforms
        .app(
            &mock,
            "login_rate_limit_per_minute = 1\nlogin_rate_limit_burst = 12",
        )
        .await;
    let doc: serde_json::Value = serde_json::from_str(stsvend::http::openapi::PUBLIC).unwrap();
    let post = |path: &str, content_type: Option<&str>, body: String| {
        let mut request = app.client.post(app.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");
    let login =
        |platform: &str, code: &str| json!({"platform": platform, "code": code}).to_string();
    let cases = [
        ("/session", json, login("wechat", "good-gus"), 200),
        ("/session", json, login("alipay", "good-gus"), 200),
        ("/session", json, "{}".to_owned(), 400),
        ("/session", json, login("wechat", "nonsense"), 401),
        ("/session", json, login("wechat", "risky"), 403),
        ("/session/nobody", json, login("wechat", "good-x"), 404),
        ("/session", None, login("wechat", "good-y"), 415),
        ("/session", json, login("wechat", "frequent"), 429),
        ("/session", json, login("wechat", "busy"), 503),
        ("/session/wx", json, login("alipay", "good-z"), 400),
    ];
    let mut session = String::new();
    for (path, content_type, body, status) in cases {
        let response = post(path, content_type, body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let doc_path = path
            .replace("/nobody", "/{profile}")
            .replace("/wx", "/{profile}");
        let body = crate::openapi::check_answer(&doc, &doc_path, "post", response).await;
        if status == 200 {
            session = body["SessionToken"].as_str().unwrap().to_owned();
        }
    }
    let get = app.client.get(app.url("/session")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    crate::openapi::check_answer(&doc, "/session", "post", get).await;
    for (token, status) in [(session.as_str(), 200), ("sv1.bogus~bogus", 401)] {
        let response = app
            .client
            .get(app.url("/get_sts_token"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        crate::openapi::check_answer(&doc, "/get_sts_token", "get", response).await;
    }
    for _ in 0..12 {
        let response = post("/session", json, login("wechat", "nonsense"))
            .await
            .unwrap();
        if response.status() == 429 {
            crate::openapi::check_answer(&doc, "/session", "post", response).await;
            return;
        }
    }
    panic!("the login attempt limit never answered 429");
}
