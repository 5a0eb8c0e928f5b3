//! `GET /get_sts_token[/{profile}]`: who is asking, whether they may, and their token.
//!
//! In order: the client address (the socket, or the trusted proxy's headers); the per-address
//! rate limit; the caller check (`none`, `jwt`, or `report`); the per-subject rate limit; then the
//! token: the profile's shared one, or a per-caller one when the caller has a subject or the
//! profile binds tokens to addresses. Every refusal is one audit line with the reason and one
//! count in `stsvend_rejections_total`; every token handed out is one audit line.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;

use super::client_ip::client_ip;
use super::error::{ApiError, Rejection, RequestId};
use super::logins::Logins;
use super::state::{AppState, ProfileState};
use crate::auth::jwt::{Claims, JwtError, JwtVerifier};
use crate::config::AuthMode;
use crate::http::audit;
use crate::login::session::Platform;
use crate::metrics;
use crate::tokens::store::{CallerKey, CallerKeyRef, Origin, Refusal, Tokens, Unavailable};
use crate::tokens::token::Token;

/// The token route's service (a `tower::service_fn`, not an axum handler: a handler's future is
/// boxed once more inside the route's own box). The state and profile come in one `Arc`, one
/// atomic add per request; the whole request rather than extractors, so nothing in it (the
/// header map above all) is copied.
///
/// A profile that keeps its own limits is answered here, while the edge calls the route, when
/// nothing has to be waited for (a cached token; a JWT remembered, or a login session): the
/// future is then the answer, a few words, rather than the request's head and every step's
/// state, which every layer moved and the edge's box copied (README, Performance, "Round 7").
/// What has to wait (a JWT's keys, a token being fetched, the fleet's store) is the boxed rest.
pub fn serve(route: Arc<(AppState, Arc<ProfileState>)>, request: Request) -> ServeFuture {
    // Only the head: the body of a `GET` is nothing to keep, and not `Sync`.
    let (head, _) = request.into_parts();
    if route.1.limits.is_shared() {
        return later(async move { answer(&route.0, &route.1, &head).await });
    }
    match answer_now(&route.0, &route.1, &head) {
        Ok(Step::Done(response)) => now(Ok(response)),
        Err(error) => now(Err(error)),
        Ok(Step::Authorize { ip }) => {
            later(async move { authorize_and_issue(&route.0, &route.1, &head, ip).await })
        }
        Ok(Step::Token { key, ip, claims }) => {
            later(async move { wait_for_token(&route.1, key, ip, claims).await })
        }
    }
}

/// The token route's future: the answer, or the rest of the work to it.
pub type ServeFuture = Either<
    Ready<Result<Response, Infallible>>,
    Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
>;

fn now(answer: Result<Response, ApiError>) -> ServeFuture {
    Either::Left(std::future::ready(Ok(answer.into_response())))
}

fn later(answer: impl Future<Output = Result<Response, ApiError>> + Send + 'static) -> ServeFuture {
    Either::Right(Box::pin(async move { Ok(answer.await.into_response()) }))
}

/// The answer to one token request.
async fn answer(
    state: &AppState,
    profile: &ProfileState,
    request: &Parts,
) -> Result<Response, ApiError> {
    let ip = caller_address(state, &request.extensions, &request.headers)?;
    {
        let id = RequestId::current();
        let caller = caller(id.as_ref(), profile, ip);
        admit(profile, &caller)?;
        // Fleet mode: the limits are the fleet's, one store command each (none otherwise). Boxed
        // here and below: inline, the store's futures would size every request's future, fleet
        // or not (README, Performance, "Round 4").
        if profile.limits.is_shared() {
            Box::pin(admit_shared(profile, &caller)).await?;
        }
    }
    authorize_and_issue(state, profile, request, ip).await
}

/// Where [`answer_now`] got to.
enum Step {
    Done(Response),
    /// Admitted; the caller check has to wait (keys to fetch, a token not remembered).
    Authorize {
        ip: IpAddr,
    },
    /// Everything but the token, which is being fetched.
    Token {
        key: CallerKey,
        ip: IpAddr,
        claims: Option<Arc<Claims>>,
    },
}

/// [`answer`]'s steps for a profile that keeps its own limits, without an await, as far as
/// nothing has to be waited for.
fn answer_now(state: &AppState, profile: &ProfileState, request: &Parts) -> Result<Step, ApiError> {
    let ip = caller_address(state, &request.extensions, &request.headers)?;
    let id = RequestId::current();
    let mut caller = caller(id.as_ref(), profile, ip);
    admit(profile, &caller)?;
    // What waits starts again from the caller check (`authorize` looks the token up once more,
    // a hash beside the signature check it then makes).
    let claims = match check_now(state, profile, &caller, &request.headers) {
        Check::Done(claims) => claims?,
        Check::Verify { .. } => return Ok(Step::Authorize { ip }),
    };
    caller.claims = claims.as_deref();
    let key = caller_key(profile, &caller, claims.as_deref())?;
    let Some(token) = token_now(profile, key, ip) else {
        let key = key.to_owned();
        return Ok(Step::Token { key, ip, claims });
    };
    let token = handed_out(&caller, token)?;
    Ok(Step::Done(respond(&token)))
}

