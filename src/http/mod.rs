//! The public HTTP surface: token, health and readiness endpoints, and the middleware stack.

pub mod admin;
pub mod audit;
pub mod client_ip;
pub mod edge;
pub mod error;
pub mod fleet_limits;
pub mod fleet_switch;
pub mod health;
pub mod limits;
pub mod logins;
pub mod openapi;
pub mod session;
pub mod state;
pub mod token;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, get_service, post};
use futures_util::FutureExt as _;
use tower::{Service as _, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::ApiError;
pub use state::{AppState, ProfileState};

use crate::config::{AuthMode, DEFAULT_PROFILE};
use crate::server::{Lane, Served};

/// The public router. A function, so tests can drive it without a socket (requests need a
/// `ConnectInfo<SocketAddr>` extension, which `axum::serve` provides).
pub fn public_router(state: AppState) -> Router {
    public_surface(state, &edge::Edge::default()).router
}

/// The public router behind `edge` (read-only methods), whose in-flight cap other routers on
/// the same listener share, with a lane for each token route that has no CORS layer (and none
/// while debug logging adds layers of its own, see [`harden`]).
pub fn public_surface(state: AppState, edge: &edge::Edge) -> Served {
    let mut router = Router::new();
    let profiles = route_profiles(state.profiles().iter().map(|p| p.name.as_str()));
    // Login profiles take `POST /session`; without them the public surface takes no body.
    let logins = state.profiles().iter().any(|p| p.logins.is_some());
    let methods = if logins {
        edge::Methods::Routed
    } else {
        edge::Methods::ReadOnly
    };
    let edge = edge.with_methods(methods).with_profiles(profiles);
    // Debug logging puts layers of its own around the routes (see `harden`), which a lane skips.
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    let mut lanes = Vec::new();
    for profile in state.profiles() {
        let path = token_path(&profile.name);
        // The state and profile in one `Arc` the route's service owns: cloned per request (one
        // atomic add), where a `State<AppState>` extractor cloned every `Arc` in the state and
        // the profile besides.
        let route_state = Arc::new((state.clone(), profile.clone()));
        let token = tower::service_fn(move |request: Request| {
            token::serve(Arc::clone(&route_state), request)
        });
        let route = get_service(token.clone())
            .options(options_allowed)
            .fallback(error::method_not_allowed);
        // On the route itself, so each profile answers preflights for its own origins only.
        // The CORS layer would answer any `OPTIONS` as a preflight; one that is not (no
        // well-formed `Origin`, no `Access-Control-Request-Method`) gets the same plain answer
        // as on a profile without CORS: `204` with `Allow`, and no CORS headers.
        router = match cors_layer(&profile) {
            Some(cors) => router.route(
                &path,
                route
                    .layer(cors)
                    .layer(axum::middleware::from_fn(preflights_only)),
            ),
            None => {
                if !debug {
                    lanes.push(token_lane(&edge, token, &path));
                }
                router.route(&path, route)
            }
        };
    }
    if logins {
        router = session_routes(router, &state);
    }
    if state.profile(DEFAULT_PROFILE).is_none() {
        router = router.route(
            "/get_sts_token",
            get(unknown_profile)
                .options(unknown_profile)
                .fallback(error::method_not_allowed),
        );
    }
    let router = router
        // A CORS preflight for a profile that does not exist is told so (404), like a GET:
        // 405 would claim the resource exists and refuses OPTIONS (schemathesis, ST202).
        .route(
            "/get_sts_token/{profile}",
            get(unknown_profile)
                .options(unknown_profile)
                .fallback(error::method_not_allowed),
        )
        .route(
            "/healthz",
            get(health::healthz).fallback(error::method_not_allowed),
        )
        .route(
            "/readyz",
            get(health::public_readyz).fallback(error::method_not_allowed),
        )
        .route(
            "/openapi.json",
            get(openapi::public).fallback(error::method_not_allowed),
        )
        .fallback(|| async { ApiError::NotFound })
        .with_state(state);
    Served::new(harden_with(router, edge, debug), lanes)
}

/// A token route's lane: its service behind the same edge as the router's route, answering
/// what the router would (`GET` only; a `GET` route's response as axum's route leaves it).
fn token_lane<S>(edge: &edge::Edge, token: S, path: &str) -> Lane
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone,
    S: Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let service = edge.lane(token, path);
    Lane::new(path, move |request| {
        let answer = service.clone().call(request);
        Box::pin(answer.map(|answer| with_length(answer.unwrap_or_else(|never| match never {}))))
    })
}

