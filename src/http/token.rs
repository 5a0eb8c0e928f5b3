//! `GET /get_sts_token[/{profile}]`: who is asking, whether they may, and their token.
//!
//! In order: the client address (the socket, or the trusted proxy's headers); the per-address
//! rate limit; the caller check (`none`, `jwt`, or `report`); the per-subject rate limit; then the
//! token: the profile's shared one, or a per-caller one when the caller has a subject or the
//! profile binds tokens to addresses. Every refusal is one audit line with the reason and one
//! count in `stsvend_rejections_total`; every token handed out is one audit line.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::client_ip::client_ip;
use super::error::{ApiError, Rejection, RequestId};
use super::logins::Logins;
use super::state::{AppState, ProfileState};
use crate::auth::jwt::{Claims, JwtError};
use crate::config::AuthMode;
use crate::http::audit;
use crate::login::session::Platform;
use crate::metrics;
use crate::tokens::store::{CallerKey, Origin, Refusal, Unavailable};
use crate::tokens::token::Token;

/// The token route's service (a `tower::service_fn`, not an axum handler: a handler's future is
/// boxed once more inside the route's own box). The state and profile come in one `Arc`, one
/// atomic add per request; the whole request rather than extractors, so nothing in it (the
/// header map above all) is copied; and the future, which the router boxes, holds the request
/// once (an `async fn` taking it by value holds it twice: as argument and as local).
pub fn serve(
    route: Arc<(AppState, Arc<ProfileState>)>,
    request: Request,
) -> impl Future<Output = Result<Response, Infallible>> + Send {
    // Only the head: the body of a `GET` is nothing to keep, and not `Sync`.
    let (head, _) = request.into_parts();
    async move { Ok(answer(&route.0, &route.1, &head).await.into_response()) }
}

/// The answer to one token request.
async fn answer(
    state: &AppState,
    profile: &ProfileState,
    request: &Parts,
) -> Result<Response, ApiError> {
    let ip = caller_address(state, &request.extensions, &request.headers)?;
    let id = RequestId::current();
    let mut caller = audit::Caller {
        request_id: id.as_ref().map_or("", RequestId::as_str),
        profile: &profile.name,
        client_ip: ip,
        subject: None,
    };
    admit(profile, &caller)?;
    // Fleet mode: the limits are the fleet's, one store command each (none otherwise). Boxed
    // here and below: inline, the store's futures would size every request's future, fleet or
    // not (README, Performance, "Round 4").
    if profile.limits.is_shared() {
        Box::pin(admit_shared(profile, &caller)).await?;
    }
    let claims = authorize(state, profile, &caller, &request.headers).await?;
    caller.subject = claims.as_deref().map(Claims::subject);
    let token = issue(profile, &caller, claims.as_deref()).await?;
    Ok(respond(&token))
}

/// The caller's token once their subject's rate limit lets them through, audited either way.
pub(super) async fn issue(
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    claims: Option<&Claims>,
) -> Result<Arc<Token>, ApiError> {
    if profile.limits.is_shared() {
        Box::pin(check_subject_shared(profile, caller, claims)).await?;
    }
    let key = caller_key(profile, caller, claims)?;
    let token = token_for(profile, key, caller.client_ip)
        .await
        .map_err(|refusal| refused(caller, refusal))?;
    audit::issued(caller, &token);
    Ok(token)
}

/// The client's address: the socket's, or what a trusted proxy says it is.
pub(super) fn caller_address(
    state: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> Result<IpAddr, ApiError> {
    // Missing only when a test drives the router without `ConnectInfo`; treat it as a bug.
    let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
        tracing::error!("request without ConnectInfo; serve the router with connect info");
        return Err(ApiError::Internal);
    };
    Ok(client_ip(peer.ip(), headers, &state.trusted_proxies))
}

/// The kill switch, then the per-address rate limit (in fleet mode [`admit_shared`]'s).
fn admit(profile: &ProfileState, caller: &audit::Caller<'_>) -> Result<(), ApiError> {
    if !profile.enabled.load(Ordering::Relaxed) {
        return Err(deny(caller, Rejection::Disabled));
    }
    if profile.limits.is_shared() {
        return Ok(());
    }
    // An IPv6 caller is its prefix: one host owns the whole /64.
    let caller_net = profile.limits.grouping().caller(caller.client_ip);
    if let Err(wait) = profile.limits.check_ip(caller_net) {
        return Err(deny(caller, Rejection::RateLimitIp { wait }));
    }
    Ok(())
}

/// Fleet mode: the per-address rate limit counted across the fleet.
async fn admit_shared(profile: &ProfileState, caller: &audit::Caller<'_>) -> Result<(), ApiError> {
    let caller_net = profile.limits.grouping().caller(caller.client_ip);
    if let Err(wait) = profile.limits.check_ip_shared(caller_net).await {
        return Err(deny(caller, Rejection::RateLimitIp { wait }));
    }
    Ok(())
}

/// Fleet mode: the per-subject rate limit counted across the fleet.
async fn check_subject_shared(
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    claims: Option<&Claims>,
) -> Result<(), ApiError> {
    let Some(claims) = claims else { return Ok(()) };
    if let Err(wait) = profile
        .limits
        .check_subject_shared(claims.caller_id())
        .await
    {
        return Err(deny(caller, Rejection::RateLimitSubject { wait }));
    }
    Ok(())
}

