//! The emulated WeChat `auth.code2Session`: `GET /sns/jscode2session`, answering as WeChat does
//! (PROTOCOL.md §11.1): always `200`, JSON served as `text/plain`, failures as `errcode` and
//! `errmsg` (with a `rid`, as WeChat appends one).
//!
//! Checks, in order: `appid` (missing 41002, not the dev app's 40013), `secret` (missing 41004,
//! wrong 40125), `grant_type=authorization_code` (40002), `js_code` present (41008); then a
//! failure a test asked for ([`WechatState::fail_next`]); then the code: a dev code
//! ([`super::dev_login::dev_user`]) used for the first time in five minutes logs its user in,
//! a replay gets 40163, anything else 40029, and a full memory of used codes -1 (busy).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rand::RngExt as _;
use serde_json::json;

use super::dev_login::{self, FailNext, Redeemed, UsedCodes};
use super::sts::constant_time_eq;
use crate::clock::Clock;

/// The path of `auth.code2Session` under the API base.
pub const PATH: &str = "/sns/jscode2session";
/// The dev mini program's AppID: shaped like a real one (`wx` and 16 characters).
pub const DEV_APPID: &str = "wxdev0000000000000";
/// The dev mini program's AppSecret: public, so worthless anywhere but here.
pub const DEV_APP_SECRET: &str = "de0de0de0de0de0de0de0de0de0de0de";

/// `errcode`s the emulator answers with, and their `errmsg`s as WeChat words them.
pub mod errcode {
    pub const BUSY: i32 = -1;
    pub const INVALID_GRANT_TYPE: i32 = 40002;
    pub const INVALID_APPID: i32 = 40013;
    pub const INVALID_CODE: i32 = 40029;
    pub const APPSECRET_INVALID: i32 = 40125;
    pub const CODE_USED: i32 = 40163;
    pub const HIGH_RISK_USER: i32 = 40226;
    pub const APPID_MISSING: i32 = 41002;
    pub const APPSECRET_MISSING: i32 = 41004;
    pub const CODE_MISSING: i32 = 41008;
    pub const FREQUENCY_LIMIT: i32 = 45011;

    pub(crate) fn message(code: i32) -> &'static str {
        match code {
            BUSY => "system error",
            INVALID_GRANT_TYPE => "invalid grant_type",
            INVALID_APPID => "invalid appid",
            INVALID_CODE => "invalid code",
            APPSECRET_INVALID => "invalid appsecret",
            CODE_USED => "code been used",
            HIGH_RISK_USER => "code blocked",
            APPID_MISSING => "appid missing",
            APPSECRET_MISSING => "appsecret missing",
            CODE_MISSING => "missing code",
            FREQUENCY_LIMIT => "api minute-quota reach limit  mustslower  retry next minute",
            _ => "emulated error",
        }
    }
}

/// The emulated WeChat's state: used codes, the failure hook, the call count.
pub struct WechatState {
    clock: Clock,
    used: Mutex<UsedCodes>,
    fail_next: FailNext<i32>,
    calls: AtomicU64,
}

impl std::fmt::Debug for WechatState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatState")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl WechatState {
    pub(crate) fn new(clock: Clock) -> Self {
        Self::with_capacity(clock, dev_login::MAX_USED_CODES)
    }

    fn with_capacity(clock: Clock, capacity: usize) -> Self {
        Self {
            clock,
            used: Mutex::new(UsedCodes::new(capacity)),
            fail_next: FailNext::new(),
            calls: AtomicU64::new(0),
        }
    }

    /// Requests received, answered well or not.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Answers the next `n` requests that pass the app checks with `errcode` (the code
    /// presented is not used up).
    pub(crate) fn fail_next(&self, n: u64, errcode: i32) {
        self.fail_next.set(n, errcode);
    }
}

pub(crate) fn router(state: Arc<WechatState>) -> Router {
    Router::new()
        .route(PATH, axum::routing::get(jscode2session))
        .with_state(state)
}