/// The `Content-Length` axum's route adds on the way out when the body's size is known and the
/// header missing (error bodies are rendered after the token route answered).
fn with_length(mut response: Response) -> Response {
    use axum::body::HttpBody as _;
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(length) = response.body().size_hint().exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// `POST /session[/{profile}]` for every profile (a profile without logins answers
/// `login_not_enabled`), and `unknown_profile` for names that are none.
fn session_routes(mut router: Router<AppState>, state: &AppState) -> Router<AppState> {
    for profile in state.profiles() {
        let for_handler = profile.clone();
        let route = post(move |State(state): State<AppState>, request: Request| {
            session::login(state, for_handler.clone(), request)
        })
        .fallback(error::method_not_allowed_post);
        router = router.route(&session_path(&profile.name), route);
    }
    if state.profile(DEFAULT_PROFILE).is_none() {
        router = router.route(
            "/session",
            post(unknown_profile).fallback(error::method_not_allowed_post),
        );
    }
    router.route(
        "/session/{profile}",
        post(unknown_profile).fallback(error::method_not_allowed_post),
    )
}

/// The login route of profile `name`, beside its token route.
pub fn session_path(name: &str) -> String {
    if name == DEFAULT_PROFILE {
        "/session".to_owned()
    } else {
        format!("/session/{name}")
    }
}

/// The profile each token route serves, for the request metrics.
fn route_profiles<'a>(names: impl Iterator<Item = &'a str>) -> edge::RouteProfiles {
    let default = (token_path(DEFAULT_PROFILE), DEFAULT_PROFILE.to_owned());
    edge::RouteProfiles::new(
        std::iter::once(default).chain(names.map(|name| (token_path(name), name.to_owned()))),
    )
}

/// The token route of profile `name`. `/get_sts_token` is the default profile's whether or not
/// it is configured (unconfigured, the route answers `unknown_profile`, counted under `default`).
fn token_path(name: &str) -> String {
    if name == DEFAULT_PROFILE {
        "/get_sts_token".to_owned()
    } else {
        format!("/get_sts_token/{name}")
    }
}

/// Puts every route of `router` (its fallback too) behind the same layers, from the outside in:
/// the edge (an id for every answer, counted and timed, shed or not; inside the router, so the
/// matched route pattern is known; a handler's panic turned into a 500 with the standard body
/// rather than a dropped connection). Public, admin and dev routes alike, so none answers
/// without them.
/// With debug logging on at start-up, also one span per request carrying the request id
/// (never the query or headers), 5xx answers logged at debug (the refresher already logs their
/// cause once), and credentials-bearing headers marked sensitive before the trace layer sees
/// them. Only then: at the default level the audit line carries the request id, the trace layer
/// cost a fifth of the token path's throughput even with its span off, and nothing else logs a
/// request's headers, so the sensitive marking had nothing to protect.
/// One `Router::layer` call either way: each call boxes every route's service once more.
pub fn harden(router: Router, edge: edge::Edge) -> Router {
    harden_with(router, edge, tracing::enabled!(tracing::Level::DEBUG))
}

/// [`harden`], with debug logging's layers or without.
fn harden_with(router: Router, edge: edge::Edge, debug: bool) -> Router {
    if debug {
        let sensitive =
            SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]);
        let trace = TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG));
        router.layer(
            ServiceBuilder::new()
                .layer(edge)
                .layer(sensitive)
                .layer(trace),
        )
    } else {
        router.layer(edge)
    }
}

async fn preflights_only(request: Request, next: axum::middleware::Next) -> Response {
    if request.method() == Method::OPTIONS && !is_preflight(request.headers()) {
        return options_allowed().await;
    }
    next.run(request).await
}

/// A CORS preflight: `Access-Control-Request-Method` and an `Origin` that is a serialized
/// origin (`scheme://host[:port]`; not empty, not `null`, not a URL with a path).
fn is_preflight(headers: &HeaderMap) -> bool {
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(|o| url::Url::parse(o).ok().map(|url| (o, url)))
        .is_some_and(|(text, url)| {
            matches!(url.scheme(), "http" | "https")
                && url
                    .origin()
                    .ascii_serialization()
                    .eq_ignore_ascii_case(text)
        });
    origin_ok && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// An `OPTIONS` that is not a CORS preflight asks which methods the path answers (RFC 9110
/// §9.3.7): `204` with `Allow`. Without CORS headers a browser's preflight still fails, as it
/// should on a profile that allows no origin.
async fn options_allowed() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        )],
    )
        .into_response()
}

async fn unknown_profile() -> ApiError {
    ApiError::UnknownProfile
}

/// CORS for browser callers of one profile: exactly its origins, `GET`/`HEAD`, and the
/// `Authorization` header only where JWTs are checked. No origins, no CORS headers at all.
fn cors_layer(profile: &state::ProfileState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = profile
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let mut cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::HEAD])
        .max_age(std::time::Duration::from_secs(600));
    if profile.auth != AuthMode::None {
        cors = cors.allow_headers([header::AUTHORIZATION]);
    }
    Some(cors)
}

fn request_span(request: &Request) -> tracing::Span {
    let id = error::RequestId::current();
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id.as_ref().map_or("", error::RequestId::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_with_the_standard_body() {
        use tower::ServiceExt as _;
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let router = harden(
            Router::new().route("/boom", get(boom)),
            edge::Edge::default(),
        );
        let request = Request::builder()
            .uri("/boom")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = response.headers()[error::REQUEST_ID_HEADER].clone();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert_eq!(
            body["error"]["request_id"],
            id.to_str().expect("id"),
            "{body}"
        );
    }

    #[test]
    fn routes_name_their_profile_and_nothing_else_does() {
        let profiles = route_profiles(["partner"].into_iter());
        assert_eq!(profiles.of("/get_sts_token"), "default");
        assert_eq!(profiles.of("/get_sts_token/partner"), "partner");
        assert_eq!(profiles.of("/get_sts_token/{profile}"), "");
        assert_eq!(profiles.of("/get_sts_tokens"), "");
        assert_eq!(profiles.of("/healthz"), "");
        assert_eq!(profiles.of("/get_sts_token/"), "");
    }
}
