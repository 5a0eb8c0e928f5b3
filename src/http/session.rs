//! `POST /session[/{profile}]` (issue 16): a mini program logs in with the one-time code from
//! `wx.login()` or `my.getAuthCode()`. stsvend exchanges it with the platform, issues its own
//! session token, and answers with the caller's first credentials too, saving a round trip.
//!
//! In order: the kill switch; the login-attempt limit per address prefix (before anything that
//! could reach the platform, whose quota is per app); the body; the exchange; the caller's
//! token (the per-user limit and cache, as `GET /get_sts_token` with the session would); the
//! session. Codes are never cached: a replay is the platform's to refuse.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret as _;

use super::error::{ApiError, Rejection, RequestId};
use super::logins::Logins;
use super::state::{AppState, ProfileState};
use super::token::{caller_address, deny, issue, login_claims};
use crate::http::audit;
use crate::login::error::LoginError;
use crate::login::session::{IssuedSession, Login, Platform};
use crate::tokens::token::Token;

/// A login body is two short strings; anything bigger is not one.
const MAX_BODY_BYTES: usize = 4 * 1024;

const BODY_SHAPE: &str = "the body must be a JSON object {\"platform\":\"wechat\"|\"alipay\",\"code\":\"…\"} of at most 4 KiB";
const NO_PLATFORM: &str =
    "the field `platform` is required and must be \"wechat\" or \"alipay\" (a string)";
const NO_CODE: &str =
    "the field `code` is required: the string from wx.login() or my.getAuthCode()";

pub async fn login(
    state: AppState,
    profile: Arc<ProfileState>,
    request: Request,
) -> Result<Response, ApiError> {
    let ip = caller_address(&state, request.extensions(), request.headers())?;
    let id = RequestId::current();
    let mut caller = audit::Caller {
        request_id: id.as_ref().map_or("", RequestId::as_str),
        profile: &profile.name,
        client_ip: ip,
        claims: None,
    };
    let logins = profile.logins.as_ref().ok_or(ApiError::LoginNotEnabled)?;
    if !profile.enabled.load(Ordering::Relaxed) {
        return Err(deny(&caller, Rejection::Disabled));
    }
    let network = profile.limits.grouping().caller(ip);
    if let Err(wait) = logins.attempt(network) {
        audit::denied(&caller, "login attempts per address");
        crate::metrics::record_rejection(&profile.name, "login_attempts", "");
        return Err(ApiError::LoginAttemptsLimited {
            retry_after_secs: wait.as_secs().saturating_add(1),
        });
    }
    let (platform, code) = read_body(request).await?;
    let now = state.clock.now();
    let user = logins
        .clients
        .exchange(platform, &code, now)
        .await
        .map_err(|error| refused_login(&caller, error))?;
    let claims = login_claims(platform, user.id.clone());
    caller.claims = Some(&claims);
    let token = issue(&profile, &caller, Some(&claims)).await?;
    let login = Login {
        profile: profile.name.clone(),
        platform,
        user_id: user.id,
        union_id: user.union_id,
    };
    let session = new_session(logins, &login, now, &caller)?;
    Ok(respond(&session, &token))
}

fn refused_login(caller: &audit::Caller<'_>, error: LoginError) -> ApiError {
    audit::denied(caller, error.outcome());
    crate::metrics::record_rejection(caller.profile, "login", error.outcome());
    ApiError::Login(error)
}

fn new_session(
    logins: &Logins,
    login: &Login,
    now: chrono::DateTime<chrono::Utc>,
    caller: &audit::Caller<'_>,
) -> Result<IssuedSession, ApiError> {
    logins.sessions.issue(login, now).map_err(|error| {
        // The platform's id does not fit a session (too long, not printable): not the
        // caller's fault, and nothing a retry fixes soon.
        tracing::warn!(%error, platform = %login.platform, "cannot issue a session for this login");
        refused_login(
            caller,
            LoginError::Unavailable {
                platform: login.platform,
                reason: error.to_string(),
            },
        )
    })
}

/// The platform and code from a JSON body, or which field is wrong.
async fn read_body(request: Request) -> Result<(Platform, String), ApiError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::BadLoginRequest(BODY_SHAPE))?;
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| ApiError::BadLoginRequest(BODY_SHAPE))?;
    let object = body
        .as_object()
        .ok_or(ApiError::BadLoginRequest(BODY_SHAPE))?;
    let platform = object
        .get("platform")
        .and_then(serde_json::Value::as_str)
        .and_then(Platform::from_name)
        .ok_or(ApiError::BadLoginRequest(NO_PLATFORM))?;
    let code = object
        .get("code")
        .and_then(serde_json::Value::as_str)
        .filter(|code| !code.is_empty())
        .ok_or(ApiError::BadLoginRequest(NO_CODE))?;
    Ok((platform, code.to_owned()))
}

/// `{"SessionToken","SessionExpiration","Credentials":{…}}`, the credentials exactly as
/// `GET /get_sts_token` answers them; never cached by anyone on the way.
fn respond(session: &IssuedSession, token: &Token) -> Response {
    let head = serde_json::json!({
        "SessionToken": session.token.expose_secret(),
        "SessionExpiration": session.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
    .to_string();
    // `head` is an object: drop its `}` and add the credentials object as the last member.
    let mut body = Vec::with_capacity(head.len() + token.body.len() + 16);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"Credentials\":");
    body.extend_from_slice(&token.body);
    body.push(b'}');
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from(body),
    )
        .into_response()
}