async fn jscode2session(
    State(state): State<Arc<WechatState>>,
    RawQuery(query): RawQuery,
) -> Response {
    state.calls.fetch_add(1, Ordering::Relaxed);
    let answer = match exchange(&state, query.as_deref().unwrap_or(""), state.clock.now()) {
        Ok(user) => {
            tracing::debug!("emulated WeChat login succeeded");
            json!({
                "session_key": random_session_key(),
                "openid": format!("dev-{user}"),
                "unionid": format!("dev-union-{user}"),
            })
        }
        Err(code) => {
            tracing::debug!(errcode = code, "emulated WeChat login refused");
            json!({
                "errcode": code,
                "errmsg": format!("{}, rid: {}", errcode::message(code), random_rid()),
            })
        }
    };
    ([(header::CONTENT_TYPE, "text/plain")], answer.to_string()).into_response()
}

/// The query's parameters WeChat reads; the first of a repeated one wins.
#[derive(Default)]
struct Query {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "appid" => &mut parsed.appid,
                "secret" => &mut parsed.secret,
                "js_code" => &mut parsed.js_code,
                "grant_type" => &mut parsed.grant_type,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        parsed
    }
}

/// The dev user name a request logs in, or the `errcode` it gets.
fn exchange(state: &WechatState, query: &str, now: DateTime<Utc>) -> Result<String, i32> {
    let query = Query::parse(query);
    let present = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).is_some();
    if !present(&query.appid) {
        return Err(errcode::APPID_MISSING);
    }
    if query.appid.as_deref() != Some(DEV_APPID) {
        return Err(errcode::INVALID_APPID);
    }
    let Some(secret) = query.secret.as_deref().filter(|s| !s.is_empty()) else {
        return Err(errcode::APPSECRET_MISSING);
    };
    if !constant_time_eq(secret.as_bytes(), DEV_APP_SECRET.as_bytes()) {
        return Err(errcode::APPSECRET_INVALID);
    }
    if query.grant_type.as_deref() != Some("authorization_code") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let Some(code) = query.js_code.as_deref().filter(|s| !s.is_empty()) else {
        return Err(errcode::CODE_MISSING);
    };
    if let Some(failure) = state.fail_next.take() {
        return Err(failure);
    }
    let user = dev_login::dev_user(code).ok_or(errcode::INVALID_CODE)?;
    let redeemed = state
        .used
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .redeem(code, now);
    match redeemed {
        Redeemed::Fresh => Ok(user.to_owned()),
        Redeemed::Replayed => Err(errcode::CODE_USED),
        Redeemed::Busy => Err(errcode::BUSY),
    }
}

/// 16 random bytes in base64, the shape of a real `session_key`.
fn random_session_key() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    BASE64.encode(bytes)
}

