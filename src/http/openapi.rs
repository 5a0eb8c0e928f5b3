//! `GET /openapi.json`: the hand-written OpenAPI 3.0.3 documents in `openapi/`, one per listener.
//!
//! Written by hand rather than generated from the handlers, so a change in what the service
//! answers shows up as a failing `tests/api/openapi.rs` or `scripts/schemathesis.sh`, not as a
//! silently regenerated contract.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The public listener's document: tokens, health, readiness and this document.
pub const PUBLIC: &str = include_str!("../../openapi/public.json");
/// The admin listener's document: metrics, health, readiness, the kill switch and this document.
pub const ADMIN: &str = include_str!("../../openapi/admin.json");

/// `GET /openapi.json` on the public listener.
pub async fn public() -> Response {
    document(PUBLIC)
}

/// `GET /openapi.json` on the admin listener.
pub async fn admin() -> Response {
    document(ADMIN)
}

fn document(text: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}
