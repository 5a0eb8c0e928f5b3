//! A stand-in for STS that answers every `AssumeRole` with well-formed credentials after a fixed
//! latency, and counts what it was asked. Benchmark scaffolding: it checks nothing (the protocol
//! is proven by the test suite against the official SDKs), so its own cost stays negligible.
//!
//! `bench-mock-sts [--latency-ms 30]` prints `listening on ADDR` once bound. Control endpoints:
//! `GET /__stats` (calls so far and the most in any one-second window), `POST /__down` and
//! `POST /__up` (an outage: 503 `ServiceUnavailable` for every call), `POST /__latency?ms=N`,
//! `POST /__lifetime?s=N` (credentials expire N seconds after issue whatever was asked; 0 undoes
//! it), `POST /__reset` (forget the calls counted so far).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

#[derive(Default)]
struct Mock {
    latency_ms: AtomicU64,
    lifetime_s: AtomicU64,
    down: AtomicBool,
    calls: AtomicU64,
    serial: AtomicU64,
    /// When each call arrived, to find the busiest second.
    arrivals: Mutex<Vec<Instant>>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut latency_ms = 30;
    let mut listen = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--latency-ms", Some(v)) => latency_ms = v.parse().unwrap_or(latency_ms),
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: bench-mock-sts [--latency-ms N] [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let mock = Arc::new(Mock::default());
    mock.latency_ms.store(latency_ms, Ordering::Relaxed);
    let app = Router::new()
        .route("/", any(assume_role))
        .route("/__stats", get(stats))
        .route(
            "/__down",
            post(|State(m): State<Arc<Mock>>| async move { m.down.store(true, Ordering::Relaxed) }),
        )
        .route(
            "/__up",
            post(
                |State(m): State<Arc<Mock>>| async move { m.down.store(false, Ordering::Relaxed) },
            ),
        )
        .route(
            "/__latency",
            post(
                |State(m): State<Arc<Mock>>, Query(q): Query<Value>| async move {
                    m.latency_ms.store(q.ms.unwrap_or(30), Ordering::Relaxed)
                },
            ),
        )
        .route(
            "/__lifetime",
            post(
                |State(m): State<Arc<Mock>>, Query(q): Query<Value>| async move {
                    m.lifetime_s.store(q.s.unwrap_or(0), Ordering::Relaxed)
                },
            ),
        )
        .route("/__reset", post(reset))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

async fn assume_role(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    mock.calls.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut arrivals) = mock.arrivals.lock() {
        arrivals.push(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(
        mock.latency_ms.load(Ordering::Relaxed),
    ))
    .await;
    let serial = mock.serial.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("BENCH-{serial:010}");
    if mock.down.load(Ordering::Relaxed) {
        let body = format!(
            r#"{{"RequestId":"{request_id}","HostId":"sts.aliyuncs.com","Code":"ServiceUnavailable","Message":"The request has failed due to a temporary failure of the server."}}"#
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            body,
        )
            .into_response();
    }
    // The Go and Python SDKs put DurationSeconds in the body or the query; default as STS does.
    let asked: i64 = form_value(&body, "DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    let duration = match mock.lifetime_s.load(Ordering::Relaxed) {
        0 => asked,
        forced => i64::try_from(forced).unwrap_or(asked),
    };
    #[allow(
        clippy::disallowed_methods,
        reason = "benchmark scaffolding: a real wall clock, like STS"
    )]
    let expiration = chrono::Utc::now() + chrono::Duration::seconds(duration);
    // A security token as long as real ones (several hundred characters), so bodies are real-sized.
    let token = format!("CAIS{}", "x".repeat(600));
    let body = format!(
        r#"{{"RequestId":"{request_id}","AssumedRoleUser":{{"AssumedRoleId":"300000000000000000:bench","Arn":"acs:ram::1000000000000000:role/bench/bench"}},"Credentials":{{"SecurityToken":"{token}{serial}","AccessKeyId":"STS.NBench{serial:016}","AccessKeySecret":"BenchSecret{serial:020}","Expiration":"{}"}}}}"#,
        expiration.format("%Y-%m-%dT%H:%M:%SZ")
    );
    ([("content-type", "application/json")], body).into_response()
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn stats(State(mock): State<Arc<Mock>>) -> Response {
    let mut arrivals = mock.arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    arrivals.sort();
    // Sliding one-second window over the sorted arrival times.
    let (mut start, mut busiest) = (0, 0);
    for end in 0..arrivals.len() {
        while arrivals[end].duration_since(arrivals[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    let body = format!(
        r#"{{"calls":{},"max_calls_in_one_second":{busiest}}}"#,
        mock.calls.load(Ordering::Relaxed)
    );
    ([("content-type", "application/json")], body).into_response()
}

#[derive(serde::Deserialize)]
struct Value {
    ms: Option<u64>,
    s: Option<u64>,
}

async fn reset(State(mock): State<Arc<Mock>>) {
    mock.calls.store(0, Ordering::Relaxed);
    if let Ok(mut arrivals) = mock.arrivals.lock() {
        arrivals.clear();
    }
}
