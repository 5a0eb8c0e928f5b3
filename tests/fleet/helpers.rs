//! A real `redis-server` per test, and stores pointed at it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stsvend::fleet::settings::FleetSettings;
use stsvend::fleet::store::FleetStore;

/// 32 × 'A' and 32 × 'B', base64.
pub(crate) const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
pub(crate) const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

/// A `redis-server` without persistence on a loopback port, killed on drop.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Where a persistent server keeps its append-only file; `None`: it keeps nothing.
    dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn spawn(port: u16, dir: Option<&std::path::Path>) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", ""]);
    match dir {
        // Every write on disk before it is acknowledged, so a killed server loses nothing.
        Some(dir) => command
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir),
        None => command.args(["--appendonly", "no"]),
    };
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install -y redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // Exited: most likely another process took the port between our check and its bind.
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if ping(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        Self::start_in(None)
    }

    /// A server that keeps its data across [`Self::restart`] (an append-only file, synced on
    /// every write), as a production Redis does.
    pub(crate) fn start_persistent() -> Self {
        Self::start_in(Some(tempfile::tempdir().expect("a temporary directory")))
    }

    fn start_in(dir: Option<tempfile::TempDir>) -> Self {
        for _ in 0..10 {
            let port = free_port();
            if let Some(child) = spawn(port, dir.as_ref().map(tempfile::TempDir::path)) {
                return Self {
                    child: Some(child),
                    port,
                    dir,
                };
            }
        }
        panic!("redis-server did not start on a free port in ten tries");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port: empty, unless started persistent.
    pub(crate) fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, self.dir.as_ref().map(tempfile::TempDir::path)) {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Freezes the server (`SIGSTOP`): connections stay open but nothing answers, so every
    /// command times out, as with a hung or partitioned Redis. It keeps its data.
    pub(crate) fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server answer again (`SIGCONT`), with the data it had.
    pub(crate) fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} failed");
    }

    /// A plain client for looking at what the store wrote.
    pub(crate) async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl RedisServer {
    /// Every key in the server with its content as raw bytes (SCAN, then GET, HGETALL or ZRANGE
    /// by type), to look for plaintext.
    pub(crate) async fn everything(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut raw = self.raw().await;
        let mut cursor: u64 = 0;
        let mut all = Vec::new();
        loop {
            let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut raw)
                .await
                .unwrap();
            for name in names {
                let kind: String = redis::cmd("TYPE")
                    .arg(&name)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                let read = match kind.as_str() {
                    "string" => redis::cmd("GET").arg(&name).clone(),
                    "hash" => redis::cmd("HGETALL").arg(&name).clone(),
                    "zset" => redis::cmd("ZRANGE").arg(&name).arg(0).arg(-1).clone(),
                    // Gone between SCAN and TYPE (a lock released, a value expired).
                    "none" => continue,
                    other => panic!("unexpected key type {other}"),
                };
                let value = match read.query_async::<redis::Value>(&mut raw).await.unwrap() {
                    redis::Value::Array(parts) => parts
                        .into_iter()
                        .flat_map(|part| redis::from_redis_value::<Vec<u8>>(part).unwrap())
                        .collect(),
                    other => redis::from_redis_value::<Vec<u8>>(other).unwrap(),
                };
                all.push((name, value));
            }
            if next == 0 {
                return all;
            }
            cursor = next;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn settings(server: &RedisServer, key: &str, previous: Option<&str>) -> FleetSettings {
    let mut env = HashMap::from([
        ("STSVEND_REDIS_URL".to_owned(), server.url()),
        ("STSVEND_REDIS_ENCRYPTION_KEY".to_owned(), key.to_owned()),
    ]);
    if let Some(previous) = previous {
        env.insert(
            "STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY".to_owned(),
            previous.to_owned(),
        );
    }
    FleetSettings::parse(&env).unwrap().unwrap()
}

pub(crate) fn store(server: &RedisServer, replica: &str) -> FleetStore {
    FleetStore::connect(&settings(server, KEY_A, None), replica).unwrap()
}

/// Three replicas' stores on one server.
pub(crate) fn fleet(server: &RedisServer) -> [FleetStore; 3] {
    ["replica-a", "replica-b", "replica-c"].map(|id| store(server, id))
}

/// [`fleet`] with a 500 ms command timeout: for tests that count decisions under a burst of
/// hundreds of commands, which a loaded 2-core machine can answer slower than the default 50 ms
/// (a timed-out command is decided alone, by design, and would be counted as a miss).
pub(crate) fn patient_fleet(server: &RedisServer) -> [FleetStore; 3] {
    let mut settings = settings(server, KEY_A, None);
    settings.command_timeout = Duration::from_millis(500);
    ["replica-a", "replica-b", "replica-c"].map(|id| FleetStore::connect(&settings, id).unwrap())
}

/// Waits until `check` holds, at most `limit`; returns how long it took.
pub(crate) async fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    while started.elapsed() <= limit {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A fixed wall time, `secs` into the test's story (the kill switch records when it changed).
pub(crate) fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}
