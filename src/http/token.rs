//! `GET /get_sts_token[/{profile}]`: who is asking, whether they may, and their token.
//!
//! In order: the client address (the socket, or the trusted proxy's headers); the per-address
//! rate limit; the caller check (`none`, `jwt`, or `report`); the per-subject rate limit; then the
//! token: the profile's shared one, or a per-caller one when the caller has a subject or the
//! profile binds tokens to addresses. Every refusal is one audit line with the reason and one
//! count in `stsvend_rejections_total`; every token handed out is one audit line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::client_ip::client_ip;
use super::error::{ApiError, Rejection, RequestId};
use super::state::{AppState, ProfileState};
use crate::audit;
use crate::auth::jwt::JwtError;
use crate::auth::subject;
use crate::callers::{CallerKey, Origin, Refusal};
use crate::config::AuthMode;
use crate::metrics::{self, CacheResult};
use crate::refresh::{self, Unavailable};

/// How long a request may wait for a shared token that is being fetched right now. STS answers
/// in well under a second; a longer wait would only pile up connections during an outage.
const MAX_WAIT_FOR_FETCH: Duration = Duration::from_secs(5);

/// Takes the whole request rather than extractors, so nothing in it (the header map above all)
/// is copied per request.
pub async fn serve(
    state: AppState,
    profile: Arc<ProfileState>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    // Missing only when a test drives the router without `ConnectInfo`; treat it as a bug.
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        tracing::error!("request without ConnectInfo; serve the router with connect info");
        return Err(ApiError::Internal);
    };
    let ip = client_ip(peer.ip(), headers, &state.trusted_proxies);
    let mut caller = audit::Caller {
        request_id: request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok())
            .unwrap_or(""),
        profile: &profile.name,
        client_ip: ip,
        subject: None,
    };
    if !profile.enabled.load(Ordering::Relaxed) {
        return Err(deny(&caller, Rejection::Disabled));
    }
    let grouping = profile.limits.grouping();
    // An IPv6 caller is its prefix: one host owns the whole /64.
    let caller_net = grouping.caller(ip);
    if let Err(wait) = profile.limits.check_ip(caller_net) {
        return Err(deny(&caller, Rejection::RateLimitIp { wait }));
    }

    let jwt_subject = match (profile.auth, &profile.verifier) {
        (AuthMode::None, _) | (_, None) => None,
        (mode, Some(verifier)) => {
            let verified = match bearer(headers) {
                Ok(token) => verifier.verify(token, state.clock.now()).await,
                Err(refusal) => Err(refusal),
            };
            match (verified, mode) {
                (Ok(claims), _) => Some(claims),
                // Our key server is down: not the caller's fault, so no 401 that would send them
                // to log in again, and no would-be denial to count in report mode.
                (Err(JwtError::KeysUnavailable), AuthMode::Jwt) => {
                    return Err(deny(&caller, Rejection::KeysUnavailable));
                }
                (Err(JwtError::KeysUnavailable), _) => {
                    tracing::warn!(profile = %profile.name, "report mode: JWT keys unavailable; serving the guest token");
                    None
                }
                (Err(error), AuthMode::Jwt) => {
                    return Err(deny(&caller, Rejection::Auth(error)));
                }
                (Err(error), _) => {
                    profile.would_deny.fetch_add(1, Ordering::Relaxed);
                    metrics::record_would_deny(&profile.name, error.code());
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
    caller.subject = jwt_subject.as_ref().map(|claims| claims.subject.as_str());
    let caller_id = jwt_subject
        .as_ref()
        .map(|claims| subject::caller_id(claims.issuer.as_deref(), &claims.subject));
    if let Some(id) = caller_id
        && let Err(wait) = profile.limits.check_subject(id)
    {
        return Err(deny(&caller, Rejection::RateLimitSubject { wait }));
    }

    let key = CallerKey {
        caller: caller_id,
        session_name: caller.subject.map(subject::session_name),
        ip: profile.bind_source_ip.then_some(caller_net),
    };
    let token = match &profile.callers {
        Some(callers) if key.caller.is_some() || key.ip.is_some() => {
            let origin = Origin {
                network: grouping.network(ip),
                wide: grouping.wide(ip),
            };
            match callers.get_from(key, origin).await {
                Ok(token) => Ok(token),
                Err(Refusal::Unavailable(unavailable)) => Err(unavailable),
                Err(Refusal::NetworkLimit { retry_after }) => {
                    return Err(deny(
                        &caller,
                        Rejection::NewTokenLimitNetwork { wait: retry_after },
                    ));
                }
            }
        }
        _ => {
            let shared = refresh::servable_token(&profile.shared, MAX_WAIT_FOR_FETCH).await;
            if shared.is_ok() {
                // The shared token is fetched ahead by the refresher, never for a request.
                metrics::record_token_cache(&profile.name, CacheResult::Hit);
            }
            shared
        }
    };
    match token {
        Ok(token) => {
            audit::issued(&caller, &token);
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                token.body.clone(),
            )
                .into_response())
        }
        Err(Unavailable { class, retry_after }) => {
            Err(deny(&caller, Rejection::NoToken { class, retry_after }))
        }
    }
}

/// Counts and audits a refusal, and answers it; every refusal goes through here, once.
fn deny(caller: &audit::Caller<'_>, rejection: Rejection) -> ApiError {
    let (reason, check) = rejection.labels();
    metrics::record_rejection(caller.profile, reason, check);
    audit::denied(caller, rejection.reason());
    rejection.into()
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
