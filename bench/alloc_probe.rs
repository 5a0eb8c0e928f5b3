//! Heap allocations per cached `GET /get_sts_token`, counted by a counting global allocator
//! (`stats_alloc`) while the real service serves them: built from settings as `stsvend serve`
//! builds it (metrics recorder installed, JSON logs with an audit line per request through the
//! service's own log writer, into a sink; rate limits on but high), against the built-in STS
//! emulator, asked over loopback on one keep-alive connection by a client that allocates nothing
//! while it counts. The log's last line is kept, for the test to check. Shared by `bench/allocs.rs` (prints the figures) and `tests/alloc.rs` (holds
//! them down).
//!
//! Counted are every allocation of the process during the measured requests, background tasks
//! (timers, the metrics upkeep, the log writer) included; over thousands of requests those add
//! a few hundredths per request.

use std::alloc::System;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use stats_alloc::{Region, StatsAlloc};
use stsvend::clock::Clock;
use stsvend::config::{self, Mode};
use stsvend::credentials::CredentialsProvider;
use stsvend::emulator::Emulator;
use stsvend::startup::App;
use stsvend::telemetry::{self, LogFormat};

/// What the measured requests cost, per request.
#[derive(Debug, Clone)]
#[allow(dead_code)] // tests/alloc.rs reads only some of them
pub(crate) struct Figures {
    pub(crate) requests: u64,
    pub(crate) allocations: f64,
    pub(crate) reallocations: f64,
    pub(crate) bytes: f64,
    /// The log's last line after the measured requests: a cached token's audit line.
    pub(crate) last_line: String,
    /// The body of the last answer (the token), to check that no line holds its secrets.
    pub(crate) last_body: String,
}

/// Requests served before counting: the first token is fetched, per-thread caches and buffers
/// reach their working size.
const WARM_UP: u64 = 2_000;

/// Serves `requests` cached tokens after a warm-up and counts what they allocate.
pub(crate) fn measure(allocator: &'static StatsAlloc<System>, requests: u64) -> Figures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let env = settings();
    let tail = Tail::default();
    let logs = telemetry::init_with_writer(&env, LogFormat::Json, tail.clone());
    let metrics = stsvend::metrics::install();
    let (addr, _emulator) = runtime.block_on(async {
        let emulator = Emulator::start(Clock::System).await.expect("emulator");
        let mut env = env;
        env.insert(
            "STSVEND_STS_ENDPOINT".into(),
            emulator.endpoint().to_string(),
        );
        let config = config::load(None, &env, Mode::Serve).expect("settings are valid");
        let credentials = CredentialsProvider::Static(emulator.credentials());
        let app = App::builder(&config, credentials, Clock::System)
            .metrics(std::sync::Arc::new(move || metrics.render()))
            .build()
            .await
            .expect("service builds");
        let addr = app.local_addr().expect("address");
        tokio::spawn(app.run_until(std::future::pending()));
        (addr, emulator)
    });
    let mut client = Client::connect(addr);
    for _ in 0..WARM_UP {
        client.get();
    }
    let region = Region::new(allocator);
    for _ in 0..requests {
        client.get();
    }
    let change = region.change();
    // Dropping the guard writes out the lines still buffered.
    drop(logs);
    let per = |n: usize| n as f64 / requests as f64;
    Figures {
        requests,
        allocations: per(change.allocations),
        reallocations: per(change.reallocations),
        bytes: per(change.bytes_allocated),
        last_line: tail.last_line(),
        last_body: client.body(),
    }
}

/// The log's output, keeping only the end of the latest write in a buffer allocated once, so
/// that logging costs the measurement nothing but the service's own work.
#[derive(Clone)]
struct Tail(Arc<Mutex<Vec<u8>>>);

/// Bytes of the latest write kept (a few lines).
const TAIL_BYTES: usize = 4096;

impl Default for Tail {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::with_capacity(TAIL_BYTES))))
    }
}

impl Tail {
    fn last_line(&self) -> String {
        let kept = self.0.lock().unwrap();
        let text = String::from_utf8_lossy(&kept);
        text.lines().last().unwrap_or_default().to_owned()
    }
}

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut kept = self.0.lock().unwrap();
        kept.clear();
        kept.extend_from_slice(&buf[buf.len().saturating_sub(TAIL_BYTES)..]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The benchmark's settings (`bench/run.sh`'s), with loopback listeners on free ports.
fn settings() -> HashMap<String, String> {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tBenchmarkKey0000"),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "BenchmarkSecret000000000000000",
        ),
        (
            "STSVEND_ROLE_ARN",
            "acs:ram::1000000000000000:role/sls-web-track",
        ),
        ("STSVEND_LOGSTORE", "bench-project/bench-logstore"),
        ("STSVEND_LISTEN", "127.0.0.1:0"),
        ("STSVEND_ADMIN_LISTEN", "127.0.0.1:0"),
        ("STSVEND_LOG_FORMAT", "json"),
        ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
        ("STSVEND_RATE_LIMIT_BURST", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// HTTP/1.1 on one keep-alive connection, with one fixed buffer: nothing allocated per request.
struct Client {
    stream: TcpStream,
    buf: Box<[u8; 16 * 1024]>,
    len: usize,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Box::new([0; 16 * 1024]),
            len: 0,
        }
    }

    /// The body of the last answer.
    fn body(&self) -> String {
        let answer = String::from_utf8_lossy(&self.buf[..self.len]);
        answer
            .split_once("\r\n\r\n")
            .map_or_else(String::new, |(_, body)| body.to_owned())
    }

    /// One `GET /get_sts_token`; panics unless it is a 200 with a body.
    fn get(&mut self) {
        self.stream
            .write_all(b"GET /get_sts_token HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("send");
        let mut len = 0;
        loop {
            let n = self.stream.read(&mut self.buf[len..]).expect("read");
            assert!(n > 0, "the service closed the connection");
            len += n;
            if let Some(total) = complete(&self.buf[..len]) {
                assert_eq!(len, total, "one answer at a time");
                break;
            }
        }
        self.len = len;
        assert!(self.buf.starts_with(b"HTTP/1.1 200 "), "not a 200");
    }
}

/// The length of the whole answer once `bytes` holds its head and `Content-Length` bytes of body.
fn complete(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&bytes[..head]).ok()?;
    let body = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    })?;
    (bytes.len() >= head + body).then_some(head + body)
}
