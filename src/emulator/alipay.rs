//! The emulated Alipay gateway for `alipay.system.oauth.token` (PROTOCOL.md §11.2): `POST` (or
//! `GET`) `/gateway.do`, the common parameters in the query and `code` and `grant_type` in the
//! form body, as the official SDKs send them.
//!
//! Checks, in the gateway's order: required common parameters (40001 `isv.missing-*`); `method`,
//! `app_id`, `format`, `charset`, `sign_type`, `version` and the timestamp's window (40002
//! `isv.invalid-*`); the RSA2 signature over the sorted parameters, with the dev app's public key
//! (40002 `isv.invalid-signature`); then a failure a test asked for
//! ([`AlipayState::fail_next`]); then `grant_type` and the code: a dev code
//! ([`super::dev_login::dev_user`]) used for the first time in five minutes logs its user in,
//! anything else (a replay included) is `isv.code-invalid`, and a full memory of used codes is
//! 20000 (unavailable).
//!
//! Every answer is `200`, one `alipay_system_oauth_token_response` or `error_response` member
//! signed with the dev "Alipay" private key over the member's exact text. Errors for an unknown
//! app are signed too: the real gateway, which keys its signature by app, may leave them
//! unsigned. [`AlipayState::sign_with_wrong_key`] makes the signatures the app's own instead, so
//! a forged answer can be tested end to end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use rand::RngExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::dev_login::{self, FailNext, Redeemed, UsedCodes};
use crate::clock::Clock;
use crate::login::alipay_sign::{
    self, AlipayPublicKey, AppPrivateKey, ERROR_MEMBER, KeyError, METHOD, RESPONSE_MEMBER,
};

/// The gateway's path, as in `https://openapi.alipay.com/gateway.do`.
pub const PATH: &str = "/gateway.do";
/// The dev mini program's `app_id`: shaped like a real one (16 digits).
pub const DEV_APP_ID: &str = "2021000000000000";
/// The dev app's private key (PKCS#1 PEM): public, dev only (see `dev_keys/README.md`).
pub const DEV_APP_PRIVATE_KEY_PEM: &str = include_str!("dev_keys/app_private.pem");
/// The dev app's public key, with which the emulated gateway verifies requests.
const DEV_APP_PUBLIC_KEY_PEM: &str = include_str!("dev_keys/app_public.pem");
/// The emulated gateway's ("Alipay's") private key, which signs its answers.
const DEV_ALIPAY_PRIVATE_KEY_PEM: &str = include_str!("dev_keys/alipay_private.pem");
/// The emulated gateway's public key: what a dev profile configures as Alipay's public key.
pub const DEV_ALIPAY_PUBLIC_KEY_PEM: &str = include_str!("dev_keys/alipay_public.pem");

/// The gateway refuses a `timestamp` further than this from its clock.
const TIMESTAMP_WINDOW: TimeDelta = TimeDelta::minutes(15);
/// `timestamp` is Beijing wall time (UTC+8, no daylight saving time).
const BEIJING_OFFSET: TimeDelta = TimeDelta::hours(8);
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Request bodies are two short form fields; anything larger is not the SDK's.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The emulated gateway's state: keys, used codes, test hooks, the call count.
///
/// `alipay_sign`'s key types are named for stsvend's side of the exchange; the emulator plays the
/// other side, so an [`AlipayPublicKey`] holds the app's public key here (to verify requests)
/// and an [`AppPrivateKey`] holds "Alipay's" private key (to sign answers).
pub struct AlipayState {
    clock: Clock,
    app_public: AlipayPublicKey,
    gateway_private: AppPrivateKey,
    /// The app's own private key: the wrong key, for [`Self::sign_with_wrong_key`].
    wrong_private: AppPrivateKey,
    wrong_key: AtomicBool,
    used: Mutex<UsedCodes>,
    fail_next: FailNext<Refusal>,
    calls: AtomicU64,
}

impl std::fmt::Debug for AlipayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayState")
            .field("calls", &self.calls)
            .field("wrong_key", &self.wrong_key)
            .finish_non_exhaustive()
    }
}

impl AlipayState {
    pub(crate) fn new(clock: Clock) -> Result<Self, KeyError> {
        Self::with_capacity(clock, dev_login::MAX_USED_CODES)
    }

