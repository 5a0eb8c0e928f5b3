//! Load shapes `wrk` cannot make, for the benchmark's scenarios. Prints one JSON object.
//!
//! - `bench-drive herd URL N`: opens N connections at once and sends one request on each, all
//!   released together; reports status counts and latency percentiles.
//! - `bench-drive startup URL CMD ARGS...`: starts CMD and asks URL every 2 ms until it answers
//!   200; reports how long that took, and CMD's resident memory after one idle second.
//! - `bench-drive subjects URL KEY N CONCURRENCY TOKENS_FILE`: N distinct JWT subjects, each
//!   asking once, CONCURRENCY at a time; a refused request (429/503) is retried after its
//!   `Retry-After`, so every subject ends with a token. KEY is `rs256:KID:PEM_FILE` (RS256 with
//!   that private key, header `kid` KID) or an HS256 secret. Writes the N bearer tokens to
//!   TOKENS_FILE, one a line, for `wrk` to replay against the cached path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    stsvend::sts::client::install_crypto_provider();
    let report = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["startup", url, ref cmd @ ..] if !cmd.is_empty() => startup(url, cmd).await,
        ["herd", url, n] => herd(url, n.parse().unwrap_or(500)).await,
        ["subjects", url, key, n, concurrency, tokens_file] => {
            subjects(
                url,
                key,
                n.parse().unwrap_or(10_000),
                concurrency.parse().unwrap_or(64),
                tokens_file,
            )
            .await
        }
        _ => {
            eprintln!("usage: bench-drive herd URL N | subjects URL KEY N CONCURRENCY TOKENS_FILE");
            std::process::exit(2);
        }
    };
    println!("{report}");
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|error| {
            eprintln!("cannot build an HTTP client: {error}");
            std::process::exit(1)
        })
}

async fn herd(url: &str, n: usize) -> serde_json::Value {
    let client = client(n);
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, barrier, url) = (client.clone(), barrier.clone(), url.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let status = client
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        if let Ok(result) = task.await {
            results.push(result);
        }
    }
    summary(&results)
}

/// The JWT header and key `subjects` signs with: `rs256:KID:PEM_FILE`, or an HS256 secret.
fn signing_key(spec: &str) -> (jsonwebtoken::Header, jsonwebtoken::EncodingKey) {
    let Some((kid, pem_file)) = spec.strip_prefix("rs256:").and_then(|s| s.split_once(':')) else {
        let key = jsonwebtoken::EncodingKey::from_secret(spec.as_bytes());
        return (jsonwebtoken::Header::default(), key);
    };
    let key = std::fs::read(pem_file)
        .ok()
        .and_then(|pem| jsonwebtoken::EncodingKey::from_rsa_pem(&pem).ok())
        .unwrap_or_else(|| {
            eprintln!("cannot read an RSA private key from {pem_file}");
            std::process::exit(1)
        });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    (header, key)
}

async fn subjects(
    url: &str,
    key: &str,
    n: usize,
    concurrency: usize,
    tokens_file: &str,
) -> serde_json::Value {
    let (header, key) = signing_key(key);
    let exp = 4_102_444_800u64; // 2100-01-01: the replay with wrk must not outlive its tokens.
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            let claims = serde_json::json!({ "sub": format!("bench-user-{i:06}"), "exp": exp });
            jsonwebtoken::encode(&header, &claims, &key).unwrap_or_default()
        })
        .collect();
    if let Err(error) = std::fs::write(tokens_file, tokens.join("\n") + "\n") {
        eprintln!("cannot write {tokens_file}: {error}");
        std::process::exit(1);
    }
    let client = client(concurrency);
    let queue = Arc::new(std::sync::Mutex::new(tokens.into_iter()));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, queue, retries, url) = (
                client.clone(),
                queue.clone(),
                retries.clone(),
                url.to_owned(),
            );
            tokio::spawn(async move {
                let mut results = Vec::new();
                // The guard is dropped inside `and_then`, before the body runs.
                while let Some(token) = queue.lock().ok().and_then(|mut q| q.next()) {
                    // Bounded: a subject is given up on after 20 refusals.
                    for attempt in 0..20 {
                        let sent = Instant::now();
                        let response = client.get(&url).bearer_auth(&token).send().await;
                        let (status, wait) = match response {
                            Ok(r) => {
                                let wait = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(1);
                                (r.status().as_u16(), wait)
                            }
                            Err(_) => (0, 1),
                        };
                        if status == 200 || attempt == 19 || !(status == 429 || status == 503) {
                            results.push((status, sent.elapsed()));
                            break;
                        }
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                }
                results
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for worker in workers {
        if let Ok(mut r) = worker.await {
            results.append(&mut r);
        }
    }
    let elapsed = started.elapsed();
    let mut report = summary(&results);
    report["seconds"] = serde_json::json!(elapsed.as_secs_f64());
    report["retries"] = serde_json::json!(retries.load(std::sync::atomic::Ordering::Relaxed));
    report
}

async fn startup(url: &str, cmd: &[&str]) -> serde_json::Value {
    let client = client(1);
    let started = Instant::now();
    let mut child = match tokio::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("cannot start {}: {error}", cmd[0]);
            std::process::exit(1);
        }
    };
    let mut first_ok = None;
    // Bounded: 10 s of polling.
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            first_ok = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let report = serde_json::json!({
        "first_200_ms": first_ok.map(|d| d.as_secs_f64() * 1000.0),
        "idle_rss_kib": kib("VmRSS:"),
    });
    let _ = child.kill().await;
    report
}

/// Status counts and latency percentiles (milliseconds).
fn summary(results: &[(u16, Duration)]) -> serde_json::Value {
    let mut latencies: Vec<f64> = results
        .iter()
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    serde_json::json!({
        "requests": results.len(),
        "ok": ok,
        "errors": results.len() - ok,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    })
}
