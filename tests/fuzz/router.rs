//! The public router (`http::public_surface`), driven without a socket: any method, path, query,
//! headers and body that make a valid request are answered without a 500, with an
//! `x-request-id`, and every answer other than 200 has the one JSON error shape; and where a
//! lane skips the router, it answers what the router answers.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use chrono::{TimeZone, Utc};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::Value;
use stsvend::auth::jwt::{JwtConfig, JwtVerifier};
use stsvend::clock::Clock;
use stsvend::config::{AuthMode, RateLimit};
use stsvend::http::limits::RateLimits;
use stsvend::http::{AppState, ProfileState, public_surface};
use stsvend::server::Served;
use stsvend::sts::IssuedCredentials;
use stsvend::tokens::shared::{SharedToken, Snapshot};
use stsvend::tokens::token::Token;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::{check_n, default_cases};

const JWT_SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0123";

/// A snapshot holding a token servable for the next hour.
fn servable_snapshot() -> Snapshot {
    let issued = IssuedCredentials::new(
        "STS.NUFuzzTemporaryKeyId0000",
        SecretString::from("FuzzTemporarySecret0123456789abcdef0123"),
        SecretString::from("CAIS-fuzz-token"),
        Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0).unwrap(),
        None,
    );
    let token = Token::new(
        &issued,
        "stsvend".into(),
        Instant::now() + Duration::from_secs(3600),
    );
    Snapshot::serving(Arc::new(token), None)
}

fn profile(
    name: &str,
    auth: AuthMode,
    shared: watch::Receiver<Snapshot>,
    cors_origins: Vec<String>,
) -> ProfileState {
    let verifier = (auth != AuthMode::None).then(|| {
        JwtVerifier::new(JwtConfig {
            hs256_secret: Some(SecretString::from(JWT_SECRET)),
            jwks_url: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            algorithms: vec![Algorithm::HS256],
        })
        .expect("verifier")
    });
    ProfileState {
        name: name.to_owned(),
        shared: SharedToken::new(
            name.to_owned(),
            shared,
            Arc::new(tokio::sync::Notify::new()),
        ),
        callers: None,
        logins: None,
        limits: RateLimits::new(RateLimit {
            per_minute: NonZeroU32::MAX,
            burst: NonZeroU32::MAX,
        }),
        auth,
        verifier,
        bind_source_ip: false,
        cors_origins,
        would_deny: AtomicU64::new(0),
        enabled: AtomicBool::new(true),
    }
}

/// Four profiles (open with CORS, JWT-only, report mode, open without CORS), all with a
/// servable token, and a trusted proxy range so `X-Forwarded-For` is parsed for some peers. The
/// two without CORS have lanes.
fn surface(runtime: &Runtime) -> (Served, watch::Sender<Snapshot>) {
    runtime.block_on(async {
        let (tx, rx) = watch::channel(servable_snapshot());
        let profiles = vec![
            profile(
                "default",
                AuthMode::None,
                rx.clone(),
                vec!["https://app.example.com".to_owned()],
            ),
            profile("secure", AuthMode::Jwt, rx.clone(), Vec::new()),
            profile(
                "watch",
                AuthMode::Report,
                rx.clone(),
                vec!["https://app.example.com".to_owned()],
            ),
            profile("plain", AuthMode::None, rx, Vec::new()),
        ];
        let trusted = vec!["10.0.0.0/8".parse().expect("CIDR")];
        let edge = stsvend::http::edge::Edge::default();
        (
            public_surface(AppState::new(profiles, trusted, Clock::System), &edge),
            tx,
        )
    })
}

/// Characters a request target may hold as they are (RFC 3986 `pchar`, `/`, `?`), plus `%`.
const URI_CHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]";

fn regex(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid pattern")
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => prop::sample::select(vec![
            Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE,
            Method::OPTIONS, Method::PATCH, Method::TRACE,
        ]),
        1 => "[A-Za-z!#$%&'*+.^_`|~-]{1,12}"
            .prop_filter_map("a method token", |m| Method::from_bytes(m.as_bytes()).ok()),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        4 => prop::sample::select(vec![
            "/get_sts_token", "/get_sts_token/", "/get_sts_token/default", "/get_sts_token/secure",
            "/get_sts_token/watch", "/get_sts_token/plain", "/get_sts_token/nope", "/get_sts_token//", "/healthz", "/readyz",
            "/metrics", "/", "//", "/GET_STS_TOKEN", "/get_sts_token/default/extra",
        ])
        .prop_map(str::to_owned),
        1 => regex(&format!("/{URI_CHARS}{{0,40}}")),
        // Any text as a profile name, percent-encoded.
        1 => ".{0,20}".prop_map(|name| format!(
            "/get_sts_token/{}",
            stsvend::sts::signature::percent_encode(&name)
        )),
    ];
    let query = prop_oneof![
        2 => Just(String::new()),
        2 => regex(&format!("\\?{URI_CHARS}{{0,60}}")),
        1 => prop::sample::select(vec![
            "?", "?profile=default", "?%", "?%zz", "?a=%FF%FE", "?&&==", "?x=1&x=2",
        ])
        .prop_map(str::to_owned),
    ];
    (path, query).prop_map(|(path, query)| format!("{path}{query}"))
}

