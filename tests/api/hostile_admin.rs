//! Issue 13, points 4, 8 and 9: cross-site calls to the admin listener (DNS rebinding, foreign
//! origins, `text/plain` posts, the admin token), every route behind the hardening layer (admin,
//! shared-port and dev routes), and the quieter gaps (JWT issuer/audience, public readiness,
//! non-preflight `OPTIONS`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{
    Answer, JWT_SECRET, Launch, MockSts, ServiceProcess, TempDir, TestApp, bearer, hs256_key,
    jwt_claims, send, sign_jwt,
};
use crate::openapi::{check_answer, fetch_document};

const ADMIN_TOKEN: &str = "4f1c0a9e7b2d48c6a3e5f7091b2c3d4e5f60718293a4b5c6";
const REBINDING_HOST: &str = "rebind.attacker.example:9090";
const SERVICE_NAME: &str = "stsvend-admin.monitoring.svc";

/// An answer read off a raw socket: status, lower-case header names, body.
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `request` bytes as they are (so `Host` and the header order are exactly the test's)
/// and reads one HTTP/1.1 answer, bounded by 5 s.
async fn raw(addr: SocketAddr, request: &str) -> Raw {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            bytes.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length || n == 0 {
                    return parse_raw(head, body);
                }
            }
            assert!(n > 0, "connection closed before a whole answer: {text}");
        }
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("an answer within 5 s")
}

fn parse_raw(head: &str, body: &str) -> Raw {
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

impl Raw {
    fn code(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        body["error"]["code"].as_str().unwrap_or("").to_owned()
    }
}

/// The request `curl -X POST [-H ...] http://ADDR/PATH` sends, byte for byte (curl 7/8).
fn curl_post(addr: SocketAddr, path: &str, headers: &[&str]) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

fn get_with_host(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

async fn token_served(app: &TestApp) -> bool {
    app.get("/get_sts_token").await.status() == 200
}

#[tokio::test]
async fn a_cross_site_text_plain_or_form_post_cannot_switch_vending_off() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let disable = "/admin/profiles/default/disable";
    // What a web page's <form> or no-cors fetch can send without a preflight.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let request = curl_post(
            app.admin_addr,
            disable,
            &[
                &format!("Content-Type: {content_type}"),
                "Content-Length: 2",
            ],
        ) + "{}";
        let answer = raw(app.admin_addr, &request).await;
        assert_eq!(answer.status, 400, "{content_type}: {}", answer.body);
        assert_eq!(answer.code(), "admin_header_missing");
        assert!(answer.body.contains("X-Stsvend-Admin"), "{}", answer.body);
        assert!(
            token_served(&app).await,
            "still enabled after {content_type}"
        );
    }
    // Nor does a JSON body stand in for the header: one rule, which OpenAPI can state.
    let json = curl_post(
        app.admin_addr,
        disable,
        &["Content-Type: application/json", "Content-Length: 2"],
    ) + "{}";
    assert_eq!(raw(app.admin_addr, &json).await.status, 400);
    assert!(
        token_served(&app).await,
        "still enabled after a JSON body alone"
    );
    let with_header = curl_post(app.admin_addr, disable, &["X-Stsvend-Admin: 1"]);
    assert_eq!(raw(app.admin_addr, &with_header).await.status, 200);
    assert!(!token_served(&app).await, "disabled with the header");
    // The header's presence is what counts, whatever its value (schemathesis, ST201).
    let empty = curl_post(
        app.admin_addr,
        "/admin/profiles/default/enable",
        &["X-Stsvend-Admin:"],
    );
    assert_eq!(raw(app.admin_addr, &empty).await.status, 200);
    assert!(token_served(&app).await, "enabled with an empty header");
}

