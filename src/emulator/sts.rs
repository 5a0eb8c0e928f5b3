//! The emulated STS endpoint: verifies an `AssumeRole` request the way STS does and mints
//! expiring credentials.
//!
//! Checks, in the order the gateway applies them: content type; required common parameters;
//! `SignatureMethod`/`SignatureVersion`; `Timestamp` format and the 15-minute window; the
//! AccessKey (a RAM-user key, or an STS key this emulator minted, with its token); the V1
//! signature; nonce replay; then `Action`, `Version` and the action parameters (role ARN, session
//! name, duration, policy grammar and size). Error bodies have STS's shape and codes
//! (PROTOCOL.md §1.6).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use rand::RngExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::clock::Clock;
use crate::sts::names::{DurationSeconds, RoleArn, SessionName};
use crate::sts::policy::{self, PolicyError};
use crate::sts::request::{API_VERSION, TIMESTAMP_FORMAT};
use crate::sts::response::EXPIRATION_FORMAT;
use crate::sts::signature;

/// STS rejects requests whose `Timestamp` is further than this from its own clock.
const TIMESTAMP_WINDOW_SECONDS: i64 = 15 * 60;
/// Bounds on remembered nonces and minted credentials, so a flood cannot grow memory forever.
const MAX_REMEMBERED: usize = 100_000;

/// A credential set this emulator minted.
#[derive(Clone)]
pub(crate) struct Minted {
    pub(crate) secret: SecretString,
    pub(crate) token: SecretString,
    pub(crate) expiration: DateTime<Utc>,
    /// The session policy sent with `AssumeRole`; the dev SLS sink enforces it.
    pub(crate) policy: Option<String>,
    /// The `RoleSessionName` asked for: who the dev SLS sink's logs came from.
    pub(crate) session_name: String,
}

/// Arrival times kept: a dev session runs for hours, so the record is bounded.
const MAX_ARRIVALS: usize = 4096;