fn header() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "authorization", "x-forwarded-for", "x-real-ip", "forwarded", "origin",
            "access-control-request-method", "access-control-request-headers", "host",
            "content-type", "content-length", "cookie", "accept", "x-request-id",
        ])
        .prop_map(HeaderName::from_static),
        1 => "[a-z0-9-]{1,20}".prop_filter_map("a header name", |n| HeaderName::from_bytes(n.as_bytes()).ok()),
    ];
    let value = prop_oneof![
        2 => prop::sample::select(vec![
            "Bearer ", "Bearer a.b.c", "bearer eyJhbGciOiJub25lIn0.e30.", "Basic dXNlcjpwdw==",
            "203.0.113.9", "10.0.0.1, 203.0.113.9", "unknown, ::1", "1.2.3.4:80", "[::1]:80",
            "for=192.0.2.60;proto=http", "https://app.example.com", "null", "GET", "0", "-1",
            "99999999999999999999", "",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        2 => "Bearer [A-Za-z0-9_.-]{0,80}".prop_map(String::into_bytes),
        2 => "[0-9a-f:., ]{0,40}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .prop_filter_map("a header value", |bytes| {
        HeaderValue::from_bytes(&bytes).ok()
    });
    (name, value)
}

fn peer() -> impl Strategy<Value = SocketAddr> {
    prop::sample::select(vec![
        SocketAddr::from(([203, 0, 113, 7], 50_000)),
        SocketAddr::from(([10, 1, 2, 3], 40_000)),
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 1)),
    ])
}

/// A request and what it was made of (for the failure message).
#[derive(Debug)]
struct Case {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    peer: SocketAddr,
}

fn case() -> impl Strategy<Value = Case> {
    case_of(method(), target())
}

fn case_of(
    method: impl Strategy<Value = Method>,
    target: impl Strategy<Value = String>,
) -> impl Strategy<Value = Case> {
    (
        method,
        target.prop_filter_map("a valid request target", |t| Uri::try_from(t).ok()),
        prop::collection::vec(header(), 0..6),
        prop::collection::vec(any::<u8>(), 0..32),
        peer(),
    )
        .prop_map(|(method, uri, headers, body, peer)| Case {
            method,
            uri,
            headers,
            body,
            peer,
        })
}

#[test]
fn router_answers_any_request_without_a_500_and_with_the_error_shape() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (surface, _keep_token) = surface(&runtime);
    let router = surface.router;
    // Each case is a whole request through the middleware stack.
    let cases = (default_cases() / 4).max(1);
    check_n("router_any_request", cases, case(), |case| {
        let request = request_of(&case)?;
        let (status, headers, body) = runtime.block_on(async {
            let response = router.clone().oneshot(request).await.expect("infallible");
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
            (parts.status, parts.headers, body)
        });
        prop_assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
        prop_assert!(headers.contains_key("x-request-id"), "no x-request-id");
        if status == StatusCode::NO_CONTENT {
            // A non-preflight OPTIONS: no body, the methods in `Allow`.
            prop_assert_eq!(&case.method, &Method::OPTIONS);
            prop_assert!(body.is_empty() && headers.contains_key("allow"));
            return Ok(());
        }
        if status == StatusCode::OK || case.method == Method::HEAD {
            return Ok(());
        }
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{status}: body is not JSON ({e}): {body:?}"))
        })?;
        let error = &json["error"];
        for field in ["code", "message", "request_id"] {
            prop_assert!(
                error[field].as_str().is_some_and(|s| !s.is_empty()),
                "{} answer without a string `error.{}`: {}",
                status,
                field,
                json
            );
        }
        prop_assert_eq!(json.as_object().map(serde_json::Map::len), Some(1));
        Ok(())
    });
}

/// The request `case` describes, with the peer's address as `axum::serve` would add it.
fn request_of(case: &Case) -> Result<Request<Body>, TestCaseError> {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(case.uri.clone());
    for (name, value) in &case.headers {
        builder = builder.header(name, value);
    }
    let Ok(mut request) = builder.body(Body::from(case.body.clone())) else {
        return Err(TestCaseError::reject("not a valid http::Request"));
    };
    request.extensions_mut().insert(ConnectInfo(case.peer));
    Ok(request)
}

/// An answer with its request id taken out of the headers and the body, to compare two.
async fn without_id(
    response: axum::response::Response,
) -> (StatusCode, Vec<(String, String)>, String) {
    let (parts, body) = response.into_parts();
    let id = parts.headers["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).replace(&id, "ID");
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    (
        parts.status,
        headers,
        String::from_utf8_lossy(&body).replace(&id, "ID"),
    )
}

/// Whatever the headers, query, body and peer, a lane answers a `GET` of its path with the
/// router's status, headers (in order) and body: the request id aside, which is new each time.
#[test]
fn a_lane_answers_what_the_router_answers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (surface, _keep_token) = surface(&runtime);
    for (path, lane) in [
        ("/get_sts_token/secure", true),
        ("/get_sts_token/plain", true),
        ("/get_sts_token", false),
    ] {
        assert_eq!(surface.lane(&Method::GET, path).is_some(), lane, "{path}");
    }
    let paths = prop::sample::select(vec!["/get_sts_token/secure", "/get_sts_token/plain"]);
    let query = prop_oneof![
        Just(String::new()),
        regex(&format!("\\?{URI_CHARS}{{0,40}}"))
    ];
    let target = (paths, query).prop_map(|(path, query)| format!("{path}{query}"));
    let cases = (default_cases() / 4).max(1);
    check_n(
        "lane_as_router",
        cases,
        case_of(Just(Method::GET), target),
        |case| {
            let lane = surface
                .lane(&case.method, case.uri.path())
                .expect("a lane for every generated case");
            let (routed, laned) = runtime.block_on(async {
                let routed = surface
                    .router
                    .clone()
                    .oneshot(request_of(&case)?)
                    .await
                    .expect("infallible");
                let laned = lane.call(request_of(&case)?).await;
                Ok::<_, TestCaseError>((without_id(routed).await, without_id(laned).await))
            })?;
            prop_assert_eq!(routed, laned);
            Ok(())
        },
    );
}
