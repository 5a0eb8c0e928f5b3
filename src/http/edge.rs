//! The public listener's outer middleware, in one piece: every request passes through it once.
//!
//! In order: start the clock and note the matched route; give the request a fresh id; refuse
//! methods other than `GET`, `HEAD` and `OPTIONS`; shed load beyond [`MAX_IN_FLIGHT`] requests
//! at once (answering at once rather than queueing); bound the request by [`REQUEST_TIMEOUT`].
//! On the way out: the id in `x-request-id`, error bodies rendered, `nosniff` on everything, and
//! the request counted and timed.
//!
//! One middleware rather than a stack of six: each `from_fn` layer clones the services inside it
//! and boxes a future per request, which on the token path cost as much as the handler.
//! The connection-level limits (header read timeout, header size) are in [`crate::server`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::{self, ApiError};

/// A request that takes longer than this is answered 503; the slowest legitimate path (waiting
/// for a fresh token) is bounded at a few seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests handled at once; beyond this, answer 503 `overloaded` immediately.
pub const MAX_IN_FLIGHT: usize = 2048;

/// What the middleware shares across requests.
#[derive(Debug, Clone)]
pub struct Edge {
    slots: Arc<Semaphore>,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

/// Added with `Router::layer`, so the router has matched the path before it runs.
pub async fn edge(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let id = error::new_request_id();
    request.extensions_mut().insert(id.clone());
    let response = if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        ApiError::MethodNotAllowed.into_response()
    } else {
        match edge.slots.try_acquire() {
            Ok(_permit) => match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::RequestTimeout.into_response(),
            },
            Err(_) => ApiError::Overloaded.into_response(),
        }
    };
    let mut response = error::finish(response, &id);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    crate::metrics::record_request(
        route.as_ref().map(MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
