//! A replica of the whole service, in-process, in fleet mode: the real app built by
//! `App::builder(..).fleet(store)` on loopback port 0 for both listeners, calling a shared
//! in-process STS emulator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::config::{self, Mode};
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::fleet::store::FleetStore;
use stsvend::startup::App;

use crate::helpers::{RedisServer, store};

const ROLE_ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

/// A running replica; stopped when dropped.
pub(crate) struct Replica {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What a replica answered: the status and the JSON body (`Null` when not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
    /// The `Retry-After` header, in seconds.
    pub(crate) retry_after: Option<u64>,
}

impl Answer {
    /// The kill switch's refusal: `503` with the code `profile_disabled`.
    pub(crate) fn is_disabled(&self) -> bool {
        self.status == 503 && self.body["error"]["code"] == "profile_disabled"
    }
}

impl Replica {
    /// Builds replica `id` against `server` and `emulator` and serves it on a task. Returns once
    /// the app is built: the stored kill-switch state is applied by then.
    pub(crate) async fn start(server: &RedisServer, emulator: &Emulator, id: &str) -> Self {
        Self::start_on(store(server, id), emulator, &[]).await
    }

    /// [`Self::start`] with more settings (`STSVEND_*` name, value).
    pub(crate) async fn start_with(
        server: &RedisServer,
        emulator: &Emulator,
        id: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        Self::start_on(store(server, id), emulator, settings).await
    }

    /// As [`Replica::start`], on `store`, with `extra` settings over the usual ones.
    pub(crate) async fn start_on(
        store: FleetStore,
        emulator: &Emulator,
        extra: &[(&str, &str)],
    ) -> Self {
        let endpoint = emulator.endpoint().to_string();
        let env: HashMap<String, String> = [
            ("STSVEND_ROLE_ARN", ROLE_ARN),
            ("STSVEND_STS_ENDPOINT", endpoint.as_str()),
            ("STSVEND_LISTEN", "127.0.0.1:0"),
            ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let config = config::load(None, &env, Mode::Serve).expect("test config is valid");
        let credentials = CredentialsProvider::Static(emulator.credentials());
        let app = App::builder(&config, credentials, Clock::System)
            .fleet(store)
            .build()
            .await
            .expect("replica builds");
        let addr = app.local_addr().unwrap();
        let admin_addr = app.admin_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            addr,
            admin_addr,
            client,
            stop: Some(stop),
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the replica answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            retry_after,
        }
    }

    /// `GET /get_sts_token` on the public listener.
    pub(crate) async fn token(&self) -> Answer {
        let url = format!("http://{}/get_sts_token", self.addr);
        Self::answer(self.client.get(url)).await
    }

    /// `GET /get_sts_token` for a client at `client` behind the trusted proxy (loopback).
    pub(crate) async fn token_for(&self, client: &str) -> Answer {
        let url = format!("http://{}/get_sts_token", self.addr);
        Self::answer(self.client.get(url).header("x-forwarded-for", client)).await
    }

    /// `GET /get_sts_token` as `subject`, with a JWT from [`crate::apps::jwt`] (for replicas
    /// started with [`crate::apps::jwt_settings`]).
    pub(crate) async fn token_as(&self, subject: &str) -> Answer {
        let url = format!("http://{}/get_sts_token", self.addr);
        let jwt = crate::apps::jwt(subject);
        Self::answer(self.client.get(url).bearer_auth(jwt)).await
    }

    /// Waits (at most 10 s) until the admin `/readyz` answers 200 (no token request spent).
    pub(crate) async fn wait_ready(&self) {
        until_ok("not ready", async || self.readyz().await).await;
    }

    /// `GET /readyz` on the admin listener.
    pub(crate) async fn readyz(&self) -> Answer {
        let url = format!("http://{}/readyz", self.admin_addr);
        Self::answer(self.client.get(url)).await
    }

    /// `POST /admin/profiles/default/{action}` (`disable` or `enable`) on the admin listener.
    pub(crate) async fn switch(&self, action: &str) -> Answer {
        let url = format!("http://{}/admin/profiles/default/{action}", self.admin_addr);
        Self::answer(self.client.post(url).header("x-stsvend-admin", "1")).await
    }

    /// Waits (at most 10 s) until the first token is served.
    pub(crate) async fn wait_serving(&self) {
        until_ok("no token", async || self.token().await).await;
    }

    /// Polls `GET /get_sts_token` until `done` holds for its answer, at most `limit`; returns
    /// how long it took.
    pub(crate) async fn token_until(
        &self,
        limit: Duration,
        done: impl Fn(&Answer) -> bool,
    ) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        while started.elapsed() <= limit {
            if done(&self.token().await) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

/// Asks until the answer is 200, at most 10 s; `failure` says what went wrong otherwise.
async fn until_ok(failure: &str, ask: impl AsyncFn() -> Answer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ask().await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{failure} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
