//! Shared test pieces: a scriptable mock STS that counts and records calls, and `spawn_app`,
//! which starts the real service on 127.0.0.1:0.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use stsvend::clock::Clock;
use stsvend::config::{self, ConfigFile, Mode};
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::startup::App;

/// The AccessKey the tests give the service; the mock does not check it, the emulator does.
pub const TEST_KEY_ID: &str = "LTAI5tTestKeyIdForStsvend";
pub const TEST_KEY_SECRET: &str = "test-base-secret-6c1f0e8a11";
pub const ROLE_ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

/// What the mock answers to one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Fresh credentials expiring `lifetime` seconds from now.
    Success { lifetime: i64 },
    /// An STS error body with this status and code.
    Error { status: u16, code: &'static str },
    /// Any status and body.
    Raw { status: u16, body: &'static str },
    /// The inner reply after a delay.
    Slow { delay: Duration, reply: Box<Self> },
}

impl Reply {
    pub fn error(status: u16, code: &'static str) -> Self {
        Self::Error { status, code }
    }

    pub fn slow(delay: Duration, reply: Self) -> Self {
        Self::Slow {
            delay,
            reply: Box::new(reply),
        }
    }
}

/// Credentials the mock issued, so tests can look for them in logs.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
}

#[derive(Default)]
struct MockState {
    script: Mutex<VecDeque<Reply>>,
    /// Used when the script is empty.
    fallback: Mutex<Option<Reply>>,
    /// Per-RoleArn replies, for several profiles in one process.
    by_role: Mutex<HashMap<String, Reply>>,
    calls: AtomicUsize,
    requests: Mutex<Vec<HashMap<String, String>>>,
    issued: Mutex<Vec<Issued>>,
}

