//! Reloading the configuration without a restart (issue 17 point 3): `POST /admin/reload`,
//! SIGHUP on the real binary, and the file watcher following a ConfigMap-style symlink swap.
//! The service runs in-process against the emulator, its config read from a temp file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::config::Mode;
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::reload::Source;
use stsvend::startup::App;

use crate::helpers::{
    Answer, JWT_AUDIENCE, JWT_ISSUER, LogCapture, ROLE_ARN, ServiceProcess, TempDir, bearer,
    eventually, http_client, jwt_claims, sample, scrape, send, sign_jwt,
};

const WAIT: Duration = Duration::from_secs(10);

/// A profile table of the config file.
fn profile(name: &str, extra: &str) -> String {
    format!("[profiles.{name}]\nrole_arn = \"{ROLE_ARN}\"\nlogstore = \"proj/{name}\"\n{extra}\n")
}

/// The service, reading its settings from the file at `path` (and `env`) on every reload.
struct Reloadable {
    addr: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _emulator: Emulator,
}

impl Reloadable {
    async fn start(path: &Path, extra_env: &[(&str, &str)]) -> Self {
        let emulator = Emulator::start(Clock::System).await.unwrap();
        let mut env: HashMap<String, String> = [
            ("STSVEND_STS_ENDPOINT", emulator.endpoint().as_str()),
            ("STSVEND_LISTEN", "127.0.0.1:0"),
            ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
            ("STSVEND_CONFIG_WATCH_SECONDS", "0"),
        ]
        .into_iter()
        .chain(extra_env.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.retain(|_, v| !v.is_empty());
        let source = Source {
            path: Some(path.to_owned()),
            env,
            mode: Mode::Serve,
            adjust: None,
        };
        let config = source.read().unwrap_or_else(|e| panic!("{e:?}"));
        let credentials = CredentialsProvider::Static(emulator.credentials());
        let metrics = stsvend::metrics::install();
        let app = App::builder(&config, credentials, Clock::System)
            .metrics(std::sync::Arc::new(move || metrics.render()))
            .reload_from(source)
            .build()
            .await
            .expect("service builds");
        let addr = app.local_addr().unwrap();
        let admin = app.admin_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            client: http_client(Duration::from_secs(20)),
            stop: Some(stop),
            _emulator: emulator,
        }
    }

    async fn get(&self, path: &str, headers: &[(String, String)]) -> Answer {
        let url = format!("http://{}{path}", self.addr);
        send(&self.client, reqwest::Method::GET, &url, headers).await
    }

    /// A token of `path`, waiting (bounded) for the first one.
    async fn token(&self, path: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self.get(path, &[]).await;
            if answer.status == 200 {
                return answer.access_key_id().expect("a token");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: {} {}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What a CORS preflight from `origin` to `path` is allowed.
    async fn preflight(&self, path: &str, origin: &str) -> Option<String> {
        let headers = [
            ("origin".to_owned(), origin.to_owned()),
            ("access-control-request-method".to_owned(), "GET".to_owned()),
        ];
        let url = format!("http://{}{path}", self.addr);
        let answer = send(&self.client, reqwest::Method::OPTIONS, &url, &headers).await;
        answer
            .header("access-control-allow-origin")
            .map(str::to_owned)
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> Answer {
        let url = format!("http://{}{path}", self.admin);
        let headers = [("x-stsvend-admin".to_owned(), "1".to_owned())];
        send(&self.client, method, &url, &headers).await
    }

    async fn reload(&self) -> Answer {
        self.admin(reqwest::Method::POST, "/admin/reload").await
    }
}

impl Drop for Reloadable {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn names(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_policy_gets_a_new_token_and_an_unchanged_profile_keeps_its_own() {
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &(profile("web", "") + &profile("app", "")));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    let web_before = service.token("/get_sts_token/web").await;
    let app_before = service.token("/get_sts_token/app").await;

    std::fs::write(
        &path,
        profile("web", "").replace("proj/web", "proj/other") + &profile("app", ""),
    )
    .unwrap();
    let answer = service.reload().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["result"], "applied");
    assert_eq!(names(&body["changes"]["profiles_changed"]), ["web"]);
    assert_eq!(names(&body["changes"]["tokens_dropped"]), ["web"]);
    assert!(names(&body["changes"]["restart_needed"]).is_empty());

    let web_after = service.token("/get_sts_token/web").await;
    assert_ne!(
        web_after, web_before,
        "the old-policy token is not served again"
    );
    for _ in 0..3 {
        let again = service.get("/get_sts_token/web", &[]).await;
        assert_ne!(again.access_key_id().as_deref(), Some(web_before.as_str()));
    }
    assert_eq!(
        service.token("/get_sts_token/app").await,
        app_before,
        "an unchanged profile keeps its token"
    );

    // The same file again: nothing to do.
    let answer = service.reload().await;
    assert_eq!(answer.json()["result"], "unchanged", "{}", answer.body);
}

#[tokio::test]
async fn added_profiles_answer_and_removed_ones_are_unknown() {
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &(profile("web", "") + &profile("old", "")));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    service.token("/get_sts_token/old").await;
    assert_eq!(service.get("/get_sts_token/new", &[]).await.status, 404);

    std::fs::write(&path, profile("web", "") + &profile("new", "")).unwrap();
    let answer = service.reload().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let changes = &answer.json()["changes"];
    assert_eq!(names(&changes["profiles_added"]), ["new"]);
    assert_eq!(names(&changes["profiles_removed"]), ["old"]);

    service.token("/get_sts_token/new").await;
    let gone = service.get("/get_sts_token/old", &[]).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.error_code().as_deref(), Some("unknown_profile"));
    // The admin surface follows too.
    let readiness = service.admin(reqwest::Method::GET, "/readyz").await;
    let profiles = readiness.json()["profiles"].clone();
    assert!(
        profiles.get("new").is_some() && profiles.get("old").is_none(),
        "{profiles}"
    );
}

#[tokio::test]
async fn an_invalid_file_is_refused_whole_and_the_running_config_keeps_serving() {
    let (logs, _guard) = LogCapture::start();
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &profile("web", ""));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    let before = service.token("/get_sts_token/web").await;
    let refused_before = sample(
        &scrape(),
        "stsvend_config_reloads_total",
        &[("result", "refused")],
    )
    .unwrap_or(0.0);

