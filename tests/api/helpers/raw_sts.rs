//! An STS stand-in written on raw TCP, for the byte-level faults an HTTP framework will not
//! produce on purpose (a reset mid-body, a short body, a body with no end), and for a port that
//! stops accepting connections and starts again. For everything else use [`super::sts`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{Script, expiration_in};

/// What [`RawSts`] does with one request. Every answer closes the connection afterwards, so no
/// pooled connection outlives a fault.
#[derive(Debug, Clone)]
pub(crate) enum RawReply {
    /// A well-formed STS success expiring `lifetime` seconds from now (fresh key ids each time).
    Success { lifetime: i64 },
    /// A well-formed STS error body.
    Error { status: u16, code: &'static str },
    /// Any status and body, framed correctly.
    Raw { status: u16, body: String },
    /// Headers declaring `declared` body bytes, `sent` bytes of body, then a TCP reset.
    ResetMidBody { declared: usize, sent: usize },
    /// Headers declaring `declared` body bytes, `sent` bytes of body, then a clean close.
    Truncated { declared: usize, sent: usize },
    /// A 200 with a body of `total` bytes, chunked or with its length declared up front, written
    /// until the peer stops reading; [`RawSts::body_bytes_written`] counts what got out.
    Huge { total: usize, declare_length: bool },
    /// Reads the request and never answers (until the peer gives up).
    Hang,
}

/// A success body for `access_key_id` with any `Expiration` text.
pub(crate) fn success_body(access_key_id: &str, secret: &str, expiration: &str) -> String {
    serde_json::json!({
        "RequestId": "RAW-SUCCESS",
        "Credentials": {
            "SecurityToken": format!("CAIS+{secret}"),
            "Expiration": expiration,
            "AccessKeySecret": secret,
            "AccessKeyId": access_key_id,
        }
    })
    .to_string()
}

#[derive(Debug)]
struct RawState {
    script: Script<RawReply>,
    /// When each request had been read in full, in arrival order.
    arrivals: Mutex<Vec<std::time::Instant>>,
    body_bytes_written: AtomicUsize,
    issued_key_ids: Mutex<Vec<String>>,
}

/// A raw-TCP mock STS on 127.0.0.1 that answers with [`RawReply`]s. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct RawSts {
    pub(crate) addr: SocketAddr,
    state: Arc<RawState>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// While refusing: the port, bound but not listening, so connecting is refused at once and
    /// nobody else takes the port.
    parked: Mutex<Option<tokio::net::TcpSocket>>,
}

impl RawSts {
    /// Answers `script` in order, then `fallback` (set with [`Self::set_fallback`]), else success.
    pub(crate) async fn start(script: Vec<RawReply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(RawState {
            script: Script::new(script),
            arrivals: Mutex::default(),
            body_bytes_written: AtomicUsize::new(0),
            issued_key_ids: Mutex::default(),
        });
        let accept = tokio::spawn(raw_accept(listener, state.clone()));
        Self {
            addr,
            state,
            accept: Mutex::new(Some(accept)),
            parked: Mutex::new(None),
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub(crate) fn set_fallback(&self, reply: RawReply) {
        self.state.script.set_fallback(reply);
    }

    /// Requests read in full so far.
    pub(crate) fn calls(&self) -> usize {
        self.state.arrivals.lock().unwrap().len()
    }

    pub(crate) fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// Body bytes the kernel accepted from [`RawReply::Huge`] answers so far.
    pub(crate) fn body_bytes_written(&self) -> usize {
        self.state.body_bytes_written.load(Ordering::SeqCst)
    }

    /// Key ids of the [`RawReply::Success`] answers given so far.
    pub(crate) fn issued_key_ids(&self) -> Vec<String> {
        self.state.issued_key_ids.lock().unwrap().clone()
    }

    /// Stops listening: from now on connecting is refused (connections already open are left
    /// alone, but every answer closes its connection, so none is pooled).
    pub(crate) async fn refuse(&self) {
        let task = self.accept.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            // Once the aborted task is gone, so is its listener.
            let _ = task.await;
        }
        for _ in 0..50 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket.bind(self.addr).is_ok() {
                *self.parked.lock().unwrap() = Some(socket);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("could not park port {}", self.addr);
    }

    /// Listens again on the same port after [`Self::refuse`].
    pub(crate) fn accept_again(&self) {
        let socket = self.parked.lock().unwrap().take().expect("refusing");
        let listener = socket.listen(128).unwrap();
        *self.accept.lock().unwrap() = Some(tokio::spawn(raw_accept(listener, self.state.clone())));
    }
}

impl Drop for RawSts {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn raw_accept(listener: tokio::net::TcpListener, state: Arc<RawState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // Bounded: no connection task outlives a minute, whatever the peer does.
            let _ =
                tokio::time::timeout(Duration::from_secs(60), raw_connection(stream, state)).await;
        });
    }
}

