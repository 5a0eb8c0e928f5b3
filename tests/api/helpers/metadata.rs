//! A fake ECS instance metadata service (`100.100.100.200`): hardened mode with its session
//! token, the attached role, scriptable answers, every request recorded.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::fake::{FakeServer, expiration_in};

/// The hardened-mode token the mock metadata service hands out.
pub(crate) const METADATA_TOKEN: &str = "mock-metadata-token-7f3a";
pub(crate) const METADATA_CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// How the mock metadata service answers `PUT /latest/api/token`.
#[derive(Debug, Clone)]
pub(crate) enum MetadataToken {
    /// Hands out [`METADATA_TOKEN`] (when the TTL header is present); GETs carrying a different
    /// token are refused with 401, GETs without one are served (plain mode).
    Issue,
    /// Refuses with this status (hardened mode unavailable).
    Refuse(u16),
}

/// How the mock metadata service answers `GET …/security-credentials/<role>`.
#[derive(Debug, Clone)]
pub(crate) enum MetadataCredentials {
    /// `Code: Success` with this AccessKeyId, expiring `lifetime` seconds from now.
    Success {
        access_key_id: String,
        lifetime: i64,
    },
    /// Any status and body.
    Raw { status: u16, body: String },
}

/// One request the mock metadata service saw.
#[derive(Debug, Clone)]
pub(crate) struct MetadataRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    /// `X-aliyun-ecs-metadata-token-ttl-seconds`.
    pub(crate) ttl_header: Option<String>,
    /// `X-aliyun-ecs-metadata-token`.
    pub(crate) token_header: Option<String>,
}

#[derive(Debug)]
struct MetadataState {
    token: Mutex<MetadataToken>,
    /// The role listed at the credentials path; `None` answers 404 (no role attached).
    role: Mutex<Option<String>>,
    credentials: Mutex<MetadataCredentials>,
    requests: Mutex<Vec<MetadataRequest>>,
}

/// An in-process mock of the ECS metadata service on 127.0.0.1: hardened mode, role `role`,
/// scriptable answers, every request recorded. Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct MockMetadata {
    state: Arc<MetadataState>,
    server: FakeServer,
}

impl MockMetadata {
    /// A metadata service with role `role` attached, answering `access_key_id` valid for 6 h.
    pub(crate) async fn start(role: &str, access_key_id: &str) -> Self {
        let state = Arc::new(MetadataState {
            token: Mutex::new(MetadataToken::Issue),
            role: Mutex::new(Some(role.to_owned())),
            credentials: Mutex::new(MetadataCredentials::Success {
                access_key_id: access_key_id.to_owned(),
                lifetime: 6 * 3600,
            }),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(metadata_handle)
            .with_state(state.clone());
        let server = FakeServer::start(router).await;
        Self { state, server }
    }

    /// `http://127.0.0.1:PORT/`.
    pub(crate) fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.server.url("/")).unwrap()
    }

    pub(crate) fn set_token(&self, token: MetadataToken) {
        *self.state.token.lock().unwrap() = token;
    }

    pub(crate) fn set_credentials(&self, credentials: MetadataCredentials) {
        *self.state.credentials.lock().unwrap() = credentials;
    }

    pub(crate) fn requests(&self) -> Vec<MetadataRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub(crate) fn calls(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

async fn metadata_handle(
    State(state): State<Arc<MetadataState>>,
    method: axum::http::Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = MetadataRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        ttl_header: header("x-aliyun-ecs-metadata-token-ttl-seconds"),
        token_header: header("x-aliyun-ecs-metadata-token"),
    };
    state.requests.lock().unwrap().push(request.clone());
    let text = |status: u16, body: String| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "text/plain")],
            body,
        )
            .into_response()
    };
    if method == axum::http::Method::PUT {
        if request.path != "/latest/api/token" {
            return text(404, "Not Found".into());
        }
        return match state.token.lock().unwrap().clone() {
            MetadataToken::Issue if request.ttl_header.is_some() => {
                text(200, METADATA_TOKEN.to_owned())
            }
            MetadataToken::Issue => text(400, "missing TTL header".into()),
            MetadataToken::Refuse(status) => text(status, "token refused".into()),
        };
    }
    if method != axum::http::Method::GET {
        return text(405, "Method Not Allowed".into());
    }
    if request
        .token_header
        .as_deref()
        .is_some_and(|t| t != METADATA_TOKEN)
    {
        return text(401, "bad metadata token".into());
    }
    let role = state.role.lock().unwrap().clone();
    if request.path == METADATA_CREDENTIALS_PATH {
        return match role {
            Some(role) => text(200, role),
            None => text(404, "Not Found".into()),
        };
    }
    let asked = request.path.strip_prefix(METADATA_CREDENTIALS_PATH);
    match (asked, role) {
        (Some(asked), Some(role)) if asked == role => {
            match state.credentials.lock().unwrap().clone() {
                MetadataCredentials::Success {
                    access_key_id,
                    lifetime,
                } => {
                    let body = serde_json::json!({
                        "Code": "Success",
                        "AccessKeyId": access_key_id,
                        "AccessKeySecret": format!("ecs-secret-{}", uuid::Uuid::new_v4().simple()),
                        "SecurityToken": format!("ecs-token-{}", uuid::Uuid::new_v4().simple()),
                        "Expiration": expiration_in(lifetime),
                        "LastUpdated": expiration_in(0),
                    });
                    (StatusCode::OK, axum::Json(body)).into_response()
                }
                MetadataCredentials::Raw { status, body } => text(status, body),
            }
        }
        _ => text(404, "Not Found".into()),
    }
}
