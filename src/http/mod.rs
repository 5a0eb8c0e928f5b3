//! The public HTTP surface: token, health and readiness endpoints, and the middleware stack.

pub mod client_ip;
pub mod error;
pub mod hardening;
pub mod health;
pub mod limits;
pub mod state;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::routing::get;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::ApiError;
pub use state::{AppState, ProfileState};

use crate::config::{AuthMode, DEFAULT_PROFILE};

/// The public router. A function, so tests can drive it without a socket (requests need a
/// `ConnectInfo<SocketAddr>` extension, which `axum::serve` provides).
pub fn public_router(state: AppState) -> Router {
    let mut router = Router::new();
    for profile in state.profiles() {
        let path = if profile.name == DEFAULT_PROFILE {
            "/get_sts_token".to_owned()
        } else {
            format!("/get_sts_token/{}", profile.name)
        };
        let for_handler = profile.clone();
        let route = get(
            move |State(state): State<AppState>,
                  peer,
                  headers,
                  request_id: Option<Extension<error::RequestId>>| {
                let request_id = request_id.map(|Extension(id)| id);
                token::serve(state, for_handler.clone(), peer, headers, request_id)
            },
        )
        .fallback(error::method_not_allowed);
        // On the route itself, so each profile answers preflights for its own origins only.
        router = match cors_layer(profile) {
            Some(cors) => router.route(&path, route.layer(cors)),
            None => router.route(&path, route),
        };
    }
    if state.profile(DEFAULT_PROFILE).is_none() {
        router = router.route(
            "/get_sts_token",
            get(unknown_profile).fallback(error::method_not_allowed),
        );
    }
    router
        .route(
            "/get_sts_token/{profile}",
            get(unknown_profile).fallback(error::method_not_allowed),
        )
        .route(
            "/healthz",
            get(health::healthz).fallback(error::method_not_allowed),
        )
        .route(
            "/readyz",
            get(health::readyz).fallback(error::method_not_allowed),
        )
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Outermost, so every answer is counted and timed, shed or not. Inside the
                // router (`Router::layer`), so the matched route pattern is known.
                .layer(axum::middleware::from_fn(crate::metrics::track_requests))
                // Assign the request id and render every error body with it.
                .layer(axum::middleware::from_fn(error::request_id))
                // Every response says nosniff.
                .layer(axum::middleware::from_fn(hardening::security_headers))
                // Only GET, HEAD and OPTIONS get any further.
                .layer(axum::middleware::from_fn(hardening::allowed_methods))
                // Shed load beyond a fixed number of requests in flight, at once.
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(Semaphore::new(hardening::MAX_IN_FLIGHT)),
                    hardening::shed_load,
                ))
                // No request lives longer than the deadline.
                .layer(axum::middleware::from_fn(hardening::deadline))
                // Mark credentials-bearing headers sensitive before anything can log them.
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                // One span per request, carrying the request id; never the query or headers.
                // 5xx answers are logged at debug only: the refresher already logs their cause
                // once, and a crowd of clients during an STS outage must not flood the log.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                // A bug in a handler becomes a 500 with the standard body, not a dropped connection.
                .layer(CatchPanicLayer::custom(error::panic_response)),
        )
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
    let id = request
        .extensions()
        .get::<error::RequestId>()
        .and_then(|id| id.0.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
}
