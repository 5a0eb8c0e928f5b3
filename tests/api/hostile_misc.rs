//! Issue 13, points 5, 6, 7 and 10, on the real binary: a certificate and key that do not match
//! are refused at start-up and on reload; a policy too long once bound to a source address is
//! refused at start-up; `stsvend dev` writes its logs to a private per-run file; SIGHUP never
//! stops the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    MockSts, ROLE_ARN, ServiceProcess, TEST_KEY_ID, TEST_KEY_SECRET, TempDir, eventually,
    http_client, sample,
};

/// How long a process gets to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// `serve` against `mock` with a static AccessKey, plain HTTP, plus `extra`.
fn serve_env<'a>(endpoint: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_KEY_SECRET),
        ("STSVEND_ROLE_ARN", ROLE_ARN),
        ("STSVEND_LOGSTORE", "hostile-project/web-logs"),
        ("STSVEND_STS_ENDPOINT", endpoint),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    env
}

/// Stops `service` with SIGTERM and returns its exit code and everything it wrote to stderr.
async fn stop(service: &mut ServiceProcess) -> (Option<i32>, String) {
    service.signal("TERM");
    let status = service.wait_exit(EXIT_LIMIT).await;
    if status.is_none() {
        service.kill().await;
    }
    let (_, stderr) = service.output().await;
    (status.and_then(|s| s.code()), stderr)
}

