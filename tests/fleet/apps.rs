//! Whole replicas in-process: `jwt`-mode apps built by `App::builder(..).fleet(store)` against
//! one STS emulator (which counts the tokens it issues), on loopback ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::config::{self, Mode};
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::fleet::store::FleetStore;
use stsvend::startup::App;

use crate::helpers::{KEY_A, RedisServer, settings, within};

/// The HS256 secret the replicas check JWTs with (at least 32 bytes).
const JWT_SECRET: &str = "fleet-tests-hs256-secret-0123456789abcdef";
const JWT_ISSUER: &str = "https://login.example.com";
const JWT_AUDIENCE: &str = "stsvend";

/// A valid HS256 JWT for `subject`, an hour long by the real clock (the service checks `exp`
/// against it).
pub(crate) fn jwt(subject: &str) -> String {
    #[allow(clippy::disallowed_methods)] // tokens are checked against the real clock
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": subject,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("the test token signs")
}

/// The `jwt`-mode settings (and the logstore) the replicas here run with, for tests that build
/// their replicas another way and ask them with [`jwt`].
pub(crate) fn jwt_settings() -> [(&'static str, &'static str); 5] {
    [
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ("STSVEND_AUTH", "jwt"),
        ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
        ("STSVEND_JWT_ISSUER", JWT_ISSUER),
        ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
    ]
}

/// One answer of a replica, read in full.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn field(&self, name: &str) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body.get(name)?.as_str().map(str::to_owned)
    }
}

/// One running replica; stopped when dropped.
struct Replica {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Three replicas and the STS they share.
pub(crate) struct Replicas {
    pub(crate) sts: Emulator,
    /// Each replica's fleet store (empty without fleet mode), to watch its up/down state.
    pub(crate) stores: Vec<FleetStore>,
    replicas: Vec<Replica>,
    client: reqwest::Client,
}

fn env(sts: &Emulator) -> HashMap<String, String> {
    let endpoint = sts.endpoint().to_string();
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTestKeyIdForStsvend"),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "test-base-secret-6c1f0e8a11",
        ),
        (
            "STSVEND_ROLE_ARN",
            "acs:ram::1234567890123456:role/sls-web-tracking",
        ),
        ("STSVEND_STS_ENDPOINT", &endpoint),
        ("STSVEND_LISTEN", "127.0.0.1:0"),
        ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ("STSVEND_AUTH", "jwt"),
        ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
        ("STSVEND_JWT_ISSUER", JWT_ISSUER),
        ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
        // Every test caller is 127.0.0.1: lift the per-address limits out of the way.
        ("STSVEND_STS_BUDGET_PER_SECOND", "100"),
        ("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "1000000"),
        ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
        ("STSVEND_RATE_LIMIT_BURST", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Three replicas' stores on `redis`. Their command bound is 500 ms, not the 50 ms default: a
/// debug build on a machine shared with other builds misses 50 ms under a 200-request burst,
/// and what the tests check is what happens past the bound, not its value.
fn stores(redis: &RedisServer) -> Vec<FleetStore> {
    let mut settings = settings(redis, KEY_A, None);
    settings.command_timeout = Duration::from_millis(500);
    ["replica-a", "replica-b", "replica-c"]
        .iter()
        .map(|id| FleetStore::connect(&settings, id).unwrap())
        .collect()
}

impl Replicas {
    /// Three replicas sharing `redis` (fleet mode), or each on its own (`None`). Returns once
    /// every replica is ready (its shared token is in place).
    pub(crate) async fn start(redis: Option<&RedisServer>) -> Self {
        Self::start_with(redis, &[]).await
    }

    /// As [`Replicas::start`], with `extra` settings over the usual ones.
    pub(crate) async fn start_with(redis: Option<&RedisServer>, extra: &[(&str, &str)]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sts = Emulator::start(Clock::System).await.unwrap();
        let mut env = env(&sts);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = config::load(None, &env, Mode::Serve).expect("test config is valid");
        let stores: Vec<FleetStore> = redis.map(stores).unwrap_or_default();
        let mut replicas = Vec::new();
        for i in 0..3 {
            let credentials = CredentialsProvider::Static(sts.credentials());
            let mut builder = App::builder(&config, credentials, Clock::System);
            if let Some(store) = stores.get(i) {
                builder = builder.fleet(store.clone());
            }
            let app = builder.build().await.expect("replica builds");
            let addr = app.local_addr().unwrap();
            let admin = app.admin_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(app.run_until(async move {
                let _ = stopped.await;
            }));
            replicas.push((
                Replica {
                    addr,
                    stop: Some(stop),
                },
                admin,
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        for (_, admin) in &replicas {
            let url = format!("http://{admin}/readyz");
            let ready = async {
                for _ in 0..200 {
                    if client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                    {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                false
            };
            assert!(ready.await, "a replica did not become ready in 10 s");
        }
        Self {
            sts,
            stores,
            replicas: replicas.into_iter().map(|(replica, _)| replica).collect(),
            client,
        }
    }

    /// AssumeRole calls that issued a token so far.
    pub(crate) fn issued(&self) -> u64 {
        self.sts.issued()
    }

    /// `GET /get_sts_token` on replica `replica` as `subject`.
    pub(crate) async fn token(&self, replica: usize, subject: &str) -> Answer {
        let url = format!("http://{}/get_sts_token", self.replicas[replica].addr);
        let response = self
            .client
            .get(url)
            .bearer_auth(jwt(subject))
            .send()
            .await
            .expect("the replica answers");
        Answer {
            status: response.status().as_u16(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// Waits (bounded) until every replica's store says Redis answers.
    pub(crate) async fn wait_store_up(&self, limit: Duration) -> bool {
        within(limit, || self.stores.iter().all(FleetStore::is_up))
            .await
            .is_some()
    }
}
