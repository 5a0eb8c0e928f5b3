//! Fault injection (issue #8): STS misbehaving at the byte level, per kind. For each: what the
//! client sees, that the cached token keeps flowing while it is servable, that the service
//! recovers by itself when STS comes back, and that retries follow `tokens::schedule::backoff`
//! (no storm).
//!
//! `failures.rs` covers the status and code of each failure on a cold start; this file drives a
//! warm service through each fault. The kinds run side by side, each on its own thread with its
//! own runtime and log capture, so the file costs about one scenario's time (~15 s), not one per
//! kind.

use std::future::Future;
use std::time::Duration;

use stsvend::clock::Clock;
use stsvend::sts::client::{MAX_BODY_BYTES, REQUEST_TIMEOUT};
use stsvend::tokens::schedule::backoff;

use crate::helpers::{
    Answer, LogCapture, ROLE_ARN, RawReply, RawSts, TestApp, eventually, expiration_in, jump_ahead,
    success_body,
};

/// The key id and secret of every token STS "issues" in a faulty answer: none may ever be served
/// or logged.
const NEVER_KEY: &str = "STS.NEVER-SERVE";
const NEVER_SECRET: &str = "never-serve-secret";

/// Tokens live 10 s and 3 s must remain: servable for 7 s, renewal due after 3–3.5 s.
const LIFETIME: i64 = 10;
const MIN_REMAINING: &str = "3";

/// One fault and what it must look like from outside.
struct Fault {
    name: &'static str,
    reply: RawReply,
    /// What the client gets once no servable token is left.
    status: u16,
    code: &'static str,
    /// A fragment of the operator's log line (`error` field).
    logged: &'static str,
    /// A fragment of its `hint` field, when there must be one.
    hint: Option<&'static str>,
}

/// What a scenario measured, for the assertions and the report.
#[derive(Debug)]
struct Measured {
    /// STS calls from the first failing renewal until STS came back.
    calls_in_fault: usize,
    /// How long that lasted.
    fault_window: Duration,
    /// Body bytes that got out of the mock per call, for the huge-body kinds.
    body_bytes_per_call: usize,
}

/// Runs `scenario` on a thread of its own with a current-thread runtime, capturing that thread's
/// logs, so that several scenarios run at once with logs that cannot mix.
fn isolated<F, Fut, T>(scenario: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce(LogCapture) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let (logs, _guard) = LogCapture::start();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario(logs))
    })
}

async fn token(app: &TestApp) -> Answer {
    app.get_with("/get_sts_token", &[]).await
}

