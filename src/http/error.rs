//! The one place errors become HTTP responses.
//!
//! Every error has the same JSON shape, `{"error":{"code","message","request_id"}}`, with a stable
//! `code`. Handlers return [`ApiError`]; its response carries the code and message in an
//! extension, and the request-id middleware (which knows the id) renders the body. That way even
//! a caught panic or a 405 from the router gets the same shape.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::jwt::JwtError;
use crate::login::error::LoginError;
use crate::login::session::SessionError;
use crate::sts::FailureClass;

/// Header that carries the request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A per-request id. The edge makes one for every request and runs the request inside its
/// scope: handlers read it with [`RequestId::current`].
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

tokio::task_local! {
    // A task-local rather than a request extension: a fourth extension grew the request's
    // extension map (two allocations and a rehash a request, on top of the value's box).
    static CURRENT: RequestId;
}

impl RequestId {
    /// The id of the request being handled, or `None` outside one (outside the edge).
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `call` as the request with this id.
    pub fn sync_scope<R>(self, call: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, call)
    }

    /// Runs `future` as the request with this id.
    pub fn scope<F: std::future::Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<Self, F> {
        CURRENT.scope(self, future)
    }

    /// The id as text (32 hex digits; empty if it somehow is not text).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
}

/// Errors a client can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404: no such route.
    NotFound,
    /// 404: `/get_sts_token/{name}` names no configured profile.
    UnknownProfile,
    /// 405: only `GET` (and `HEAD`) are served; the `Allow` header lists them.
    MethodNotAllowed,
    /// 401: the profile requires a JWT and the request has none or a bad one;
    /// `WWW-Authenticate` says so too. The code and message name the failed check.
    Unauthorized(JwtError),
    /// 503: the request took longer than the deadline.
    RequestTimeout,
    /// 503: too many requests in flight; shed at once with `Retry-After: 1`.
    Overloaded,
    /// 503: the operator turned this profile off (kill switch); no `Retry-After`, since
    /// nobody knows when it comes back.
    ProfileDisabled,
    /// 503: the profile's JWT keys (JWKS URL) cannot be fetched and none are cached: our
    /// fault, not the caller's, so not a 401 that would send them to log in again.
    JwtKeysUnavailable,
    /// 429: too many requests from this address or subject; `Retry-After` says when to retry.
    RateLimited { retry_after_secs: u64 },
    /// 503 (STS unavailable, or the first token still on its way) or 502 (STS refuses the call):
    /// no servable token; `Retry-After` says when the next attempt is due.
    TokenUnavailable {
        class: Option<FailureClass>,
        retry_after_secs: u64,
    },
    /// 500: a bug; details are in the log.
    Internal,
    /// 421: an admin route asked under a `Host` name that is not an IP address, `localhost` or
    /// listed in `STSVEND_ADMIN_HOSTS` (a DNS-rebinding page would send its own name).
    AdminHostRefused,
    /// 403: an admin route asked with an `Origin` other than the listener's own: a web page.
    AdminOriginRefused,
    /// 401: `STSVEND_ADMIN_TOKEN` is set and the request has no `Authorization: Bearer`.
    AdminTokenMissing,
    /// 401: the admin bearer token is wrong.
    AdminTokenInvalid,
    /// 400: a state-changing admin call without `X-Stsvend-Admin`.
    AdminHeaderMissing,
    /// 401: a login profile's session token is missing, bad, for another profile, or expired.
    Session(SessionError),
    /// `POST /session`: the platform's code exchange failed (the status depends on why).
    Login(LoginError),
    /// 404: `POST /session` to a profile whose auth is not a mini program login.
    LoginNotEnabled,
    /// 400: the `POST /session` body is not what it must be; the text names the field.
    BadLoginRequest(&'static str),
    /// 405 on `/session`: only `POST`; the `Allow` header says so.
    PostOnly,
    /// 415: `POST /session` without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 429: too many login attempts from this address prefix.
    LoginAttemptsLimited { retry_after_secs: u64 },
}

