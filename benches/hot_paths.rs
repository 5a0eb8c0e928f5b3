//! Single-operation costs of the hot pure pieces (issue 7, point 3): signing an `AssumeRole`,
//! building a policy, verifying a JWT, serving a cached token body.
//!
//! `cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use stsvend::auth::jwt::{JwtConfig, JwtVerifier};
use stsvend::clock::Clock;
use stsvend::config::{AuthMode, RateLimit};
use stsvend::credentials::{Credentials, Origin};
use stsvend::http::limits::RateLimits;
use stsvend::http::{AppState, ProfileState, public_router};
use stsvend::sts::policy::{bound_to_source_ip, logstore_policy, parse_logstores};
use stsvend::sts::{AssumeRole, IssuedCredentials, signature};
use stsvend::tokens::shared::{self, SharedToken, Snapshot};
use stsvend::tokens::token::Token;

const ROLE_ARN: &str = "acs:ram::1234567890123456:role/sls-web-upload";
const HS256_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
const ISSUER: &str = "https://login.example.com";
const AUDIENCE: &str = "stsvend";

/// A fixed moment: benches read no wall clock (see clippy.toml).
fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn assume_role() -> AssumeRole {
    let stores = parse_logstores("my-proj/web-log").expect("logstore");
    AssumeRole {
        role_arn: ROLE_ARN.to_owned(),
        role_session_name: "stsvend".to_owned(),
        duration_seconds: 3600,
        policy: Some(logstore_policy(&stores).expect("policy")),
    }
}

fn credentials() -> Credentials {
    Credentials::new(
        "LTAI5tBenchAccessKeyId00",
        SecretString::from("BenchAccessKeySecret0123456789ab"),
        None,
        Origin::Environment,
    )
}

fn bench_sts(c: &mut Criterion) {
    let call = assume_role();
    let creds = credentials();
    let timestamp = fixed_now();
    let nonce = "3f2b8c1e-7a4d-4e0b-9c6a-1d2e3f4a5b6c";

    c.bench_function("sts/assume_role_sign", |b| {
        b.iter(|| black_box(&call).sign(black_box(&creds), timestamp, black_box(nonce)));
    });

    // The same parameters the signer covers, without the request building around it.
    let signed = call.sign(&creds, timestamp, nonce);
    let params: Vec<(String, String)> = signed
        .query
        .iter()
        .filter(|(k, _)| k != "Signature")
        .chain(signed.form.iter())
        .cloned()
        .collect();
    let secret = "BenchAccessKeySecret0123456789ab";
    c.bench_function("sts/signature_sign", |b| {
        b.iter(|| signature::sign("POST", black_box(&params), black_box(secret)));
    });
}