/// Checks the standard error shape and that nothing upstream leaks into it; returns
/// `Retry-After` in seconds.
fn assert_error_shape(what: &str, answer: &Answer, status: u16, code: &str) -> u64 {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.error_code().as_deref(), Some(code), "{what}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = answer.json();
    assert_eq!(
        body["error"]["request_id"].as_str(),
        answer.header("x-request-id"),
        "{what}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
    for secret in [NEVER_KEY, NEVER_SECRET, ROLE_ARN, "127.0.0.1"] {
        assert!(
            !answer.mentions(secret),
            "{what}: {secret} in {}",
            answer.body
        );
    }
    let retry_after: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds"));
    assert!(
        (1..=61).contains(&retry_after),
        "{what}: Retry-After {retry_after}"
    );
    retry_after
}

/// The arrivals after the first failing call, checked against the refresher's backoff: the gap
/// after the `i`-th consecutive failure is at least `backoff(i, 0)` (jitter scales it into
/// 50–100 %, never below). Timers never fire early, so this holds on any machine.
fn assert_backoff(what: &str, arrivals: &[std::time::Instant]) {
    for (i, pair) in arrivals.windows(2).enumerate() {
        let failures = u32::try_from(i + 1).unwrap();
        let gap = pair[1].duration_since(pair[0]);
        let floor = backoff(failures, 0.0).saturating_sub(Duration::from_millis(5));
        assert!(
            gap >= floor,
            "{what}: retry {failures} came after {gap:?}, backoff floor is {floor:?}"
        );
    }
}

/// The most calls `backoff` allows in `window` starting with a call: delays of at least
/// 0.5, 1, 2, 4 … s, so call k+1 comes no sooner than 0.5·(2^k − 1) s in.
fn max_calls_in(window: Duration) -> usize {
    let mut at = Duration::ZERO;
    let mut calls = 1;
    for failures in 1..=64 {
        at += backoff(failures, 0.0);
        if at > window {
            break;
        }
        calls += 1;
    }
    calls
}

/// A warm service meets `fault` at its first renewal: the cached token keeps flowing, then is
/// withdrawn with the fault's status and code, then STS comes back and the service recovers.
async fn through(fault: Fault, logs: LogCapture) -> Measured {
    let what = fault.name;
    let sts = RawSts::start(vec![RawReply::Success { lifetime: LIFETIME }]).await;
    sts.set_fallback(fault.reply.clone());
    let app = TestApp::builder(&sts.endpoint())
        .env(&[("STSVEND_MIN_REMAINING_SECONDS", MIN_REMAINING)])
        .start()
        .await;
    let first = token(&app).await;
    assert_eq!(first.status, 200, "{what}: {}", first.body);
    let first_key = first.access_key_id().unwrap();

    // The renewal meets the fault; the cached token is still served.
    assert!(
        eventually(Duration::from_secs(10), || async { sts.calls() >= 2 }).await,
        "{what}: renewal attempted"
    );
    let during = token(&app).await;
    assert_eq!(during.status, 200, "{what}: cached token during the fault");
    assert_eq!(during.access_key_id(), Some(first_key.clone()), "{what}");

    // Polled (bounded) until the cached token falls below the minimum remaining validity; every
    // 200 on the way is the cached token, never one from a faulty answer.
    let mut refused = None;
    for _ in 0..150 {
        let answer = token(&app).await;
        if answer.status == 200 {
            assert_eq!(answer.access_key_id(), Some(first_key.clone()), "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("{what}: token never withdrawn"));
    assert_error_shape(what, &refused, fault.status, fault.code);

    // STS comes back: recovery without a restart.
    let fault_arrivals = sts.arrivals()[1..].to_vec();
    let fault_window = fault_arrivals[0].elapsed();
    sts.set_fallback(RawReply::Success { lifetime: 3600 });
    assert!(
        eventually(Duration::from_secs(25), || async {
            token(&app).await.status == 200
        })
        .await,
        "{what}: recovered"
    );
    let recovered = token(&app).await.access_key_id().unwrap();
    assert_ne!(recovered, first_key, "{what}");
    assert!(sts.issued_key_ids().contains(&recovered), "{what}");

    // Retried during the fault (the first retries come within 0.5–3 s, the window is ~3.5 s),
    // and no storm: spacing per the backoff, and a count bound for the window.
    let calls_in_fault = fault_arrivals.len();
    assert!(calls_in_fault >= 2, "{what}: not retried");
    assert_backoff(what, &sts.arrivals()[1..]);
    let bound = max_calls_in(fault_window);
    assert!(
        calls_in_fault <= bound,
        "{what}: {calls_in_fault} calls in {fault_window:?}, backoff allows {bound}"
    );

    // The operator's log names the fault (and what to do, where we know), and no secret.
    let failures: Vec<serde_json::Value> = logs
        .events()
        .into_iter()
        .filter(|e| {
            e["fields"]["message"] == "AssumeRole failed"
                || e["fields"]["message"] == "AssumeRole was refused"
        })
        .collect();
    assert!(!failures.is_empty(), "{what}: no failure logged");
    assert_eq!(failures[0]["fields"]["still_serving"], true, "{what}");
    for event in &failures {
        let error = event["fields"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(fault.logged), "{what}: {event}");
        if let Some(hint) = fault.hint {
            let logged = event["fields"]["hint"].as_str().unwrap_or_default();
            assert!(logged.contains(hint), "{what}: {event}");
        }
    }
    let text = logs.text();
    for secret in [NEVER_SECRET, NEVER_KEY] {
        assert!(!text.contains(secret), "{what}: {secret} logged");
    }
    app.stop().await;
    Measured {
        calls_in_fault,
        fault_window,
        body_bytes_per_call: sts.body_bytes_written() / calls_in_fault,
    }
}

fn unavailable(
    name: &'static str,
    reply: RawReply,
    logged: &'static str,
    hint: Option<&'static str>,
) -> Fault {
    Fault {
        name,
        reply,
        status: 503,
        code: "sts_unavailable",
        logged,
        hint,
    }
}

fn ok_body_with(credentials: &str) -> RawReply {
    RawReply::Raw {
        status: 200,
        body: format!(r#"{{"RequestId":"R","Credentials":{credentials}}}"#),
    }
}

#[test]
fn a_warm_service_rides_out_each_sts_fault_and_recovers_by_itself() {
    const HUGE: usize = 256 * 1024 * 1024;
    let faults = vec![
        unavailable(
            "connection reset mid-body",
            RawReply::ResetMidBody {
                declared: 4096,
                sent: 40,
            },
            "broke while its answer was being read",
            Some("cut its answer short"),
        ),
        unavailable(
            "body shorter than its Content-Length",
            RawReply::Truncated {
                declared: 4096,
                sent: 40,
            },
            "broke while its answer was being read",
            Some("cut its answer short"),
        ),
        unavailable(
            "HTML instead of JSON",
            RawReply::Raw {
                status: 200,
                body: "<html><body>502 Bad Gateway</body></html>".into(),
            },
            "not JSON",
            None,
        ),
        unavailable(
            "endless chunked body",
            RawReply::Huge {
                total: HUGE,
                declare_length: false,
            },
            "larger than",
            None,
        ),
        unavailable(
            "Content-Length over the cap",
            RawReply::Huge {
                total: HUGE,
                declare_length: true,
            },
            "larger than",
            None,
        ),
        unavailable(
            "200 without Credentials",
            RawReply::Raw {
                status: 200,
                body: r#"{"RequestId":"R","AssumedRoleUser":{}}"#.into(),
            },
            "`Credentials`",
            None,
        ),
        unavailable(
            "200 with a mistyped AccessKeyId",
            ok_body_with(&format!(
                r#"{{"AccessKeyId":12345,"AccessKeySecret":"{NEVER_SECRET}","SecurityToken":"t","Expiration":"{}"}}"#,
                expiration_in(3600)
            )),
            "`Credentials`",
            None,
        ),
        unavailable(
            "200 with Credentials as a string",
            ok_body_with(r#""STS.NEVER-SERVE""#),
            "`Credentials`",
            None,
        ),
        unavailable(
            "200 with a numeric Expiration",
            ok_body_with(&format!(
                r#"{{"AccessKeyId":"{NEVER_KEY}","AccessKeySecret":"{NEVER_SECRET}","SecurityToken":"t","Expiration":1790000000}}"#
            )),
            "`Expiration`",
            None,
        ),
        unavailable(
            "200 with an Expiration in the past",
            RawReply::Raw {
                status: 200,
                body: success_body(NEVER_KEY, NEVER_SECRET, &expiration_in(-60)),
            },
            "minimum remaining validity",
            Some("clock"),
        ),
        unavailable(
            "200 with a malformed Expiration",
            RawReply::Raw {
                status: 200,
                body: success_body(NEVER_KEY, NEVER_SECRET, "2026-13-45T25:61:00Z"),
            },
            "`Expiration`",
            None,
        ),
        unavailable(
            "Throttling.User",
            RawReply::Error {
                status: 400,
                code: "Throttling.User",
            },
            "Throttling.User",
            Some("throttling"),
        ),
        unavailable(
            "500 InternalError",
            RawReply::Error {
                status: 500,
                code: "InternalError",
            },
            "InternalError",
            None,
        ),
        unavailable(
            "500 with an empty body",
            RawReply::Raw {
                status: 500,
                body: String::new(),
            },
            "HTTP 500",
            None,
        ),
        Fault {
            name: "InvalidTimeStamp.Expired",
            reply: RawReply::Error {
                status: 400,
                code: "InvalidTimeStamp.Expired",
            },
            status: 502,
            code: "sts_rejected",
            logged: "InvalidTimeStamp.Expired",
            hint: Some("clock differs from STS"),
        },
    ];
    let runs: Vec<_> = faults
        .into_iter()
        .map(|fault| {
            let name = fault.name;
            (name, isolated(move |logs| through(fault, logs)))
        })
        .collect();
    let mut failed = Vec::new();
    for (name, run) in runs {
        match run.join() {
            Ok(measured) => {
                eprintln!(
                    "{name}: {} calls in {:?} of fault, {} body bytes per call",
                    measured.calls_in_fault, measured.fault_window, measured.body_bytes_per_call
                );
                // A body over the cap is refused without reading it all: what got out per call is
                // at most the cap plus what the loopback socket buffers hold, a small part of it
                // (256 MiB).
                assert!(
                    measured.body_bytes_per_call <= MAX_BODY_BYTES + 16 * 1024 * 1024,
                    "{name}: {measured:?}"
                );
            }
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failed.push(format!("{name}: {text}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Fetches the token and checks it is the one with `key`.
async fn assert_serves(app: &TestApp, key: &str, what: &str) {
    let answer = token(app).await;
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    assert_eq!(answer.access_key_id().as_deref(), Some(key), "{what}");
}

/// The refresher's failure lines so far.
fn failure_lines(logs: &LogCapture) -> Vec<serde_json::Value> {
    logs.events_with_message("AssumeRole failed")
}

#[tokio::test]
async fn sts_slower_than_the_client_timeout_is_abandoned_while_the_cached_token_flows() {
    let (logs, _guard) = LogCapture::start();
    let sts = RawSts::start(vec![RawReply::Success { lifetime: 3600 }]).await;
    sts.set_fallback(RawReply::Hang);
    // The service's wall clock follows tokio's, so jumping tokio time moves both: no test waits
    // out a half-life or a 10 s timeout.
    let app = TestApp::builder(&sts.endpoint())
        .clock(Clock::following_tokio(Clock::System.now()))
        .start()
        .await;
    let first = token(&app).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let key = first.access_key_id().unwrap();

    // Past the renewal (half of 3600 s, minus jitter): the renewal call hangs.
    jump_ahead(Duration::from_secs(1801)).await;
    assert!(
        eventually(Duration::from_secs(10), || async { sts.calls() == 2 }).await,
        "renewal sent"
    );
    assert_serves(&app, &key, "while the call hangs").await;

    // Past the client timeout: the call is abandoned, logged as a timeout, and retried later.
    jump_ahead(REQUEST_TIMEOUT + Duration::from_secs(1)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !failure_lines(&logs).is_empty()
        })
        .await,
        "timeout logged"
    );
    let line = &failure_lines(&logs)[0]["fields"];
    assert_eq!(
        line["error"],
        format!("STS did not answer within {}s", REQUEST_TIMEOUT.as_secs()),
        "{line}"
    );
    assert_eq!(line["still_serving"], true, "{line}");
    assert_serves(&app, &key, "after the timeout").await;

    // The retry (0.5–1 s later) hangs too; while it does, nothing else is sent: one call in
    // flight, never a pile of them.
    assert!(
        eventually(Duration::from_secs(10), || async { sts.calls() == 3 }).await,
        "retried after the backoff"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sts.calls(), 3, "one call at a time");

    // STS comes back: once the hanging call times out, the next attempt succeeds by itself.
    sts.set_fallback(RawReply::Success { lifetime: 3600 });
    jump_ahead(REQUEST_TIMEOUT + Duration::from_secs(1)).await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            token(&app).await.access_key_id().is_some_and(|k| k != key)
        })
        .await,
        "recovered"
    );
    assert_eq!(sts.calls(), 4, "two timeouts, one success: {}", sts.calls());
    app.stop().await;
}

#[tokio::test]
async fn refused_connections_keep_the_cached_token_flowing_until_sts_listens_again() {
    let (logs, _guard) = LogCapture::start();
    let sts = RawSts::start(vec![RawReply::Success { lifetime: LIFETIME }]).await;
    let app = TestApp::builder(&sts.endpoint())
        .env(&[("STSVEND_MIN_REMAINING_SECONDS", MIN_REMAINING)])
        .start()
        .await;
    let first = token(&app).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let key = first.access_key_id().unwrap();

    sts.refuse().await;
    let refusing_since = tokio::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !failure_lines(&logs).is_empty()
        })
        .await,
        "renewal refused"
    );
    assert_serves(&app, &key, "while refused").await;
    let mut withdrawn = None;
    for _ in 0..150 {
        let answer = token(&app).await;
        if answer.status != 200 {
            withdrawn = Some(answer);
            break;
        }
        assert_eq!(answer.access_key_id().as_deref(), Some(key.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let withdrawn = withdrawn.expect("token withdrawn at min-remaining");
    assert_error_shape("refused", &withdrawn, 503, "sts_unavailable");

    // Every attempt is one failure line; their count is within what the backoff allows.
    let lines = failure_lines(&logs);
    let bound = max_calls_in(refusing_since.elapsed());
    assert!(
        lines.len() <= bound,
        "{} attempts, backoff allows {bound}",
        lines.len()
    );
    for line in &lines {
        let fields = &line["fields"];
        assert!(
            fields["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("could not reach STS")),
            "{fields}"
        );
        assert!(
            fields["hint"]
                .as_str()
                .is_some_and(|h| h.contains("reach the STS endpoint")),
            "{fields}"
        );
    }

    sts.accept_again();
    assert!(
        eventually(Duration::from_secs(25), || async {
            token(&app).await.access_key_id().is_some_and(|k| k != key)
        })
        .await,
        "recovered with no restart"
    );
    app.stop().await;
}
