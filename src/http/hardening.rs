//! Protections of the public listener that do not depend on the route: the methods it accepts,
//! a deadline per request, a cap on requests in flight (shedding the excess at once rather than
//! queueing it), and headers every response carries. The connection-level limits (header read
//! timeout, header size) are in [`crate::server`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// A request that takes longer than this is answered 503; the slowest legitimate path (waiting
/// for a fresh token) is bounded at a few seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests handled at once; beyond this, answer 503 `overloaded` immediately.
pub const MAX_IN_FLIGHT: usize = 2048;

/// Only `GET`, `HEAD` and `OPTIONS` (CORS preflight) are ever served.
pub async fn allowed_methods(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        next.run(request).await
    } else {
        ApiError::MethodNotAllowed.into_response()
    }
}

pub async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// Sheds load instead of queueing it: a client told "overloaded, retry in a second" does better
/// than one whose request waits behind thousands of others.
pub async fn shed_load(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match slots.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

/// `X-Content-Type-Options: nosniff` on everything (no `Server` header is ever added).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