fn bench_policy(c: &mut Criterion) {
    let one = parse_logstores("my-proj/web-log").expect("logstore");
    let ten_list = (0..10)
        .map(|i| format!("my-proj/web-log-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let ten = parse_logstores(&ten_list).expect("logstores");
    assert_eq!(ten.len(), 10);

    c.bench_function("policy/logstore_policy_1", |b| {
        b.iter(|| logstore_policy(black_box(&one)));
    });
    c.bench_function("policy/logstore_policy_10", |b| {
        b.iter(|| logstore_policy(black_box(&ten)));
    });

    let policy = logstore_policy(&one).expect("policy");
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    c.bench_function("policy/bound_to_source_ip", |b| {
        b.iter(|| bound_to_source_ip(black_box(Some(policy.as_str())), black_box(ip)));
    });
}

fn claims(now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "sub": "user-12345",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now.timestamp() - 60,
        "nbf": now.timestamp() - 60,
        "exp": now.timestamp() + 3600,
    })
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn bench_jwt(c: &mut Criterion) {
    let rt = runtime();
    let now = fixed_now();

    let hs = JwtVerifier::new(JwtConfig {
        hs256_secret: Some(SecretString::from(HS256_SECRET)),
        jwks_url: None,
        jwks_file: None,
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        algorithms: vec![Algorithm::HS256],
    })
    .expect("HS256 verifier");
    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(now),
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .expect("HS256 token");
    rt.block_on(hs.verify(&hs_token, now))
        .expect("HS256 token verifies");
    // A verifier remembers the tokens it verified: forgetting them before each call measures a
    // first verification, as the names always meant.
    c.bench_function("jwt/verify_hs256", |b| {
        b.iter(|| {
            hs.forget_verified();
            rt.block_on(hs.verify(black_box(&hs_token), now))
        });
    });

    let rs = JwtVerifier::new(JwtConfig {
        hs256_secret: None,
        jwks_url: None,
        jwks_file: Some(fixture("jwks.json")),
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        algorithms: vec![Algorithm::RS256],
    })
    .expect("RS256 verifier");
    let pem = std::fs::read(fixture("rsa_private.pem")).expect("RSA key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let rs_token = jsonwebtoken::encode(
        &header,
        &claims(now),
        &EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
    )
    .expect("RS256 token");
    rt.block_on(rs.verify(&rs_token, now))
        .expect("RS256 token verifies");
    c.bench_function("jwt/verify_rs256_jwks_file", |b| {
        b.iter(|| {
            rs.forget_verified();
            rt.block_on(rs.verify(black_box(&rs_token), now))
        });
    });
    // The same token again: answered from memory (SHA-256 of the token, one cache lookup).
    rt.block_on(rs.verify(&rs_token, now))
        .expect("RS256 token verifies");
    c.bench_function("jwt/verify_rs256_remembered", |b| {
        b.iter(|| rt.block_on(rs.verify(black_box(&rs_token), now)));
    });
}

/// A published snapshot holding a token servable for the next hour.
fn servable_snapshot() -> Snapshot {
    let issued = IssuedCredentials::new(
        "STS.NUBenchTemporaryKeyId0000",
        SecretString::from("BenchTemporarySecret0123456789abcdef0123"),
        SecretString::from("CAIS".repeat(200)),
        fixed_now() + chrono::Duration::hours(1),
        Some("6894B13B-6D71-4EF5-88FA-F32781734A7F".to_owned()),
    );
    let token = Token::new(
        &issued,
        "stsvend".into(),
        Instant::now() + Duration::from_secs(3600),
    );
    Snapshot::serving(Arc::new(token), None)
}

fn bench_cached(c: &mut Criterion) {
    let rt = runtime();
    // `Token::new` reads tokio's clock, so build the snapshot inside the runtime.
    let (_tx, rx) = rt.block_on(async { watch::channel(servable_snapshot()) });

    c.bench_function("cached/servable_token", |b| {
        b.iter(|| {
            rt.block_on(shared::servable_token(
                black_box(&rx),
                Duration::from_secs(5),
            ))
        });
    });

    // End to end through the public router, without sockets.
    let unlimited = NonZeroU32::MAX;
    let profile = ProfileState {
        name: "default".to_owned(),
        shared: SharedToken::new(
            "default".to_owned(),
            rx.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ),
        callers: None,
        logins: None,
        limits: RateLimits::new(RateLimit {
            per_minute: unlimited,
            burst: unlimited,
        }),
        auth: AuthMode::None,
        verifier: None,
        bind_source_ip: false,
        cors_origins: Vec::new(),
        would_deny: AtomicU64::new(0),
        enabled: AtomicBool::new(true),
    };
    let state = AppState::new(vec![profile], Vec::new(), Clock::System);
    let router = public_router(state);
    let peer = SocketAddr::from(([203, 0, 113, 7], 50_000));
    let request = || {
        let mut request = Request::get("/get_sts_token")
            .body(Body::empty())
            .expect("request");
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    };
    let status = rt.block_on(async {
        let response = router.clone().oneshot(request()).await.expect("response");
        response.status()
    });
    assert_eq!(status, StatusCode::OK);

    c.bench_function("cached/router_get_sts_token", |b| {
        b.iter(|| {
            rt.block_on(async {
                let response = router.clone().oneshot(request()).await.expect("response");
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body")
            })
        });
    });
}

criterion_group!(benches, bench_sts, bench_policy, bench_jwt, bench_cached);
criterion_main!(benches);
