//! Issue 13, points 5, 6, 7 and 10, on the real binary: a certificate and key that do not match
//! are refused at start-up and on reload; a policy too long once bound to a source address is
//! refused at start-up; `stsvend dev` writes its logs to a private per-run file; SIGHUP never
//! stops the process.

use std::time::Duration;

use crate::helpers::{
    MockSts, ROLE_ARN, ServiceProcess, TEST_KEY_ID, TEST_KEY_SECRET, TempDir, http_client,
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

const HANGUP_LOGGED: &str = "received SIGHUP: nothing to reload yet";

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
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::helpers::free_port()));
    let mut service = ServiceProcess::spawn(
        &["serve"],
        &[
            ("HOME", home.path_str()),
            ("STSVEND_ROLE_ARN", ROLE_ARN),
            ("STSVEND_LOGSTORE", "hostile-project/web-logs"),
            ("STSVEND_ECS_METADATA_ENDPOINT", &metadata_url),
        ],
        addr,
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
