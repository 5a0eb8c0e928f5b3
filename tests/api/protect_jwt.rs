//! Caller checks (issue #4) through the real router: JWTs in `jwt` mode (HS256 with a secret,
//! RS256/ES256 with a JWKS served by the test or read from a file), every way a token can be
//! wrong, each answered `401` with its own code and never echoed; and `report` mode.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use stsvend::auth::subject::session_name;
use stsvend::clock::Clock;

use crate::helpers::{
    Answer, ClosedPort, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, JwksServer, LogCapture, MockSts,
    TestApp, bearer, ec_key, hs256_jwt, hs256_key, jump_ahead, jwt_claims, jwt_fixture,
    jwt_fixture_path, rotated_rsa_key, rsa_key, sign_jwt, unix_now,
};

/// Request headers, name and value.
type Headers = Vec<(String, String)>;

/// A `jwt`-mode service checking HS256 with [`JWT_SECRET`] and RS256/ES256 with `jwks_url`;
/// `iss` and `aud` are required.
async fn jwt_app(mock: &MockSts, jwks_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = jwt_env(jwks_url);
    // Later entries win.
    env.extend_from_slice(extra);
    let app = TestApp::builder(&mock.endpoint()).env(&env).start().await;
    app.wait_ready().await;
    app
}

fn jwt_env(jwks_url: &str) -> Vec<(&str, &str)> {
    vec![
        ("STSVEND_AUTH", "jwt"),
        ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
        ("STSVEND_JWT_JWKS_URL", jwks_url),
        ("STSVEND_JWT_ISSUER", JWT_ISSUER),
        ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
    ]
}

/// The `RoleSessionName`s STS was asked for, in call order.
fn session_names(mock: &MockSts) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|params| params["RoleSessionName"].clone())
        .collect()
}

fn claims_with(subject: &str, key: &str, value: Value) -> Value {
    let mut claims = jwt_claims(subject);
    claims[key] = value;
    claims
}

/// `header.payload.signature` from raw JSON parts, for tokens no library would sign.
fn compact(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Checks one refusal; collects what is wrong rather than stopping at the first problem, so one
/// run shows every broken case.
fn check_refusal(case: &str, answer: &Answer, token: &str, code: &str, problems: &mut Vec<String>) {
    let mut problem = |what: String| problems.push(format!("{case}: {what}"));
    if answer.status != 401 {
        problem(format!("status {} (body {})", answer.status, answer.body));
    }
    if answer.error_code().as_deref() != Some(code) {
        problem(format!("code {:?}, want {code:?}", answer.error_code()));
    }
    let message = answer.json()["error"]["message"].clone();
    if message.as_str().is_none_or(str::is_empty) {
        problem(format!("no error message: {}", answer.body));
    }
    if answer.header("content-type") != Some("application/json") {
        problem(format!("content-type {:?}", answer.header("content-type")));
    }
    match answer.header("www-authenticate") {
        Some(value) if value.starts_with("Bearer") => {}
        other => problem(format!("WWW-Authenticate {other:?}, want Bearer …")),
    }
    for needle in secret_parts(token) {
        if answer.mentions(&needle) {
            problem(format!("the answer echoes the token ({needle:.20}…)"));
        }
    }
}

/// The parts of a presented token that must never be shown back: the whole token and its
/// signature (the header and claims of a JWT are not secret, but echoing them is still echoing).
fn secret_parts(token: &str) -> Vec<String> {
    let mut parts = Vec::new();
    if token.len() >= 8 {
        parts.push(token.to_owned());
    }
    if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
        parts.push(signature.to_owned());
    }
    parts
}

