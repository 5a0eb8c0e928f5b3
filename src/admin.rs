//! The admin listener (`STSVEND_ADMIN_LISTEN`, default `127.0.0.1:9090`): liveness, readiness,
//! Prometheus metrics and the kill switch. It is separate from the public listener so that none
//! of this is reachable from the internet unless the operator puts both on one address.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::http::{ApiError, AppState, error, health, openapi};

/// Renders the metrics exposition text.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    app: AppState,
    metrics: Option<RenderMetrics>,
}

/// Routes of the admin listener: metrics and the kill switch, plus health and readiness.
pub fn admin_router(app: AppState, metrics: Option<RenderMetrics>) -> Router {
    let health_routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::admin))
        .with_state(app.clone());
    admin_routes(app, metrics)
        .merge(health_routes)
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn(error::request_id))
}

/// Only metrics and the kill switch, for merging into the public router when the operator
/// puts both on one address (the public router already serves health and readiness).
pub fn admin_routes(app: AppState, metrics: Option<RenderMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/admin/profiles/{name}/disable", post(disable))
        .route("/admin/profiles/{name}/enable", post(enable))
        .with_state(AdminState { app, metrics })
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn disable(
    state: State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    switch(state, name, false).await
}

async fn enable(
    state: State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    switch(state, name, true).await
}

/// The kill switch: disabling stops vending for the profile at once and drops its cached
/// tokens; tokens already handed out live until they expire (see the README's runbook).
async fn switch(
    State(state): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
    enabled: bool,
) -> Result<Response, ApiError> {
    // A name that does not percent-decode to UTF-8 (`%FF`) names no profile either: the standard
    // 404 rather than axum's plain-text 400.
    let Ok(Path(name)) = name else {
        return Err(ApiError::UnknownProfile);
    };
    let profile = state.app.profile(&name).ok_or(ApiError::UnknownProfile)?;
    profile.set_enabled(enabled).await;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "profile": profile.name, "enabled": enabled })),
    )
        .into_response())
}
