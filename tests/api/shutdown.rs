//! Graceful shutdown of the real binary (issue #2, point 9): on SIGTERM or SIGINT it stops
//! accepting, finishes the requests in flight, and exits 0 within 10 s.

use std::time::Duration;

use crate::helpers::{
    MockSts, ROLE_ARN, Reply, ServiceProcess, TEST_KEY_ID, TEST_KEY_SECRET, http_client,
};

/// The orchestrator's patience: SIGKILL follows SIGTERM after this long.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

async fn start_service(mock: &MockSts) -> ServiceProcess {
    start_service_with(mock, &[]).await
}

async fn start_service_with(mock: &MockSts, extra: &[(&str, &str)]) -> ServiceProcess {
    let endpoint = mock.endpoint();
    let mut env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_KEY_SECRET),
        ("STSVEND_ROLE_ARN", ROLE_ARN),
        ("STSVEND_LOGSTORE", "shutdown-project/web-logs"),
        ("STSVEND_STS_ENDPOINT", &endpoint),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    ServiceProcess::start(&["serve"], &env).await
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

/// Issue #8, point 5: SIGTERM in the middle of steady load. Every request the service accepted
/// is answered 200; once the listener is closed, new connections are refused (a load balancer
/// moves on to another replica) — that is the only error a client may see. The process exits 0
/// within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_in_flight() {
    // STS at 50 ms, so some requests are waiting for the first token when the load starts.
    let mock = MockSts::start(vec![Reply::slow(
        Duration::from_millis(50),
        Reply::Success { lifetime: 3600 },
    )])
    .await;
    // One client address sends all of it: lift the per-address limit out of the way.
    let mut service = start_service_with(
        &mock,
        &[
            ("STSVEND_RATE_LIMIT_PER_MINUTE", "6000000"),
            ("STSVEND_RATE_LIMIT_BURST", "1000000"),
        ],
    )
    .await;
    let url = service.url("/get_sts_token");
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(6);
    // 16 clients, each on its own keep-alive connection, as fast as they can; bounded in time
    // (6 s) and in count (20 000 requests each).
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (http_client(Duration::from_secs(10)), url.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0u32, 0u32);
                let mut failures = Vec::new();
                for _ in 0..20_000 {
                    if tokio::time::Instant::now() >= stop_at {
                        break;
                    }
                    match client.get(&url).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.bytes().await {
                                Ok(_) if status == 200 => ok += 1,
                                Ok(body) => failures
                                    .push(format!("{status}: {}", String::from_utf8_lossy(&body))),
                                Err(error) => failures.push(format!("body cut off: {error:?}")),
                            }
                        }
                        // The listener is closed: nothing was sent, the client tries elsewhere.
                        Err(error) if error.is_connect() => {
                            refused += 1;
                            break;
                        }
                        Err(error) => failures.push(format!("request failed: {error:?}")),
                    }
                }
                (ok, refused, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = tokio::time::Instant::now();
    service.signal("TERM");
    let code = exit_code(&mut service, "TERM").await;
    let exited_after = signalled.elapsed();

    let (mut ok, mut refused, mut failures) = (0, 0, Vec::new());
    for client in clients {
        let (o, r, f) = client.await.unwrap();
        ok += o;
        refused += r;
        failures.extend(f);
    }
    assert_eq!(code, 0);
    assert!(exited_after < EXIT_LIMIT, "exit took {exited_after:?}");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during shutdown (refused after close: {refused}); first: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        failures.first()
    );
    // A debug build on a busy 2-core machine manages a few hundred a second.
    assert!(ok > 100, "the load ran: {ok} answered");
    eprintln!(
        "shutdown under load: {ok} answered 200, {refused} refused after the listener closed, 0 failed; exit after {exited_after:?}"
    );
}