#[tokio::test]
async fn valid_hs256_rs256_and_es256_tokens_each_get_a_token_for_their_subject() {
    let mock = MockSts::start(vec![]).await;
    let jwks = JwksServer::start(jwt_fixture("jwks.json")).await;
    let app = jwt_app(&mock, &jwks.url(), &[]).await;
    assert_eq!(
        jwks.hits(),
        0,
        "the JWKS is fetched on first use, not at start"
    );
    let cases = [
        ("hs256-user", Algorithm::HS256, None, hs256_key()),
        ("rs256-user", Algorithm::RS256, Some("rsa-1"), rsa_key()),
        ("es256-user", Algorithm::ES256, Some("ec-1"), ec_key()),
    ];
    for (subject, algorithm, kid, key) in &cases {
        let token = sign_jwt(*algorithm, *kid, &jwt_claims(subject), key);
        let answer = app.get_with("/get_sts_token", &[bearer(&token)]).await;
        assert_eq!(answer.status, 200, "{algorithm:?}: {}", answer.body);
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert!(answer.access_key_id().is_some(), "{}", answer.body);
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let lower = (
        "authorization".to_owned(),
        format!("bearer {}", hs256_jwt("hs256-user")),
    );
    assert_eq!(app.get_with("/get_sts_token", &[lower]).await.status, 200);
    assert_eq!(
        session_names(&mock),
        ["stsvend", "hs256-user", "rs256-user", "es256-user"],
        "the shared token, then one per subject"
    );
    assert_eq!(
        jwks.hits(),
        1,
        "one fetch served both the RSA and the EC key"
    );
}

#[tokio::test]
async fn a_jwks_file_verifies_rs256_and_es256_tokens() {
    let mock = MockSts::start(vec![]).await;
    let file = jwt_fixture_path("jwks.json");
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_JWKS_FILE", file.to_str().unwrap()),
            ("STSVEND_JWT_ISSUER", JWT_ISSUER),
            ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    let rs = sign_jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &jwt_claims("file-rs"),
        &rsa_key(),
    );
    let es = sign_jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &jwt_claims("file-es"),
        &ec_key(),
    );
    for token in [&rs, &es] {
        let answer = app.get_with("/get_sts_token", &[bearer(token)]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    // Without a secret, HS256 is not among the default algorithms.
    let hs = app
        .get_with("/get_sts_token", &[bearer(&hs256_jwt("file-hs"))])
        .await;
    assert_eq!(hs.status, 401);
    assert_eq!(hs.error_code().as_deref(), Some("algorithm_not_allowed"));
    assert_eq!(session_names(&mock), ["stsvend", "file-rs", "file-es"]);
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_bearer_and_the_failed_check_never_echoing_it() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    let jwks = JwksServer::start(jwt_fixture("jwks.json")).await;
    let app = jwt_app(&mock, &jwks.url(), &[]).await;
    let now = unix_now();
    let rs =
        |claims: &Value, key: &EncodingKey| sign_jwt(Algorithm::RS256, Some("rsa-1"), claims, key);
    let other_secret = EncodingKey::from_secret(b"another-secret-that-is-long-enough-too!!");
    let valid_es = sign_jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &jwt_claims("mallory"),
        &ec_key(),
    );
    // The claims of one user with the signature of another's token.
    let spliced = {
        let other = sign_jwt(
            Algorithm::ES256,
            Some("ec-1"),
            &jwt_claims("admin"),
            &ec_key(),
        );
        let mut parts: Vec<&str> = valid_es.split('.').collect();
        let other_payload = other.split('.').nth(1).unwrap().to_owned();
        parts[1] = &other_payload;
        parts.join(".")
    };
    let none = compact(
        &json!({"alg": "none", "typ": "JWT"}),
        &jwt_claims("mallory"),
        b"",
    );
    let none_capital = compact(&json!({"alg": "None"}), &jwt_claims("mallory"), b"");
    let oversized = sign_jwt(
        Algorithm::HS256,
        None,
        &claims_with("mallory", "padding", json!("p".repeat(9 * 1024))),
        &hs256_key(),
    );
    let no_subject = {
        let mut claims = jwt_claims("mallory");
        claims.as_object_mut().unwrap().remove("sub");
        sign_jwt(Algorithm::HS256, None, &claims, &hs256_key())
    };
    let no_exp = {
        let mut claims = jwt_claims("mallory");
        claims.as_object_mut().unwrap().remove("exp");
        sign_jwt(Algorithm::HS256, None, &claims, &hs256_key())
    };
    let bare = hs256_jwt("mallory");
    let hs = |claims: &Value| sign_jwt(Algorithm::HS256, None, claims, &hs256_key());
    let forged = |claims: &Value| sign_jwt(Algorithm::HS256, None, claims, &other_secret);
    // (case, the whole Authorization header or none, the token inside it, expected code)
    let raw = |case, header: &str, token: &str, code| {
        (case, Some(header.to_owned()), token.to_owned(), code)
    };
    let bearing = |case, token: String, code| (case, Some(format!("Bearer {token}")), token, code);
    let cases: Vec<(&str, Option<String>, String, &str)> = vec![
        (
            "no Authorization header",
            None,
            String::new(),
            "missing_token",
        ),
        raw(
            "Basic credentials",
            "Basic dXNlcjpwYXNzd29yZA==",
            "dXNlcjpwYXNzd29yZA==",
            "malformed_token",
        ),
        raw("Bearer and nothing else", "Bearer", "", "malformed_token"),
        raw(
            "a bare token without a scheme",
            &bare,
            &bare,
            "malformed_token",
        ),
        raw(
            "garbage",
            "Bearer not-a-jwt-at-all",
            "not-a-jwt-at-all",
            "malformed_token",
        ),
        raw(
            "three parts that are not base64url",
            "Bearer a+b.c/d.e=f",
            "a+b.c/d.e=f",
            "malformed_token",
        ),
        // Only ASCII white space frames a token; other text in the header is not a JWT's.
        raw(
            "a valid token framed by an ideographic space",
            &format!("Bearer {bare}\u{3000}"),
            &bare,
            "malformed_token",
        ),
        raw(
            "a token with non-ASCII text",
            &format!("Bearer {bare}\u{e9}"),
            &bare,
            "malformed_token",
        ),
        bearing("more than 8 KiB", oversized, "malformed_token"),
        bearing("no exp claim", no_exp, "malformed_token"),
        bearing(
            "expired an hour ago",
            hs(&claims_with("mallory", "exp", json!(now - 3600))),
            "token_expired",
        ),
        bearing(
            "not valid for another hour",
            hs(&claims_with("mallory", "nbf", json!(now + 3600))),
            "token_not_yet_valid",
        ),
        bearing(
            "another issuer",
            hs(&claims_with(
                "mallory",
                "iss",
                json!("https://evil.example.com"),
            )),
            "wrong_issuer",
        ),
        bearing(
            "another audience",
            hs(&claims_with("mallory", "aud", json!(["other-service"]))),
            "wrong_audience",
        ),
        bearing("no subject", no_subject, "missing_subject"),
        bearing(
            "HS256 with another secret",
            forged(&jwt_claims("mallory")),
            "bad_signature",
        ),
        bearing(
            "RS256 by a key not in the JWKS, claiming kid rsa-1",
            rs(&jwt_claims("mallory"), &rotated_rsa_key()),
            "bad_signature",
        ),
        bearing("ES256 claims of another token", spliced, "bad_signature"),
        bearing("alg none", none, "algorithm_not_allowed"),
        bearing("alg None", none_capital, "algorithm_not_allowed"),
    ];
    let mut problems = Vec::new();
    for (case, authorization, token, code) in &cases {
        let headers: Headers = authorization
            .iter()
            .map(|value| ("authorization".to_owned(), value.clone()))
            .collect();
        let answer = app.get_with("/get_sts_token", &headers).await;
        check_refusal(case, &answer, token, code, &mut problems);
        // One structured log line per refusal: request id, client IP, profile, reason.
        let request_id = answer.header("x-request-id").unwrap_or_default().to_owned();
        let denials: Vec<Value> = logs
            .events_with_message("request denied")
            .into_iter()
            .filter(|event| event["span"]["request_id"] == request_id.as_str())
            .collect();
        match denials.as_slice() {
            [event] => {
                let fields = &event["fields"];
                if fields["reason"] != *code
                    || fields["client_ip"] != "127.0.0.1"
                    || fields["profile"] != "default"
                {
                    problems.push(format!("{case}: log line {event}"));
                }
            }
            other => problems.push(format!("{case}: {} denial log lines", other.len())),
        }
    }
    let logged = logs.text();
    for (case, _, token, _) in &cases {
        for needle in secret_parts(token) {
            if logged.contains(&needle) {
                problems.push(format!("{case}: the log contains the token"));
            }
        }
    }
    assert_eq!(mock.calls(), 1, "refused callers never reach STS");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the verifier's RSA public key is public, so an attacker signs an
    // HS256 token with its PEM as the HMAC secret and hopes the server verifies HS256 with it.
    let public_pem = jwt_fixture("rsa_public.pem");
    let forged = sign_jwt(
        Algorithm::HS256,
        Some("rsa-1"),
        &jwt_claims("mallory"),
        &EncodingKey::from_secret(&public_pem),
    );
    let jwks = JwksServer::start(jwt_fixture("jwks.json")).await;
    // (case, extra settings, expected code)
    let cases = [
        (
            "only RS256 allowed",
            vec![("STSVEND_JWT_ALGORITHMS", "RS256")],
            "algorithm_not_allowed",
        ),
        (
            "HS256 allowed too (checked with the secret only)",
            vec![("STSVEND_JWT_ALGORITHMS", "RS256,HS256")],
            "bad_signature",
        ),
    ];
    for (case, extra, code) in cases {
        let mock = MockSts::start(vec![]).await;
        let app = jwt_app(&mock, &jwks.url(), &extra).await;
        let answer = app.get_with("/get_sts_token", &[bearer(&forged)]).await;
        let mut problems = Vec::new();
        check_refusal(case, &answer, &forged, code, &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let genuine = sign_jwt(
            Algorithm::RS256,
            Some("rsa-1"),
            &jwt_claims("alice"),
            &rsa_key(),
        );
        let ok = app.get_with("/get_sts_token", &[bearer(&genuine)]).await;
        assert_eq!(
            ok.status, 200,
            "{case}: a real RS256 token works: {}",
            ok.body
        );
        assert_eq!(session_names(&mock), ["stsvend", "alice"], "{case}");
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once_and_is_then_refused() {
    let mock = MockSts::start(vec![]).await;
    let jwks = JwksServer::start(jwt_fixture("jwks.json")).await;
    // The service's wall clock follows tokio time, so the test can move it a minute on.
    #[allow(clippy::disallowed_methods)] // the service's clock starts at the real time
    let clock = Clock::following_tokio(chrono::Utc::now());
    let app = TestApp::builder(&mock.endpoint())
        .env(&jwt_env(&jwks.url()))
        .clock(clock)
        .start()
        .await;
    app.wait_ready().await;
    let token = |kid: &str, key: &EncodingKey, subject: &str| {
        sign_jwt(Algorithm::RS256, Some(kid), &jwt_claims(subject), key)
    };
    let known = token("rsa-1", &rsa_key(), "alice");
    assert_eq!(
        app.get_with("/get_sts_token", &[bearer(&known)])
            .await
            .status,
        200
    );
    assert_eq!(jwks.hits(), 1, "first use fetches the JWKS");

    let mut problems = Vec::new();
    // Within a minute of that fetch an unknown kid is refused without a refetch.
    let rotated = token("rsa-2", &rotated_rsa_key(), "bob");
    let answer = app.get_with("/get_sts_token", &[bearer(&rotated)]).await;
    check_refusal(
        "unknown kid, fresh keys",
        &answer,
        &rotated,
        "unknown_key",
        &mut problems,
    );
    assert_eq!(
        jwks.hits(),
        1,
        "no refetch within a minute of the last fetch"
    );

    // A minute on, the issuer has rotated to rsa-2: one refetch finds it.
    jwks.set_body(jwt_fixture("jwks_rotated.json"));
    jump_ahead(Duration::from_secs(61)).await;
    let answer = app.get_with("/get_sts_token", &[bearer(&rotated)]).await;
    assert_eq!(
        answer.status, 200,
        "the rotated key is found: {}",
        answer.body
    );
    assert_eq!(jwks.hits(), 2, "exactly one refetch");

    // Another minute on, an unknown kid: exactly one refetch, then 401.
    jump_ahead(Duration::from_secs(61)).await;
    let unknown = token("made-up", &rotated_rsa_key(), "mallory");
    let answer = app.get_with("/get_sts_token", &[bearer(&unknown)]).await;
    check_refusal(
        "unknown kid",
        &answer,
        &unknown,
        "unknown_key",
        &mut problems,
    );
    assert_eq!(jwks.hits(), 3, "an unknown kid refetches the JWKS once");

    // A flood of made-up kids within that minute costs the key server nothing more.
    let made_up: Vec<String> = (0..20)
        .map(|i| token(&format!("made-up-{i}"), &rotated_rsa_key(), "mallory"))
        .collect();
    let flood: Vec<Headers> = made_up.iter().map(|t| vec![bearer(t)]).collect();
    let answers = app.get_all("/get_sts_token", flood).await;
    for (i, (answer, sent)) in answers.iter().zip(&made_up).enumerate() {
        let case = format!("made-up kid {i}");
        check_refusal(&case, answer, sent, "unknown_key", &mut problems);
    }
    assert_eq!(jwks.hits(), 3, "at most one refetch a minute");
    // rsa-1 was withdrawn by the rotation; rsa-2 keeps working.
    let withdrawn = app.get_with("/get_sts_token", &[bearer(&known)]).await;
    check_refusal(
        "withdrawn kid",
        &withdrawn,
        &known,
        "unknown_key",
        &mut problems,
    );
    assert_eq!(
        app.get_with("/get_sts_token", &[bearer(&rotated)])
            .await
            .status,
        200
    );
    assert_eq!(jwks.hits(), 3);
    assert_eq!(session_names(&mock), ["stsvend", "alice", "bob"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn an_unreachable_key_server_is_a_503_in_jwt_mode_and_the_guest_token_in_report_mode() {
    let closed = ClosedPort::new();
    let url = closed.url().to_string();
    let rs = sign_jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &jwt_claims("alice"),
        &rsa_key(),
    );
    for mode in ["jwt", "report"] {
        let mock = MockSts::start(vec![]).await;
        let app = jwt_app(&mock, &url, &[("STSVEND_AUTH", mode)]).await;
        let answer = app.get_with("/get_sts_token", &[bearer(&rs)]).await;
        if mode == "jwt" {
            assert_eq!(answer.status, 503, "{mode}: {}", answer.body);
            assert_eq!(answer.error_code().as_deref(), Some("jwt_keys_unavailable"));
            assert!(
                answer.header("retry-after").is_some(),
                "{mode}: Retry-After"
            );
            assert!(
                answer.header("www-authenticate").is_none(),
                "not the caller's fault"
            );
            assert!(!answer.mentions(&rs));
        } else {
            assert_eq!(answer.status, 200, "{mode}: {}", answer.body);
            assert_eq!(
                answer.access_key_id().as_deref(),
                Some(mock.issued()[0].access_key_id.as_str()),
                "{mode}: the guest token"
            );
        }
        // HS256 needs no key server.
        let hs = app
            .get_with("/get_sts_token", &[bearer(&hs256_jwt("carol"))])
            .await;
        assert_eq!(hs.status, 200, "{mode}: {}", hs.body);
        assert_eq!(session_names(&mock), ["stsvend", "carol"], "{mode}");
    }
}

#[tokio::test]
async fn report_mode_serves_the_guest_token_without_a_valid_jwt_and_a_personal_one_with_it() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_AUTH", "report"),
            ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
            ("STSVEND_JWT_ISSUER", JWT_ISSUER),
            ("STSVEND_JWT_AUDIENCE", JWT_AUDIENCE),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    let guest_key = mock.issued()[0].access_key_id.clone();
    assert_eq!(session_names(&mock), ["stsvend"]);

    let expired = sign_jwt(
        Algorithm::HS256,
        None,
        &claims_with("eve", "exp", json!(unix_now() - 3600)),
        &hs256_key(),
    );
    let forged = sign_jwt(
        Algorithm::HS256,
        None,
        &jwt_claims("eve"),
        &EncodingKey::from_secret(b"not-the-configured-secret-but-long-enough"),
    );
    // (case, headers, the reason report mode logs)
    let would_deny: Vec<(&str, Headers, &str)> = vec![
        ("no token", vec![], "missing_token"),
        ("garbage", vec![bearer("garbage")], "malformed_token"),
        ("expired", vec![bearer(&expired)], "token_expired"),
        ("bad signature", vec![bearer(&forged)], "bad_signature"),
    ];
    for (case, headers, _) in &would_deny {
        let answer = app.get_with("/get_sts_token", headers).await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.body);
        assert_eq!(
            answer.access_key_id().as_deref(),
            Some(guest_key.as_str()),
            "{case}: the shared guest token"
        );
    }
    assert_eq!(mock.calls(), 1, "the guest token is the shared one");

    let answer = app
        .get_with("/get_sts_token", &[bearer(&hs256_jwt("dave"))])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let personal = answer.access_key_id().unwrap();
    assert_ne!(personal, guest_key, "a valid JWT gets a per-user token");
    assert_eq!(
        session_names(&mock),
        ["stsvend", session_name("dave").as_str()]
    );

    // Each would-be denial is logged once with its reason; the valid one is not; no token is.
    let reasons: Vec<String> = logs
        .events()
        .into_iter()
        .filter(|event| {
            event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("report mode"))
        })
        .map(|event| event["fields"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    let expected: Vec<&str> = would_deny.iter().map(|(_, _, reason)| *reason).collect();
    assert_eq!(reasons, expected);
    let logged = logs.text();
    for token in [&expired, &forged] {
        assert!(!logged.contains(token.as_str()), "the log shows a token");
    }
    assert!(!logged.contains(&personal) && !logged.contains(&guest_key));
}
