//! Graceful shutdown of the real binary (issue #2, point 9): on SIGTERM or SIGINT it stops
//! accepting, finishes the requests in flight, and exits 0 within 10 s.

use std::time::Duration;

use crate::helpers::{
    MockSts, ROLE_ARN, Reply, ServiceProcess, TEST_KEY_ID, TEST_KEY_SECRET, http_client,
};

/// The orchestrator's patience: SIGKILL follows SIGTERM after this long.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

async fn start_service(mock: &MockSts) -> ServiceProcess {
    let endpoint = mock.endpoint();
    ServiceProcess::start(
        &["serve"],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_KEY_SECRET),
            ("STSVEND_ROLE_ARN", ROLE_ARN),
            ("STSVEND_LOGSTORE", "shutdown-project/web-logs"),
            ("STSVEND_STS_ENDPOINT", &endpoint),
            ("RUST_LOG", "info"),
        ],
    )
    .await
}

/// Waits for the exit after a signal and returns its code, with the log in the failure message.
async fn exit_code(service: &mut ServiceProcess, signal: &str) -> i32 {
    let status = service.wait_exit(EXIT_LIMIT).await;
    if status.is_none() {
        service.kill().await;
    }
    let (_, stderr) = service.output().await;
    let status = status
        .unwrap_or_else(|| panic!("no exit within {EXIT_LIMIT:?} of SIG{signal}; log:\n{stderr}"));
    assert!(
        stderr.contains(&format!("received SIG{signal}")),
        "the log names the signal:\n{stderr}"
    );
    status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal ({status}); log:\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_waiting_for_the_first_token_finish() {
    // The first AssumeRole takes 3 s; the request below waits for it (handlers wait up to 5 s
    // for a fetch in flight), and the signal arrives while both are still under way.
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_secs(3),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    let mut service = start_service(&mock).await;
    let client = http_client(Duration::from_secs(15));
    let url = service.url("/get_sts_token");
    let request = tokio::spawn(async move {
        let response = client.get(url).send().await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !request.is_finished(),
        "the request is still waiting for the first token when the signal is sent"
    );
    let signalled = tokio::time::Instant::now();
    service.signal("TERM");

    // A second after the signal the listener is closed: a new connection is refused (or, were
    // the socket still open, never accepted), so it gets no answer either way. The request
    // above is still waiting for STS at this point.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = http_client(Duration::from_secs(1))
        .get(service.url("/healthz"))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a connection opened after SIGTERM is not served: {:?}",
        late.map(|r| r.status())
    );

    let (status, body) = tokio::time::timeout(Duration::from_secs(12), request)
        .await
        .expect("the in-flight request completes")
        .unwrap()
        .expect("the in-flight request gets a response, not a reset");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["AccessKeyId"]
            .as_str()
            .is_some_and(|id| id.starts_with("STS.")),
        "{body}"
    );
    assert!(
        body["SecurityToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(exit_code(&mut service, "TERM").await, 0);
    assert!(signalled.elapsed() <= EXIT_LIMIT, "exited within 10 s");
    assert_eq!(mock.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_an_idle_server_with_exit_code_0() {
    let mock = MockSts::start(vec![]).await;
    let mut service = start_service(&mock).await;
    let response = http_client(Duration::from_secs(10))
        .get(service.url("/get_sts_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let signalled = tokio::time::Instant::now();
    service.signal("INT");
    assert_eq!(exit_code(&mut service, "INT").await, 0);
    assert!(signalled.elapsed() <= EXIT_LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_a_hanging_sts_call() {
    // STS hangs for longer than the whole grace period; with no client request in flight the
    // refresher's call is simply abandoned.
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_secs(60),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    let mut service = start_service(&mock).await;
    let ready =
        crate::helpers::eventually(Duration::from_secs(5), || async { mock.calls() == 1 }).await;
    assert!(ready, "the first AssumeRole is in flight");
    let signalled = tokio::time::Instant::now();
    service.signal("TERM");
    assert_eq!(exit_code(&mut service, "TERM").await, 0);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "a hanging STS call does not hold up the exit ({:?})",
        signalled.elapsed()
    );
}
