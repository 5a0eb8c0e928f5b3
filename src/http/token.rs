//! `GET /get_sts_token[/{profile}]`: hands out the current token of a profile from memory.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::config::DEFAULT_PROFILE;
use crate::refresh;

/// How long a request may wait for a token that is being fetched right now. STS answers in well
/// under a second; a longer wait would only pile up connections during an outage.
const MAX_WAIT_FOR_FETCH: Duration = Duration::from_secs(5);

pub async fn default_profile(State(state): State<AppState>) -> Result<Response, ApiError> {
    serve(&state, DEFAULT_PROFILE).await
}

pub async fn named_profile(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(name)) = name else {
        return Err(ApiError::UnknownProfile);
    };
    serve(&state, &name).await
}

async fn serve(state: &AppState, profile: &str) -> Result<Response, ApiError> {
    let tokens = state.profile(profile).ok_or(ApiError::UnknownProfile)?;
    match refresh::servable_token(tokens, MAX_WAIT_FOR_FETCH).await {
        Ok(token) => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            token.body.clone(),
        )
            .into_response()),
        Err(unavailable) => Err(ApiError::TokenUnavailable {
            class: unavailable.class,
            // Round up, and never tell a client to retry immediately.
            retry_after_secs: unavailable.retry_after.as_secs().saturating_add(1),
        }),
    }
}
