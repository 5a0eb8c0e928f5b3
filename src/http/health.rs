//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::state::AppState;

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz` on the admin listener: 200 only while every enabled profile has a token that
/// may be served; 503 before the first tokens arrive and whenever one profile has none.
/// Disabled profiles are listed as such. The body says which profile is not ready, so a load
/// balancer's log explains itself.
/// In fleet mode the body also has `fleet`: the kill switch as the fleet sees it.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (ready, profiles) = readiness(&state);
    let fleet = state
        .fleet_switch()
        .map(|board| super::fleet_switch::readiness(board, &state));
    answer(ready, Some(profiles), fleet)
}

/// `GET /readyz` on the public listener: the overall status only. Profile names and their
/// kill-switch state are the operator's business (the admin `/readyz` has them).
pub async fn public_readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (ready, _) = readiness(&state);
    answer(ready, None, None)
}

/// Whether every enabled profile can serve a token, and each profile's state.
fn readiness(state: &AppState) -> (bool, Map<String, Value>) {
    let now = Instant::now();
    let mut profiles = Map::new();
    let mut ready = true;
    for profile in state.profiles() {
        // A profile the operator switched off does not make the instance unready: the other
        // profiles still work, and taking the pod out of rotation would not help.
        let status = if !profile.enabled.load(std::sync::atomic::Ordering::Relaxed) {
            "disabled"
        } else if profile.shared.is_servable(now) {
            "ready"
        } else {
            ready = false;
            "no_token"
        };
        profiles.insert(profile.name.clone(), Value::from(status));
    }
    (ready, profiles)
}

fn answer(
    ready: bool,
    profiles: Option<Map<String, Value>>,
    fleet: Option<Value>,
) -> impl IntoResponse {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": if ready { "ready" } else { "not_ready" } });
    if let Some(profiles) = profiles {
        body["profiles"] = Value::Object(profiles);
    }
    if let Some(fleet) = fleet {
        body["fleet"] = fleet;
    }
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
}
