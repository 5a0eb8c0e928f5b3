//! Issue #5's operator-facing behaviour: native HTTPS with certificate reload, the admin
//! listener and its kill switch, and the public listener's hardening (slowloris, header size,
//! methods, nosniff).

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::helpers::{MockSts, TempFile, TestApp, eventually};

/// A test CA and a way to issue `localhost` certificates, each with its own common name.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// (certificate PEM, key PEM, certificate DER) for `localhost`, named `name`.
    fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    fn connector(&self) -> TlsConnector {
        stsvend::sts::client::install_crypto_provider();
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(connector: &TlsConnector, addr: std::net::SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test CA")
}

fn served_certificate(stream: &Tls) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One keep-alive HTTP/1.1 GET on an open stream; returns the status code.
async fn get_on<S>(stream: &mut S, path: &str) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the head and a Content-Length body are complete (bounded by the timeout).
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed early");
            buffer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buffer).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buffer.len() >= head_end + 4 + length {
                    break;
                }
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    let text = String::from_utf8_lossy(&buffer);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The service with native HTTPS from these PEMs; the files and the mock live as long as the
/// returned values.
async fn https_app(
    cert_pem: &str,
    key_pem: &str,
) -> (crate::helpers::TestApp, TempFile, TempFile, MockSts) {
    let cert = TempFile::new("cert.pem", cert_pem);
    let key = TempFile::new("key.pem", key_pem);
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_TLS_CERT", cert.path.to_str().unwrap()),
            ("STSVEND_TLS_KEY", key.path.to_str().unwrap()),
        ])
        .start()
        .await;
    (app, cert, key, mock)
}