/// An in-process mock STS on 127.0.0.1. Dropping it stops the server.
pub struct MockSts {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockSts {
    /// Starts a mock that answers `script` in order, then succeeds with the requested duration.
    pub async fn start(script: Vec<Reply>) -> Self {
        let state = Arc::new(MockState {
            script: Mutex::new(script.into()),
            ..MockState::default()
        });
        let router = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(state.clone());
        let (addr, task) = serve_loopback(router).await;
        Self { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// What to answer once the script is used up (default: success for the requested duration).
    pub fn set_fallback(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    /// Answer every call for `role_arn` with `reply`, ignoring the script.
    pub fn for_role(&self, role_arn: &str, reply: Reply) {
        self.state
            .by_role
            .lock()
            .unwrap()
            .insert(role_arn.to_owned(), reply);
    }

    pub fn push(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Every request's parameters (query and form body merged).
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().unwrap().clone()
    }
}

impl Drop for MockSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<MockState>>, uri: Uri, body: Bytes) -> Response {
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    params.extend(form_urlencoded::parse(&body).into_owned());
    let role = params.get("RoleArn").cloned().unwrap_or_default();
    let duration: i64 = params
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    state.requests.lock().unwrap().push(params);
    let by_role = state.by_role.lock().unwrap().get(&role).cloned();
    let reply = by_role
        .or_else(|| state.script.lock().unwrap().pop_front())
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or(Reply::Success { lifetime: duration });
    answer(&state, n, reply).await
}

async fn answer(state: &MockState, n: usize, mut reply: Reply) -> Response {
    while let Reply::Slow {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Success { lifetime } => {
            let issued = Issued {
                access_key_id: format!("STS.mock{n}x{}", uuid::Uuid::new_v4().simple()),
                secret: format!("issued-secret-{n}-{}", uuid::Uuid::new_v4().simple()),
                token: format!("CAIS+issued/token{n}={}", uuid::Uuid::new_v4().simple()),
            };
            state.issued.lock().unwrap().push(issued.clone());
            #[allow(clippy::disallowed_methods)] // the mock plays STS, with its own clock
            let expiration = Utc::now() + chrono::Duration::seconds(lifetime);
            let body = serde_json::json!({
                "RequestId": format!("MOCK-{n}"),
                "AssumedRoleUser": {"AssumedRoleId": "1:stsvend", "Arn": format!("{ROLE_ARN}/stsvend")},
                "Credentials": {
                    "SecurityToken": issued.token,
                    "Expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "AccessKeySecret": issued.secret,
                    "AccessKeyId": issued.access_key_id,
                }
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Reply::Error { status, code } => {
            let body = serde_json::json!({
                "RequestId": format!("MOCK-ERR-{n}"),
                "HostId": "sts.aliyuncs.com",
                "Code": code,
                "Message": format!("mock {code}"),
                "Recommend": "https://api.aliyun.com/troubleshoot",
            });
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Reply::Raw { status, body } => {
            (StatusCode::from_u16(status).unwrap(), body).into_response()
        }
        Reply::Slow { .. } => unreachable!("unwrapped above"),
    }
}

/// A running service under test.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin listener (health, readiness, metrics, kill switch).
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// Asks the service to stop and waits for it (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("service did not stop in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The environment a test service starts from: test AccessKey, role, loopback listener.
pub fn base_env(endpoint: &str) -> HashMap<String, String> {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_KEY_SECRET),
        ("STSVEND_ROLE_ARN", ROLE_ARN),
        ("STSVEND_STS_ENDPOINT", endpoint),
        ("STSVEND_LISTEN", "127.0.0.1:0"),
        ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Starts the service with `base_env(endpoint)` plus `extra` (an empty value removes a variable)
/// and an optional TOML file.
pub async fn spawn_app(endpoint: &str, extra: &[(&str, &str)], file: Option<&str>) -> TestApp {
    spawn_app_with_clock(endpoint, extra, file, Clock::System).await
}

/// `base_env(endpoint)` plus `extra` (an empty value removes a variable) and an optional TOML
/// file, loaded and validated.
fn test_config(endpoint: &str, extra: &[(&str, &str)], file: Option<&str>) -> config::Config {
    let mut env = base_env(endpoint);
    for (k, v) in extra {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    let file = file.map(|text| ConfigFile {
        path: "test.toml".into(),
        text: text.into(),
    });
    config::load(file.as_ref(), &env, Mode::Serve).expect("test config is valid")
}

/// Starts the service against a fresh emulator, with the emulator's AccessKey.
pub async fn spawn_with_emulator(extra: &[(&str, &str)]) -> (TestApp, Emulator) {
    let emulator = Emulator::start(Clock::System).await.unwrap();
    let mut env = base_env(emulator.endpoint().as_str());
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = config::load(None, &env, Mode::Serve).expect("test config is valid");
    let app = start(&config, CredentialsProvider::Static(emulator.credentials())).await;
    (app, emulator)
}

async fn start(config: &config::Config, credentials: CredentialsProvider) -> TestApp {
    start_with_clock(config, credentials, Clock::System).await
}

async fn start_with_clock(
    config: &config::Config,
    credentials: CredentialsProvider,
    clock: Clock,
) -> TestApp {
    let app = App::build(config, credentials, clock)
        .await
        .expect("service builds");
    let addr = app.local_addr().unwrap();
    let admin_addr = app.admin_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    TestApp {
        addr,
        admin_addr,
        client,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP client for tests. reqwest is built without a default TLS provider and refuses to
/// build a client until one is installed; installing it twice is harmless.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("HTTP client builds")
}

// The real `stsvend` binary as a child process: for the config-error, secret-leak and shutdown
// tests, which need its exit code, its signal handling and everything it prints.

/// A file with a unique name under the system temp directory, removed when dropped.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "stsvend-test-{}-{name}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, contents).expect("can write a temp file");
        Self { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A loopback port that was free a moment ago (bound to port 0, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("can bind a loopback port")
        .port()
}

/// The `stsvend` binary, started with exactly the given environment (nothing inherited), its
/// stdout and stderr captured in full. Killed if dropped while running.
pub struct ServiceProcess {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    stdout: Option<tokio::task::JoinHandle<Vec<u8>>>,
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
}

/// Reads a pipe to its end on a task, so that a chatty child never blocks on a full pipe.
fn drain<R>(pipe: Option<R>) -> Option<tokio::task::JoinHandle<Vec<u8>>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    pipe.map(|mut pipe| {
        tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut out).await;
            out
        })
    })
}

impl ServiceProcess {
    /// Starts `stsvend ARGS` listening on a free loopback port (`STSVEND_LISTEN` is added to
    /// `env`) and waits, bounded, until `/healthz` answers 200. A port taken by someone else in
    /// the meantime is retried with another one.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        for _attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut process = Self::spawn(args, env, addr);
            if process.wait_healthy(Duration::from_secs(10)).await {
                return process;
            }
            let exited = process.child.try_wait().ok().flatten();
            process.kill().await;
            let (stdout, stderr) = process.output().await;
            if !stderr.contains("cannot listen") {
                panic!(
                    "stsvend did not become healthy (exit: {exited:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
                );
            }
        }
        panic!("stsvend could not bind a free loopback port in 3 attempts");
    }

    /// Spawns without waiting for anything.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], addr: SocketAddr) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stsvend"));
        command.args(args);
        Self::spawn_command(command, env, addr)
    }

    /// As [`ServiceProcess::spawn`], under an open-files limit (`ulimit -n`) of `soft` and
    /// `hard`, set by a shell that then becomes stsvend.
    pub fn spawn_with_open_files(
        args: &[&str],
        env: &[(&str, &str)],
        addr: SocketAddr,
        soft: u64,
        hard: u64,
    ) -> Self {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_stsvend"))
            .args(args);
        Self::spawn_command(command, env, addr)
    }

    fn spawn_command(
        mut command: tokio::process::Command,
        env: &[(&str, &str)],
        addr: SocketAddr,
    ) -> Self {
        command
            .env_clear()
            .envs(env.iter().copied())
            .env("STSVEND_LISTEN", addr.to_string())
            // Each process picks its own admin port, so tests can run side by side.
            .env("STSVEND_ADMIN_LISTEN", "127.0.0.1:0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("can start the stsvend binary");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Polls `GET /healthz` until it answers 200, the process exits, or `limit` passes.
    pub async fn wait_healthy(&mut self, limit: Duration) -> bool {
        let client = http_client(Duration::from_secs(2));
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(response) = client.get(self.url("/healthz")).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Sends a signal (`TERM`, `INT`, …) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("can run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Everything the process wrote to stdout and stderr; call after it has exited.
    pub async fn output(&mut self) -> (String, String) {
        async fn collect(handle: Option<tokio::task::JoinHandle<Vec<u8>>>) -> String {
            let Some(handle) = handle else {
                return String::new();
            };
            match tokio::time::timeout(Duration::from_secs(5), handle).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            }
        }
        (
            collect(self.stdout.take()).await,
            collect(self.stderr.take()).await,
        )
    }
}

// Credential-chain test pieces (issue #3): a fake HOME, a port that refuses connections, a mock
// ECS metadata service, a mock credentials URI, an STS that answers with fixed key ids per
// action, and a way to start the service with any `CredentialsProvider`.

/// Starts the service from `config` with the given base-credentials provider.
pub async fn start_with_provider(
    config: &config::Config,
    credentials: CredentialsProvider,
) -> TestApp {
    start(config, credentials).await
}

/// A fresh directory under the system temp directory (a fake HOME), removed with its contents
/// when dropped.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "stsvend-test-home-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("can create a temp dir");
        Self { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// Writes `contents` to `relative` (parent directories created); returns the full path.
    pub fn write(&self, relative: &str, contents: &str) -> String {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("can create a directory in the temp dir");
        }
        std::fs::write(&path, contents).expect("can write a file in the temp dir");
        path.to_str().expect("temp paths are UTF-8").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port that is bound but never listens, so connecting to it is refused at once (as
/// the metadata address is off-cloud). Held for as long as this value lives.
pub struct ClosedPort {
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("can create a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("can bind a loopback port");
        let addr = socket.local_addr().expect("bound socket has an address");
        Self {
            addr,
            _socket: socket,
        }
    }

    /// `http://127.0.0.1:PORT/`, for an endpoint that must not answer.
    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }
}

/// Serves `router` on 127.0.0.1:0; returns the address and the server task.
async fn serve_loopback(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, task)
}

/// The current time as STS and the metadata service write it, `now + seconds`.
fn expiration_in(seconds: i64) -> String {
    #[allow(clippy::disallowed_methods)] // the mocks play remote services, with their own clock
    let at = Utc::now() + chrono::Duration::seconds(seconds);
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The hardened-mode token the mock metadata service hands out.
pub const METADATA_TOKEN: &str = "mock-metadata-token-7f3a";
pub const METADATA_CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// How the mock metadata service answers `PUT /latest/api/token`.
#[derive(Debug, Clone)]
pub enum MetadataToken {
    /// Hands out [`METADATA_TOKEN`] (when the TTL header is present); GETs carrying a different
    /// token are refused with 401, GETs without one are served (plain mode).
    Issue,
    /// Refuses with this status (hardened mode unavailable).
    Refuse(u16),
}

/// How the mock metadata service answers `GET …/security-credentials/<role>`.
#[derive(Debug, Clone)]
pub enum MetadataCredentials {
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
pub struct MetadataRequest {
    pub method: String,
    pub path: String,
    /// `X-aliyun-ecs-metadata-token-ttl-seconds`.
    pub ttl_header: Option<String>,
    /// `X-aliyun-ecs-metadata-token`.
    pub token_header: Option<String>,
}

struct MetadataState {
    token: Mutex<MetadataToken>,
    /// The role listed at the credentials path; `None` answers 404 (no role attached).
    role: Mutex<Option<String>>,
    credentials: Mutex<MetadataCredentials>,
    requests: Mutex<Vec<MetadataRequest>>,
}

/// An in-process mock of the ECS metadata service on 127.0.0.1: hardened mode, role `role`,
/// scriptable answers, every request recorded. Dropping it stops the server.
pub struct MockMetadata {
    pub addr: SocketAddr,
    state: Arc<MetadataState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockMetadata {
    /// A metadata service with role `role` attached, answering `access_key_id` valid for 6 h.
    pub async fn start(role: &str, access_key_id: &str) -> Self {
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
        let (addr, task) = serve_loopback(router).await;
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    pub fn set_token(&self, token: MetadataToken) {
        *self.state.token.lock().unwrap() = token;
    }

    pub fn set_credentials(&self, credentials: MetadataCredentials) {
        *self.state.credentials.lock().unwrap() = credentials;
    }

    pub fn requests(&self) -> Vec<MetadataRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

impl Drop for MockMetadata {
    fn drop(&mut self) {
        self.task.abort();
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

/// What the mock credentials URI answers to one call.
#[derive(Debug, Clone)]
pub enum UriReply {
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

/// Credentials the mock credentials URI handed out.
#[derive(Debug, Clone)]
pub struct UriIssued {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
}

#[derive(Default)]
struct UriState {
    script: Mutex<VecDeque<UriReply>>,
    fallback: Mutex<Option<UriReply>>,
    calls: AtomicUsize,
    issued: Mutex<Vec<UriIssued>>,
}

/// An in-process credentials URI (`GET /creds`) on 127.0.0.1: answers `script` in order, then
/// the fallback (default: success for an hour). Dropping it stops the server.
pub struct MockCredentialsUri {
    pub addr: SocketAddr,
    state: Arc<UriState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockCredentialsUri {
    pub async fn start(script: Vec<UriReply>) -> Self {
        let state = Arc::new(UriState {
            script: Mutex::new(script.into()),
            ..UriState::default()
        });
        let router = axum::Router::new()
            .route("/creds", axum::routing::get(uri_handle))
            .with_state(state.clone());
        let (addr, task) = serve_loopback(router).await;
        Self { addr, state, task }
    }

    /// The URI to put in `ALIBABA_CLOUD_CREDENTIALS_URI`.
    pub fn url(&self) -> String {
        format!("http://{}/creds", self.addr)
    }

    pub fn set_fallback(&self, reply: UriReply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    /// Requests received (counted on arrival, before any delay).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn issued(&self) -> Vec<UriIssued> {
        self.state.issued.lock().unwrap().clone()
    }
}

impl Drop for MockCredentialsUri {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn uri_handle(State(state): State<Arc<UriState>>) -> Response {
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let mut reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.fallback.lock().unwrap().clone())
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

/// An STS that answers each `Action` with a fixed AccessKeyId (valid for 6 h) and records the
/// parameters; an action without an entry gets a `MissingParameter` error.
pub struct FixedSts {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FixedSts {
    pub async fn start(by_action: &[(&str, &str)]) -> Self {
        let by_action: Arc<HashMap<String, String>> = Arc::new(
            by_action
                .iter()
                .map(|(a, k)| ((*a).to_owned(), (*k).to_owned()))
                .collect(),
        );
        let requests: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let recorded = requests.clone();
        let router = axum::Router::new().route(
            "/",
            axum::routing::post(move |uri: Uri, body: Bytes| {
                let by_action = by_action.clone();
                let recorded = recorded.clone();
                async move {
                    let mut params: HashMap<String, String> =
                        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                            .into_owned()
                            .collect();
                    params.extend(form_urlencoded::parse(&body).into_owned());
                    let action = params.get("Action").cloned().unwrap_or_default();
                    recorded.lock().unwrap().push(params);
                    let Some(key_id) = by_action.get(&action) else {
                        let body = serde_json::json!({
                            "RequestId": "FIXED-ERR",
                            "Code": "MissingParameter",
                            "Message": format!("no answer for {action}"),
                        });
                        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                    };
                    let body = serde_json::json!({
                        "RequestId": "FIXED-0",
                        "AssumedRoleUser": {"AssumedRoleId": "1:fixed", "Arn": format!("{ROLE_ARN}/fixed")},
                        "Credentials": {
                            "SecurityToken": format!("fixed-token-{action}"),
                            "Expiration": expiration_in(6 * 3600),
                            "AccessKeySecret": format!("fixed-secret-{action}"),
                            "AccessKeyId": key_id,
                        }
                    });
                    (StatusCode::OK, axum::Json(body)).into_response()
                }
            }),
        );
        let (addr, task) = serve_loopback(router).await;
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FixedSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// Endpoint-protection test pieces (issue #4): signed JWTs from the fixture keys, a JWKS server
// that counts its hits, a mock STS that timestamps every call, log capture, and requests with
// headers, one at a time or all at once.

/// The HS256 secret the protect tests configure (at least 32 bytes).
pub const JWT_SECRET: &str = "protect-tests-hs256-secret-0123456789abcdef";
pub const JWT_ISSUER: &str = "https://login.example.com";
pub const JWT_AUDIENCE: &str = "stsvend";

/// A file under `tests/fixtures/jwt/`.
pub fn jwt_fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

pub fn jwt_fixture(name: &str) -> Vec<u8> {
    let path = jwt_fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Seconds since the epoch, by the real clock (the service checks `exp` against it too).
pub fn unix_now() -> i64 {
    #[allow(clippy::disallowed_methods)] // tokens are checked against the real clock
    let now = Utc::now();
    now.timestamp()
}

/// Claims that pass every check (issuer, audience, an hour of validity) for `subject`.
pub fn jwt_claims(subject: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "sub": subject,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    })
}

/// A compact JWS of `claims` with `algorithm`, `kid` and `key`.
pub fn sign_jwt(
    algorithm: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("the test token signs")
}

pub fn hs256_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())
}

/// The private key of JWKS entry `rsa-1`.
pub fn rsa_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(&jwt_fixture("rsa_private.pem")).unwrap()
}

/// A second RSA key, not in `jwks.json`.
pub fn rotated_rsa_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(&jwt_fixture("rsa_rotated_private.pem")).unwrap()
}

/// The private key of JWKS entry `ec-1`.
pub fn ec_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_ec_pem(&jwt_fixture("ec_private.pem")).unwrap()
}

/// A valid HS256 token for `subject`, signed with [`JWT_SECRET`].
pub fn hs256_jwt(subject: &str) -> String {
    sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        None,
        &jwt_claims(subject),
        &hs256_key(),
    )
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

/// A key server on 127.0.0.1 answering every GET with a JWKS document, counting requests.
/// Dropping it stops the server.
pub struct JwksServer {
    pub addr: SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: Vec<u8>) -> Self {
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        let router = axum::Router::new().fallback(axum::routing::get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                (StatusCode::OK, [("content-type", "application/json")], body).into_response()
            }
        }));
        let (addr, task) = serve_loopback(router).await;
        Self {
            addr,
            body,
            hits,
            task,
        }
    }

    /// The URL to put in `STSVEND_JWT_JWKS_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_body(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`MockSts`] with the arrival time of every call, for rate checks.
pub struct TimedSts {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    times: Arc<Mutex<Vec<std::time::Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TimedSts {
    /// Answers `script` in order, then succeeds with the requested duration.
    pub async fn start(script: Vec<Reply>) -> Self {
        let state = Arc::new(MockState {
            script: Mutex::new(script.into()),
            ..MockState::default()
        });
        let times: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
        let (shared, recorded) = (state.clone(), times.clone());
        let router = axum::Router::new().route(
            "/",
            axum::routing::post(move |uri: Uri, body: Bytes| {
                recorded.lock().unwrap().push(std::time::Instant::now());
                handle(State(shared.clone()), uri, body)
            }),
        );
        let (addr, task) = serve_loopback(router).await;
        Self {
            addr,
            state,
            times,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set_fallback(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().unwrap().clone()
    }

    /// When each call arrived, in arrival order.
    pub fn call_times(&self) -> Vec<std::time::Instant> {
        self.times.lock().unwrap().clone()
    }
}

impl Drop for TimedSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The most of `times` that fall within any window of length `window` (times in any order).
pub fn max_in_window(times: &[std::time::Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Everything the service logs on this thread, as JSON lines, while the guard lives. With the
/// default current-thread test runtime the service's tasks run on this thread too, so this sees
/// every event of the service under test (and nothing from tests on other threads).
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

/// One `io::Write` handle into a [`LogCapture`].
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        // tracing caches, per log statement, whether anyone listens. While at most one
        // dispatcher is registered, that is decided by asking the default of whichever thread
        // reaches the statement first: a test without a capture would silence the statement
        // for every other thread too. A second dispatcher that lives forever makes tracing ask
        // every registered dispatcher, and leaves the decision to each thread's default.
        static KEEPER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        KEEPER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let capture = Self::default();
        let buffer = capture.buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(buffer.clone()))
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far, raw.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    /// Every event logged so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("log lines are JSON"))
            .collect()
    }

    /// The events whose message is `message`.
    pub fn events_with_message(&self, message: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }
}

/// One answer of the service, read in full.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_owned)
    }

    /// `AccessKeyId` of a token body.
    pub fn access_key_id(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get("AccessKeyId")?
            .as_str()
            .map(str::to_owned)
    }

    /// Whether `needle` appears in the body or in any header value.
    pub fn mentions(&self, needle: &str) -> bool {
        self.body.contains(needle)
            || self
                .headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
    }
}

/// Sends `method path` with `headers` and reads the whole answer.
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(String, String)],
) -> Answer {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body readable");
    Answer {
        status,
        headers,
        body,
    }
}

impl TestApp {
    /// `GET path` with `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(String, String)]) -> Answer {
        send(&self.client, reqwest::Method::GET, &self.url(path), headers).await
    }

    /// `GET path` once per header set, all at the same time; answers in the same order.
    pub async fn get_all(&self, path: &str, requests: Vec<Vec<(String, String)>>) -> Vec<Answer> {
        let mut set = tokio::task::JoinSet::new();
        for (i, headers) in requests.into_iter().enumerate() {
            let client = self.client.clone();
            let url = self.url(path);
            set.spawn(
                async move { (i, send(&client, reqwest::Method::GET, &url, &headers).await) },
            );
        }
        let mut answers: Vec<Option<Answer>> = vec![None; set.len()];
        while let Some(joined) = set.join_next().await {
            let (i, answer) = joined.expect("request task");
            answers[i] = Some(answer);
        }
        answers.into_iter().map(Option::unwrap).collect()
    }

    /// Waits (bounded) until `/readyz` says every profile's shared token is servable.
    pub async fn wait_ready(&self) {
        let ready = eventually(Duration::from_secs(10), || async {
            self.get("/readyz").await.status() == 200
        })
        .await;
        assert!(ready, "the service did not become ready");
    }
}

/// Like [`spawn_app`], on `clock`: with [`Clock::following_tokio`], a test moves the service's
/// wall clock forward by pausing tokio time, advancing it, and resuming.
pub async fn spawn_app_with_clock(
    endpoint: &str,
    extra: &[(&str, &str)],
    file: Option<&str>,
    clock: Clock,
) -> TestApp {
    let config = test_config(endpoint, extra, file);
    let credentials = CredentialsProvider::Static(config.credentials.clone().expect("credentials"));
    start_with_clock(&config, credentials, clock).await
}

/// Moves tokio time (and so a [`Clock::following_tokio`] clock) forward by `by`, at once.
/// Current-thread runtimes only.
pub async fn jump_ahead(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// The `request denied` log events of the request that got `answer` (by its request id).
pub fn denials_for(logs: &LogCapture, answer: &Answer) -> Vec<serde_json::Value> {
    let id = answer.header("x-request-id").unwrap_or_default();
    logs.events_with_message("request denied")
        .into_iter()
        .filter(|event| event["span"]["request_id"] == id)
        .collect()
}

/// Checks that `answer` was logged as exactly one denial with `reason` for `client_ip` on
/// profile `default`, or (for a 2xx) not at all.
pub fn assert_logged_denial(logs: &LogCapture, answer: &Answer, reason: &str, client_ip: &str) {
    let denials = denials_for(logs, answer);
    if (200..300).contains(&answer.status) {
        assert!(
            denials.is_empty(),
            "a served request was logged as denied: {denials:?}"
        );
        return;
    }
    assert_eq!(denials.len(), 1, "one log line per denial: {denials:?}");
    let fields = &denials[0]["fields"];
    assert_eq!(fields["reason"], reason, "{fields}");
    assert_eq!(fields["client_ip"], client_ip, "{fields}");
    assert_eq!(fields["profile"], "default", "{fields}");
}

// Observability test pieces (issue #5): the process-global Prometheus recorder read in-process,
// and the audit lines of a log capture.

/// The metrics page as the admin listener would serve it. The recorder is process-global and
/// installed on first use, so a test asserts on series only it produces (its own profile
/// names) or on differences between two scrapes.
pub fn scrape() -> String {
    stsvend::metrics::install().render()
}

/// The value of the sample `name{labels}` in a metrics page: exactly those labels, in any order.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, mut found) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            found.sort();
            (series_name == name && found == wanted).then(|| value.parse().ok())?
        })
        .next()
}

/// `k="v",k2="v2"` (with `\"`, `\\` and `\n` escapes) as pairs.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end + 1..];
    }
    Some(pairs)
}

/// The audit log lines (target `stsvend::audit`) captured so far.
pub fn audit_lines(logs: &LogCapture) -> Vec<serde_json::Value> {
    logs.events()
        .into_iter()
        .filter(|event| event["target"] == stsvend::audit::TARGET)
        .collect()
}

/// The one audit line of the request that got `answer` (by its request id).
pub fn audit_line_for(logs: &LogCapture, answer: &Answer) -> serde_json::Value {
    let id = answer
        .header("x-request-id")
        .expect("every answer has a request id");
    let lines: Vec<serde_json::Value> = audit_lines(logs)
        .into_iter()
        .filter(|line| line["fields"]["request_id"] == id)
        .collect();
    assert_eq!(lines.len(), 1, "one audit line per request: {lines:#?}");
    lines[0].clone()
}

// Fault injection (issue #8): an STS stand-in written on raw TCP, for the byte-level faults an
// HTTP framework will not produce on purpose (a reset mid-body, a short body, a body with no
// end), and for a port that stops accepting connections and starts again.

/// What [`RawSts`] does with one request. Every answer closes the connection afterwards, so no
/// pooled connection outlives a fault.
#[derive(Debug, Clone)]
pub enum RawReply {
    /// A well-formed STS success expiring `lifetime` seconds from now (fresh key ids each time).
    Success { lifetime: i64 },
    /// A well-formed STS error body.
    Error { status: u16, code: &'static str },
    /// Any status and body, framed correctly.
    Raw { status: u16, body: String },
    /// Headers declaring `declared` body bytes, `sent` bytes of body, then a TCP reset.
    ResetMidBody { declared: usize, sent: usize },
    /// Headers declaring `declared` body bytes, `sent` bytes of body, then a clean close.
    Truncated { declared: usize, sent: usize },
    /// A 200 with a body of `total` bytes, chunked or with its length declared up front, written
    /// until the peer stops reading; [`RawSts::body_bytes_written`] counts what got out.
    Huge { total: usize, declare_length: bool },
    /// Reads the request and never answers (until the peer gives up).
    Hang,
}

/// A success body for `access_key_id` with any `Expiration` text.
pub fn success_body(access_key_id: &str, secret: &str, expiration: &str) -> String {
    serde_json::json!({
        "RequestId": "RAW-SUCCESS",
        "Credentials": {
            "SecurityToken": format!("CAIS+{secret}"),
            "Expiration": expiration,
            "AccessKeySecret": secret,
            "AccessKeyId": access_key_id,
        }
    })
    .to_string()
}

/// `now + seconds` as STS writes `Expiration`.
pub fn sts_time_in(seconds: i64) -> String {
    expiration_in(seconds)
}

#[derive(Default)]
struct RawState {
    script: Mutex<VecDeque<RawReply>>,
    fallback: Mutex<Option<RawReply>>,
    /// When each request had been read in full, in arrival order.
    arrivals: Mutex<Vec<std::time::Instant>>,
    body_bytes_written: AtomicUsize,
    issued_key_ids: Mutex<Vec<String>>,
}

/// A raw-TCP mock STS on 127.0.0.1 that answers with [`RawReply`]s. Dropping it stops it.
pub struct RawSts {
    pub addr: SocketAddr,
    state: Arc<RawState>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// While refusing: the port, bound but not listening, so connecting is refused at once and
    /// nobody else takes the port.
    parked: Mutex<Option<tokio::net::TcpSocket>>,
}

impl RawSts {
    /// Answers `script` in order, then `fallback` (set with [`Self::set_fallback`]), else success.
    pub async fn start(script: Vec<RawReply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(RawState {
            script: Mutex::new(script.into()),
            ..RawState::default()
        });
        let accept = tokio::spawn(raw_accept(listener, state.clone()));
        Self {
            addr,
            state,
            accept: Mutex::new(Some(accept)),
            parked: Mutex::new(None),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set_fallback(&self, reply: RawReply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    /// Requests read in full so far.
    pub fn calls(&self) -> usize {
        self.state.arrivals.lock().unwrap().len()
    }

    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// Body bytes the kernel accepted from [`RawReply::Huge`] answers so far.
    pub fn body_bytes_written(&self) -> usize {
        self.state.body_bytes_written.load(Ordering::SeqCst)
    }

    /// Key ids of the [`RawReply::Success`] answers given so far.
    pub fn issued_key_ids(&self) -> Vec<String> {
        self.state.issued_key_ids.lock().unwrap().clone()
    }

    /// Stops listening: from now on connecting is refused (connections already open are left
    /// alone, but every answer closes its connection, so none is pooled).
    pub async fn refuse(&self) {
        let task = self.accept.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            // Once the aborted task is gone, so is its listener.
            let _ = task.await;
        }
        for _ in 0..50 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket.bind(self.addr).is_ok() {
                *self.parked.lock().unwrap() = Some(socket);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("could not park port {}", self.addr);
    }

    /// Listens again on the same port after [`Self::refuse`].
    pub fn accept_again(&self) {
        let socket = self.parked.lock().unwrap().take().expect("refusing");
        let listener = socket.listen(128).unwrap();
        *self.accept.lock().unwrap() = Some(tokio::spawn(raw_accept(listener, self.state.clone())));
    }
}

impl Drop for RawSts {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn raw_accept(listener: tokio::net::TcpListener, state: Arc<RawState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // Bounded: no connection task outlives a minute, whatever the peer does.
            let _ =
                tokio::time::timeout(Duration::from_secs(60), raw_connection(stream, state)).await;
        });
    }
}

/// Reads one request (head and `Content-Length` body, capped), then answers it.
async fn raw_connection(mut stream: tokio::net::TcpStream, state: Arc<RawState>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let n = {
        let mut arrivals = state.arrivals.lock().unwrap();
        arrivals.push(std::time::Instant::now());
        arrivals.len() - 1
    };
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or(RawReply::Success { lifetime: 3600 });
    let head_for = |status: u16, length: Option<usize>| {
        let framing = length.map_or("transfer-encoding: chunked".to_owned(), |l| {
            format!("content-length: {l}")
        });
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json;charset=utf-8\r\nconnection: close\r\n{framing}\r\n\r\n"
        )
    };
    let full = |status: u16, body: String| {
        let mut bytes = head_for(status, Some(body.len())).into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    match reply {
        RawReply::Success { lifetime } => {
            let id = format!("STS.raw{n}x{}", uuid::Uuid::new_v4().simple());
            state.issued_key_ids.lock().unwrap().push(id.clone());
            let secret = format!("raw-secret-{}", uuid::Uuid::new_v4().simple());
            let body = success_body(&id, &secret, &expiration_in(lifetime));
            let _ = stream.write_all(&full(200, body)).await;
        }
        RawReply::Error { status, code } => {
            let body = serde_json::json!({
                "RequestId": format!("RAW-ERR-{n}"),
                "HostId": "sts.aliyuncs.com",
                "Code": code,
                "Message": format!("raw {code}"),
                "Recommend": "https://api.aliyun.com/troubleshoot",
            })
            .to_string();
            let _ = stream.write_all(&full(status, body)).await;
        }
        RawReply::Raw { status, body } => {
            let _ = stream.write_all(&full(status, body)).await;
        }
        RawReply::ResetMidBody { declared, sent } | RawReply::Truncated { declared, sent } => {
            let mut bytes = head_for(200, Some(declared)).into_bytes();
            let body = success_body(
                "STS.NEVER-SERVE",
                "never-serve-secret",
                &expiration_in(3600),
            );
            bytes.extend(body.bytes().chain(std::iter::repeat(b' ')).take(sent));
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            if matches!(reply, RawReply::ResetMidBody { .. }) {
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = stream.set_zero_linger();
            } else {
                let _ = stream.shutdown().await;
            }
        }
        RawReply::Huge {
            total,
            declare_length,
        } => {
            let head = head_for(200, declare_length.then_some(total));
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let take = left.min(block.len());
                let written = if declare_length {
                    stream.write_all(&block[..take]).await
                } else {
                    let mut framed = format!("{take:x}\r\n").into_bytes();
                    framed.extend_from_slice(&block[..take]);
                    framed.extend_from_slice(b"\r\n");
                    stream.write_all(&framed).await
                };
                if written.is_err() {
                    return;
                }
                state.body_bytes_written.fetch_add(take, Ordering::SeqCst);
                left -= take;
            }
            if !declare_length {
                let _ = stream.write_all(b"0\r\n\r\n").await;
            }
        }
        RawReply::Hang => {
            // Wait for the peer to give up and close; never answer.
            while let Ok(n) = stream.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
}
