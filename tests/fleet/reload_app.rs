//! A reload in fleet mode (issue 17 point 3): tokens are shared through Redis under the
//! profile's name and its STS call's fingerprint, so a replica that reloaded a new policy
//! never takes a token minted under the old one from the store, while a replica still on the
//! old policy keeps sharing the old token; once both run the new policy they share again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::config::Mode;
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::reload::Source;
use stsvend::startup::App;

use crate::apps::{jwt, jwt_settings};
use crate::helpers::{RedisServer, store};

const ROLE: &str = "acs:ram::1234567890123456:role/sls-web-tracking";
const WAIT: Duration = Duration::from_secs(20);

/// Two profiles: `web` hands out its shared token, `users` one per JWT subject.
fn config(logstore: &str) -> String {
    // The secret [`jwt`] signs with.
    let secret = jwt_settings()
        .iter()
        .find(|(k, _)| *k == "STSVEND_JWT_HS256_SECRET")
        .map(|(_, v)| *v)
        .unwrap();
    format!(
        "[profiles.web]\nrole_arn = \"{ROLE}\"\nlogstore = \"{logstore}\"\n\n\
         [profiles.users]\nrole_arn = \"{ROLE}\"\nlogstore = \"{logstore}\"\nauth = \"jwt\"\n\
         jwt_hs256_secret = \"{secret}\"\njwt_issuer = \"https://login.example.com\"\n\
         jwt_audience = \"stsvend\"\n"
    )
}

struct Replica {
    addr: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Replica {
    async fn start(redis: &RedisServer, sts: &Emulator, id: &str, path: &Path) -> Self {
        let env: HashMap<String, String> = [
            ("STSVEND_STS_ENDPOINT", sts.endpoint().as_str()),
            ("STSVEND_LISTEN", "127.0.0.1:0"),
            ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
            ("STSVEND_CONFIG_WATCH_SECONDS", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let source = Source {
            path: Some(path.to_owned()),
            env,
            mode: Mode::Serve,
            adjust: None,
        };
        let config = source.read().unwrap_or_else(|e| panic!("{e:?}"));
        let credentials = CredentialsProvider::Static(sts.credentials());
        let app = App::builder(&config, credentials, Clock::System)
            .fleet(store(redis, id))
            .reload_from(source)
            .build()
            .await
            .expect("replica builds");
        let (addr, admin) = (app.local_addr().unwrap(), app.admin_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stop: Some(stop),
        }
    }

    /// The AccessKeyId `path` answers (as `subject` when given), waiting (bounded) for one.
    async fn token(&self, path: &str, subject: Option<&str>) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut request = self.client.get(format!("http://{}{path}", self.addr));
            if let Some(subject) = subject {
                request = request.bearer_auth(jwt(subject));
            }
            if let Ok(answer) = request.send().await
                && answer.status() == 200
            {
                let body: serde_json::Value = answer.json().await.unwrap();
                return body["AccessKeyId"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no token from {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reload(&self) -> serde_json::Value {
        let answer = self
            .client
            .post(format!("http://{}/admin/reload", self.admin))
            .header("x-stsvend-admin", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_reloaded_a_new_policy_never_takes_the_old_token_from_redis() {
    let scenario = async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redis = RedisServer::start();
        let sts = Emulator::start(Clock::System).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (path_a, path_b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&path_a, config("proj/web-old")).unwrap();
        std::fs::write(&path_b, config("proj/web-old")).unwrap();
        let a = Replica::start(&redis, &sts, "replica-a", &path_a).await;
        let b = Replica::start(&redis, &sts, "replica-b", &path_b).await;

        // One policy: the replicas share both kinds of token through Redis.
        let shared_old = a.token("/get_sts_token/web", None).await;
        assert_eq!(b.token("/get_sts_token/web", None).await, shared_old);
        let alice_old = a.token("/get_sts_token/users", Some("alice")).await;
        assert_eq!(
            b.token("/get_sts_token/users", Some("alice")).await,
            alice_old
        );

        // Replica A takes a new policy; B still runs the old one.
        std::fs::write(&path_a, config("proj/web-new")).unwrap();
        let changes = a.reload().await["changes"].clone();
        assert_eq!(
            changes["tokens_dropped"],
            serde_json::json!(["users", "web"])
        );
        for _ in 0..5 {
            assert_ne!(a.token("/get_sts_token/web", None).await, shared_old);
            assert_ne!(
                a.token("/get_sts_token/users", Some("alice")).await,
                alice_old
            );
        }
        // B, on the old policy, still shares the old tokens: they are right for it.
        assert_eq!(b.token("/get_sts_token/web", None).await, shared_old);
        assert_eq!(
            b.token("/get_sts_token/users", Some("alice")).await,
            alice_old
        );
        // Both on the new policy: they share the new tokens again.
        let shared_new = a.token("/get_sts_token/web", None).await;
        let alice_new = a.token("/get_sts_token/users", Some("alice")).await;
        std::fs::write(&path_b, config("proj/web-new")).unwrap();
        b.reload().await;
        assert_eq!(
            b.token("/get_sts_token/users", Some("alice")).await,
            alice_new
        );
        let shared_b = b.token("/get_sts_token/web", None).await;
        assert_ne!(shared_b, shared_old);
        assert_eq!(
            shared_b, shared_new,
            "B reads A's new-policy token from Redis"
        );
    };
    tokio::time::timeout(Duration::from_secs(90), scenario)
        .await
        .expect("the scenario finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_added_by_a_reload_follows_the_fleet_kill_switch() {
    let scenario = async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redis = RedisServer::start();
        let sts = Emulator::start(Clock::System).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (path_a, path_b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&path_a, config("proj/web")).unwrap();
        std::fs::write(&path_b, config("proj/web")).unwrap();
        let a = Replica::start(&redis, &sts, "replica-a", &path_a).await;
        let b = Replica::start(&redis, &sts, "replica-b", &path_b).await;
        let extra = format!(
            "{}\n[profiles.extra]\nrole_arn = \"{ROLE}\"\nlogstore = \"proj/extra\"\n",
            config("proj/web")
        );
        std::fs::write(&path_a, &extra).unwrap();
        std::fs::write(&path_b, &extra).unwrap();
        a.reload().await;
        b.reload().await;
        b.token("/get_sts_token/extra", None).await;

        let disabled = a
            .client
            .post(format!("http://{}/admin/profiles/extra/disable", a.admin))
            .header("x-stsvend-admin", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(disabled.status(), 200);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = b
                .client
                .get(format!("http://{}/get_sts_token/extra", b.addr))
                .send()
                .await
                .unwrap();
            if answer.status() == 503 {
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "profile_disabled");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica B never applied the fleet's switch to the added profile"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(90), scenario)
        .await
        .expect("the scenario finished in time");
}
