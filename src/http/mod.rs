//! The public HTTP surface: token, health and readiness endpoints, and the middleware stack.

pub mod error;
pub mod health;
pub mod state;
pub mod token;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::ApiError;
pub use state::AppState;

/// The public router. A function, so tests can drive it without a socket.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/get_sts_token",
            get(token::default_profile).fallback(error::method_not_allowed),
        )
        .route(
            "/get_sts_token/{profile}",
            get(token::named_profile).fallback(error::method_not_allowed),
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
                // Outermost: assign the request id and render every error body with it.
                .layer(axum::middleware::from_fn(error::request_id))
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