/// A request id like WeChat's (`rid: 6380622c-50076416-224b40b0`).
fn random_rid() -> String {
    let mut rng = rand::rng();
    let parts: [u32; 3] = [rng.random(), rng.random(), rng.random()];
    format!("{:08x}-{:08x}-{:08x}", parts[0], parts[1], parts[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt as _;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn dev_query(code: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("appid", DEV_APPID)
            .append_pair("secret", DEV_APP_SECRET)
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        query.finish()
    }

    /// One request through the router: the status, the content type and the JSON answer.
    async fn call(state: &Arc<WechatState>, query: &str) -> (StatusCode, String, Value) {
        let request = Request::get(format!("{PATH}?{query}"))
            .body(Body::empty())
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    fn errcode_of(answer: &Value) -> i64 {
        answer["errcode"].as_i64().unwrap_or(0)
    }

    #[tokio::test]
    async fn both_code_shapes_log_their_user_in_as_wechat_answers() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        for (code, user) in [("dev:alice", "alice"), ("dev:bob:n0nce-1", "bob")] {
            let (status, content_type, answer) = call(&state, &dev_query(code)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(content_type, "text/plain");
            assert_eq!(answer["openid"], format!("dev-{user}"), "{answer}");
            assert_eq!(answer["unionid"], format!("dev-union-{user}"));
            let key = answer["session_key"].as_str().unwrap();
            assert_eq!(BASE64.decode(key).unwrap().len(), 16);
            assert!(answer.get("errcode").is_none());
        }
        assert_eq!(state.calls(), 2);
    }

    #[tokio::test]
    async fn a_replayed_code_is_refused_and_a_new_nonce_is_not() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        let (_, _, first) = call(&state, &dev_query("dev:alice:1")).await;
        let (_, _, again) = call(&state, &dev_query("dev:alice:1")).await;
        let (_, _, other) = call(&state, &dev_query("dev:alice:2")).await;
        assert_eq!(first["openid"], "dev-alice");
        assert_eq!(errcode_of(&again), 40163);
        let errmsg = again["errmsg"].as_str().unwrap();
        assert!(errmsg.starts_with("code been used, rid: "), "{errmsg}");
        assert_eq!(other["openid"], "dev-alice");
        assert_ne!(first["session_key"], other["session_key"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_used_code_is_refused_for_five_minutes() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        let query = dev_query("dev:alice");
        assert_eq!(call(&state, &query).await.2["openid"], "dev-alice");
        tokio::time::advance(std::time::Duration::from_secs(299)).await;
        assert_eq!(errcode_of(&call(&state, &query).await.2), 40163);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert_eq!(call(&state, &query).await.2["openid"], "dev-alice");
    }

    #[tokio::test]
    async fn unknown_codes_and_wrong_requests_get_wechats_errcodes() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        let wrong_app = dev_query("dev:a").replace(DEV_APPID, "wx0123456789abcdef");
        let wrong_secret = dev_query("dev:a").replace(DEV_APP_SECRET, "0".repeat(32).as_str());
        let cases = [
            (dev_query("061a2b3c4d5e6f"), 40029),
            (dev_query("dev:"), 40029),
            (dev_query("dev:al ice"), 40029),
            (dev_query(""), 41008),
            (wrong_app, 40013),
            (wrong_secret, 40125),
            (
                dev_query("dev:a").replace("authorization_code", "client_credential"),
                40002,
            ),
            (format!("secret={DEV_APP_SECRET}&js_code=dev:a"), 41002),
            (format!("appid={DEV_APPID}&js_code=dev:a"), 41004),
            (String::new(), 41002),
        ];
        for (query, want) in cases {
            let (status, _, answer) = call(&state, &query).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(errcode_of(&answer), want, "{query}: {answer}");
            assert!(answer.get("openid").is_none());
        }
        // None of those used a code up.
        assert_eq!(call(&state, &dev_query("dev:a")).await.2["openid"], "dev-a");
    }

    #[tokio::test]
    async fn the_next_answers_fail_as_asked_without_using_the_code_up() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        for (n, code) in [(2u64, 45011), (1, -1), (1, 40226)] {
            state.fail_next(n, code);
            for _ in 0..n {
                let answer = call(&state, &dev_query("dev:alice")).await.2;
                assert_eq!(errcode_of(&answer), i64::from(code), "{answer}");
            }
        }
        // The app checks still come first.
        state.fail_next(1, -1);
        let wrong_secret = dev_query("dev:a").replace(DEV_APP_SECRET, "x");
        assert_eq!(errcode_of(&call(&state, &wrong_secret).await.2), 40125);
        assert_eq!(errcode_of(&call(&state, &dev_query("dev:b")).await.2), -1);
        assert_eq!(
            call(&state, &dev_query("dev:alice")).await.2["openid"],
            "dev-alice"
        );
        assert_eq!(state.calls(), 7);
    }

    #[tokio::test]
    async fn a_full_memory_of_used_codes_answers_busy() {
        let state = Arc::new(WechatState::with_capacity(
            Clock::following_tokio(start()),
            2,
        ));
        for code in ["dev:a", "dev:b"] {
            assert!(
                call(&state, &dev_query(code))
                    .await
                    .2
                    .get("openid")
                    .is_some()
            );
        }
        assert_eq!(errcode_of(&call(&state, &dev_query("dev:c")).await.2), -1);
        assert_eq!(
            errcode_of(&call(&state, &dev_query("dev:a")).await.2),
            40163
        );
    }

    #[tokio::test]
    async fn the_app_secret_and_session_key_stay_out_of_debug_output() {
        let state = Arc::new(WechatState::new(Clock::following_tokio(start())));
        let answer = call(&state, &dev_query("dev:a")).await.2;
        let debug = format!("{state:?}");
        assert!(!debug.contains(DEV_APP_SECRET), "{debug}");
        assert!(!debug.contains(answer["session_key"].as_str().unwrap()));
    }
}