/// The caller checked and their token handed out, once admitted: the rest of [`answer_now`] when
/// the caller check has to wait, and of [`answer`].
async fn authorize_and_issue(
    state: &AppState,
    profile: &ProfileState,
    request: &Parts,
    ip: IpAddr,
) -> Result<Response, ApiError> {
    let id = RequestId::current();
    let mut caller = caller(id.as_ref(), profile, ip);
    let claims = authorize(state, profile, &caller, &request.headers).await?;
    caller.claims = claims.as_deref();
    let token = issue(profile, &caller, claims.as_deref()).await?;
    Ok(respond(&token))
}

/// The rest of [`answer_now`] when the token is being fetched.
async fn wait_for_token(
    profile: &ProfileState,
    key: CallerKey,
    ip: IpAddr,
    claims: Option<Arc<Claims>>,
) -> Result<Response, ApiError> {
    let id = RequestId::current();
    let mut caller = caller(id.as_ref(), profile, ip);
    caller.claims = claims.as_deref();
    let token = handed_out(&caller, fetched(profile, key, ip).await)?;
    Ok(respond(&token))
}

/// Who asks, as the audit line says it; the claims come with the caller check.
fn caller<'a>(
    id: Option<&'a RequestId>,
    profile: &'a ProfileState,
    ip: IpAddr,
) -> audit::Caller<'a> {
    audit::Caller {
        request_id: id.map_or("", RequestId::as_str),
        profile: &profile.name,
        client_ip: ip,
        claims: None,
    }
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
    handed_out(caller, token_for(profile, key, caller.client_ip).await)
}

/// The token handed to `caller` and audited, or the refusal counted, audited and answered.
fn handed_out(
    caller: &audit::Caller<'_>,
    token: Result<Arc<Token>, Refusal>,
) -> Result<Arc<Token>, ApiError> {
    let token = token.map_err(|refusal| refused(caller, refusal))?;
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
    match check_now(state, profile, caller, headers) {
        Check::Done(claims) => claims,
        Check::Verify {
            mode,
            verifier,
            token,
        } => {
            let verified = match std::str::from_utf8(token) {
                Ok(token) => verifier.verify(token, state.clock.now()).await,
                Err(_) => Err(JwtError::Malformed),
            };
            judged(profile, caller, mode, verified)
        }
    }
}

/// How far the caller check goes without waiting.
enum Check<'a> {
    Done(Result<Option<Arc<Claims>>, ApiError>),
    /// A JWT not remembered (or whose keys are due for a refresh): verified by
    /// [`JwtVerifier::verify`], which may wait for the keys.
    Verify {
        mode: AuthMode,
        verifier: &'a JwtVerifier,
        /// The bearer token as the header holds it: text once it is verified in full.
        token: &'a [u8],
    },
}

/// [`authorize`] as far as it needs no waiting: no check, a login session, a JWT remembered, or
/// a refusal that needs no keys.
fn check_now<'a>(
    state: &AppState,
    profile: &'a ProfileState,
    caller: &audit::Caller<'_>,
    headers: &'a HeaderMap,
) -> Check<'a> {
    if let Some(logins) = &profile.logins {
        return Check::Done(
            session_claims(state, profile, logins, caller, headers)
                .map(|claims| Some(Arc::new(claims))),
        );
    }
    let Some((mode, verifier)) = jwt_check(profile) else {
        return Check::Done(Ok(None));
    };
    let verified = match bearer_bytes(headers) {
        Ok(token) => match verifier.verify_now(token, state.clock.now()) {
            Some(verified) => verified,
            None => {
                return Check::Verify {
                    mode,
                    verifier,
                    token,
                };
            }
        },
        Err(refusal) => Err(refusal),
    };
    Check::Done(judged(profile, caller, mode, verified))
}