/// The caller check: the verified JWT claims in `jwt` and `report` mode (none when the token
/// is missing or bad in `report` mode, which serves the guest token instead), or a refusal.
/// A JWT verified before comes with the claims its verification made, shared, not copied.
async fn authorize(
    state: &AppState,
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    headers: &HeaderMap,
) -> Result<Option<Arc<Claims>>, ApiError> {
    if let Some(logins) = &profile.logins {
        return session_claims(state, profile, logins, caller, headers)
            .map(|claims| Some(Arc::new(claims)));
    }
    let (mode, verifier) = match (profile.auth, &profile.verifier) {
        (AuthMode::None | AuthMode::Login(_), _) | (_, None) => return Ok(None),
        (mode, Some(verifier)) => (mode, verifier),
    };
    let verified = match bearer(headers) {
        Ok(token) => verifier.verify(token, state.clock.now()).await,
        Err(refusal) => Err(refusal),
    };
    match (verified, mode) {
        (Ok(claims), _) => Ok(Some(claims)),
        // Our key server is down: not the caller's fault, so no 401 that would send them
        // to log in again, and no would-be denial to count in report mode.
        (Err(JwtError::KeysUnavailable), AuthMode::Jwt) => {
            Err(deny(caller, Rejection::KeysUnavailable))
        }
        (Err(JwtError::KeysUnavailable), _) => {
            tracing::warn!(profile = %profile.name, "report mode: JWT keys unavailable; serving the guest token");
            Ok(None)
        }
        (Err(error), AuthMode::Jwt) => Err(deny(caller, Rejection::Auth(error))),
        (Err(error), _) => {
            profile.would_deny.fetch_add(1, Ordering::Relaxed);
            metrics::record_would_deny(&profile.name, error.code());
            tracing::warn!(
                profile = %profile.name,
                client_ip = %caller.client_ip,
                reason = error.code(),
                "report mode: jwt mode would refuse this request; serving the guest token"
            );
            Ok(None)
        }
    }
}

/// Login mode: the caller is whom their session token names. Sessions and JWTs never pass for
/// each other (see [`crate::login::session`]).
fn session_claims(
    state: &AppState,
    profile: &ProfileState,
    logins: &Logins,
    caller: &audit::Caller<'_>,
    headers: &HeaderMap,
) -> Result<Claims, ApiError> {
    let token = bearer(headers).map_err(|error| deny(caller, Rejection::Auth(error)))?;
    let session = logins
        .sessions
        .verify(
            token,
            &profile.name,
            &logins.clients.platforms(),
            state.clock.now(),
        )
        .map_err(|error| deny(caller, Rejection::Session(error)))?;
    Ok(login_claims(session.login.platform, session.login.user_id))
}

/// A platform's user as the rest of the token path sees callers: the platform is the issuer,
/// so caches and limits key the user by (platform, user id).
pub(super) fn login_claims(platform: Platform, user_id: String) -> Claims {
    Claims::new(user_id, Some(platform.as_str().to_owned()))
}

/// Whom the token is for, once the per-subject rate limit (unless shared: checked before) lets
/// the subject through. The caller's id and session name were derived with the claims.
fn caller_key(
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    claims: Option<&Claims>,
) -> Result<CallerKey, ApiError> {
    let caller_id = claims.map(Claims::caller_id);
    if let Some(id) = caller_id
        && !profile.limits.is_shared()
        && let Err(wait) = profile.limits.check_subject(id)
    {
        return Err(deny(caller, Rejection::RateLimitSubject { wait }));
    }
    let bound = profile.bind_source_ip;
    Ok(CallerKey {
        caller: caller_id,
        session_name: claims.map(|claims| Arc::clone(claims.session_name())),
        ip: bound.then(|| profile.limits.grouping().caller(caller.client_ip)),
    })
}

/// The profile's shared token, or a per-caller one when the caller has a subject or the
/// profile binds tokens to addresses.
async fn token_for(
    profile: &ProfileState,
    key: CallerKey,
    ip: IpAddr,
) -> Result<Arc<Token>, Refusal> {
    let callers = match &profile.callers {
        Some(callers) if key.caller.is_some() || key.ip.is_some() => callers,
        // Called directly, not through `dyn Tokens`, whose boxed future is an allocation a request.
        _ => return profile.shared.cached().await,
    };
    let grouping = profile.limits.grouping();
    let origin = Origin {
        network: grouping.network(ip),
        wide: grouping.wide(ip),
    };
    // A held token first: the common case needs no boxed future.
    if let Some(token) = callers.held(&key, origin) {
        return Ok(token);
    }
    callers.token(key, origin).await
}

/// The token's body, never cached by anyone on the way.
fn respond(token: &Token) -> Response {
    // Built by hand: `Bytes::into_response` would first set a `Content-Type` this replaces.
    let mut response = Response::new(Body::from(token.body.clone()));
    let headers = response.headers_mut();
    // Room at once for every header the answer leaves with (these three, the request id,
    // `nosniff`): the map would otherwise be grown on the way out.
    headers.reserve(ANSWER_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Where axum's route would put it (it adds a missing one, as a lane does not).
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(token.body.len()));
    response
}

/// How many headers a token answer carries.
const ANSWER_HEADERS: usize = 5;

/// Counts and audits a [`Refusal`] from the token source.
fn refused(caller: &audit::Caller<'_>, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NetworkLimit { retry_after } => deny(
            caller,
            Rejection::NewTokenLimitNetwork { wait: retry_after },
        ),
        Refusal::Unavailable(Unavailable { class, retry_after }) => {
            deny(caller, Rejection::NoToken { class, retry_after })
        }
    }
}

/// Counts and audits a refusal, and answers it; every refusal goes through here, once.
pub(super) fn deny(caller: &audit::Caller<'_>, rejection: Rejection) -> ApiError {
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