#[tokio::test]
async fn a_method_no_admin_route_serves_gets_405_not_the_post_rule() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    for (method, path) in [
        ("TRACE", "/healthz"),
        ("TRACE", "/metrics"),
        ("PUT", "/readyz"),
        ("DELETE", "/admin/profiles/default/disable"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            app.admin_addr
        );
        let answer = raw(app.admin_addr, &request).await;
        assert_eq!(answer.status, 405, "{method} {path}: {}", answer.body);
        assert_eq!(answer.code(), "method_not_allowed", "{method} {path}");
    }
    assert!(token_served(&app).await);
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_the_listeners_own_accepted() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let admin = app.admin_addr;
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let post = curl_post(
            admin,
            "/admin/profiles/default/disable",
            &["X-Stsvend-Admin: 1", &format!("Origin: {origin}")],
        );
        let answer = raw(admin, &post).await;
        assert_eq!(answer.status, 403, "{origin}: {}", answer.body);
        assert_eq!(answer.code(), "admin_origin_refused");
        let read = raw(
            admin,
            &get_with_host(
                "/readyz",
                &admin.to_string(),
                &format!("Origin: {origin}\r\n"),
            ),
        )
        .await;
        assert_eq!(read.status, 403, "{origin} reading /readyz");
    }
    assert!(token_served(&app).await, "still enabled");
    let own = raw(
        admin,
        &get_with_host(
            "/healthz",
            &admin.to_string(),
            &format!("Origin: http://{admin}\r\n"),
        ),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
}

#[tokio::test]
async fn a_rebinding_host_is_refused_while_addresses_localhost_and_listed_names_are_served() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_ADMIN_HOSTS", SERVICE_NAME)])
        .start()
        .await;
    let admin = app.admin_addr;
    for path in ["/metrics", "/readyz", "/healthz"] {
        let answer = raw(admin, &get_with_host(path, REBINDING_HOST, "")).await;
        assert_eq!(answer.status, 421, "{path}: {}", answer.body);
        assert_eq!(answer.code(), "admin_host_refused");
        assert!(
            answer.body.contains("STSVEND_ADMIN_HOSTS"),
            "{}",
            answer.body
        );
    }
    let mut post = curl_post(
        admin,
        "/admin/profiles/default/disable",
        &["X-Stsvend-Admin: 1"],
    );
    post = post.replace(
        &format!("Host: {admin}"),
        &format!("Host: {REBINDING_HOST}"),
    );
    assert_eq!(raw(admin, &post).await.status, 421);
    assert!(token_served(&app).await, "still enabled");

    let port = admin.port();
    for host in [
        format!("{SERVICE_NAME}:{port}"),
        format!("{}:9090", SERVICE_NAME.to_uppercase()),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        // `kubectl port-forward 19090:9090` keeps the pod's port out of the Host.
        "127.0.0.1:19090".to_owned(),
        format!("[::1]:{port}"),
        "10.1.2.3:9090".to_owned(),
    ] {
        let answer = raw(admin, &get_with_host("/readyz", &host, "")).await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.body);
    }
}