/// What a JWT check's outcome means for the request in the profile's mode: the claims, the
/// guest token (`report` mode), or a refusal.
fn judged(
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    mode: AuthMode,
    verified: Result<Arc<Claims>, JwtError>,
) -> Result<Option<Arc<Claims>>, ApiError> {
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

/// The JWT check the profile asks of callers (`jwt` or `report` mode with a verifier), if any.
fn jwt_check(profile: &ProfileState) -> Option<(AuthMode, &JwtVerifier)> {
    match (profile.auth, &profile.verifier) {
        (AuthMode::None | AuthMode::Login(_), _) | (_, None) => None,
        (mode, Some(verifier)) => Some((mode, verifier)),
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
fn caller_key<'c>(
    profile: &ProfileState,
    caller: &audit::Caller<'_>,
    claims: Option<&'c Claims>,
) -> Result<CallerKeyRef<'c>, ApiError> {
    let caller_id = claims.map(Claims::caller_id);
    if let Some(id) = caller_id
        && !profile.limits.is_shared()
        && let Err(wait) = profile.limits.check_subject(id)
    {
        return Err(deny(caller, Rejection::RateLimitSubject { wait }));
    }
    let bound = profile.bind_source_ip;
    Ok(CallerKeyRef {
        caller: caller_id,
        session_name: claims.map(Claims::session_name),
        ip: bound.then(|| profile.limits.grouping().caller(caller.client_ip)),
    })
}

/// The profile's shared token, or a per-caller one when the caller has a subject or the
/// profile binds tokens to addresses.
async fn token_for(
    profile: &ProfileState,
    key: CallerKeyRef<'_>,
    ip: IpAddr,
) -> Result<Arc<Token>, Refusal> {
    // A held token first: the common case needs no boxed future.
    match token_now(profile, key, ip) {
        Some(token) => token,
        None => fetched(profile, key.to_owned(), ip).await,
    }
}

/// [`token_for`]'s answer once [`token_now`] found none held: waits for the token being fetched.
async fn fetched(
    profile: &ProfileState,
    key: CallerKey,
    ip: IpAddr,
) -> Result<Arc<Token>, Refusal> {
    match callers_for(profile, key.borrowed()) {
        Some(callers) => callers.token(key, origin(profile, ip)).await,
        // Called directly, not through `dyn Tokens`, whose boxed future is an allocation a request.
        None => profile.shared.cached().await,
    }
}

/// [`token_for`]'s answer when it needs no waiting: `None` while the token is being fetched.
fn token_now(
    profile: &ProfileState,
    key: CallerKeyRef<'_>,
    ip: IpAddr,
) -> Option<Result<Arc<Token>, Refusal>> {
    match callers_for(profile, key) {
        Some(callers) => callers.held(key, origin(profile, ip)).map(Ok),
        None => profile.shared.cached_now(),
    }
}

/// The per-caller tokens, when the caller gets one of them rather than the shared token.
fn callers_for<'a>(
    profile: &'a ProfileState,
    key: CallerKeyRef<'_>,
) -> Option<&'a Arc<dyn Tokens>> {
    profile
        .callers
        .as_ref()
        .filter(|_| key.caller.is_some() || key.ip.is_some())
}

/// Where a per-caller token request comes from, for the new-token limits.
fn origin(profile: &ProfileState, ip: IpAddr) -> Origin {
    let grouping = profile.limits.grouping();
    Origin {
        network: grouping.network(ip),
        wide: grouping.wide(ip),
    }
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
    std::str::from_utf8(bearer_bytes(headers)?).map_err(|_| JwtError::Malformed)
}

/// [`bearer`]'s token as the header holds it. Not checked as text here: a header value holds no
/// control character but tab (the `http` crate's invariant), and a token with other non-ASCII
/// bytes fails as malformed when made text (or by the strict base64url decoding of a full
/// verification) and is never remembered. `HeaderValue::to_str` would check every byte, ~470
/// instructions for an RS256 token on every request.
fn bearer_bytes(headers: &HeaderMap) -> Result<&[u8], JwtError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(JwtError::Missing)?;
    let bytes = value.as_bytes();
    let space = bytes
        .iter()
        .position(|&byte| byte == b' ')
        .ok_or(JwtError::Malformed)?;
    let (scheme, token) = (&bytes[..space], &bytes[space + 1..]);
    // ASCII white space only, as `to_str` let through: no other space can frame a token.
    let token = token.trim_ascii();
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_bytes(authorization).expect("a valid header value");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn the_bearer_token_is_the_text_after_the_scheme_framed_by_ascii_space() {
        for (header, token) in [
            (&b"Bearer a.b.c"[..], "a.b.c"),
            (b"bearer a.b.c", "a.b.c"),
            (b"BEARER \t a.b.c \t", "a.b.c"),
        ] {
            assert_eq!(bearer(&headers(header)), Ok(token), "{header:?}");
            assert_eq!(bearer_bytes(&headers(header)), Ok(token.as_bytes()));
        }
    }

    #[test]
    fn anything_else_is_missing_or_malformed() {
        assert_eq!(bearer(&HeaderMap::new()), Err(JwtError::Missing));
        for header in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer \t ",
            b"Basic dXNlcjpwYXNzd29yZA==",
            b"Bearera.b.c",
            b"B\xe9arer a.b.c",
        ] {
            assert_eq!(
                bearer(&headers(header)),
                Err(JwtError::Malformed),
                "{header:?}"
            );
        }
        // Not text: refused when made text (a full verification's first step); the bytes are
        // only ever looked up among tokens verified before.
        let not_text = headers(b"Bearer a.b.\xff");
        assert_eq!(bearer(&not_text), Err(JwtError::Malformed));
        assert_eq!(bearer_bytes(&not_text), Ok(&b"a.b.\xff"[..]));
        // A space other than ASCII's is part of the token, which then fails as malformed.
        let ideographic = headers("Bearer a.b.c\u{3000}".as_bytes());
        assert_eq!(bearer(&ideographic), Ok("a.b.c\u{3000}"));
    }
}
