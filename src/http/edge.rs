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
//! One middleware rather than a stack of six, and a service of its own rather than a `from_fn`
//! layer: each `from_fn` layer clones the services inside it and boxes futures per request,
//! which on the token path cost as much as the handler.
//! The connection-level limits (header read timeout, header size) are in [`crate::server`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

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

impl<S> Layer<S> for Edge {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            edge: self.clone(),
            inner,
        }
    }
}

/// The edge around one route. Added with `Router::layer`, so the router has matched the path
/// before it runs. A service of its own rather than `axum::middleware::from_fn`, which boxed the
/// inner service into its `Next` and that service's future again on every request.
#[derive(Debug, Clone)]
pub struct EdgeService<S> {
    edge: Edge,
    inner: S,
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse + Send,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = tokio::time::Instant::now();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let id = error::new_request_id();
        let edge = self.edge.clone();
        let read_only = edge.methods == Methods::ReadOnly
            && !matches!(
                *request.method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            );
        let handled = if read_only {
            Handled::Refused(ApiError::MethodNotAllowed)
        } else {
            match edge.slots.clone().try_acquire_owned() {
                // Inside the request's id (the trace layer's span, when on, is made here) and
                // under the panic guard, like the route's future below.
                Ok(permit) => match std::panic::catch_unwind(AssertUnwindSafe(|| {
                    id.clone().sync_scope(|| self.inner.call(request))
                })) {
                    Ok(future) => Handled::Route(permit, future),
                    Err(panic) => Handled::Panicked(panic),
                },
                Err(_) => Handled::Refused(ApiError::Overloaded),
            }
        };
        Box::pin(async move {
            let response = match handled {
                Handled::Route(_permit, future) => {
                    respond(id.clone().scope(future), started + REQUEST_TIMEOUT).await
                }
                Handled::Refused(refusal) => refusal.into_response(),
                Handled::Panicked(panic) => error::panic_response(panic),
            };
            Ok(finish(&edge, response, &id, route.as_ref(), started))
        })
    }
}

/// What becomes of a request before its route's future runs.
enum Handled<F> {
    /// The route's future, holding one of the in-flight slots.
    Route(OwnedSemaphorePermit, F),
    Refused(ApiError),
    /// Calling the route panicked (only a layer that works in `call`, such as the trace layer).
    Panicked(Box<dyn std::any::Any + Send + 'static>),
}

/// The route's answer, or the standard 500 if it panicked, or 503 at `deadline` (the request's
/// start and [`REQUEST_TIMEOUT`]).
async fn respond<F, R>(future: F, deadline: tokio::time::Instant) -> Response
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    let mut handled = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
    // A cached token is answered on the first poll: no timer is made for it (a clock read and
    // the runtime's timer handle, per request).
    let first = std::future::poll_fn(|cx| Poll::Ready(handled.as_mut().poll(cx))).await;
    let answered = match first {
        Poll::Ready(answered) => Ok(answered),
        Poll::Pending => tokio::time::timeout_at(deadline, handled).await,
    };
    match answered {
        Ok(Ok(Ok(response))) => response.into_response(),
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(panic)) => error::panic_response(panic),
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// On the way out: the id, error bodies, `nosniff`, and the request counted and timed.
fn finish(
    edge: &Edge,
    response: Response,
    id: &error::RequestId,
    route: Option<&MatchedPath>,
    started: tokio::time::Instant,
) -> Response {
    let mut response = error::finish(error::with_error_body(response), id);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let route = route.map(MatchedPath::as_str);
    crate::metrics::record_request(
        route,
        // Looked up only when the metrics meet this route for the first time.
        || route.map_or("", |route| edge.profiles.of(route)),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    /// A layer that panics while being called (as the trace layer's span making could), rather
    /// than in its future: the standard 500, with an id, counted like any answer.
    #[tokio::test]
    async fn a_route_that_panics_when_called_gets_the_standard_500() {
        let panics = tower::service_fn(
            |_: Request| -> std::future::Ready<Result<Response, Infallible>> {
                panic!("layer bug")
            },
        );
        let service = Edge::default().layer(panics);
        let request = Request::builder().uri("/x").body(Body::empty()).unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 32);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert_eq!(body["error"]["request_id"], id, "{body}");
    }

    /// Everything the route does, its call and its future, sees the request's id.
    #[tokio::test]
    async fn the_route_sees_the_id_the_answer_carries() {
        let route = tower::service_fn(|_: Request| {
            let at_call = error::RequestId::current().map(|id| id.as_str().to_owned());
            async move {
                tokio::task::yield_now().await;
                let at_poll = error::RequestId::current().map(|id| id.as_str().to_owned());
                assert_eq!(at_call, at_poll);
                Ok::<_, Infallible>(at_poll.unwrap_or_default().into_response())
            }
        });
        let request = Request::builder().uri("/x").body(Body::empty()).unwrap();
        let response = Edge::default().layer(route).oneshot(request).await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(body, id.as_bytes());
        assert!(error::RequestId::current().is_none());
    }
}