    // A good new profile and a bad one: nothing of it is applied. The secret must not leak.
    let secret = "reload-test-secret-value-0123456789abcdef";
    let bad = profile("web", "")
        + &profile("fresh", "")
        + &profile(
            "broken",
            &format!("auth = \"sometimes\"\njwt_hs256_secret = \"{secret}\""),
        )
        .replace("proj/broken", "x");
    std::fs::write(&path, bad).unwrap();
    let answer = service.reload().await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "config_invalid");
    let problems = names(&error["problems"]);
    assert!(problems.len() >= 2, "one line per problem: {problems:?}");
    assert!(
        problems.iter().all(|p| p.starts_with("invalid setting ")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("profiles.broken.auth")),
        "{problems:?}"
    );
    assert!(!answer.mentions(secret));

    assert_eq!(service.get("/get_sts_token/fresh", &[]).await.status, 404);
    assert_eq!(service.token("/get_sts_token/web").await, before);
    let refused_after = sample(
        &scrape(),
        "stsvend_config_reloads_total",
        &[("result", "refused")],
    )
    .unwrap_or(0.0);
    assert!(refused_after > refused_before, "counted as refused");
    let text = logs.text();
    assert!(text.contains("configuration reload refused"), "logged");
    assert!(!text.contains(secret), "no secret in the logs");
    // Once fixed, it applies.
    std::fs::write(&path, profile("web", "") + &profile("fresh", "")).unwrap();
    assert_eq!(service.reload().await.status, 200);
    service.token("/get_sts_token/fresh").await;
}

#[tokio::test]
async fn only_post_reloads_and_concurrent_reloads_all_get_an_answer() {
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &profile("web", ""));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    let get = service.admin(reqwest::Method::GET, "/admin/reload").await;
    assert_eq!(get.status, 405, "{}", get.body);
    // Without the header a page could send, refused like the kill switch.
    let url = format!("http://{}/admin/reload", service.admin);
    let bare = send(&service.client, reqwest::Method::POST, &url, &[]).await;
    assert_eq!(bare.status, 400, "{}", bare.body);

    std::fs::write(&path, profile("web", "") + &profile("more", "")).unwrap();
    let answers = futures_join(&service, 6).await;
    let results: Vec<String> = answers
        .iter()
        .map(|a| a.json()["result"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "applied").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "unchanged").count(),
        5,
        "{results:?}"
    );
}