/// Reads one request (head and `Content-Length` body, capped), then answers it.
async fn raw_connection(mut stream: tokio::net::TcpStream, state: Arc<RawState>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let n = {
        let mut arrivals = state.arrivals.lock().unwrap();
        arrivals.push(std::time::Instant::now());
        arrivals.len() - 1
    };
    let reply = state
        .script
        .next()
        .unwrap_or(RawReply::Success { lifetime: 3600 });
    let head_for = |status: u16, length: Option<usize>| {
        let framing = length.map_or("transfer-encoding: chunked".to_owned(), |l| {
            format!("content-length: {l}")
        });
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json;charset=utf-8\r\nconnection: close\r\n{framing}\r\n\r\n"
        )
    };
    let full = |status: u16, body: String| {
        let mut bytes = head_for(status, Some(body.len())).into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    match reply {
        RawReply::Success { lifetime } => {
            let id = format!("STS.raw{n}x{}", uuid::Uuid::new_v4().simple());
            state.issued_key_ids.lock().unwrap().push(id.clone());
            let secret = format!("raw-secret-{}", uuid::Uuid::new_v4().simple());
            let body = success_body(&id, &secret, &expiration_in(lifetime));
            let _ = stream.write_all(&full(200, body)).await;
        }
        RawReply::Error { status, code } => {
            let body = serde_json::json!({
                "RequestId": format!("RAW-ERR-{n}"),
                "HostId": "sts.aliyuncs.com",
                "Code": code,
                "Message": format!("raw {code}"),
                "Recommend": "https://api.aliyun.com/troubleshoot",
            })
            .to_string();
            let _ = stream.write_all(&full(status, body)).await;
        }
        RawReply::Raw { status, body } => {
            let _ = stream.write_all(&full(status, body)).await;
        }
        RawReply::ResetMidBody { declared, sent } | RawReply::Truncated { declared, sent } => {
            let mut bytes = head_for(200, Some(declared)).into_bytes();
            let body = success_body(
                "STS.NEVER-SERVE",
                "never-serve-secret",
                &expiration_in(3600),
            );
            bytes.extend(body.bytes().chain(std::iter::repeat(b' ')).take(sent));
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            if matches!(reply, RawReply::ResetMidBody { .. }) {
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = stream.set_zero_linger();
            } else {
                let _ = stream.shutdown().await;
            }
        }
        RawReply::Huge {
            total,
            declare_length,
        } => {
            let head = head_for(200, declare_length.then_some(total));
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let take = left.min(block.len());
                let written = if declare_length {
                    stream.write_all(&block[..take]).await
                } else {
                    let mut framed = format!("{take:x}\r\n").into_bytes();
                    framed.extend_from_slice(&block[..take]);
                    framed.extend_from_slice(b"\r\n");
                    stream.write_all(&framed).await
                };
                if written.is_err() {
                    return;
                }
                state.body_bytes_written.fetch_add(take, Ordering::SeqCst);
                left -= take;
            }
            if !declare_length {
                let _ = stream.write_all(b"0\r\n\r\n").await;
            }
        }
        RawReply::Hang => {
            // Wait for the peer to give up and close; never answer.
            while let Ok(n) = stream.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
}
