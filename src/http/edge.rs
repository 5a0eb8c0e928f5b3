//! The outer middleware of every route, public, admin and dev, in one piece: every request
//! passes through it once.
//!
//! In order: start the clock and note the matched route; give the request a fresh id; where the
//! router serves only reads (the public token routes), refuse methods other than `GET`, `HEAD`
//! and `OPTIONS`; shed load beyond [`MAX_IN_FLIGHT`] requests at once (answering at once rather
//! than queueing); bound the request by [`REQUEST_TIMEOUT`]. On the way out: the id in
//! `x-request-id`, a handler's panic answered `500` with the standard body, error bodies rendered
//! (the router's own bare `405` included), `nosniff` on everything, and the request counted and
//! timed.
//!
//! One middleware rather than a stack of six: each `from_fn` layer clones the services inside it
//! and boxes a future per request, which on the token path cost as much as the handler.
//! The connection-level limits (header read timeout, header size) are in [`crate::server`].

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tokio::sync::Semaphore;

use super::error::{self, ApiError};

/// A request that takes longer than this is answered 503; the slowest legitimate path (waiting
/// for a fresh token) is bounded at a few seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests handled at once; beyond this, answer 503 `overloaded` immediately.
pub const MAX_IN_FLIGHT: usize = 2048;

/// Which methods a router's edge lets through to its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `GET`, `HEAD` and `OPTIONS` only; anything else is `405` before the handler (and on
    /// unknown paths too), so the public surface never takes a body.
    ReadOnly,
    /// Whatever the routes serve (the kill switch's and the dev sink's `POST`); the router
    /// answers other methods `405` itself.
    Routed,
}

/// The profile each token route serves, by route pattern, as the router registered it: the
/// `profile` label of the request metrics. Routes not in it serve no profile (label `""`).
#[derive(Debug, Clone, Default)]
pub struct RouteProfiles(Arc<HashMap<String, String>>);

impl RouteProfiles {
    pub fn new(routes: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(Arc::new(routes.into_iter().collect()))
    }

    /// The profile `route` serves, or `""`.
    pub fn of(&self, route: &str) -> &str {
        self.0.get(route).map_or("", String::as_str)
    }
}

/// What the middleware shares across requests: one in-flight cap per listener, shared by every
/// router merged onto it, the router's method rule and its routes' profiles.
#[derive(Debug, Clone)]
pub struct Edge {
    slots: Arc<Semaphore>,
    methods: Methods,
    profiles: RouteProfiles,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            methods: Methods::ReadOnly,
            profiles: RouteProfiles::default(),
        }
    }
}

impl Edge {
    /// The same in-flight cap, with another method rule (for routers merged onto one listener)
    /// and no route profiles.
    pub fn with_methods(&self, methods: Methods) -> Self {
        Self {
            slots: self.slots.clone(),
            methods,
            profiles: RouteProfiles::default(),
        }
    }

    /// The same edge, labelling requests with the profiles of `profiles`.
    #[must_use]
    pub fn with_profiles(mut self, profiles: RouteProfiles) -> Self {
        self.profiles = profiles;
        self
    }
}

/// Added with `Router::layer`, so the router has matched the path before it runs.
pub async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let id = error::new_request_id();
    let response = if edge.methods == Methods::ReadOnly
        && !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        ) {
        ApiError::MethodNotAllowed.into_response()
    } else {
        match edge.slots.try_acquire() {
            Ok(_permit) => {
                // Here rather than in a layer of its own (one service fewer per request); the
                // inner services are called inside this future, so their panics land here too.
                let handled = AssertUnwindSafe(id.clone().scope(next.run(request))).catch_unwind();
                match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(panic)) => error::panic_response(panic),
                    Err(_) => ApiError::RequestTimeout.into_response(),
                }
            }
            Err(_) => ApiError::Overloaded.into_response(),
        }
    };
    let mut response = error::finish(error::with_error_body(response), &id);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let route = route.as_ref().map(MatchedPath::as_str);
    crate::metrics::record_request(
        route,
        // Looked up only when the metrics meet this route for the first time.
        || route.map_or("", |route| edge.profiles.of(route)),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
