//! The one scriptable STS fake, at the HTTP level. It answers `AssumeRole` and its siblings
//! from a script (replies per call, in order, then a fallback), or per `RoleArn` or per
//! `Action` when a test sets that, and records every call: its parameters, its arrival time and
//! the credentials it issued. For byte-level faults (resets, short bodies) see
//! [`super::raw_sts`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::app::ROLE_ARN;
use super::fake::{FakeServer, Script, expiration_in, params};

/// What the fake answers to one call.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Fresh credentials (new key ids each time) expiring `lifetime` seconds from now.
    Success { lifetime: i64 },
    /// Credentials with this AccessKeyId, expiring `lifetime` seconds from now.
    Fixed {
        access_key_id: String,
        lifetime: i64,
    },
    /// An STS error body with this status and code.
    Error { status: u16, code: &'static str },
    /// Any status and body.
    Raw { status: u16, body: &'static str },
    /// The inner reply after a delay.
    Slow { delay: Duration, reply: Box<Self> },
}

impl Reply {
    pub(crate) fn error(status: u16, code: &'static str) -> Self {
        Self::Error { status, code }
    }

    pub(crate) fn slow(delay: Duration, reply: Self) -> Self {
        Self::Slow {
            delay,
            reply: Box::new(reply),
        }
    }
}

/// Credentials the fake issued, so tests can look for them in logs and bodies.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) access_key_id: String,
    pub(crate) secret: String,
    pub(crate) token: String,
}

/// One call as it arrived: its parameters and when.
#[derive(Debug, Clone)]
struct Call {
    params: HashMap<String, String>,
    at: Instant,
}

#[derive(Debug)]
struct StsState {
    script: Script<Reply>,
    /// Replies by `RoleArn` (several profiles in one process), ahead of the script.
    by_role: Mutex<HashMap<String, Reply>>,
    /// Replies by `Action` (the credential chain's own AssumeRole calls), ahead of the script.
    by_action: Mutex<HashMap<String, Reply>>,
    /// Counted on arrival, before any delay.
    calls: AtomicUsize,
    recorded: Mutex<Vec<Call>>,
    issued: Mutex<Vec<Issued>>,
}

/// An in-process STS on 127.0.0.1. Without a script it succeeds for the requested duration.
/// Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct MockSts {
    pub(crate) addr: SocketAddr,
    state: Arc<StsState>,
    _server: FakeServer,
}

impl MockSts {
    /// Answers `script` in order, then the fallback (default: success for the requested
    /// duration).
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        let state = Arc::new(StsState {
            script: Script::new(script),
            by_role: Mutex::default(),
            by_action: Mutex::default(),
            calls: AtomicUsize::new(0),
            recorded: Mutex::default(),
            issued: Mutex::default(),
        });
        let router = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(state.clone());
        let server = FakeServer::start(router).await;
        Self {
            addr: server.addr(),
            state,
            _server: server,
        }
    }

    /// The endpoint to put in `STSVEND_STS_ENDPOINT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// [`Self::endpoint`] as a URL, for the credential chain's inputs.
    pub(crate) fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.endpoint()).unwrap()
    }

    /// What to answer once the script is used up.
    pub(crate) fn set_fallback(&self, reply: Reply) {
        self.state.script.set_fallback(reply);
    }

    /// Answers every call for `role_arn` with `reply`, ignoring the script.
    pub(crate) fn for_role(&self, role_arn: &str, reply: Reply) {
        let mut by_role = self.state.by_role.lock().unwrap();
        by_role.insert(role_arn.to_owned(), reply);
    }

    /// Answers every call of `action` (`AssumeRole`, `AssumeRoleWithOIDC`) with `reply`,
    /// ignoring the script.
    pub(crate) fn for_action(&self, action: &str, reply: Reply) {
        let mut by_action = self.state.by_action.lock().unwrap();
        by_action.insert(action.to_owned(), reply);
    }

    pub(crate) fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Every request's parameters (query and form body merged), in arrival order.
    pub(crate) fn requests(&self) -> Vec<HashMap<String, String>> {
        let recorded = self.state.recorded.lock().unwrap();
        recorded.iter().map(|call| call.params.clone()).collect()
    }

    /// When each call arrived, in arrival order (for rate checks).
    pub(crate) fn call_times(&self) -> Vec<Instant> {
        let recorded = self.state.recorded.lock().unwrap();
        recorded.iter().map(|call| call.at).collect()
    }

    pub(crate) fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().unwrap().clone()
    }
}

async fn handle(State(state): State<Arc<StsState>>, uri: Uri, body: Bytes) -> Response {
    let at = Instant::now();
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let params = params(&uri, &body);
    let keyed = |map: &Mutex<HashMap<String, Reply>>, key: &str| {
        params
            .get(key)
            .and_then(|value| map.lock().unwrap().get(value).cloned())
    };
    let reply = keyed(&state.by_role, "RoleArn")
        .or_else(|| keyed(&state.by_action, "Action"))
        .or_else(|| state.script.next());
    let duration: i64 = params
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    state.recorded.lock().unwrap().push(Call { params, at });
    answer(
        &state,
        n,
        reply.unwrap_or(Reply::Success { lifetime: duration }),
    )
    .await
}

async fn answer(state: &StsState, n: usize, mut reply: Reply) -> Response {
    while let Reply::Slow {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let (access_key_id, lifetime) = match reply {
        Reply::Success { lifetime } => (
            format!("STS.mock{n}x{}", uuid::Uuid::new_v4().simple()),
            lifetime,
        ),
        Reply::Fixed {
            access_key_id,
            lifetime,
        } => (access_key_id, lifetime),
        Reply::Error { status, code } => {
            let body = serde_json::json!({
                "RequestId": format!("MOCK-ERR-{n}"),
                "HostId": "sts.aliyuncs.com",
                "Code": code,
                "Message": format!("mock {code}"),
                "Recommend": "https://api.aliyun.com/troubleshoot",
            });
            return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        }
        Reply::Raw { status, body } => {
            return (StatusCode::from_u16(status).unwrap(), body).into_response();
        }
        Reply::Slow { .. } => unreachable!("unwrapped above"),
    };
    let issued = Issued {
        access_key_id,
        secret: format!("issued-secret-{n}-{}", uuid::Uuid::new_v4().simple()),
        token: format!("CAIS+issued/token{n}={}", uuid::Uuid::new_v4().simple()),
    };
    state.issued.lock().unwrap().push(issued.clone());
    let body = serde_json::json!({
        "RequestId": format!("MOCK-{n}"),
        "AssumedRoleUser": {"AssumedRoleId": "1:stsvend", "Arn": format!("{ROLE_ARN}/stsvend")},
        "Credentials": {
            "SecurityToken": issued.token,
            "Expiration": expiration_in(lifetime),
            "AccessKeySecret": issued.secret,
            "AccessKeyId": issued.access_key_id,
        }
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