    fn with_capacity(clock: Clock, capacity: usize) -> Result<Self, KeyError> {
        Ok(Self {
            clock,
            app_public: AlipayPublicKey::from_text(DEV_APP_PUBLIC_KEY_PEM)?,
            gateway_private: AppPrivateKey::from_text(DEV_ALIPAY_PRIVATE_KEY_PEM)?,
            wrong_private: AppPrivateKey::from_text(DEV_APP_PRIVATE_KEY_PEM)?,
            wrong_key: AtomicBool::new(false),
            used: Mutex::new(UsedCodes::new(capacity)),
            fail_next: FailNext::new(),
            calls: AtomicU64::new(0),
        })
    }

    /// Requests received, answered well or not.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Answers the next `n` correctly signed requests with an `error_response` of `code` and
    /// `sub_code` (the code presented is not used up).
    pub(crate) fn fail_next(&self, n: u64, code: &str, sub_code: &str) {
        self.fail_next
            .set(n, Refusal::new(code, sub_code, "emulated failure"));
    }

    /// Signs answers with the app's private key instead of the gateway's while `on`.
    pub(crate) fn sign_with_wrong_key(&self, on: bool) {
        self.wrong_key.store(on, Ordering::Relaxed);
    }
}

pub(crate) fn router(state: Arc<AlipayState>) -> Router {
    Router::new()
        .route(PATH, axum::routing::get(gateway).post(gateway))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state)
}

/// An `error_response`'s content.
#[derive(Debug, Clone)]
struct Refusal {
    code: String,
    sub_code: String,
    sub_msg: String,
}

impl Refusal {
    fn new(code: &str, sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            sub_code: sub_code.to_owned(),
            sub_msg: sub_msg.into(),
        }
    }

    fn missing(sub_code: &str, sub_msg: &str) -> Self {
        Self::new("40001", sub_code, sub_msg)
    }

    fn invalid(sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self::new("40002", sub_code, sub_msg)
    }

    fn code_invalid() -> Self {
        Self::invalid("isv.code-invalid", "授权码code无效")
    }

    fn member(&self) -> Value {
        let msg = match self.code.as_str() {
            "20000" => "Service Currently Unavailable",
            "20001" => "Insufficient Token Permissions",
            "40001" => "Missing Required Arguments",
            "40002" => "Invalid Arguments",
            "40004" => "Business Failed",
            "40006" => "Insufficient Permissions",
            _ => "Emulated Failure",
        };
        json!({
            "code": self.code,
            "msg": msg,
            "sub_code": self.sub_code,
            "sub_msg": self.sub_msg,
        })
    }
}

async fn gateway(
    State(state): State<Arc<AlipayState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::Relaxed);
    let now = state.clock.now();
    let (name, member) = match exchange(&state, &uri, &headers, &body, now) {
        Ok(user) => {
            tracing::debug!("emulated Alipay login succeeded");
            (RESPONSE_MEMBER, token_member(&user, now))
        }
        Err(refusal) => {
            tracing::debug!(sub_code = %refusal.sub_code, "emulated Alipay login refused");
            (ERROR_MEMBER, refusal.member())
        }
    };
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        signed_body(&state, name, &member),
    )
        .into_response()
}

