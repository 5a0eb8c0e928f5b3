//! Fleet mode from the outside: `stsvend check` reports the store, and a serving replica keeps
//! `stsvend_fleet_store_up` current as Redis goes away and comes back. The real binary, a real
//! `redis-server`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{KEY_A, RedisServer};

const STSVEND: &str = env!("CARGO_BIN_EXE_stsvend");

/// The settings of a replica whose STS is unreachable (nothing here needs a token).
fn command(redis: &RedisServer, args: &[&str]) -> Command {
    let mut command = Command::new(STSVEND);
    command
        .args(args)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tFleetTestKey00")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "fleet-test-secret-value")
        .env("STSVEND_ROLE_ARN", "acs:ram::1000000000000000:role/fleet")
        .env("STSVEND_LOGSTORE", "project/logstore")
        .env("STSVEND_STS_ENDPOINT", "http://127.0.0.1:9/")
        .env("STSVEND_LISTEN", "127.0.0.1:0")
        .env("STSVEND_ADMIN_LISTEN", "127.0.0.1:0")
        .env("STSVEND_LOG_FORMAT", "json")
        .env("STSVEND_REDIS_URL", redis.url())
        .env("STSVEND_REDIS_ENCRYPTION_KEY", KEY_A);
    command
}

#[test]
fn check_reports_the_store_its_version_and_a_sealed_round_trip() {
    let mut redis = RedisServer::start();
    let out = command(&redis, &["check"])
        .env("STSVEND_REPLICA_ID", "check-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("fleet store "))
        .unwrap_or_else(|| panic!("no fleet store line in {stdout}"));
    let expected = format!("fleet store {} as replica check-1: OK, ", redis.url());
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.contains("redis ") || line.contains("valkey "),
        "{line}"
    );
    assert!(
        line.contains("a sealed probe value round-tripped"),
        "{line}"
    );
    assert!(
        stdout.contains("`STSVEND_REDIS_ENCRYPTION_KEY` = set (not shown)"),
        "{stdout}"
    );
    assert!(!stdout.contains(KEY_A), "{stdout}");

    redis.stop();
    let out = command(&redis, &["check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "fleet store {}: FAILED: cannot reach the fleet store",
            redis.url()
        )),
        "{stdout}"
    );
}

/// `stsvend serve`, killed on drop, with its log lines as they come.
struct Replica {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Replica {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The first log line containing `needle`, within ten seconds.
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} within 10 s");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `stsvend_fleet_store_up` on the admin listener, once it is `want`: how long
/// that took, or `None` after `limit`.
async fn store_up_becomes(admin: &str, want: u8, limit: Duration) -> Option<Duration> {
    stsvend::outbound::install_crypto_provider();
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < limit {
        let page = client
            .get(format!("http://{admin}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(page) = page
            && let Ok(text) = page.text().await
            && text
                .lines()
                .any(|line| line == format!("stsvend_fleet_store_up {want}"))
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn a_serving_replica_keeps_its_store_gauge_current_as_redis_goes_and_returns() {
    let mut redis = RedisServer::start();
    let replica = Replica::start(command(&redis, &["serve"]));
    let fleet = replica.line_with("fleet mode");
    assert!(
        fleet.contains("replica-"),
        "a made-up replica id without HOSTNAME: {fleet}"
    );
    assert!(!fleet.contains(KEY_A), "{fleet}");
    let listening: serde_json::Value =
        serde_json::from_str(&replica.line_with("\"listening\"")).unwrap();
    let admin = listening["admin_addr"].as_str().unwrap().to_owned();

    let up = store_up_becomes(&admin, 1, Duration::from_secs(5)).await;
    assert!(up.is_some(), "the store never reported up");
    redis.stop();
    let down = store_up_becomes(&admin, 0, Duration::from_secs(5)).await;
    eprintln!("Redis stopped: the gauge said 0 after {down:?}");
    assert!(
        down.is_some(),
        "the gauge did not fall to 0 within 5 s of Redis stopping"
    );
    redis.restart();
    let back = store_up_becomes(&admin, 1, Duration::from_secs(10)).await;
    eprintln!("Redis restarted: the gauge said 1 after {back:?}");
    assert!(back.is_some(), "the replica did not reconnect within 10 s");
}
