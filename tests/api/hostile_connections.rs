//! One client takes every connection slot (issue 13, point 1), against the real binary: with
//! the global cap at 50, 50 idle h2c connections, 50 idle h2 connections over TLS, or 50
//! HTTP/1.1 connections that pipeline requests and never read. Each time a fresh client gets
//! its token within 2 s (the idlest connection is closed to make room), and the hostile
//! connections are closed within the documented timeouts. And one address cannot hold more
//! than `STSVEND_MAX_CONNECTIONS_PER_ADDRESS` while another still connects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{ServiceProcess, TempFile, eventually, http_client, sample};

/// The client preface of HTTP/2 and an empty SETTINGS frame; after it the client says nothing.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const CAP: usize = 50;
/// A fresh client is served within this, hostile crowd or not.
const FRESH_LIMIT: Duration = Duration::from_secs(2);

/// `stsvend dev` on loopback ports reserved for it, with its admin listener's address known so
/// the test can read `/metrics`. Killed when dropped.
struct Service {
    _process: ServiceProcess,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Service {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let mut env = vec![
            // One loopback address sends everything: rate limits are not under test here.
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
            ("STSVEND_RATE_LIMIT_BURST", "1000000"),
            ("RUST_LOG", "warn"),
        ];
        env.extend_from_slice(extra);
        let process = ServiceProcess::start(&["dev"], &env).await;
        Self {
            addr: process.addr,
            admin: process.admin_addr,
            _process: process,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `name{listener="public", extra}` from the admin listener's `/metrics` (0 when absent).
    async fn metric(&self, name: &str, extra: &[(&str, &str)]) -> f64 {
        let page = http_client(Duration::from_secs(2))
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .unwrap();
        let mut labels = vec![("listener", "public")];
        labels.extend_from_slice(extra);
        sample(&page, name, &labels).unwrap_or(0.0)
    }

    /// Waits, bounded by `limit`, until the public listener has no connection open.
    async fn all_closed_within(&self, limit: Duration) -> bool {
        eventually(limit, || async {
            self.metric("stsvend_connections_open", &[]).await == 0.0
        })
        .await
    }
}

/// A token request on a new connection answers 200 within [`FRESH_LIMIT`].
async fn fresh_client_served(client: &reqwest::Client, url: &str) -> Result<Duration, String> {
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(FRESH_LIMIT, client.get(url).send()).await {
        Ok(Ok(response)) if response.status() == 200 => Ok(started.elapsed()),
        Ok(Ok(response)) => Err(format!("answered {}", response.status())),
        Ok(Err(error)) => Err(format!("failed: {error}")),
        Err(_) => Err(format!("no answer within {FRESH_LIMIT:?}")),
    }
}

/// Reads what the server still sent until end of stream or an error (a reset), within
/// `limit`; false if the connection is still open then.
async fn reads_to_the_end<R: AsyncRead + Unpin>(stream: &mut R, limit: Duration) -> bool {
    let drained = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, drained).await.is_ok()
}

/// Checks the whole scenario after the hostile connections are in place: a fresh client is
/// served, the idlest connection was evicted for it, and every connection is closed within
/// `closed_within`. Returns how long the fresh client took and how long the closing took.
async fn fresh_client_then_all_closed(
    service: &Service,
    fresh: reqwest::Client,
    url: &str,
    closed_within: Duration,
) -> (Duration, Duration) {
    let evicted_before = service
        .metric("stsvend_connections_evicted_total", &[])
        .await;
    assert_eq!(
        service.metric("stsvend_connections_open", &[]).await,
        CAP as f64,
        "the hostile connections hold every slot"
    );
    let took = fresh_client_served(&fresh, url)
        .await
        .expect("a fresh client is served next to the hostile crowd");
    drop(fresh);
    assert!(
        service
            .metric("stsvend_connections_evicted_total", &[])
            .await
            > evicted_before,
        "the fresh client's slot came from closing an idle connection"
    );
    let started = tokio::time::Instant::now();
    assert!(
        service.all_closed_within(closed_within).await,
        "connections still open {closed_within:?} later: {}",
        service.metric("stsvend_connections_open", &[]).await
    );
    (took, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2c_connections_cannot_lock_out_a_fresh_client_and_are_closed() {
    let service = Service::start(&[("STSVEND_MAX_CONNECTIONS", "50")]).await;
    let url = service.url("/get_sts_token");
    let mut hostile = Vec::new();
    for _ in 0..CAP {
        let mut stream = TcpStream::connect(service.addr).await.unwrap();
        stream.write_all(H2_PREFACE).await.unwrap();
        stream.write_all(EMPTY_SETTINGS).await.unwrap();
        hostile.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened = tokio::time::Instant::now();
    // Idle 30 s, checked every 5 s; pings unanswered after 20 + 10 s: gone within 35 s.
    let (took, _) = fresh_client_then_all_closed(
        &service,
        http_client(FRESH_LIMIT),
        &url,
        Duration::from_secs(40),
    )
    .await;
    let closed = opened.elapsed();
    for stream in &mut hostile {
        assert!(reads_to_the_end(stream, Duration::from_secs(2)).await);
    }
    eprintln!(
        "50 idle h2c connections: fresh client served in {took:?}; all closed within {closed:?} of going idle"
    );
}

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn localhost_certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connections_over_tls_cannot_lock_out_a_fresh_client_and_are_closed() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self};

    let (cert_pem, key_pem) = localhost_certificate();
    let cert_file = TempFile::new("cert.pem", &cert_pem);
    let key_file = TempFile::new("key.pem", &key_pem);
    let service = Service::start(&[
        ("STSVEND_MAX_CONNECTIONS", "50"),
        ("STSVEND_TLS_CERT", cert_file.path_str()),
        ("STSVEND_TLS_KEY", key_file.path_str()),
    ])
    .await;
    let mut roots = rustls::RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut hostile = Vec::new();
    for _ in 0..CAP {
        let tcp = TcpStream::connect(service.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(H2_PREFACE).await.unwrap();
        tls.write_all(EMPTY_SETTINGS).await.unwrap();
        tls.flush().await.unwrap();
        hostile.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let fresh = reqwest::Client::builder()
        .timeout(FRESH_LIMIT)
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("localhost", service.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/get_sts_token", service.addr.port());
    let (took, closed) =
        fresh_client_then_all_closed(&service, fresh, &url, Duration::from_secs(40)).await;
    for stream in &mut hostile {
        assert!(reads_to_the_end(stream, Duration::from_secs(2)).await);
    }
    eprintln!(
        "50 idle h2 connections over TLS: fresh client served in {took:?}; all closed within {closed:?}"
    );
}

/// A connection with a small receive buffer that pipelines `GET /get_sts_token` and never
/// reads; its writing half runs on a task (bounded: stops at the first write that waits 3 s).
async fn pipelining_never_reading(addr: SocketAddr) -> tokio::net::tcp::OwnedReadHalf {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    tokio::spawn(async move {
        let request = b"GET /get_sts_token HTTP/1.1\r\nHost: stsvend\r\n\r\n".repeat(100);
        for _ in 0..50 {
            let sent = tokio::time::timeout(Duration::from_secs(3), write.write_all(&request));
            if !matches!(sent.await, Ok(Ok(()))) {
                break;
            }
        }
        // Kept open (not shut down) until the server gives up on the connection.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_that_never_read_cannot_lock_out_a_fresh_client_and_are_closed() {
    let service = Service::start(&[("STSVEND_MAX_CONNECTIONS", "50")]).await;
    let url = service.url("/get_sts_token");
    let stalled_before = service
        .metric(
            "stsvend_connections_closed_total",
            &[("reason", "write_stall")],
        )
        .await;
    let mut hostile = Vec::new();
    for _ in 0..CAP {
        hostile.push(pipelining_never_reading(service.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Writes stall once the client's buffers are full; 10 s later the connection is closed.
    let (took, closed) = fresh_client_then_all_closed(
        &service,
        http_client(FRESH_LIMIT),
        &url,
        Duration::from_secs(20),
    )
    .await;
    let stalled = service
        .metric(
            "stsvend_connections_closed_total",
            &[("reason", "write_stall")],
        )
        .await
        - stalled_before;
    assert!(
        stalled >= (CAP - 1) as f64,
        "{stalled} closed for a stalled write"
    );
    for read in &mut hostile {
        assert!(reads_to_the_end(read, Duration::from_secs(5)).await);
    }
    eprintln!(
        "50 pipelining clients that never read: fresh client served in {took:?}; all closed within {closed:?} ({stalled} by the write stall timeout)"
    );
}

/// A GET on `stream` answers 200 (the connection is served, and closed after the answer).
async fn answers_200(stream: &mut TcpStream) -> bool {
    let request = b"GET /get_sts_token HTTP/1.1\r\nHost: stsvend\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    matches!(read.await, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_cap_while_another_still_connects() {
    let service = Service::start(&[("STSVEND_MAX_CONNECTIONS_PER_ADDRESS", "5")]).await;
    let refused_before = service
        .metric(
            "stsvend_connections_refused_total",
            &[("reason", "per_address")],
        )
        .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(service.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The sixth from 127.0.0.1 is closed at once, before any answer.
    let mut sixth = TcpStream::connect(service.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), sixth.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the sixth connection from one address is closed: {read:?}"
    );
    assert!(
        service
            .metric(
                "stsvend_connections_refused_total",
                &[("reason", "per_address")]
            )
            .await
            > refused_before
    );

    // Another address (all of 127.0.0.0/8 is loopback) is served.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(service.addr).await.unwrap();
    assert!(answers_200(&mut other).await, "another address is served");
    // The five held ones are still open and served.
    assert!(answers_200(&mut held[0]).await);
    drop(held);
    // Once they are closed, the address may connect again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(service.addr).await.unwrap();
    assert!(answers_200(&mut again).await);
}

#[tokio::test]
async fn a_per_address_cap_out_of_range_stops_start_up_naming_the_setting() {
    for value in ["0", "1000001", "many"] {
        let mut service =
            ServiceProcess::spawn(&["dev"], &[("STSVEND_MAX_CONNECTIONS_PER_ADDRESS", value)]);
        let status = service.wait_exit(Duration::from_secs(10)).await;
        let (_, stderr) = service.output().await;
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("STSVEND_MAX_CONNECTIONS_PER_ADDRESS"),
            "{value}: {stderr}"
        );
    }
}