/// `{"<name>":<member>,"sign":"…"}`, the signature over the member's text exactly as written.
fn signed_body(state: &AlipayState, name: &str, member: &Value) -> String {
    let text = member.to_string();
    let key = if state.wrong_key.load(Ordering::Relaxed) {
        &state.wrong_private
    } else {
        &state.gateway_private
    };
    match key.sign(&text) {
        Ok(sign) => format!(r#"{{"{name}":{text},"sign":"{sign}"}}"#),
        // ring does not fail with a buffer of the right size; should it, the answer goes
        // unsigned and the caller refuses it.
        Err(error) => {
            tracing::error!(%error, "the emulated Alipay gateway cannot sign its answer");
            format!(r#"{{"{name}":{text}}}"#)
        }
    }
}

/// A successful answer for the dev user `user`: `open_id` `dev-<user>` and a `2088…` `user_id`
/// that stays the same for the same name.
fn token_member(user: &str, now: DateTime<Utc>) -> Value {
    let digest = Sha256::digest(user.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let user_id = format!("2088{:012}", u64::from_be_bytes(first) % 1_000_000_000_000);
    let auth_start = (now + BEIJING_OFFSET).format(TIMESTAMP_FORMAT).to_string();
    json!({
        "code": "10000",
        "msg": "Success",
        "user_id": user_id,
        "open_id": format!("dev-{user}"),
        "access_token": format!("authusrB{}", random_hex(32)),
        "expires_in": "1296000",
        "refresh_token": format!("authusrB{}", random_hex(32)),
        "re_expires_in": "2592000",
        "auth_start": auth_start,
    })
}

/// The dev user name a request logs in, or the gateway's refusal.
fn exchange(
    state: &AlipayState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<String, Refusal> {
    let params = collect_params(uri, headers, body)?;
    check_common(&params, now)?;
    let content =
        alipay_sign::signing_content(params.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let sign = params.get("sign").unwrap_or_default();
    if !state.app_public.verifies(content.as_bytes(), sign) {
        return Err(Refusal::invalid(
            "isv.invalid-signature",
            format!(
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}"
            ),
        ));
    }
    if let Some(failure) = state.fail_next.take() {
        return Err(failure);
    }
    if params.get("grant_type") != Some("authorization_code") {
        return Err(Refusal::invalid(
            "isv.grant-type-invalid",
            "grant_type参数不正确",
        ));
    }
    let code = params.get("code").unwrap_or_default();
    let user = dev_login::dev_user(code).ok_or_else(Refusal::code_invalid)?;
    let redeemed = state
        .used
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .redeem(code, now);
    match redeemed {
        Redeemed::Fresh => Ok(user.to_owned()),
        // Alipay answers a used code as an invalid one.
        Redeemed::Replayed => Err(Refusal::code_invalid()),
        Redeemed::Busy => Err(Refusal::new(
            "20000",
            "isp.unknow-error",
            "服务暂不可用(业务系统不可用)",
        )),
    }
}

/// The common parameters the gateway checks before the signature.
fn check_common(params: &Params, now: DateTime<Utc>) -> Result<(), Refusal> {
    let get = |name: &str| params.get(name);
    let required = [
        ("app_id", "isv.missing-app-id", "缺少appId参数"),
        ("method", "isv.missing-method", "缺少方法名参数"),
        ("sign", "isv.missing-signature", "缺少签名参数"),
        (
            "sign_type",
            "isv.missing-signature-type",
            "缺少签名类型参数",
        ),
        ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
        ("version", "isv.missing-version", "缺少版本参数"),
    ];
    for (name, sub_code, sub_msg) in required {
        if get(name).is_none_or(str::is_empty) {
            return Err(Refusal::missing(sub_code, sub_msg));
        }
    }
    let is = |name: &str, want: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case(want));
    if get("method") != Some(METHOD) {
        return Err(Refusal::invalid("isv.invalid-method", "不存在的方法名"));
    }
    if get("app_id") != Some(DEV_APP_ID) {
        return Err(Refusal::invalid("isv.invalid-app-id", "无效的AppID参数"));
    }
    // `format` may be left out: JSON is the default and the only choice.
    if get("format").is_some() && !is("format", "json") {
        return Err(Refusal::invalid("isv.invalid-format", "无效的数据格式"));
    }
    if !is("charset", "utf-8") {
        return Err(Refusal::invalid("isv.invalid-charset", "字符集错误"));
    }
    if get("sign_type") != Some("RSA2") {
        return Err(Refusal::invalid(
            "isv.invalid-signature-type",
            "无效的签名类型",
        ));
    }
    if get("version") != Some("1.0") {
        return Err(Refusal::invalid(
            "isv.invalid-parameter",
            "version 参数无效",
        ));
    }
    let sent_at =
        NaiveDateTime::parse_from_str(get("timestamp").unwrap_or_default(), TIMESTAMP_FORMAT)
            .map(|t| t.and_utc() - BEIJING_OFFSET);
    match sent_at {
        Ok(at) if (now - at).abs() <= TIMESTAMP_WINDOW => Ok(()),
        _ => Err(Refusal::invalid(
            "isv.invalid-timestamp",
            "非法的时间戳参数",
        )),
    }
}

/// A request's parameters, by name.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Query and form-body parameters; a name given twice is refused.
fn collect_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Params, Refusal> {
    let mut params = HashMap::new();
    let mut add = |pairs: form_urlencoded::Parse<'_>| {
        for (name, value) in pairs {
            let name = name.into_owned();
            if params.contains_key(&name) {
                return Err(Refusal::invalid(
                    "isv.invalid-parameter",
                    format!("参数 {name} 重复"),
                ));
            }
            params.insert(name, value.into_owned());
        }
        Ok(())
    };
    add(form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()))?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        add(form_urlencoded::parse(body))?;
    }
    Ok(Params(params))
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::alipay_sign::{
        AlipayRefusal, AnswerError, Failure, OauthAnswer, UserIdKind, oauth_token_request,
        signing_content, verify_answer,
    };
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::time::Duration;
    use tower::ServiceExt as _;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn emulator() -> Arc<AlipayState> {
        Arc::new(AlipayState::new(Clock::following_tokio(start())).unwrap())
    }

    fn app_key() -> AppPrivateKey {
        AppPrivateKey::from_text(DEV_APP_PRIVATE_KEY_PEM).unwrap()
    }

    fn alipay_public() -> AlipayPublicKey {
        AlipayPublicKey::from_text(DEV_ALIPAY_PUBLIC_KEY_PEM).unwrap()
    }

    /// The request stsvend itself makes (`alipay_sign::oauth_token_request`) for `code` at `at`.
    fn request_for(code: &str, at: DateTime<Utc>) -> (String, String) {
        let request = oauth_token_request(DEV_APP_ID, code, at, &app_key()).unwrap();
        (request.query, request.body)
    }

    /// A request with these common and method parameters, signed with `key`.
    fn signed_request(
        common: &[(&str, &str)],
        method: &[(&str, &str)],
        key: &AppPrivateKey,
    ) -> (String, String) {
        let sign = key
            .sign(&signing_content(common.iter().chain(method).copied()))
            .unwrap();
        let encode = |pairs: &[(&str, &str)]| {
            let mut out = form_urlencoded::Serializer::new(String::new());
            out.extend_pairs(pairs);
            out.finish()
        };
        let mut query = encode(common);
        query.push_str(&format!("&{}", encode(&[("sign", sign.as_str())])));
        (query, encode(method))
    }

    fn common_params(timestamp: &str) -> Vec<(&'static str, String)> {
        [
            ("app_id", DEV_APP_ID),
            ("method", METHOD),
            ("format", "json"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", timestamp),
            ("version", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    async fn post(state: &Arc<AlipayState>, (query, body): (String, String)) -> Vec<u8> {
        let request = Request::post(format!("{PATH}?{query}"))
            .header(header::CONTENT_TYPE, alipay_sign::CONTENT_TYPE)
            .body(Body::from(body))
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap()
            .to_vec()
    }

    /// The answer as stsvend reads it: verified with the dev "Alipay" public key first.
    async fn verified(state: &Arc<AlipayState>, request: (String, String)) -> OauthAnswer {
        let body = post(state, request).await;
        verify_answer(&body, &alipay_public())
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    }

    fn refusal(answer: &OauthAnswer) -> &AlipayRefusal {
        match answer {
            OauthAnswer::Refused(refusal) => refusal,
            OauthAnswer::User(user) => panic!("logged {user:?} in"),
        }
    }

    fn sub_code(answer: &OauthAnswer) -> &str {
        refusal(answer).sub_code.as_deref().unwrap_or_default()
    }

    fn dev_user(name: &str) -> OauthAnswer {
        OauthAnswer::User(alipay_sign::AlipayUser {
            id: format!("dev-{name}"),
            kind: UserIdKind::OpenId,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn both_code_shapes_log_their_user_in_with_a_verified_answer() {
        let state = emulator();
        for (code, name) in [("dev:alice", "alice"), ("dev:bob:n0nce_1", "bob")] {
            let answer = verified(&state, request_for(code, start())).await;
            assert_eq!(answer, dev_user(name));
        }
        assert_eq!(state.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_answer_has_alipays_fields() {
        let state = emulator();
        let body = post(&state, request_for("dev:alice:1", start())).await;
        let member = alipay_sign::signed_member(&body).unwrap();
        assert_eq!(member.name, RESPONSE_MEMBER);
        let fields: Value = serde_json::from_slice(member.text).unwrap();
        let user_id = fields["user_id"].as_str().unwrap();
        assert!(
            user_id.starts_with("2088") && user_id.len() == 16,
            "{user_id}"
        );
        assert!(user_id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(fields["open_id"], "dev-alice");
        assert_eq!(fields["expires_in"], "1296000");
        assert_eq!(fields["re_expires_in"], "2592000");
        assert_eq!(fields["auth_start"], "2026-11-26 20:00:00");
        assert!(fields["access_token"].as_str().unwrap().len() > 8);
        assert!(fields["refresh_token"].as_str().unwrap().len() > 8);
        // The same name is the same user_id on every login.
        let again = post(&state, request_for("dev:alice:2", start())).await;
        let again: Value =
            serde_json::from_slice(alipay_sign::signed_member(&again).unwrap().text).unwrap();
        assert_eq!(again["user_id"], user_id);
        assert_ne!(again["access_token"], fields["access_token"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_or_unknown_code_is_code_invalid() {
        let state = emulator();
        assert_eq!(
            verified(&state, request_for("dev:alice:1", start())).await,
            dev_user("alice")
        );
        for code in ["dev:alice:1", "a1b2c3d4e5f6", "dev:", "dev:a:b:c", ""] {
            let answer = verified(&state, request_for(code, start())).await;
            let refusal = refusal(&answer);
            assert_eq!(refusal.code, "40002", "{code}");
            assert_eq!(
                refusal.sub_code.as_deref(),
                Some("isv.code-invalid"),
                "{code}"
            );
            assert_eq!(refusal.failure(), Failure::InvalidCode);
        }
        assert_eq!(
            verified(&state, request_for("dev:alice:2", start())).await,
            dev_user("alice")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_used_code_is_refused_for_five_minutes() {
        let state = emulator();
        let clock = Clock::following_tokio(start());
        let at = || clock.now();
        assert_eq!(
            verified(&state, request_for("dev:a", at())).await,
            dev_user("a")
        );
        tokio::time::advance(Duration::from_secs(299)).await;
        let replay = verified(&state, request_for("dev:a", at())).await;
        assert_eq!(sub_code(&replay), "isv.code-invalid");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            verified(&state, request_for("dev:a", at())).await,
            dev_user("a")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_not_signed_by_the_app_key_is_refused() {
        let state = emulator();
        // Signed with another key.
        let other_key = AppPrivateKey::from_text(DEV_ALIPAY_PRIVATE_KEY_PEM).unwrap();
        let request = oauth_token_request(DEV_APP_ID, "dev:a", start(), &other_key).unwrap();
        let answer = verified(&state, (request.query, request.body)).await;
        assert_eq!(refusal(&answer).code, "40002");
        assert_eq!(sub_code(&answer), "isv.invalid-signature");
        assert_eq!(refusal(&answer).failure(), Failure::Misconfigured);
        // Signed right, then the code changed.
        let (query, body) = request_for("dev:a", start());
        let tampered = (query, body.replace("dev%3Aa", "dev%3Ab"));
        let answer = verified(&state, tampered).await;
        assert_eq!(sub_code(&answer), "isv.invalid-signature");
        // Signature missing its last characters.
        let (query, body) = request_for("dev:a", start());
        let cut = (query[..query.len() - 4].to_owned(), body);
        assert_eq!(
            sub_code(&verified(&state, cut).await),
            "isv.invalid-signature"
        );
        // None of those used dev:a up.
        assert_eq!(
            verified(&state, request_for("dev:a", start())).await,
            dev_user("a")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_common_parameters_get_the_gateways_sub_codes() {
        let state = emulator();
        let (query, body) = request_for("dev:a", start());
        let cases = [
            (
                "app_id=2021000000000000",
                "app_id=2021000000000001",
                "isv.invalid-app-id",
            ),
            ("app_id=2021000000000000", "app_id=", "isv.missing-app-id"),
            (
                "method=alipay.system.oauth.token",
                "method=alipay.user.info.share",
                "isv.invalid-method",
            ),
            ("charset=utf-8", "charset=GBK", "isv.invalid-charset"),
            ("format=json", "format=xml", "isv.invalid-format"),
            (
                "sign_type=RSA2",
                "sign_type=RSA",
                "isv.invalid-signature-type",
            ),
            ("version=1.0", "version=2.0", "isv.invalid-parameter"),
            (
                "timestamp=2026-11-26+20%3A00%3A00",
                "timestamp=2026-11-26+20%3A15%3A01",
                "isv.invalid-timestamp",
            ),
            (
                "timestamp=2026-11-26+20%3A00%3A00",
                "timestamp=2026-11-26T20%3A00%3A00",
                "isv.invalid-timestamp",
            ),
            ("&sign=", "&sign_=", "isv.missing-signature"),
        ];
        for (from, to, want) in cases {
            assert!(query.contains(from), "{query} lacks {from}");
            let request = (query.replace(from, to), body.clone());
            let answer = verified(&state, request).await;
            assert_eq!(sub_code(&answer), want, "{to}");
        }
        // 15 minutes off either way is still inside the window.
        for at in [start() - TIMESTAMP_WINDOW, start() + TIMESTAMP_WINDOW] {
            let code = format!("dev:a:{}", at.timestamp());
            assert_eq!(
                verified(&state, request_for(&code, at)).await,
                dev_user("a")
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_parameter_or_wrong_grant_type_is_refused() {
        let state = emulator();
        let (query, body) = request_for("dev:a", start());
        let twice = (query.clone(), format!("{body}&code=dev%3Ab"));
        assert_eq!(
            sub_code(&verified(&state, twice).await),
            "isv.invalid-parameter"
        );
        let timestamp = (start() + BEIJING_OFFSET)
            .format(TIMESTAMP_FORMAT)
            .to_string();
        let common = common_params(&timestamp);
        let common: Vec<(&str, &str)> = common.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refresh = [("code", "dev:a"), ("grant_type", "refresh_token")];
        let answer = verified(&state, signed_request(&common, &refresh, &app_key())).await;
        assert_eq!(sub_code(&answer), "isv.grant-type-invalid");
        // Everything in the query of a GET, which the gateway also takes.
        let login = [("code", "dev:a"), ("grant_type", "authorization_code")];
        let (query, body) = signed_request(&common, &login, &app_key());
        let request = Request::get(format!("{PATH}?{query}&{body}"))
            .body(Body::empty())
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        assert_eq!(
            verify_answer(&body, &alipay_public()).unwrap(),
            dev_user("a")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wrong_key_switch_makes_answers_fail_verification() {
        let state = emulator();
        state.sign_with_wrong_key(true);
        for code in ["dev:a", "not-a-code"] {
            let body = post(&state, request_for(code, start())).await;
            let error = verify_answer(&body, &alipay_public()).unwrap_err();
            assert_eq!(error, AnswerError::BadSignature, "{code}");
            assert_eq!(error.failure(), Failure::Unverified);
        }
        state.sign_with_wrong_key(false);
        assert_eq!(
            verified(&state, request_for("dev:b", start())).await,
            dev_user("b")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_answers_fail_as_asked_without_using_the_code_up() {
        let state = emulator();
        state.fail_next(2, "20000", "aop.ACQ.SYSTEM_ERROR");
        for _ in 0..2 {
            let answer = verified(&state, request_for("dev:a", start())).await;
            let refusal = refusal(&answer);
            assert_eq!(refusal.code, "20000");
            assert_eq!(refusal.sub_code.as_deref(), Some("aop.ACQ.SYSTEM_ERROR"));
            assert_eq!(
                refusal.msg.as_deref(),
                Some("Service Currently Unavailable")
            );
            assert_eq!(refusal.failure(), Failure::Unavailable);
        }
        // A request the gateway refuses first does not take a failure.
        state.fail_next(1, "40006", "isv.insufficient-isv-permissions");
        let (query, body) = request_for("dev:a", start());
        let unsigned = (query.replace("&sign=", "&sign_="), body);
        assert_eq!(
            sub_code(&verified(&state, unsigned).await),
            "isv.missing-signature"
        );
        let answer = verified(&state, request_for("dev:a", start())).await;
        assert_eq!(refusal(&answer).failure(), Failure::Misconfigured);
        assert_eq!(
            verified(&state, request_for("dev:a", start())).await,
            dev_user("a")
        );
        assert_eq!(state.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_memory_of_used_codes_answers_unavailable() {
        let state =
            Arc::new(AlipayState::with_capacity(Clock::following_tokio(start()), 2).unwrap());
        for (code, name) in [("dev:a", "a"), ("dev:b", "b")] {
            assert_eq!(
                verified(&state, request_for(code, start())).await,
                dev_user(name)
            );
        }
        let answer = verified(&state, request_for("dev:c", start())).await;
        assert_eq!(refusal(&answer).code, "20000");
        assert_eq!(refusal(&answer).failure(), Failure::Unavailable);
        let replay = verified(&state, request_for("dev:a", start())).await;
        assert_eq!(sub_code(&replay), "isv.code-invalid");
    }

    #[test]
    fn the_dev_keys_pair_up_and_stay_out_of_debug_output() {
        let state = AlipayState::new(Clock::following_tokio(start())).unwrap();
        let signed = state.gateway_private.sign("x").unwrap();
        assert!(alipay_public().verifies(b"x", &signed));
        let signed = app_key().sign("x").unwrap();
        assert!(state.app_public.verifies(b"x", &signed));
        assert!(!alipay_public().verifies(b"x", &signed));
        let debug = format!("{state:?}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("MII"),
            "{debug}"
        );
    }
}
