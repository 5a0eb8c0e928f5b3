//! `GET /get_sts_token[/{profile}]`: who is asking, whether they may, and their token.
//!
//! In order: the client address (the socket, or the trusted proxy's headers); the per-address
//! rate limit; the caller check (`none`, `jwt`, or `report`); the per-subject rate limit; then the
//! token: the profile's shared one, or a per-caller one when the caller has a subject or the
//! profile binds tokens to addresses. Every refusal is one log line with the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::client_ip::client_ip;
use super::error::ApiError;
use super::state::{AppState, ProfileState};
use crate::auth::jwt::JwtError;
use crate::auth::subject;
use crate::callers::CallerKey;
use crate::config::AuthMode;
use crate::refresh::{self, Unavailable};

/// How long a request may wait for a shared token that is being fetched right now. STS answers
/// in well under a second; a longer wait would only pile up connections during an outage.
const MAX_WAIT_FOR_FETCH: Duration = Duration::from_secs(5);

pub async fn serve(
    state: AppState,
    profile: Arc<ProfileState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ip = client_ip(peer.ip(), &headers, &state.trusted_proxies);
    let deny = |reason: &str, error: ApiError| {
        tracing::warn!(profile = %profile.name, client_ip = %ip, reason, "request denied");
        error
    };
    if !profile.enabled.load(Ordering::Relaxed) {
        return Err(deny(
            "profile disabled by the kill switch",
            ApiError::ProfileDisabled,
        ));
    }
    if let Err(wait) = profile.limits.check_ip(ip) {
        return Err(deny("rate limit per address", rate_limited(wait)));
    }

    let session_name = match (profile.auth, &profile.verifier) {
        (AuthMode::None, _) | (_, None) => None,
        (mode, Some(verifier)) => {
            let verified = match bearer(&headers) {
                Ok(token) => verifier.verify(token, state.clock.now()).await,
                Err(refusal) => Err(refusal),
            };
            match (verified, mode) {
                (Ok(claims), _) => Some(subject::session_name(&claims.subject)),
                // Our key server is down: not the caller's fault, so no 401 that would send them
                // to log in again, and no would-be denial to count in report mode.
                (Err(JwtError::KeysUnavailable), AuthMode::Jwt) => {
                    return Err(deny("jwt keys unavailable", ApiError::JwtKeysUnavailable));
                }
                (Err(JwtError::KeysUnavailable), _) => {
                    tracing::warn!(profile = %profile.name, "report mode: JWT keys unavailable; serving the guest token");
                    None
                }
                (Err(error), AuthMode::Jwt) => {
                    let (code, message) = (error.code(), error.description());
                    return Err(deny(code, ApiError::Unauthorized { code, message }));
                }
                (Err(error), _) => {
                    profile.would_deny.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        profile = %profile.name,
                        client_ip = %ip,
                        reason = error.code(),
                        "report mode: jwt mode would refuse this request; serving the guest token"
                    );
                    None
                }
            }
        }
    };
    if let Some(name) = &session_name
        && let Err(wait) = profile.limits.check_subject(name)
    {
        return Err(deny("rate limit per user", rate_limited(wait)));
    }

    let key = CallerKey {
        session_name,
        ip: profile.bind_source_ip.then_some(ip),
    };
    let token = match &profile.callers {
        Some(callers) if key.session_name.is_some() || key.ip.is_some() => callers.get(key).await,
        _ => refresh::servable_token(&profile.shared, MAX_WAIT_FOR_FETCH).await,
    };
    match token {
        Ok(token) => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            token.body.clone(),
        )
            .into_response()),
        Err(Unavailable { class, retry_after }) => Err(deny(
            "no token available",
            ApiError::TokenUnavailable {
                class,
                // Round up, and never tell a client to retry immediately.
                retry_after_secs: retry_after.as_secs().saturating_add(1),
            },
        )),
    }
}

/// The token from `Authorization: Bearer <token>`, or why there is none.
fn bearer(headers: &HeaderMap) -> Result<&str, JwtError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(JwtError::Missing)?;
    let text = value.to_str().map_err(|_| JwtError::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(JwtError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(token.trim())
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs().saturating_add(1),
    }
}