async fn futures_join(service: &Reloadable, n: usize) -> Vec<Answer> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = service.client.clone();
        let url = format!("http://{}/admin/reload", service.admin);
        set.spawn(async move {
            let headers = [("x-stsvend-admin".to_owned(), "1".to_owned())];
            send(&client, reqwest::Method::POST, &url, &headers).await
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = set.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}

#[tokio::test]
async fn changed_cors_origins_take_effect() {
    let dir = TempDir::new();
    let cors = |origin: &str| profile("web", &format!("cors_origins = \"{origin}\""));
    let path = dir.write("stsvend.toml", &cors("https://a.example"));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    let preflight = |origin| service.preflight("/get_sts_token/web", origin);
    assert_eq!(
        preflight("https://a.example").await.as_deref(),
        Some("https://a.example")
    );
    assert_eq!(preflight("https://b.example").await, None);

    std::fs::write(&path, cors("https://b.example")).unwrap();
    let answer = service.reload().await;
    assert_eq!(
        names(&answer.json()["changes"]["profiles_changed"]),
        ["web"]
    );
    assert!(names(&answer.json()["changes"]["tokens_dropped"]).is_empty());
    assert_eq!(
        preflight("https://b.example").await.as_deref(),
        Some("https://b.example")
    );
    assert_eq!(preflight("https://a.example").await, None);
}

#[tokio::test]
async fn a_changed_jwt_key_file_takes_effect() {
    let dir = TempDir::new();
    let old_secret = "reload-old-hs256-secret-0123456789abcdef";
    let new_secret = "reload-new-hs256-secret-0123456789abcdef";
    let key_file = dir.write("hs256", old_secret);
    let text = profile(
        "web",
        &format!(
            "auth = \"jwt\"\njwt_hs256_secret_file = \"{key_file}\"\njwt_issuer = \"{JWT_ISSUER}\"\njwt_audience = \"{JWT_AUDIENCE}\""
        ),
    );
    let path = dir.write("stsvend.toml", &text);
    let service = Reloadable::start(Path::new(&path), &[]).await;
    let signed = |secret: &str| {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let jwt = sign_jwt(
            jsonwebtoken::Algorithm::HS256,
            None,
            &jwt_claims("alice"),
            &key,
        );
        vec![bearer(&jwt)]
    };
    let ok = eventually(WAIT, || async {
        service
            .get("/get_sts_token/web", &signed(old_secret))
            .await
            .status
            == 200
    })
    .await;
    assert!(ok, "the old key works before the reload");

    std::fs::write(&key_file, new_secret).unwrap();
    let answer = service.reload().await;
    assert_eq!(
        names(&answer.json()["changes"]["profiles_changed"]),
        ["web"],
        "{}",
        answer.body
    );
    assert!(!answer.mentions(new_secret) && !answer.mentions(old_secret));
    assert_eq!(
        service
            .get("/get_sts_token/web", &signed(old_secret))
            .await
            .status,
        401
    );
    let new = service.get("/get_sts_token/web", &signed(new_secret)).await;
    assert_eq!(new.status, 200, "{}", new.body);
}

/// kubelet's ConfigMap layout: `stsvend.toml` → `..data/stsvend.toml`, `..data` → a
/// timestamped directory, swapped by renaming a new `..data` link over the old one.
struct ConfigMap {
    dir: TempDir,
    version: usize,
}

impl ConfigMap {
    fn new(text: &str) -> Self {
        let mut map = Self {
            dir: TempDir::new(),
            version: 0,
        };
        map.publish(text);
        std::os::unix::fs::symlink("..data/stsvend.toml", map.path()).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.path.join("stsvend.toml")
    }

    fn publish(&mut self, text: &str) {
        self.version += 1;
        let version = format!("..2026_12_07_{}", self.version);
        self.dir.write(&format!("{version}/stsvend.toml"), text);
        let tmp = self.dir.path.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path.join("..data")).unwrap();
    }
}

#[tokio::test]
async fn the_watcher_follows_a_configmap_symlink_swap() {
    let mut map = ConfigMap::new(&profile("web", ""));
    let service = Reloadable::start(&map.path(), &[("STSVEND_CONFIG_WATCH_SECONDS", "1")]).await;
    service.token("/get_sts_token/web").await;
    assert_eq!(service.get("/get_sts_token/added", &[]).await.status, 404);
    map.publish(&(profile("web", "") + &profile("added", "")));
    let picked_up = eventually(WAIT, || async {
        service.get("/get_sts_token/added", &[]).await.status != 404
    })
    .await;
    assert!(picked_up, "the swap was not noticed within {WAIT:?}");
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &profile("web", ""));
    let env = [
        ("STSVEND_CONFIG", path.as_str()),
        ("STSVEND_CONFIG_WATCH_SECONDS", "0"),
        ("RUST_LOG", "info"),
    ];
    let mut service = ServiceProcess::start(&["dev"], &env).await;
    let client = http_client(Duration::from_secs(5));
    let status = |path: &'static str| {
        let url = service.url(path);
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(status("/get_sts_token/extra").await, 404);
    std::fs::write(&path, profile("web", "") + &profile("extra", "")).unwrap();
    service.signal("HUP");
    let reloaded = eventually(WAIT, || async {
        status("/get_sts_token/extra").await == 200
    })
    .await;
    service.signal("TERM");
    let exit = service.wait_exit(WAIT).await;
    let (_, stderr) = service.output().await;
    assert!(reloaded, "SIGHUP did not reload\n{stderr}");
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}\n{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}

#[tokio::test]
async fn a_changed_profile_keeps_its_kill_switch() {
    let dir = TempDir::new();
    let path = dir.write("stsvend.toml", &(profile("web", "") + &profile("app", "")));
    let service = Reloadable::start(Path::new(&path), &[]).await;
    service.token("/get_sts_token/web").await;
    let disabled = service
        .admin(reqwest::Method::POST, "/admin/profiles/web/disable")
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);

    // A new policy for the disabled profile: rebuilt, still switched off.
    std::fs::write(
        &path,
        profile("web", "").replace("proj/web", "proj/other") + &profile("app", ""),
    )
    .unwrap();
    assert_eq!(service.reload().await.status, 200);
    let refused = service.get("/get_sts_token/web", &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_code().as_deref(), Some("profile_disabled"));
    let enabled = service
        .admin(reqwest::Method::POST, "/admin/profiles/web/enable")
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    service.token("/get_sts_token/web").await;
}