#[tokio::test]
async fn https_serves_the_certificate_files_and_picks_up_replacements_without_a_restart() {
    let ca = TestCa::new();
    let (cert_a, key_a, der_a) = ca.leaf("first");
    let (app, cert, key, _mock) = https_app(&cert_a, &key_a).await;
    let connector = ca.connector();

    let mut old = tls_connect(&connector, app.addr).await;
    assert_eq!(served_certificate(&old), der_a);
    assert_eq!(get_on(&mut old, "/healthz").await, 200);
    assert_eq!(get_on(&mut old, "/get_sts_token").await, 200);

    // Replace both files, as a certificate renewal does.
    let (cert_b, key_b, der_b) = ca.leaf("second");
    std::fs::write(&key.path, key_b).unwrap();
    std::fs::write(&cert.path, cert_b).unwrap();
    let reloaded = eventually(Duration::from_secs(12), || async {
        served_certificate(&tls_connect(&connector, app.addr).await) == der_b
    })
    .await;
    assert!(reloaded, "a new connection sees the new certificate");
    // The connection opened before the change keeps working.
    assert_eq!(get_on(&mut old, "/healthz").await, 200);
    assert_eq!(served_certificate(&old), der_a);

    // A broken replacement is refused and the current certificate stays.
    std::fs::write(&cert.path, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let fresh = tls_connect(&connector, app.addr).await;
    assert_eq!(served_certificate(&fresh), der_b);
}

#[tokio::test]
async fn https_negotiates_http2_for_clients_that_offer_it() {
    let ca = TestCa::new();
    let (cert_pem, key_pem, _) = ca.leaf("h2");
    let (app, _cert, _key, _mock) = https_app(&cert_pem, &key_pem).await;
    stsvend::sts::client::install_crypto_provider();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let mut config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = tls_connect(&TlsConnector::from(Arc::new(config)), app.addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let version = stream.get_ref().1.protocol_version().unwrap();
    assert!(matches!(
        version,
        tokio_rustls::rustls::ProtocolVersion::TLSv1_3
            | tokio_rustls::rustls::ProtocolVersion::TLSv1_2
    ));
}

#[tokio::test]
async fn the_kill_switch_stops_vending_drops_tokens_and_comes_back() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let admin = |path: &str| format!("http://{}{path}", app.admin_addr);
    let first: Value = app.get("/get_sts_token").await.json().await.unwrap();
    let calls_before = mock.calls();

    let response = app
        .client
        .post(admin("/admin/profiles/default/disable"))
        .header("x-stsvend-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"profile": "default", "enabled": false})
    );

    let refused = app.get("/get_sts_token").await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "profile_disabled");
    let ready: Value = app
        .client
        .get(admin("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["profiles"]["default"], "disabled");

    // The cached token was dropped: a new one is fetched, and served once enabled again.
    assert!(
        eventually(Duration::from_secs(5), || async {
            mock.calls() > calls_before
        })
        .await
    );
    let response = app
        .client
        .post(admin("/admin/profiles/default/enable"))
        .header("x-stsvend-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get("/get_sts_token").await.status() == 200
        })
        .await,
        "served again"
    );
    let after: Value = app.get("/get_sts_token").await.json().await.unwrap();
    assert_ne!(
        after["AccessKeyId"], first["AccessKeyId"],
        "not the token from before the incident"
    );

    let unknown = app
        .client
        .post(admin("/admin/profiles/nobody/disable"))
        .header("x-stsvend-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_admin_routes_are_not_on_the_public_port() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    assert_ne!(app.addr, app.admin_addr);
    assert_eq!(app.get("/metrics").await.status(), 404);
    let kill = app
        .client
        .post(app.url("/admin/profiles/default/disable"))
        .header("x-stsvend-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kill.status(),
        405,
        "POST is not accepted on the public port at all"
    );
    assert_eq!(
        app.get("/get_sts_token").await.status(),
        200,
        "still enabled"
    );
    let admin_health = app
        .client
        .get(format!("http://{}/healthz", app.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_health.status(), 200);
}

#[tokio::test]
async fn only_get_head_and_options_are_accepted_and_responses_say_nosniff() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT-ISH"] {
        let Ok(method) = method.parse::<reqwest::Method>() else {
            continue;
        };
        for path in ["/get_sts_token", "/healthz", "/nothing"] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], "GET, HEAD");
        }
    }
    let ok = app.get("/get_sts_token").await;
    assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
    assert!(!ok.headers().contains_key("server"), "no version banner");
    let not_found = app.get("/nothing").await;
    assert_eq!(not_found.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let big = "a".repeat(40 * 1024);
    let request = format!("GET /get_sts_token HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
}

/// Sends `partial` (a request head without its end) on `stream` and checks the server cuts the
/// connection off (or answers 408) between the header read timeout after `since` (when the
/// server started waiting for this head) and that plus one of the connection's checks, which
/// enforce it (plus a second for a loaded machine).
async fn expect_cut_off_after_partial_head(
    mut stream: TcpStream,
    partial: &[u8],
    since: tokio::time::Instant,
) {
    use stsvend::server::{HEADER_READ_TIMEOUT, IDLE_CHECK_EVERY};
    stream.write_all(partial).await.unwrap();
    let mut buffer = [0u8; 256];
    let outcome = tokio::time::timeout_at(
        since + HEADER_READ_TIMEOUT + IDLE_CHECK_EVERY + Duration::from_secs(1),
        stream.read(&mut buffer),
    )
    .await;
    let Ok(read) = outcome else {
        panic!("still connected after {:?}", since.elapsed());
    };
    let n = read.unwrap_or(0);
    let text = String::from_utf8_lossy(&buffer[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text:?}");
    let after = since.elapsed();
    assert!(
        after >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let since = tokio::time::Instant::now();
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let partial = b"GET /get_sts_token HTTP/1.1\r\nHost: localhost\r\n";
    expect_cut_off_after_partial_head(stream, partial, since).await;
}

#[tokio::test]
async fn a_keep_alive_client_that_never_finishes_its_next_headers_is_cut_off() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // Mid-way between two of the connection's checks (every 5 s from its start), so that the
    // deadline of the next head falls between two of them too.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stream
        .write_all(b"GET /no-such-route HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    // The wait for the next head starts once the answer is out.
    let since = tokio::time::Instant::now();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 404"), "{text:?}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "{text:?}"
    );
    let partial = b"GET /get_sts_token HTTP/1.1\r\n";
    expect_cut_off_after_partial_head(stream, partial, since).await;
}

#[tokio::test]
async fn the_healthcheck_command_reports_health() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint()).start().await;
    let run = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stsvend"))
            .args(["healthcheck", "--url", &url])
            .env_clear()
            .output()
            .unwrap()
    };
    let healthy = tokio::task::spawn_blocking({
        let url = format!("http://{}/healthz", app.admin_addr);
        move || run(url)
    })
    .await
    .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unhealthy = tokio::task::spawn_blocking(move || run(format!("http://{closed}/healthz")))
        .await
        .unwrap();
    assert_eq!(unhealthy.status.code(), Some(1));
    let not_found = tokio::task::spawn_blocking({
        let url = format!("http://{}/nothing", app.admin_addr);
        move || run(url)
    })
    .await
    .unwrap();
    assert_eq!(not_found.status.code(), Some(1));
}