/// What the request-id middleware needs to render an error body.
#[derive(Debug, Clone)]
struct ErrorInfo {
    code: &'static str,
    message: &'static str,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound | Self::UnknownProfile => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed | Self::PostOnly => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TokenUnavailable {
                class: Some(FailureClass::Rejected),
                ..
            } => StatusCode::BAD_GATEWAY,
            Self::TokenUnavailable { .. }
            | Self::JwtKeysUnavailable
            | Self::ProfileDisabled
            | Self::RequestTimeout
            | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AdminHostRefused => StatusCode::MISDIRECTED_REQUEST,
            Self::AdminOriginRefused => StatusCode::FORBIDDEN,
            Self::AdminTokenMissing | Self::AdminTokenInvalid => StatusCode::UNAUTHORIZED,
            Self::AdminHeaderMissing | Self::BadLoginRequest(_) => StatusCode::BAD_REQUEST,
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::Login(error) => login_status(error),
            Self::LoginNotEnabled => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::LoginAttemptsLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn info(&self) -> ErrorInfo {
        let (code, message) = match self {
            Self::NotFound => (
                "not_found",
                "no such endpoint; tokens are served at GET /get_sts_token",
            ),
            Self::UnknownProfile => (
                "unknown_profile",
                "no token profile by that name is configured on this server",
            ),
            Self::MethodNotAllowed => (
                "method_not_allowed",
                "this endpoint only answers GET (and HEAD); see the Allow header",
            ),
            Self::Unauthorized(error) => (error.code(), error.description()),
            Self::RequestTimeout => (
                "request_timeout",
                "the request took too long and was abandoned; retry",
            ),
            Self::Overloaded => (
                "overloaded",
                "the server is handling too many requests; retry after the number of seconds in Retry-After",
            ),
            Self::ProfileDisabled => (
                "profile_disabled",
                "the operator has turned token vending off for this profile",
            ),
            Self::JwtKeysUnavailable => (
                "jwt_keys_unavailable",
                "the keys to check your login token cannot be fetched right now; retry after the number of seconds in Retry-After",
            ),
            Self::RateLimited { .. } => (
                "rate_limited",
                "too many token requests from this address, user or network; retry after the number of seconds in Retry-After",
            ),
            Self::TokenUnavailable {
                class: Some(FailureClass::Rejected),
                ..
            } => (
                "sts_rejected",
                "the token service is misconfigured and cannot obtain credentials; the operator has been told in the server log. Retry later",
            ),
            Self::TokenUnavailable {
                class: Some(FailureClass::Unavailable),
                ..
            } => (
                "sts_unavailable",
                "credentials are temporarily unavailable; retry after the number of seconds in Retry-After",
            ),
            Self::TokenUnavailable { class: None, .. } => (
                "token_not_ready",
                "the first credentials are still being obtained; retry after the number of seconds in Retry-After",
            ),
            Self::Internal => (
                "internal_error",
                "an unexpected error occurred; the server log has the details",
            ),
            Self::AdminHostRefused
            | Self::AdminOriginRefused
            | Self::AdminTokenMissing
            | Self::AdminTokenInvalid
            | Self::AdminHeaderMissing => admin_info(self),
            Self::Session(_)
            | Self::Login(_)
            | Self::LoginNotEnabled
            | Self::BadLoginRequest(_)
            | Self::PostOnly
            | Self::UnsupportedMediaType
            | Self::LoginAttemptsLimited { .. } => login_request_info(self),
        };
        ErrorInfo { code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        match &self {
            Self::MethodNotAllowed => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Self::PostOnly => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Self::TokenUnavailable {
                retry_after_secs, ..
            }
            | Self::RateLimited { retry_after_secs }
            | Self::LoginAttemptsLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::JwtKeysUnavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(5u32));
            }
            Self::Overloaded | Self::RequestTimeout => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            Self::Unauthorized(error) => {
                // RFC 6750 §3: the scheme, and for a bad token which check failed. The texts are
                // ours and fixed, never the token.
                let value = if *error == JwtError::Missing {
                    "Bearer realm=\"stsvend\"".to_owned()
                } else {
                    format!(
                        "Bearer realm=\"stsvend\", error=\"invalid_token\", error_description=\"{}\"",
                        error.description().replace(['"', '\\'], "'")
                    )
                };
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::Login(error) => {
                if let Some(wait) = error.retry_after() {
                    response.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(wait.as_secs().max(1)),
                    );
                }
            }
            Self::Session(_) => {
                // Fixed text: the session's own description never echoes the token.
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stsvend\", error=\"invalid_token\""),
                );
            }
            Self::AdminTokenMissing | Self::AdminTokenInvalid => {
                let value = if matches!(self, Self::AdminTokenMissing) {
                    "Bearer realm=\"stsvend-admin\""
                } else {
                    "Bearer realm=\"stsvend-admin\", error=\"invalid_token\""
                };
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
            }
            _ => {}
        }
        response.extensions_mut().insert(self.info());
        response
    }
}