#[tokio::test]
async fn the_admin_token_is_required_when_set_on_metrics_and_the_kill_switch_only() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[("STSVEND_ADMIN_TOKEN", ADMIN_TOKEN)])
        .start()
        .await;
    let admin = app.admin_addr;
    let disable = "/admin/profiles/default/disable";
    let missing = raw(admin, &curl_post(admin, disable, &["X-Stsvend-Admin: 1"])).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(missing.code(), "admin_token_missing");
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"stsvend-admin\""
    );
    let wrong_token = format!("Authorization: Bearer {}", ADMIN_TOKEN.replace('4', "5"));
    let wrong = raw(
        admin,
        &curl_post(admin, disable, &["X-Stsvend-Admin: 1", &wrong_token]),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.code(), "admin_token_invalid");
    assert!(!wrong.body.contains(ADMIN_TOKEN) && !missing.body.contains(ADMIN_TOKEN));
    let metrics = raw(admin, &get_with_host("/metrics", &admin.to_string(), "")).await;
    assert_eq!(metrics.status, 401, "/metrics is covered");
    assert!(token_served(&app).await, "still enabled");

    // The probes stay open to the kubelet, which sends no token.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let open = raw(admin, &get_with_host(path, &admin.to_string(), "")).await;
        assert_eq!(open.status, 200, "{path}");
    }
    let right = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let switched = raw(
        admin,
        &curl_post(admin, disable, &["X-Stsvend-Admin: 1", &right]),
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert!(!token_served(&app).await, "disabled with the right token");

    // Every refusal is in the admin document, with its headers and body.
    let (doc, _) = fetch_document(&app, &admin.to_string()).await;
    let post = |headers: &[(&str, &str)]| {
        let mut request = app.client.post(format!("http://{admin}{disable}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let path = "/admin/profiles/{name}/disable";
    let good = format!("Bearer {ADMIN_TOKEN}");
    for (headers, status) in [
        (vec![], 401),
        (vec![("authorization", good.as_str())], 400),
        (
            vec![
                ("authorization", good.as_str()),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        (
            vec![("authorization", good.as_str()), ("host", REBINDING_HOST)],
            421,
        ),
    ] {
        let response = post(&headers).await.unwrap();
        assert_eq!(response.status(), status, "{headers:?}");
        check_answer(&doc, path, "post", response).await;
    }
}

/// The `stsvend` binary with both listeners on loopback ports reserved for it (or one port
/// for both); killed on drop.
struct Binary {
    process: ServiceProcess,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Binary {
    async fn start(args: &[&str], env: &[(&str, &str)], shared_port: bool) -> Self {
        let mut env = env.to_vec();
        env.push(("STSVEND_LOG_FORMAT", "json"));
        let launch = Launch {
            shared_admin_port: shared_port,
            ..Launch::default()
        };
        let process = ServiceProcess::spawn_with(args, &env, launch);
        let (public, admin) = (process.addr, process.admin_addr);
        let binary = Self {
            process,
            public,
            admin,
        };
        let client = crate::helpers::http_client(Duration::from_secs(2));
        let ready = crate::helpers::eventually(Duration::from_secs(15), || {
            let client = client.clone();
            async move {
                client
                    .get(format!("http://{public}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
        assert!(ready, "stsvend dev became ready on {public}");
        binary
    }
}

#[tokio::test]
async fn the_runbook_curl_lines_work_on_the_real_binary_with_a_token_file() {
    let dir = TempDir::new();
    let token_file = dir.write("admin-token", &format!("{ADMIN_TOKEN}\n"));
    let service = Binary::start(
        &["dev"],
        &[("STSVEND_ADMIN_TOKEN_FILE", token_file.as_str())],
        false,
    )
    .await;
    let admin = service.admin;
    let disable = "/admin/profiles/default/disable";
    // The README's runbook lines, as curl sends them.
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let refused = raw(admin, &curl_post(admin, disable, &["X-Stsvend-Admin: 1"])).await;
    assert_eq!(refused.status, 401, "the token file is in force");
    let switched = raw(
        admin,
        &curl_post(admin, disable, &["X-Stsvend-Admin: 1", &auth]),
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(
        serde_json::from_str::<Value>(&switched.body).unwrap(),
        serde_json::json!({"profile": "default", "enabled": false})
    );
    let client = crate::helpers::http_client(Duration::from_secs(5));
    let public = client
        .get(format!("http://{}/get_sts_token", service.public))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 503, "vending is off");
    let enabled = raw(
        admin,
        &curl_post(
            admin,
            "/admin/profiles/default/enable",
            &["X-Stsvend-Admin: 1", &auth],
        ),
    )
    .await;
    assert_eq!(enabled.status, 200);
    let metrics = raw(
        admin,
        &get_with_host("/metrics", &admin.to_string(), &format!("{auth}\r\n")),
    )
    .await;
    assert_eq!(metrics.status, 200, "Prometheus with its bearer token");
    assert!(metrics.body.contains("stsvend_profile_enabled"));
    drop(service.process);
}

/// Checks that an answer carries the hardening layer's marks.
fn hardened(what: &str, answer: &Answer) {
    let id = answer
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{what}: no x-request-id"));
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{what}: {id}"
    );
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

#[tokio::test]
async fn every_kind_of_route_has_a_request_id_and_nosniff() {
    let client = crate::helpers::http_client(Duration::from_secs(5));
    let admin_post = vec![("x-stsvend-admin".to_owned(), "1".to_owned())];
    for shared_port in [false, true] {
        let service = Binary::start(&["dev"], &[], shared_port).await;
        let public = |path: &str| format!("http://{}{path}", service.public);
        let admin = |path: &str| format!("http://{}{path}", service.admin);
        let get = reqwest::Method::GET;
        let post = reqwest::Method::POST;
        let requests = [
            ("token", get.clone(), public("/get_sts_token"), vec![]),
            ("public 404", get.clone(), public("/nothing"), vec![]),
            ("dev logs page", get.clone(), public("/dev/logs"), vec![]),
            (
                "dev logs json",
                get.clone(),
                public("/dev/logs.json"),
                vec![],
            ),
            ("dev example", get.clone(), public("/dev/example/"), vec![]),
            (
                "dev sink POST",
                post.clone(),
                public("/sls/dev-project/logstores/dev-logstore"),
                vec![],
            ),
            ("admin metrics", get.clone(), admin("/metrics"), vec![]),
            ("admin healthz", get.clone(), admin("/healthz"), vec![]),
            ("admin readyz", get.clone(), admin("/readyz"), vec![]),
            (
                "kill switch",
                post.clone(),
                admin("/admin/profiles/default/enable"),
                admin_post.clone(),
            ),
            (
                "kill switch refused",
                post.clone(),
                admin("/admin/profiles/default/enable"),
                vec![],
            ),
            (
                "admin 405",
                get.clone(),
                admin("/admin/profiles/default/enable"),
                vec![],
            ),
        ];
        for (what, method, url, headers) in requests {
            let answer = send(&client, method, &url, &headers).await;
            let what = format!("{what} (shared port: {shared_port}, {})", answer.status);
            hardened(&what, &answer);
        }
        // The dev and admin routes are counted by route, like the token routes.
        let metrics = send(&client, get.clone(), &admin("/metrics"), &[]).await;
        for route in ["/dev/logs", "/admin/profiles/{name}/enable"] {
            let label = format!("route=\"{route}\"");
            assert!(
                metrics
                    .body
                    .lines()
                    .any(|l| l.starts_with("stsvend_http_requests_total{") && l.contains(&label)),
                "{route} counted (shared port: {shared_port})"
            );
        }
        drop(service.process);
    }
}

/// `stsvend dev` with `env`, waited for (bounded): exit status and stderr.
async fn dev_fails(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_stsvend"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stsvend exits within 10 s")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dev_mode_refuses_a_non_loopback_admin_listener_unless_allowed_remote() {
    let (code, stderr) = dev_fails(
        &["dev"],
        &[
            ("STSVEND_LISTEN", "127.0.0.1:0"),
            ("STSVEND_ADMIN_LISTEN", "0.0.0.0:0"),
        ],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("STSVEND_ADMIN_LISTEN"))
        .unwrap_or_else(|| panic!("names the setting: {stderr}"));
    assert!(line.contains("--allow-remote"), "{line}");
}

#[tokio::test]
async fn a_jwt_profile_without_issuer_and_audience_does_not_start() {
    for mode in ["jwt", "report"] {
        let (code, stderr) = dev_fails(
            &["dev"],
            &[
                ("STSVEND_LISTEN", "127.0.0.1:0"),
                ("STSVEND_AUTH", mode),
                ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
            ],
        )
        .await;
        assert_eq!(code, Some(2), "{mode}: {stderr}");
        assert!(
            stderr.contains("STSVEND_JWT_AUDIENCE")
                && stderr.contains("STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true"),
            "{mode}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_explicit_opt_out_accepts_a_token_for_another_audience() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
            ("STSVEND_JWT_ACCEPT_ANY_AUDIENCE", "true"),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ])
        .start()
        .await;
    let mut claims = jwt_claims("alice");
    claims["aud"] = Value::from("another-app");
    let token = sign_jwt(jsonwebtoken::Algorithm::HS256, None, &claims, &hs256_key());
    let answer = app.get_with("/get_sts_token", &[bearer(&token)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn public_readiness_names_no_profile_while_the_admin_one_does() {
    let mock = MockSts::start(vec![]).await;
    let file = r#"
        [profiles.secret-campaign]
        role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
        logstore = "my-proj/web-log"
    "#;
    let app = TestApp::builder(&mock.endpoint()).file(file).start().await;
    app.wait_ready().await;
    let client = &app.client;
    let switched = client
        .post(format!(
            "http://{}/admin/profiles/secret-campaign/disable",
            app.admin_addr
        ))
        .header("x-stsvend-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let public = app.get_with("/readyz", &[]).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.json(), serde_json::json!({"status": "ready"}));
    assert!(!public.mentions("secret-campaign") && !public.mentions("disabled"));
    let (doc, _) = fetch_document(&app, &app.addr.to_string()).await;
    check_answer(&doc, "/readyz", "get", app.get("/readyz").await).await;
    let admin: Value = client
        .get(format!("http://{}/readyz", app.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["profiles"]["secret-campaign"], "disabled");
}

#[tokio::test]
async fn an_options_that_is_not_a_preflight_gets_the_documented_204_with_allow_with_or_without_cors()
 {
    let mock = MockSts::start(vec![]).await;
    let file = r#"
        [profiles.web]
        role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
        logstore = "my-proj/web-log"
        cors_origins = ["https://app.example.com"]
    "#;
    let app = TestApp::builder(&mock.endpoint()).file(file).start().await;
    let (doc, _) = fetch_document(&app, &app.addr.to_string()).await;
    let options = |path: &str, headers: &[(&str, &str)]| {
        let mut request = app.client.request(reqwest::Method::OPTIONS, app.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let acrm = ("access-control-request-method", "GET");
    for (path, documented) in [
        ("/get_sts_token/web", "/get_sts_token/{profile}"),
        ("/get_sts_token", "/get_sts_token"),
    ] {
        for headers in [
            vec![],
            vec![("origin", "")],
            vec![("origin", ""), acrm],
            vec![("origin", "not an origin"), acrm],
            vec![("origin", "null"), acrm],
            vec![("origin", "https://app.example.com/path"), acrm],
            vec![("origin", "https://app.example.com")],
        ] {
            let response = options(path, &headers).await.unwrap();
            assert_eq!(response.status(), 204, "{path} {headers:?}");
            assert_eq!(
                response.headers()["allow"],
                "GET, HEAD, OPTIONS",
                "{path} {headers:?}"
            );
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none(),
                "{path} {headers:?}"
            );
            check_answer(&doc, documented, "options", response).await;
        }
    }
    // A real preflight is still answered, for a listed origin only on the CORS profile.
    let preflight = options(
        "/get_sts_token/web",
        &[("origin", "https://app.example.com"), acrm],
    )
    .await
    .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let no_cors = options(
        "/get_sts_token",
        &[("origin", "https://app.example.com"), acrm],
    )
    .await
    .unwrap();
    assert_eq!(
        no_cors.status(),
        204,
        "the default profile has no CORS origins"
    );
    assert!(
        no_cors
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "so the browser's preflight fails"
    );
}