/// Shared state of the emulator.
pub struct EmulatorState {
    clock: Clock,
    pub(crate) access_key_id: String,
    access_key_secret: SecretString,
    nonces: Mutex<HashMap<String, DateTime<Utc>>>,
    minted: Mutex<HashMap<String, Minted>>,
    calls: AtomicU64,
    /// When the latest requests arrived (at most [`MAX_ARRIVALS`]), for tests of the budget.
    arrivals: Mutex<VecDeque<tokio::time::Instant>>,
    issued: AtomicU64,
    throttle: AtomicU64,
    /// Seconds every minted credential lasts whatever was asked; 0: as asked.
    token_lifetime: AtomicU64,
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState")
            .field("access_key_id", &self.access_key_id)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl EmulatorState {
    pub(crate) fn new(clock: Clock) -> Self {
        Self {
            clock,
            access_key_id: format!("LTAI5tDev{}", random_chars(15)),
            access_key_secret: SecretString::from(random_chars(30)),
            nonces: Mutex::new(HashMap::new()),
            minted: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            arrivals: Mutex::new(VecDeque::new()),
            issued: AtomicU64::new(0),
            throttle: AtomicU64::new(0),
            token_lifetime: AtomicU64::new(0),
        }
    }

    pub(crate) fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// When the latest requests arrived, oldest first.
    pub(crate) fn arrivals(&self) -> Vec<tokio::time::Instant> {
        self.lock_arrivals().iter().copied().collect()
    }

    fn lock_arrivals(&self) -> std::sync::MutexGuard<'_, VecDeque<tokio::time::Instant>> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn issued_count(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Credentials this emulator minted, by key id.
    pub(crate) fn minted(&self, access_key_id: &str) -> Option<Minted> {
        self.minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(access_key_id)
            .cloned()
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn throttle_next(&self, n: u64) {
        self.throttle.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_token_lifetime(&self, seconds: u32) {
        self.token_lifetime
            .store(u64::from(seconds), Ordering::Relaxed);
    }
}

pub(crate) fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/", axum::routing::any(handle))
        .with_state(state)
}

/// An STS error: HTTP status, `Code`, `Message`.
#[derive(Debug)]
struct Fault {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn fault(status: u16, code: &'static str, message: impl Into<String>) -> Fault {
    Fault {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        code,
        message: message.into(),
    }
}

async fn handle(
    State(state): State<Arc<EmulatorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::Relaxed);
    {
        let mut arrivals = state.lock_arrivals();
        if arrivals.len() >= MAX_ARRIVALS {
            arrivals.pop_front();
        }
        arrivals.push_back(tokio::time::Instant::now());
    }
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    match assume_role(&state, &method, &uri, &headers, &body) {
        Ok(mut answer) => {
            answer["RequestId"] = json!(request_id);
            tracing::debug!(sts_request_id = %request_id, "emulated AssumeRole succeeded");
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Err(fault) => {
            tracing::debug!(sts_request_id = %request_id, code = fault.code, "emulated AssumeRole refused");
            let body = json!({
                "RequestId": request_id,
                "HostId": "sts.emulator.stsvend.local",
                "Code": fault.code,
                "Message": fault.message,
                "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Sts", fault.code),
            });
            (fault.status, axum::Json(body)).into_response()
        }
    }
}

fn assume_role(
    state: &EmulatorState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, Fault> {
    if method != Method::GET && method != Method::POST {
        return Err(api_not_found());
    }
    let params = Params(collect_params(uri, headers, body)?);
    let now = state.clock.now();
    authenticate(state, method, &params, now)?;
    if state
        .throttle
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(fault(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ));
    }
    let call = Call::read(&params)?;
    Ok(mint(state, &call, now))
}

/// A request's parameters, by name.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn require(&self, name: &'static str) -> Result<&str, Fault> {
        self.get(name).ok_or_else(|| {
            fault(400, "MissingParameter", format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."))
        })
    }
}

fn api_not_found() -> Fault {
    fault(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )
}

/// The checks STS makes before it looks at the action: signature method and version, the
/// timestamp's window, the signature itself, and the nonce not seen before.
fn authenticate(
    state: &EmulatorState,
    method: &Method,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<(), Fault> {
    let access_key_id = params.require("AccessKeyId")?;
    let given_signature = params.require("Signature")?;
    let nonce = params.require("SignatureNonce")?;
    let timestamp = params.require("Timestamp")?;
    if params.require("SignatureMethod")? != "HMAC-SHA1" {
        return Err(fault(
            400,
            "InvalidParameter.SignatureMethod",
            "Specified signature method is not supported; use HMAC-SHA1.",
        ));
    }
    if params.require("SignatureVersion")? != "1.0" {
        return Err(fault(
            400,
            "InvalidParameter.SignatureVersion",
            "Specified signature version is not supported; use 1.0.",
        ));
    }
    check_timestamp(timestamp, now)?;
    let secret = secret_for(state, access_key_id, params.get("SecurityToken"), now)?;
    let signed: Vec<(&str, &str)> = params
        .0
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let string_to_sign =
        signature::string_to_sign(method.as_str(), &signature::canonical_query(&signed));
    let expected = signature::signature_of(&string_to_sign, secret.expose_secret());
    if !constant_time_eq(expected.as_bytes(), given_signature.as_bytes()) {
        return Err(fault(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }
    remember_nonce(state, nonce, now)
}

fn check_timestamp(timestamp: &str, now: DateTime<Utc>) -> Result<(), Fault> {
    let Ok(sent_at) =
        NaiveDateTime::parse_from_str(timestamp, TIMESTAMP_FORMAT).map(|t| t.and_utc())
    else {
        return Err(fault(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        ));
    };
    if (now - sent_at).num_seconds().abs() > TIMESTAMP_WINDOW_SECONDS {
        return Err(fault(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

/// What an authenticated `AssumeRole` asks for, each parameter checked as STS checks it.
struct Call<'a> {
    role_arn: &'a str,
    session_name: &'a str,
    duration: u32,
    policy: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn read(params: &'a Params) -> Result<Self, Fault> {
        if params.require("Action")? != "AssumeRole" {
            return Err(api_not_found());
        }
        if params.require("Version")? != API_VERSION {
            return Err(fault(
                400,
                "InvalidVersion",
                "Specified parameter Version is not valid.",
            ));
        }
        let role_arn = params.require("RoleArn")?;
        if RoleArn::parse(role_arn).is_none() {
            return Err(fault(
                400,
                "InvalidParameter.RoleArn",
                "The parameter RoleArn is wrongly formed.",
            ));
        }
        let session_name = params.require("RoleSessionName")?;
        if !SessionName::accepted_by_sts(session_name) {
            return Err(fault(
                400,
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed.",
            ));
        }
        let duration = duration(params.get("DurationSeconds"))?;
        let policy = params.get("Policy");
        if let Some(text) = policy {
            check_policy(text)?;
        }
        Ok(Self {
            role_arn,
            session_name,
            duration,
            policy,
        })
    }
}

/// The emulated role's `MaxSessionDuration` is as if the operator had raised it to the
/// maximum, so that any duration stsvend accepts also works in dev.
fn duration(given: Option<&str>) -> Result<u32, Fault> {
    match given {
        None => Ok(DurationSeconds::DEFAULT.get()),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .and_then(DurationSeconds::new)
            .map(DurationSeconds::get)
            .ok_or_else(|| {
                fault(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "The Min/Max value of DurationSeconds is 15min/1hr.",
                )
            }),
    }
}

fn check_policy(text: &str) -> Result<(), Fault> {
    match policy::check_policy_document(text) {
        Ok(_) if text.len() <= policy::MAX_POLICY_LEN => Ok(()),
        Ok(_) | Err(PolicyError::TooLong { .. }) => Err(fault(
            400,
            "InvalidParameter.PolicySize",
            "The size of Policy must be smaller than 2048 bytes.",
        )),
        Err(_) => Err(fault(
            400,
            "InvalidParameter.PolicyGrammar",
            "The parameter Policy has not passed grammar check.",
        )),
    }
}

/// New temporary credentials for `call`, remembered so that they can sign later calls.
fn mint(state: &EmulatorState, call: &Call<'_>, now: DateTime<Utc>) -> serde_json::Value {
    let lifetime = match state.token_lifetime.load(Ordering::Relaxed) {
        0 => i64::from(call.duration),
        forced => i64::try_from(forced).unwrap_or(i64::from(call.duration)),
    };
    let expiration = now + chrono::Duration::seconds(lifetime);
    let key_id = format!("STS.NT{}", random_chars(26));
    let secret = random_chars(44);
    let token = format!("CAIS{}", random_token(900));
    remember_minted(
        state,
        key_id.clone(),
        Minted {
            secret: SecretString::from(secret.clone()),
            token: SecretString::from(token.clone()),
            expiration,
            policy: call.policy.map(str::to_owned),
            session_name: call.session_name.to_owned(),
        },
        now,
    );
    state.issued.fetch_add(1, Ordering::Relaxed);
    let Call {
        role_arn,
        session_name,
        ..
    } = call;
    json!({
        "RequestId": "",
        "AssumedRoleUser": {
            "AssumedRoleId": format!("3{}:{session_name}", random_digits(17)),
            "Arn": format!("{role_arn}/{session_name}"),
        },
        "Credentials": {
            "SecurityToken": token,
            "Expiration": expiration.format(EXPIRATION_FORMAT).to_string(),
            "AccessKeySecret": secret,
            "AccessKeyId": key_id,
        },
    })
}

/// Merges query and form-body parameters, refusing duplicates and unreadable bodies.
fn collect_params(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, Fault> {
    let mut params = HashMap::new();
    let mut add = |pairs: form_urlencoded::Parse<'_>| -> Result<(), Fault> {
        for (k, v) in pairs {
            if params.insert(k.to_string(), v.to_string()).is_some() {
                return Err(fault(
                    400,
                    "InvalidParameter",
                    format!("The parameter {k} is given more than once."),
                ));
            }
        }
        Ok(())
    };
    add(form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()))?;
    if !body.is_empty() {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("application/x-www-form-urlencoded") {
            add(form_urlencoded::parse(body))?;
        } else if !content_type.starts_with("application/json") {
            return Err(fault(
                400,
                "InvalidParameter.ContentType",
                "The ContentType request header must be either application/json or application/x-www-form-urlencoded",
            ));
        }
    }
    Ok(params)
}

/// The secret that must have signed a request from `access_key_id`.
fn secret_for(
    state: &EmulatorState,
    access_key_id: &str,
    security_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<SecretString, Fault> {
    if access_key_id == state.access_key_id {
        return Ok(state.access_key_secret.clone());
    }
    let minted = state
        .minted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(entry) = minted.get(access_key_id) else {
        return Err(fault(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    let Some(token) = security_token else {
        return Err(fault(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for this action.",
        ));
    };
    if !constant_time_eq(token.as_bytes(), entry.token.expose_secret().as_bytes()) {
        return Err(fault(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "The security token you provided does not match the access key.",
        ));
    }
    if entry.expiration <= now {
        return Err(fault(
            400,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        ));
    }
    Ok(entry.secret.clone())
}

fn remember_nonce(state: &EmulatorState, nonce: &str, now: DateTime<Utc>) -> Result<(), Fault> {
    let mut nonces = state
        .nonces
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if nonces.len() >= MAX_REMEMBERED / 2 {
        nonces.retain(|_, seen| (now - *seen).num_seconds() <= 2 * TIMESTAMP_WINDOW_SECONDS);
    }
    if nonces.contains_key(nonce) {
        return Err(fault(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    if nonces.len() >= MAX_REMEMBERED {
        return Err(fault(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ));
    }
    nonces.insert(nonce.to_owned(), now);
    Ok(())
}

fn remember_minted(state: &EmulatorState, key_id: String, minted: Minted, now: DateTime<Utc>) {
    let mut all = state
        .minted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if all.len() >= MAX_REMEMBERED {
        all.retain(|_, m| m.expiration > now);
    }
    if all.len() < MAX_REMEMBERED {
        all.insert(key_id, minted);
    }
}

/// Equal without telling, by its timing, how much of a guess was right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// Base64-looking text, like a real security token.
fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
