//! A fake credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI`, `GET /creds`): answers from a
//! script, then a fallback (default: success for an hour), counting calls on arrival.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::fake::{FakeServer, Script, expiration_in};

/// What the fake credentials URI answers to one call.
#[derive(Debug, Clone)]
pub(crate) enum UriReply {
    /// `Code: Success` with a new AccessKeyId per call (`STS.uri-<n>`), expiring `lifetime`
    /// seconds from now.
    Success { lifetime: i64 },
    /// `Code: Success` with this AccessKeyId.
    Fixed {
        access_key_id: String,
        lifetime: i64,
    },
    /// Any status and body.
    Raw { status: u16, body: &'static str },
    /// The inner reply after a delay.
    Slow { delay: Duration, reply: Box<Self> },
}

/// Credentials the fake credentials URI handed out.
#[derive(Debug, Clone)]
pub(crate) struct UriIssued {
    pub(crate) access_key_id: String,
    pub(crate) secret: String,
    pub(crate) token: String,
}

#[derive(Debug)]
struct UriState {
    script: Script<UriReply>,
    calls: AtomicUsize,
    issued: Mutex<Vec<UriIssued>>,
}

/// An in-process credentials URI on 127.0.0.1. Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct MockCredentialsUri {
    state: Arc<UriState>,
    server: FakeServer,
}

impl MockCredentialsUri {
    pub(crate) async fn start(script: Vec<UriReply>) -> Self {
        let state = Arc::new(UriState {
            script: Script::new(script),
            calls: AtomicUsize::new(0),
            issued: Mutex::default(),
        });
        let router = axum::Router::new()
            .route("/creds", axum::routing::get(handle))
            .with_state(state.clone());
        let server = FakeServer::start(router).await;
        Self { state, server }
    }

    /// The URI to put in `ALIBABA_CLOUD_CREDENTIALS_URI`.
    pub(crate) fn url(&self) -> String {
        self.server.url("/creds")
    }

    pub(crate) fn set_fallback(&self, reply: UriReply) {
        self.state.script.set_fallback(reply);
    }

    /// Requests received (counted on arrival, before any delay).
    pub(crate) fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn issued(&self) -> Vec<UriIssued> {
        self.state.issued.lock().unwrap().clone()
    }
}

async fn handle(State(state): State<Arc<UriState>>) -> Response {
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let mut reply = state
        .script
        .next()
        .unwrap_or(UriReply::Success { lifetime: 3600 });
    while let UriReply::Slow {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let (access_key_id, lifetime) = match reply {
        UriReply::Success { lifetime } => (format!("STS.uri-{n}"), lifetime),
        UriReply::Fixed {
            access_key_id,
            lifetime,
        } => (access_key_id, lifetime),
        UriReply::Raw { status, body } => {
            return (StatusCode::from_u16(status).unwrap(), body).into_response();
        }
        UriReply::Slow { .. } => unreachable!("unwrapped above"),
    };
    let issued = UriIssued {
        access_key_id,
        secret: format!("uri-secret-{n}-{}", uuid::Uuid::new_v4().simple()),
        token: format!("uri-token-{n}-{}", uuid::Uuid::new_v4().simple()),
    };
    state.issued.lock().unwrap().push(issued.clone());
    let body = serde_json::json!({
        "Code": "Success",
        "AccessKeyId": issued.access_key_id,
        "AccessKeySecret": issued.secret,
        "SecurityToken": issued.token,
        "Expiration": expiration_in(lifetime),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