/// Sends SIGHUP `times` times, a little apart (signals close together may be merged), then
/// checks the process still answers `/healthz` and serves a token.
async fn hang_up_and_check_serving(service: &mut ServiceProcess, times: usize) {
    for _ in 0..times {
        service.signal("HUP");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        service.wait_healthy(Duration::from_secs(5)).await,
        "still healthy after {times} SIGHUPs"
    );
    let response = http_client(Duration::from_secs(10))
        .get(service.url("/get_sts_token"))
        .send()
        .await
        .expect("the token endpoint answers after SIGHUP");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["AccessKeyId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

// SIGHUP reloads the configuration now (issue 17.3); it is still logged, and still harmless.
const HANGUP_LOGGED: &str = "received SIGHUP: reloading the configuration";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_stop_serve_without_tls() {
    let mock = MockSts::start(vec![]).await;
    let endpoint = mock.endpoint();
    let mut service = ServiceProcess::start(&["serve"], &serve_env(&endpoint, &[])).await;
    hang_up_and_check_serving(&mut service, 3).await;
    let (code, stderr) = stop(&mut service).await;
    assert_eq!(code, Some(0), "exits normally on SIGTERM; log:\n{stderr}");
    assert!(
        stderr.contains(HANGUP_LOGGED),
        "SIGHUP is logged:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_stop_dev() {
    let home = TempDir::new();
    let mut service = ServiceProcess::start(
        &["dev"],
        &[("RUST_LOG", "info"), ("TMPDIR", home.path_str())],
    )
    .await;
    hang_up_and_check_serving(&mut service, 3).await;
    let (code, stderr) = stop(&mut service).await;
    assert_eq!(code, Some(0), "exits normally on SIGTERM; log:\n{stderr}");
    assert!(
        stderr.contains(HANGUP_LOGGED),
        "SIGHUP is logged:\n{stderr}"
    );
}

/// A SIGHUP while the process is still starting (here: waiting for the ECS metadata service,
/// before any listener exists) does not end it: it goes on and finishes start-up its own way
/// (here exit 2, since the metadata service then goes away and no credentials are found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_start_up_does_not_stop_the_process() {
    let metadata = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metadata_url = format!("http://{}/", metadata.local_addr().unwrap());
    let home = TempDir::new();
    let mut service = ServiceProcess::spawn(
        &["serve"],
        &[
            ("HOME", home.path_str()),
            ("STSVEND_ROLE_ARN", ROLE_ARN),
            ("STSVEND_LOGSTORE", "hostile-project/web-logs"),
            ("STSVEND_ECS_METADATA_ENDPOINT", &metadata_url),
        ],
    );
    // The credential chain asks the metadata service: start-up is under way, nothing listens.
    let (connection, _) = tokio::time::timeout(Duration::from_secs(10), metadata.accept())
        .await
        .expect("stsvend asks the metadata service during start-up")
        .unwrap();
    for _ in 0..3 {
        service.signal("HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(connection);
    drop(metadata);
    let status = service.wait_exit(EXIT_LIMIT).await;
    if status.is_none() {
        service.kill().await;
    }
    let (_, stderr) = service.output().await;
    let status = status.unwrap_or_else(|| panic!("no exit within {EXIT_LIMIT:?}:\n{stderr}"));
    assert_eq!(
        status.code(),
        Some(2),
        "start-up went on to its own end (no credentials), not ended by SIGHUP ({status}):\n{stderr}"
    );
}

// Point 5: a certificate and a key that do not match.

/// A test CA that issues `localhost` certificates, and a client that trusts it.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// (certificate PEM, key PEM, certificate DER) for `localhost`.
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Connects over TLS and returns the stream and the certificate the server presented.
    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
        use tokio_rustls::rustls;
        stsvend::sts::client::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await?;
        let served = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        Ok((stream, served))
    }
}

/// The status of one `GET path` (HTTP/1.1, `Connection: close`) on `stream`.
async fn get_status<S>(mut stream: S, path: &str) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .ok();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// `stsvend serve` with native HTTPS from `dir`'s `cert.pem` and `key.pem`, and the admin
/// listener (plain HTTP: health, metrics).
struct HttpsService {
    process: ServiceProcess,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl HttpsService {
    fn spawn(mock: &MockSts, dir: &TempDir) -> Self {
        let endpoint = mock.endpoint();
        let cert = dir.path.join("cert.pem");
        let key = dir.path.join("key.pem");
        let env = serve_env(
            &endpoint,
            &[
                ("STSVEND_TLS_CERT", cert.to_str().unwrap()),
                ("STSVEND_TLS_KEY", key.to_str().unwrap()),
            ],
        );
        let process = ServiceProcess::spawn(&["serve"], &env);
        Self {
            addr: process.addr,
            admin: process.admin_addr,
            process,
        }
    }

    /// Polls the admin `/healthz` until it answers 200 (bounded; false if the process exits).
    async fn wait_healthy(&mut self) -> bool {
        self.process.wait_healthy(Duration::from_secs(10)).await
    }

    fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// `stsvend_tls_reloads_total{outcome}` from the admin listener's `/metrics`.
    async fn reloads(&self, outcome: &str) -> f64 {
        let page = http_client(Duration::from_secs(5))
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&page, "stsvend_tls_reloads_total", &[("outcome", outcome)]).unwrap_or(0.0)
    }

    /// Stops with SIGTERM; the exit code and the log.
    async fn stop(mut self) -> (Option<i32>, String) {
        stop(&mut self.process).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_and_key_that_do_not_match_stop_start_up_naming_both_files() {
    let ca = TestCa::new();
    let (cert_a, _, _) = ca.leaf();
    let (_, key_b, _) = ca.leaf();
    let dir = TempDir::new();
    let cert = dir.write("cert.pem", &cert_a);
    let key = dir.write("key.pem", &key_b);
    let mock = MockSts::start(vec![]).await;
    let endpoint = mock.endpoint();
    let env = serve_env(
        &endpoint,
        &[("STSVEND_TLS_CERT", &cert), ("STSVEND_TLS_KEY", &key)],
    );
    let mut service = ServiceProcess::spawn(&["serve"], &env);
    let status = service.wait_exit(EXIT_LIMIT).await;
    if status.is_none() {
        service.kill().await;
    }
    let (stdout, stderr) = service.output().await;
    let status = status.unwrap_or_else(|| panic!("still running: the pair was accepted\n{stderr}"));
    assert_eq!(status.code(), Some(2), "exit code; stderr:\n{stderr}");
    assert_eq!(stdout, "");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("stsvend: "))
        .unwrap_or_else(|| panic!("no `stsvend: ` line:\n{stderr}"));
    assert!(
        line.contains(&cert) && line.contains(&key) && line.contains("does not belong"),
        "one line names both files and the problem: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_mismatched_pair_keeps_serving_the_previous_certificate() {
    let ca = TestCa::new();
    let (cert_a, key_a, der_a) = ca.leaf();
    let (cert_b, key_b, der_b) = ca.leaf();
    let dir = TempDir::new();
    dir.write("cert.pem", &cert_a);
    dir.write("key.pem", &key_a);
    let mock = MockSts::start(vec![]).await;
    let mut service = HttpsService::spawn(&mock, &dir);
    assert!(service.wait_healthy().await, "the HTTPS service starts");
    let (_, served) = ca.connect(service.addr).await.unwrap();
    assert_eq!(served, der_a);

    // A renewal has written the new certificate but not yet its key; SIGHUP asks for a reload
    // at once (the 5 s file check would find it too).
    dir.write("cert.pem", &cert_b);
    service.signal("HUP");
    let refused = eventually(Duration::from_secs(10), || async {
        service.reloads("refused").await >= 1.0
    })
    .await;
    assert!(refused, "the mismatched pair is counted as refused");
    let (stream, served) = ca.connect(service.addr).await.unwrap();
    assert_eq!(served, der_a, "new handshakes still get the previous pair");
    assert_eq!(get_status(stream, "/get_sts_token").await, 200);
    assert_eq!(service.reloads("ok").await, 0.0);

    // The key arrives: the next reload takes the new pair.
    dir.write("key.pem", &key_b);
    service.signal("HUP");
    let reloaded = eventually(Duration::from_secs(10), || async {
        matches!(ca.connect(service.addr).await, Ok((_, served)) if served == der_b)
    })
    .await;
    assert!(reloaded, "the matching pair is taken");
    assert!(service.reloads("ok").await >= 1.0);

    let (code, stderr) = service.stop().await;
    assert_eq!(code, Some(0), "{stderr}");
    let refusal = stderr
        .lines()
        .find(|line| line.contains("cannot reload the TLS certificate; keeping the previous one"))
        .unwrap_or_else(|| panic!("no error line for the refused reload:\n{stderr}"));
    assert!(refusal.contains("ERROR"), "{refusal}");
    assert!(
        refusal.contains("does not belong to the certificate"),
        "{refusal}"
    );
}

// Point 6: a policy that fits alone but not once bound to the caller's address.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_too_long_once_bound_to_a_source_ip_stops_start_up() {
    let head = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"acs:log:*:*:project/p/logstore/"#;
    let tail = r#""}]}"#;
    let policy = format!("{head}{}{tail}", "a".repeat(2000 - head.len() - tail.len()));
    assert_eq!(policy.len(), 2000);
    let mock = MockSts::start(vec![]).await;
    let endpoint = mock.endpoint();
    let mut env = serve_env(&endpoint, &[("STSVEND_BIND_SOURCE_IP", "true")]);
    env.retain(|(name, _)| *name != "STSVEND_LOGSTORE");
    env.push(("STSVEND_POLICY", &policy));
    let mut service = ServiceProcess::spawn(&["serve"], &env);
    let status = service.wait_exit(EXIT_LIMIT).await;
    if status.is_none() {
        service.kill().await;
    }
    let (stdout, stderr) = service.output().await;
    let status = status.unwrap_or_else(|| panic!("still running: the policy was accepted"));
    assert_eq!(status.code(), Some(2), "exit code; stderr:\n{stderr}");
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{stderr}");
    assert!(
        lines[0].starts_with("stsvend: invalid setting `STSVEND_POLICY`")
            && lines[0].contains("STSVEND_BIND_SOURCE_IP")
            && lines[0].contains("bytes once minified; STS accepts at most 2048"),
        "{}",
        lines[0]
    );
    assert_eq!(mock.calls(), 0, "no AssumeRole was sent");
}

// Point 7: `stsvend dev`'s log file.

/// Posts one log to a running `stsvend dev`'s SLS sink, signed with a token it vends, the way
/// the STS plugin signs it; returns the sink's status.
async fn post_one_log(service: &ServiceProcess, event: &str) -> u16 {
    use md5::{Digest, Md5};
    use stsvend::emulator::sls::{sign, string_to_sign};
    let client = http_client(Duration::from_secs(10));
    let token: serde_json::Value = client
        .get(service.url("/get_sts_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = |key: &str| token[key].as_str().unwrap().to_owned();
    let body = format!(r#"{{"__logs__":[{{"event":"{event}"}}]}}"#);
    let md5: String = Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    #[allow(clippy::disallowed_methods)] // plays the browser, with its own clock
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let length = body.len().to_string();
    let security_token = text("SecurityToken");
    let log_headers = [
        ("x-log-apiversion", "0.6.0"),
        ("x-log-bodyrawsize", length.as_str()),
        ("x-log-signaturemethod", "hmac-sha1"),
        ("x-acs-security-token", security_token.as_str()),
    ];
    let to_sign = string_to_sign(
        "POST",
        &md5,
        "application/json",
        &date,
        log_headers.iter().copied(),
        "/logstores/dev-logstore",
    );
    let authorization = format!(
        "LOG {}:{}",
        text("AccessKeyId"),
        sign(&to_sign, &text("AccessKeySecret"))
    );
    let mut request = client
        .post(service.url("/sls/dev-project/logstores/dev-logstore"))
        .header("content-type", "application/json")
        .header("content-md5", &md5)
        .header("x-log-date", &date)
        .header("authorization", authorization);
    for (name, value) in log_headers {
        request = request.header(name, value);
    }
    request.body(body).send().await.unwrap().status().as_u16()
}

/// One `stsvend dev` run with `TMPDIR` at `tmp`: posts a log, stops, and returns the log file
/// path its banner names.
async fn dev_run(tmp: &TempDir, event: &str) -> std::path::PathBuf {
    let mut service = ServiceProcess::start(&["dev"], &[("TMPDIR", tmp.path_str())]).await;
    assert_eq!(post_one_log(&service, event).await, 200);
    service.signal("TERM");
    assert!(service.wait_exit(EXIT_LIMIT).await.is_some(), "dev stops");
    let (stdout, _) = service.output().await;
    let named = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("(also written to "))
        .and_then(|rest| rest.strip_suffix(", kept after exit)"))
        .unwrap_or_else(|| panic!("the banner names the log file:\n{stdout}"));
    std::path::PathBuf::from(named)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_writes_each_run_to_a_new_private_file_and_never_follows_a_planted_link() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new();
    // Another user of a shared temp directory plants a link where the log file used to be.
    let victim = tmp.write("victim.txt", "precious\n");
    let planted = tmp.path.join("stsvend-dev-logs.jsonl");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();

    let first = dev_run(&tmp, "first-run").await;
    let second = dev_run(&tmp, "second-run").await;

    assert_ne!(first, second, "each run has its own file");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        std::fs::read_link(&planted).unwrap(),
        std::path::Path::new(&victim)
    );
    for (file, event) in [(&first, "first-run"), (&second, "second-run")] {
        let dir = file.parent().unwrap();
        assert_eq!(dir.parent().unwrap(), tmp.path, "under TMPDIR");
        let mode = |path: &std::path::Path| {
            std::fs::symlink_metadata(path)
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(event),
            "kept after exit with its own log: {text}"
        );
    }
}

/// With no writable temp directory (a read-only root, as in the container check), `stsvend dev`
/// still starts: the log file is a convenience, the sink keeps its logs in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_without_a_writable_temp_directory_starts_and_says_so() {
    let home = TempDir::new();
    let missing = format!("{}/does-not-exist", home.path_str());
    let mut service =
        ServiceProcess::start(&["dev"], &[("RUST_LOG", "info"), ("TMPDIR", &missing)]).await;
    hang_up_and_check_serving(&mut service, 0).await;
    let (code, stderr) = stop(&mut service).await;
    assert_eq!(code, Some(0), "exits normally on SIGTERM; log:\n{stderr}");
    assert!(
        stderr.contains("logs are kept in memory only"),
        "the missing file is explained:\n{stderr}"
    );
    assert!(!std::path::Path::new(&missing).exists());
}