/// The refusals of `POST /session` and of session tokens.
fn login_request_info(error: &ApiError) -> (&'static str, &'static str) {
    match error {
        ApiError::Session(error) => (error.code(), error.description()),
        ApiError::Login(error) => login_info(error),
        ApiError::LoginNotEnabled => (
            "login_not_enabled",
            "this profile does not take mini program logins (its auth is none, jwt or report); ask GET /get_sts_token instead",
        ),
        ApiError::BadLoginRequest(message) => ("invalid_login_request", *message),
        ApiError::PostOnly => (
            "method_not_allowed",
            "this endpoint only answers POST with a JSON body {\"platform\",\"code\"}",
        ),
        ApiError::UnsupportedMediaType => (
            "unsupported_media_type",
            "POST /session takes a JSON body: send Content-Type: application/json",
        ),
        ApiError::LoginAttemptsLimited { .. } => (
            "login_attempts_limited",
            "too many login attempts from this address; retry after the number of seconds in Retry-After",
        ),
        _ => (
            "internal_error",
            "an unexpected error occurred; the server log has the details",
        ),
    }
}

/// The admin listener's refusals.
fn admin_info(error: &ApiError) -> (&'static str, &'static str) {
    match error {
        ApiError::AdminHostRefused => (
            "admin_host_refused",
            "the admin listener answers only to IP addresses, localhost and the names in STSVEND_ADMIN_HOSTS; use one of them as the host, or list this name",
        ),
        ApiError::AdminOriginRefused => (
            "admin_origin_refused",
            "the admin listener refuses requests from web pages (an Origin header other than its own); call it with curl or another non-browser client",
        ),
        ApiError::AdminTokenMissing => (
            "admin_token_missing",
            "this admin endpoint needs the admin token: send Authorization: Bearer <the STSVEND_ADMIN_TOKEN value>",
        ),
        ApiError::AdminTokenInvalid => (
            "admin_token_invalid",
            "the admin token is wrong: send Authorization: Bearer <the STSVEND_ADMIN_TOKEN value>",
        ),
        ApiError::AdminHeaderMissing => (
            "admin_header_missing",
            "a state-changing admin call needs the header X-Stsvend-Admin: 1",
        ),
        _ => (
            "internal_error",
            "an unexpected error occurred; the server log has the details",
        ),
    }
}

fn login_status(error: &LoginError) -> StatusCode {
    match error {
        LoginError::NotAccepted(_) => StatusCode::BAD_REQUEST,
        LoginError::InvalidCode(_) => StatusCode::UNAUTHORIZED,
        LoginError::Blocked(_) => StatusCode::FORBIDDEN,
        LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        LoginError::Misconfigured { .. } | LoginError::Unavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Fixed texts: a platform's own message, the code and the reason stay in the server log.
fn login_info(error: &LoginError) -> (&'static str, &'static str) {
    match error {
        LoginError::NotAccepted(_) => (
            "platform_not_accepted",
            "this profile does not accept logins from that platform; see the profile's auth setting",
        ),
        LoginError::InvalidCode(_) => (
            "invalid_login_code",
            "the platform refused the login code (invalid, expired or already used); get a new code (wx.login / my.getAuthCode) and log in again",
        ),
        LoginError::Blocked(_) => (
            "login_blocked",
            "the platform blocked this user's login (WeChat flags the user as high-risk)",
        ),
        LoginError::RateLimited(_) => (
            "platform_rate_limited",
            "the platform's login frequency limit for this user was reached; retry after the number of seconds in Retry-After",
        ),
        LoginError::Misconfigured { .. } => (
            "login_unavailable",
            "logins cannot be checked with the platform right now (the operator has been told in the server log); retry after the number of seconds in Retry-After",
        ),
        LoginError::Unavailable { .. } => (
            "login_unavailable",
            "the platform did not confirm the login in time; retry after the number of seconds in Retry-After",
        ),
    }
}

/// Why a token request was refused: the one value that gives the client's answer (its
/// [`ApiError`]), the audit line's reason and the labels of `stsvend_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The kill switch has the profile off.
    Disabled,
    /// The caller's address (or IPv6 prefix) is over its rate; retry after `wait`.
    RateLimitIp { wait: Duration },
    /// The JWT keys cannot be fetched (`jwt` mode; report mode serves the guest token).
    KeysUnavailable,
    /// A JWT check failed.
    Auth(JwtError),
    /// A login profile's session token was refused.
    Session(SessionError),
    /// The caller's subject is over its rate; retry after `wait`.
    RateLimitSubject { wait: Duration },
    /// The caller's network has had its share of new per-caller tokens; retry after `wait`.
    NewTokenLimitNetwork { wait: Duration },
    /// No servable token: STS failed (`class`) or the first token is on its way (`None`).
    NoToken {
        class: Option<FailureClass>,
        retry_after: Duration,
    },
}

impl Rejection {
    /// The words in the audit line's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Disabled => "profile disabled by the kill switch",
            Self::RateLimitIp { .. } => "rate limit per address",
            Self::KeysUnavailable => "jwt keys unavailable",
            Self::Auth(error) => error.code(),
            Self::Session(error) => error.code(),
            Self::RateLimitSubject { .. } => "rate limit per user",
            Self::NewTokenLimitNetwork { .. } => "new-token limit per network",
            Self::NoToken { .. } => "no token available",
        }
    }

    /// The `reason` and `check` labels of `stsvend_rejections_total`.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Self::Disabled => ("disabled", ""),
            Self::RateLimitIp { .. } => ("rate_limit_ip", ""),
            Self::Auth(error) => ("auth", error.code()),
            Self::Session(error) => ("auth", error.code()),
            Self::RateLimitSubject { .. } => ("rate_limit_subject", ""),
            Self::NewTokenLimitNetwork { .. } => ("new_token_limit_network", ""),
            // The reason is the code of the error the client is answered with.
            Self::KeysUnavailable | Self::NoToken { .. } => (ApiError::from(self).info().code, ""),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        // Round up, and never tell a client to retry immediately.
        let secs = |wait: Duration| wait.as_secs().saturating_add(1);
        match rejection {
            Rejection::Disabled => Self::ProfileDisabled,
            Rejection::KeysUnavailable => Self::JwtKeysUnavailable,
            Rejection::Auth(error) => Self::Unauthorized(error),
            Rejection::Session(error) => Self::Session(error),
            Rejection::RateLimitIp { wait }
            | Rejection::RateLimitSubject { wait }
            | Rejection::NewTokenLimitNetwork { wait } => Self::RateLimited {
                retry_after_secs: secs(wait),
            },
            Rejection::NoToken { class, retry_after } => Self::TokenUnavailable {
                class,
                retry_after_secs: secs(retry_after),
            },
        }
    }
}

