//! The service under test, in-process: `TestApp::builder(sts_endpoint)` (or
//! `TestApp::emulated()`) adds settings, a TOML file, a clock or base credentials, then
//! `start()` runs the real router on 127.0.0.1:0 for both listeners.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::config::Mode;
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::reload::Source;
use stsvend::startup::App;

use super::files::TempFile;
use super::http::{Answer, send};
use super::time::eventually;

/// The AccessKey the tests give the service; the STS fake does not check it, the emulator does.
pub(crate) const TEST_KEY_ID: &str = "LTAI5tTestKeyIdForStsvend";
pub(crate) const TEST_KEY_SECRET: &str = "test-base-secret-6c1f0e8a11";
pub(crate) const ROLE_ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

/// How to start a [`TestApp`]; see the module docs.
#[derive(Debug)]
#[must_use = "nothing starts until `start` is awaited"]
pub(crate) struct TestAppBuilder {
    /// `None`: a fresh emulator, with its own AccessKey.
    sts_endpoint: Option<String>,
    /// Applied over the base settings in order; an empty value removes a variable.
    env: Vec<(String, String)>,
    file: Option<String>,
    clock: Clock,
    credentials: Option<CredentialsProvider>,
    /// Whether the admin listener serves `/metrics` from the process-global recorder.
    metrics: bool,
}

impl TestAppBuilder {
    /// Adds settings over the base ones (test AccessKey, [`ROLE_ARN`], loopback listeners);
    /// later entries win, and an empty value removes a variable.
    pub(crate) fn env(mut self, extra: &[(&str, &str)]) -> Self {
        let extra = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        self.env.extend(extra);
        self
    }

    /// A TOML settings file, as if passed with `--config`.
    pub(crate) fn file(mut self, text: &str) -> Self {
        self.file = Some(text.to_owned());
        self
    }

    /// The service's wall clock. With [`Clock::following_tokio`] a test moves it forward by
    /// pausing tokio time, advancing it, and resuming (see [`super::time::jump_ahead`]).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The base credentials for calling STS (default: the configured AccessKey, static).
    pub(crate) fn credentials(mut self, credentials: CredentialsProvider) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Routes `/metrics` on the admin listener to the process-global recorder, as the binary
    /// does (without it, `/metrics` is not routed).
    pub(crate) fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Loads and validates the settings, builds the service and serves it on a task.
    pub(crate) async fn start(self) -> TestApp {
        let emulator = match self.sts_endpoint {
            Some(_) => None,
            None => Some(Emulator::start(Clock::System).await.unwrap()),
        };
        let endpoint = match (&self.sts_endpoint, &emulator) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(emulator)) => emulator.endpoint().to_string(),
            (None, None) => unreachable!("an emulator is started without an endpoint"),
        };
        let mut env = base_env(&endpoint);
        for (k, v) in self.env {
            if v.is_empty() {
                env.remove(&k);
            } else {
                env.insert(k, v);
            }
        }
        // A real file, read as the binary reads `--config`: the app reloads from it.
        let file = self.file.map(|text| TempFile::new("test.toml", &text));
        let source = Source {
            path: file.as_ref().map(|f| f.path.clone()),
            env,
            mode: Mode::Serve,
            adjust: None,
        };
        let config = source.read().expect("test config is valid");
        let credentials = match (self.credentials, &emulator) {
            (Some(credentials), _) => credentials,
            (None, Some(emulator)) => CredentialsProvider::Static(emulator.credentials()),
            (None, None) => {
                CredentialsProvider::Static(config.credentials.clone().expect("credentials"))
            }
        };
        let mut builder = App::builder(&config, credentials, self.clock).reload_from(source);
        if self.metrics {
            let metrics = stsvend::metrics::install();
            builder = builder.metrics(std::sync::Arc::new(move || metrics.render()));
        }
        let app = builder.build().await.expect("service builds");
        let mut app = TestApp::serve(app, emulator);
        app._config_file = file;
        app
    }
}

/// The settings a test service starts from: test AccessKey, role, loopback listeners on port 0.
fn base_env(sts_endpoint: &str) -> HashMap<String, String> {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_KEY_SECRET),
        ("STSVEND_ROLE_ARN", ROLE_ARN),
        ("STSVEND_STS_ENDPOINT", sts_endpoint),
        ("STSVEND_LISTEN", "127.0.0.1:0"),
        ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A running service under test; stopped when dropped.
#[derive(Debug)]
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    /// The admin listener (health, readiness, metrics, kill switch).
    pub(crate) admin_addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The STS the service calls, when the builder started one.
    _emulator: Option<Emulator>,
    /// The config file, kept as long as the service may reload from it.
    _config_file: Option<TempFile>,
}

impl TestApp {
    /// A service calling the STS at `sts_endpoint` (a [`super::MockSts`], usually).
    pub(crate) fn builder(sts_endpoint: &str) -> TestAppBuilder {
        TestAppBuilder {
            sts_endpoint: Some(sts_endpoint.to_owned()),
            ..Self::emulated()
        }
    }

    /// A service calling a fresh built-in emulator, with the emulator's AccessKey; the emulator
    /// lives as long as the service.
    pub(crate) fn emulated() -> TestAppBuilder {
        TestAppBuilder {
            sts_endpoint: None,
            env: Vec::new(),
            file: None,
            clock: Clock::System,
            credentials: None,
            metrics: false,
        }
    }

    fn serve(app: App, emulator: Option<Emulator>) -> Self {
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
        Self {
            addr,
            admin_addr,
            client,
            stop: Some(stop),
            task: Some(task),
            _emulator: emulator,
            _config_file: None,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// `GET path` with `headers`.
    pub(crate) async fn get_with(&self, path: &str, headers: &[(String, String)]) -> Answer {
        send(&self.client, reqwest::Method::GET, &self.url(path), headers).await
    }

    /// `GET path` once per header set, all at the same time; answers in the same order.
    pub(crate) async fn get_all(
        &self,
        path: &str,
        requests: Vec<Vec<(String, String)>>,
    ) -> Vec<Answer> {
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
    pub(crate) async fn wait_ready(&self) {
        let ready = eventually(Duration::from_secs(10), || async {
            self.get("/readyz").await.status() == 200
        })
        .await;
        assert!(ready, "the service did not become ready");
    }

    /// Asks the service to stop and waits for it (bounded).
    pub(crate) async fn stop(mut self) {
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
