//! STS is reached over HTTPS with rustls, and the server certificate is verified: the real
//! binary talks to a TLS mock STS whose certificate is signed by a test CA, trusted through
//! `SSL_CERT_FILE` (read by rustls-native-certs, like OpenSSL-based tools do).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

use crate::helpers::{ServiceProcess, TempFile};

/// A test CA and a `localhost` certificate it signed.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// Accepts TLS connections for axum.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects our certificate fails the handshake; keep serving others.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Starts an HTTPS mock STS that answers every call with fresh credentials; returns its port
/// and a call counter.
async fn tls_mock_sts(pki: &Pki) -> (u16, Arc<AtomicUsize>) {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                #[allow(clippy::disallowed_methods)] // the mock plays STS, with its own clock
                let expiration = chrono::Utc::now() + chrono::Duration::seconds(3600);
                axum::Json(serde_json::json!({
                    "RequestId": format!("TLS-{n}"),
                    "Credentials": {
                        "AccessKeyId": format!("STS.overtls{n}"),
                        "AccessKeySecret": "tls-secret",
                        "SecurityToken": "tls-token",
                        "Expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    }
                }))
            }
        }),
    );
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, calls)
}

/// The binary against the TLS mock STS on `sts_port`, trusting `ca_file`.
fn start_service(sts_port: u16, ca_file: &TempFile) -> ServiceProcess {
    let endpoint = format!("https://localhost:{sts_port}");
    ServiceProcess::spawn(
        &[],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTlsTest"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "tls-test-secret"),
            ("STSVEND_ROLE_ARN", "acs:ram::1234567890123456:role/tls"),
            ("STSVEND_LOGSTORE", "tls-project/web-log"),
            ("STSVEND_STS_ENDPOINT", &endpoint),
            ("SSL_CERT_FILE", ca_file.path_str()),
        ],
    )
}

/// Polls the token endpoint until it answers something other than "not ready yet" (bounded).
async fn settled_token_response(service: &ServiceProcess) -> (u16, serde_json::Value) {
    stsvend::sts::client::install_crypto_provider();
    let client = reqwest::Client::new();
    let url = service.url("/get_sts_token");
    for _ in 0..100 {
        if let Ok(response) = client.get(&url).send().await {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if body["error"]["code"] != "token_not_ready" {
                return (status, body);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service never settled");
}

#[tokio::test]
async fn assume_role_goes_over_verified_https() {
    let pki = pki();
    let (sts_port, calls) = tls_mock_sts(&pki).await;
    let ca_file = TempFile::new("ca.pem", &pki.ca_pem);
    let service = start_service(sts_port, &ca_file);
    let (status, body) = settled_token_response(&service).await;
    drop(ca_file);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("STS.overtls")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_sts_certificate_is_refused() {
    let pki = pki();
    let other_ca = self::pki();
    let (sts_port, calls) = tls_mock_sts(&pki).await;
    let ca_file = TempFile::new("other-ca.pem", &other_ca.ca_pem);
    let service = start_service(sts_port, &ca_file);
    let (status, body) = settled_token_response(&service).await;
    drop(ca_file);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "sts_unavailable");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no request reached the impostor"
    );
}