/// A fresh request id: 128 random bits as 32 hex digits. Client-supplied ids are neither
/// trusted nor echoed. Drawn from the thread's generator, not the OS, so an id costs no syscall;
/// and written [`IDS_PER_BLOCK`] at a time into one buffer per thread that each id's header value
/// shares, so an id costs no allocation either (two, each cloned once, before).
pub fn new_request_id() -> RequestId {
    thread_local! {
        static BLOCK: std::cell::RefCell<(bytes::Bytes, usize)> =
            const { std::cell::RefCell::new((bytes::Bytes::new(), 0)) };
    }
    BLOCK.with_borrow_mut(|(block, used)| {
        if *used == block.len() {
            *block = id_block();
            *used = 0;
        }
        let id = block.slice(*used..*used + ID_LEN);
        *used += ID_LEN;
        RequestId(HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("invalid")))
    })
}

/// Hex digits in a request id.
const ID_LEN: usize = 32;
/// Request ids made at once per thread (a 4 KiB buffer).
const IDS_PER_BLOCK: usize = 128;

fn id_block() -> bytes::Bytes {
    let mut block = Vec::with_capacity(ID_LEN * IDS_PER_BLOCK);
    let mut buf = uuid::Uuid::encode_buffer();
    for _ in 0..IDS_PER_BLOCK {
        let id = uuid::Uuid::from_u128(rand::random::<u128>())
            .simple()
            .encode_lower(&mut buf);
        block.extend_from_slice(id.as_bytes());
    }
    bytes::Bytes::from(block)
}

/// Puts the request id on a finished response, and renders the standard error body when the
/// response came from an [`ApiError`] (its [`ErrorInfo`] extension).
pub fn finish(mut response: Response, id: &RequestId) -> Response {
    if let Some(info) = response.extensions_mut().remove::<ErrorInfo>() {
        let body = serde_json::json!({
            "error": {
                "code": info.code,
                "message": info.message,
                "request_id": id.0.to_str().unwrap_or(""),
            }
        });
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(body.to_string());
    }
    // A `HeaderName` made at compile time: naming the header by `&str` copies the name per request.
    static NAME: header::HeaderName = header::HeaderName::from_static(REQUEST_ID_HEADER);
    response.headers_mut().insert(NAME.clone(), id.0.clone());
    response
}

/// Gives the router's own bare `405` (a `POST` route asked with `GET`, say), which has the right
/// `Allow` but an empty body, the standard error body, so every error has the same shape (found
/// by scripts/schemathesis.sh). Not `ApiError::MethodNotAllowed`: its `Allow` is `GET, HEAD`.
pub fn with_error_body(mut response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.extensions().get::<ErrorInfo>().is_none()
    {
        response.extensions_mut().insert(ErrorInfo {
            code: "method_not_allowed",
            message: "this endpoint does not answer this method; see the Allow header",
        });
    }
    response
}

/// Fallback for a known path asked with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The fallback of the `POST`-only login routes.
pub async fn method_not_allowed_post() -> ApiError {
    ApiError::PostOnly
}

/// Turns a caught panic into the standard 500 body. The panic message is not included: it
/// could contain anything.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::Internal.into_response()
}
