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
use futures_util::future::CatchUnwind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::futures::TaskLocalFuture;
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
            lane: None,
        }
    }
}

impl Edge {
    /// The edge around `inner` for a lane ([`crate::server::Lane`]): the same as the router's
    /// layer, with `route`, the pattern the router would have matched, in place of the one the
    /// router would have put in the request.
    pub fn lane<S>(&self, inner: S, route: &str) -> EdgeService<S> {
        EdgeService {
            edge: self.clone(),
            inner,
            lane: Some(route.into()),
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
    /// A lane's route pattern; `None` behind the router, which says it per request.
    lane: Option<Arc<str>>,
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse + Send,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = tokio::time::Instant::now();
        let route = match &self.lane {
            Some(route) => Some(RouteName::Lane(Arc::clone(route))),
            None => request
                .extensions()
                .get::<MatchedPath>()
                .cloned()
                .map(RouteName::Matched),
        };
        let id = error::new_request_id();
        let edge = self.edge.clone();
        let read_only = edge.methods == Methods::ReadOnly
            && !matches!(
                *request.method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            );
        let step = if read_only {
            Step::answer(ApiError::MethodNotAllowed.into_response())
        } else if let Ok(permit) = edge.slots.clone().try_acquire_owned() {
            // Inside the request's id (the trace layer's span, when on, is made here) and under
            // the panic guard, like the route's future.
            match std::panic::catch_unwind(AssertUnwindSafe(|| {
                id.clone().sync_scope(|| self.inner.call(request))
            })) {
                Ok(route) => Step::Route {
                    future: AssertUnwindSafe(id.clone().scope(route)).catch_unwind(),
                    _permit: permit,
                },
                Err(panic) => Step::answer(error::panic_response(panic)),
            }
        } else {
            Step::answer(ApiError::Overloaded.into_response())
        };
        EdgeFuture {
            step,
            timer: None,
            edge,
            id,
            route_path: route,
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The edge's future: the route's answer (or the standard 500 if it panicked, or 503 at the
    /// request's start and [`REQUEST_TIMEOUT`]), finished on the way out.
    ///
    /// Written by hand rather than as an `async` block: a block holds the route's future twice
    /// (as captured, and as awaited), and its 1,488 bytes, boxed per request, were past the
    /// allocator's per-thread cache (README, Performance, "Round 5").
    pub struct EdgeFuture<F> {
        #[pin]
        step: Step<F>,
        // The request's deadline, made only if the route is not done at its first poll (a cached
        // token is): a clock read and the runtime's timer wheel saved per request.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        edge: Edge,
        id: error::RequestId,
        route_path: Option<RouteName>,
        started: tokio::time::Instant,
    }
}

/// The route pattern a request was served by, for its metrics.
#[derive(Debug)]
enum RouteName {
    Matched(MatchedPath),
    Lane(Arc<str>),
}

impl RouteName {
    fn as_str(&self) -> &str {
        match self {
            Self::Matched(matched) => matched.as_str(),
            Self::Lane(route) => route,
        }
    }
}

pin_project_lite::pin_project! {
    /// Where a request is: its route running (holding one of the in-flight slots), or its answer
    /// decided before any route ran (refused, or the call panicked); `None` once answered.
    #[project = StepProj]
    enum Step<F> {
        Route {
            #[pin]
            future: CatchUnwind<AssertUnwindSafe<TaskLocalFuture<error::RequestId, F>>>,
            _permit: OwnedSemaphorePermit,
        },
        Answer { response: Option<Response> },
    }
}

impl<F> Step<F> {
    fn answer(response: Response) -> Self {
        Self::Answer {
            response: Some(response),
        }
    }
}

impl<F, R> Future for EdgeFuture<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = match this.step.as_mut().project() {
            StepProj::Route { future, .. } => match future.poll(cx) {
                Poll::Ready(Ok(Ok(response))) => response.into_response(),
                Poll::Ready(Ok(Err(never))) => match never {},
                Poll::Ready(Err(panic)) => error::panic_response(panic),
                Poll::Pending => {
                    let deadline = *this.started + REQUEST_TIMEOUT;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    ApiError::RequestTimeout.into_response()
                }
            },
            StepProj::Answer { response } => match response.take() {
                Some(response) => response,
                // Polled again after its answer (a caller's bug): answer rather than panic, and
                // leave the metrics alone, which counted this request once already.
                None => return Poll::Ready(Ok(dress(ApiError::Internal.into_response(), this.id))),
            },
        };
        // The route's future and its slot go before the answer is finished, as they went
        // when the route's future was done.
        this.step.set(Step::Answer { response: None });
        *this.timer = None;
        Poll::Ready(Ok(finish(
            this.edge,
            response,
            this.id,
            this.route_path.as_ref(),
            *this.started,
        )))
    }
}

/// On the way out: the id, error bodies, `nosniff`, and the request counted and timed.
fn finish(
    edge: &Edge,
    response: Response,
    id: &error::RequestId,
    route: Option<&RouteName>,
    started: tokio::time::Instant,
) -> Response {
    let response = dress(response, id);
    let route = route.map(RouteName::as_str);
    crate::metrics::record_request(
        route,
        // Looked up only when the metrics meet this route for the first time.
        || route.map_or("", |route| edge.profiles.of(route)),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Every answer's dress: the id, the error body, `nosniff`.
fn dress(response: Response, id: &error::RequestId) -> Response {
    let mut response = error::finish(error::with_error_body(response), id);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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

    async fn error_code(response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// The deadline counts from the request's start even though its timer is only made at the
    /// route's first pending poll; the in-flight slot is held until the answer and then freed.
    #[tokio::test(start_paused = true)]
    async fn a_route_past_the_deadline_gets_503_and_its_slot_back() {
        let edge = Edge {
            slots: Arc::new(Semaphore::new(1)),
            ..Edge::default()
        };
        let stuck = edge.clone().layer(tower::service_fn(|_: Request| {
            std::future::pending::<Result<Response, Infallible>>()
        }));
        let ready = edge.layer(tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>("ok".into_response())
        }));
        let request = || Request::builder().uri("/x").body(Body::empty()).unwrap();
        let started = tokio::time::Instant::now();
        let mut waiting = std::pin::pin!(stuck.oneshot(request()));
        let first = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        // The one slot is taken: the next request is shed at once.
        let shed = ready.clone().oneshot(request()).await.unwrap();
        assert_eq!(error_code(shed).await, (503, "overloaded".to_owned()));
        let timed_out = waiting.await.unwrap();
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
        assert!(timed_out.headers().contains_key("x-request-id"));
        assert_eq!(
            error_code(timed_out).await,
            (503, "request_timeout".to_owned())
        );
        let served = ready.oneshot(request()).await.unwrap();
        assert_eq!(served.status(), 200);
    }

    /// The route pattern axum's router gives a request to `path`.
    async fn matched_path(path: &'static str) -> MatchedPath {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let keep = Arc::clone(&seen);
        let router = axum::Router::new().route(
            path,
            axum::routing::get(move |matched: MatchedPath| async move {
                *keep.lock().unwrap() = Some(matched);
            }),
        );
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        router.oneshot(request).await.unwrap();
        let matched = seen.lock().unwrap().take();
        matched.unwrap()
    }

    /// A future polled again after its answer (a caller's bug) answers 500 with an id and does
    /// not count the request a second time.
    #[tokio::test]
    async fn polled_after_its_answer_it_answers_500_and_counts_once() {
        const ROUTE: &str = "/edge-test/polled-twice";
        let metrics = crate::metrics::install();
        let mut request = Request::builder().uri(ROUTE).body(Body::empty()).unwrap();
        request.extensions_mut().insert(matched_path(ROUTE).await);
        let mut service = Edge::default().layer(tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>("ok".into_response())
        }));
        let mut future = std::pin::pin!(service.call(request));
        let mut poll = || {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Pending => panic!("a ready route's answer is ready at the first poll"),
            }
        };
        assert_eq!(poll().status(), 200);
        let again = poll();
        assert_eq!(again.status(), 500);
        assert!(again.headers().contains_key("x-request-id"));
        let counted: Vec<String> = metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("stsvend_http_requests_total") && line.contains(ROUTE))
            .map(str::to_owned)
            .collect();
        assert_eq!(counted.len(), 1, "{counted:?}");
        assert!(counted[0].contains("status=\"200\""), "{counted:?}");
        assert!(counted[0].ends_with(" 1"), "{counted:?}");
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
