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
    if let Err(wait) = profile.limits.check_ip(ip) {
        return Err(deny("rate limit per address", rate_limited(wait)));
    }

    let session_name = match (profile.auth, &profile.verifier) {
        (AuthMode::None, _) | (_, None) => None,
        (mode, Some(verifier)) => {
            let verified = match bearer(&headers) {
                Ok(token) => verifier
                    .verify(token, state.clock.now())
                    .await
                    .map_err(|e| (e.code(), e.description())),
                Err(missing) => Err(missing),
            };
            match verified {
                Ok(claims) => Some(subject::session_name(&claims.subject)),
                Err((code, message)) if mode == AuthMode::Jwt => {
                    return Err(deny(code, ApiError::Unauthorized { code, message }));
                }
                Err((code, _)) => {
                    profile.would_deny.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        profile = %profile.name,
                        client_ip = %ip,
                        reason = code,
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
fn bearer(headers: &HeaderMap) -> Result<&str, (&'static str, &'static str)> {
    let missing = (
        "missing_token",
        "this profile requires a JWT from your login service in the header Authorization: Bearer <token>",
    );
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(missing);
    };
    let malformed = (
        "malformed_token",
        "the Authorization header is not of the form Bearer <token>",
    );
    let text = value.to_str().map_err(|_| malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed);
    }
    Ok(token.trim())
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs().saturating_add(1),
    }
}
