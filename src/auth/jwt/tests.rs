//! JWT verification tested through [`JwtVerifier`] with the keys in `tests/fixtures/jwt/`, a
//! JWKS server on 127.0.0.1, and a few direct checks of the JWKS parsing and fetching.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, TimeZone};
use jsonwebtoken::{EncodingKey, encode};
use serde_json::{Value, json};

use super::limits::JWKS_RETRY_WITHOUT_KEYS_SECONDS;
use super::*;

const SECRET: &str = "an-hs256-secret-that-is-long-enough";
const ISSUER: &str = "https://login.example.com";
const AUDIENCE: &str = "stsvend";
const ALL: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    now() + TimeDelta::seconds(seconds)
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A verifier built from `config` with a JWKS file holding `contents`. The file is read
/// once, at setup, so it is removed again right after.
fn with_jwks_file(
    name: &str,
    contents: &str,
    config: JwtConfig,
) -> Result<JwtVerifier, JwtSetupError> {
    let path = std::env::temp_dir().join(format!("stsvend-jwt-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    let result = JwtVerifier::new(JwtConfig {
        jwks_file: Some(path.clone()),
        ..config
    });
    let _ = std::fs::remove_file(&path);
    result
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap()
}

fn rotated_rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa_rotated_private.pem")).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture("ec_private.pem")).unwrap()
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}

/// Claims that pass every check at `now()`.
fn claims() -> Value {
    let now = now().timestamp();
    json!({"sub": "user-42", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600})
}

fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

fn claims_without(key: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, None, claims, &hs_key())
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HS256 secret and the JWKS file, `iss` and `aud` required.
fn config(algorithms: &[Algorithm]) -> JwtConfig {
    JwtConfig {
        hs256_secret: Some(SecretString::from(SECRET)),
        jwks_url: None,
        jwks_file: Some(fixture_path("jwks.json")),
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        algorithms: algorithms.to_vec(),
    }
}

fn verifier(algorithms: &[Algorithm]) -> JwtVerifier {
    JwtVerifier::new(config(algorithms)).unwrap()
}

/// Verifies, and checks that a refusal does not echo the token or any sizeable part of it.
async fn verify_at(
    verifier: &JwtVerifier,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Arc<Claims>, JwtError> {
    let result = verifier.verify(token, now).await;
    if let Err(error) = &result {
        let shown = format!("{} {error} {error:?}", error.description());
        for piece in std::iter::once(token).chain(token.split('.')) {
            if piece.len() >= 8 {
                assert!(!shown.contains(piece), "{shown:?} echoes the token");
            }
        }
    }
    result
}

async fn verify(verifier: &JwtVerifier, token: &str) -> Result<Arc<Claims>, JwtError> {
    verify_at(verifier, token, now()).await
}

fn user_42() -> Result<Arc<Claims>, JwtError> {
    Ok(Arc::new(Claims::new(
        "user-42".to_owned(),
        Some(ISSUER.to_owned()),
    )))
}

/// The same token with the first signature character changed.
fn flip_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut signature = signature.to_owned();
    let first = if signature.starts_with('A') { "B" } else { "A" };
    signature.replace_range(0..1, first);
    format!("{signed}.{signature}")
}

#[tokio::test]
async fn valid_hs256_rs256_and_es256_tokens_verify() {
    let verifier = verifier(&ALL);
    let cases = [
        ("HS256", hs256(&claims())),
        (
            "RS256 by kid",
            sign(Algorithm::RS256, Some("rsa-1"), &claims(), &rsa_key()),
        ),
        (
            "RS256 without kid, the only RSA key",
            sign(Algorithm::RS256, None, &claims(), &rsa_key()),
        ),
        (
            "ES256 by kid",
            sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec_key()),
        ),
        (
            "ES256 without kid, the only P-256 key",
            sign(Algorithm::ES256, None, &claims(), &ec_key()),
        ),
    ];
    for (what, token) in cases {
        assert_eq!(verify(&verifier, &token).await, user_42(), "{what}");
    }
}

#[tokio::test]
async fn exp_and_nbf_are_checked_against_the_given_time_with_leeway() {
    let verifier = verifier(&ALL);
    let t = now().timestamp();
    let cases = [
        (
            "expired long ago",
            json!(t - 3600),
            None,
            Err(JwtError::Expired),
        ),
        (
            "expired at the leeway",
            json!(t - LEEWAY_SECONDS),
            None,
            Err(JwtError::Expired),
        ),
        ("expired, within leeway", json!(t - 10), None, user_42()),
        (
            "just within leeway",
            json!(t - LEEWAY_SECONDS + 1),
            None,
            user_42(),
        ),
        ("fractional exp", json!(t as f64 + 600.5), None, user_42()),
        (
            "nbf beyond leeway",
            json!(t + 600),
            Some(json!(t + LEEWAY_SECONDS + 1)),
            Err(JwtError::NotYetValid),
        ),
        (
            "nbf within leeway",
            json!(t + 600),
            Some(json!(t + 20)),
            user_42(),
        ),
        (
            "nbf in the past",
            json!(t + 600),
            Some(json!(t - 20)),
            user_42(),
        ),
    ];
    for (what, exp, nbf, expected) in cases {
        let mut claims = claims_with("exp", exp);
        if let Some(nbf) = nbf {
            claims["nbf"] = nbf;
        }
        assert_eq!(verify(&verifier, &hs256(&claims)).await, expected, "{what}");
    }
    // The time is the caller's: the same token is fine earlier and expired later.
    let token = hs256(&claims());
    assert_eq!(verify_at(&verifier, &token, at(600)).await, user_42());
    assert_eq!(
        verify_at(&verifier, &token, at(600 + LEEWAY_SECONDS)).await,
        Err(JwtError::Expired)
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let strict = verifier(&ALL);
    let cases = [
        (
            "wrong iss",
            claims_with("iss", json!("https://evil.example.com")),
            Err(JwtError::WrongIssuer),
        ),
        ("no iss", claims_without("iss"), Err(JwtError::WrongIssuer)),
        (
            "wrong aud",
            claims_with("aud", json!("someone-else")),
            Err(JwtError::WrongAudience),
        ),
        (
            "aud array without us",
            claims_with("aud", json!(["a", "b"])),
            Err(JwtError::WrongAudience),
        ),
        (
            "empty aud array",
            claims_with("aud", json!([])),
            Err(JwtError::WrongAudience),
        ),
        (
            "no aud",
            claims_without("aud"),
            Err(JwtError::WrongAudience),
        ),
        (
            "aud array with us",
            claims_with("aud", json!(["a", AUDIENCE])),
            user_42(),
        ),
    ];
    for (what, claims, expected) in cases {
        assert_eq!(verify(&strict, &hs256(&claims)).await, expected, "{what}");
    }

    let lax = JwtVerifier::new(JwtConfig {
        issuer: None,
        audience: None,
        ..config(&ALL)
    })
    .unwrap();
    for claims in [
        claims_with("iss", json!("https://anyone.example.com")),
        claims_without("iss"),
        claims_with("aud", json!(["anything"])),
        claims_without("aud"),
    ] {
        let subject = verify(&lax, &hs256(&claims))
            .await
            .map(|c| c.subject().to_owned());
        assert_eq!(
            subject,
            user_42().map(|c| c.subject().to_owned()),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_subject_is_required() {
    let verifier = verifier(&ALL);
    for claims in [claims_without("sub"), claims_with("sub", json!(""))] {
        assert_eq!(
            verify(&verifier, &hs256(&claims)).await,
            Err(JwtError::MissingSubject),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_changed_signature_or_payload_does_not_verify() {
    let verifier = verifier(&ALL);
    let tokens = [
        hs256(&claims()),
        sign(Algorithm::RS256, Some("rsa-1"), &claims(), &rsa_key()),
        sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec_key()),
    ];
    for token in tokens {
        assert_eq!(
            verify(&verifier, &flip_signature(&token)).await,
            Err(JwtError::BadSignature),
            "{token}"
        );
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = b64(claims_with("sub", json!("admin")).to_string());
        assert_eq!(
            verify(&verifier, &parts.join(".")).await,
            Err(JwtError::BadSignature),
            "{token}"
        );
    }
    // Right kid, wrong private key.
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(),
        &rotated_rsa_key(),
    );
    assert_eq!(verify(&verifier, &token).await, Err(JwtError::BadSignature));
    // A token signed with another secret.
    let other = EncodingKey::from_secret(b"another-secret-that-is-long-enough!!");
    let token = sign(Algorithm::HS256, None, &claims(), &other);
    assert_eq!(verify(&verifier, &token).await, Err(JwtError::BadSignature));
    // An empty signature.
    let token = hs256(&claims());
    let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
    assert_eq!(
        verify(&verifier, &unsigned).await,
        Err(JwtError::BadSignature)
    );
}

#[tokio::test]
async fn alg_none_is_rejected_in_every_spelling() {
    let verifier = verifier(&ALL);
    let payload = b64(claims().to_string());
    // `eyJhbGciOiJub25lIn0` is `{"alg":"none"}`.
    let mut tokens = vec![
        format!("eyJhbGciOiJub25lIn0.{payload}."),
        format!("eyJhbGciOiJub25lIn0.{payload}.c2lnbmF0dXJl"),
    ];
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"alg":"nOnE"}"#,
        r#"{"alg":""}"#,
        r#"{"alg":"hs256"}"#,
    ] {
        tokens.push(format!("{}.{payload}.", b64(header)));
    }
    for token in tokens {
        assert_eq!(
            verify(&verifier, &token).await,
            Err(JwtError::AlgorithmNotAllowed),
            "{token}"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    // The classic confusion: an attacker signs HS256 using the public key as the secret,
    // hoping the server verifies HS256 with "the key for this kid".
    let public_pem = fixture("rsa_public.pem");
    let forged_key = EncodingKey::from_secret(&public_pem);
    for kid in [Some("rsa-1"), None] {
        let forged = sign(Algorithm::HS256, kid, &claims(), &forged_key);
        let rs256_only = verifier(&[Algorithm::RS256]);
        assert_eq!(
            verify(&rs256_only, &forged).await,
            Err(JwtError::AlgorithmNotAllowed)
        );
        let both = verifier(&[Algorithm::HS256, Algorithm::RS256]);
        assert_eq!(verify(&both, &forged).await, Err(JwtError::BadSignature));
    }
    // The same with the raw modulus as the secret, in case a verifier used the JWK bytes.
    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let modulus = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let forged = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &claims(),
        &EncodingKey::from_secret(&modulus),
    );
    let both = verifier(&[Algorithm::HS256, Algorithm::RS256]);
    assert_eq!(verify(&both, &forged).await, Err(JwtError::BadSignature));
}

#[tokio::test]
async fn an_hmac_token_is_never_checked_with_a_jwks_secret() {
    // A JWKS that (wrongly) publishes an `oct` key: it must not become an HMAC key.
    let leaked = b"a-secret-published-in-the-jwks-oops!";
    let jwks = json!({"keys": [
        {"kty": "oct", "kid": "oct-1", "k": b64(leaked)},
        serde_json::from_slice::<Value>(&fixture("jwks.json")).unwrap()["keys"][0],
    ]});
    let verifier = with_jwks_file(
        "oct.json",
        &jwks.to_string(),
        config(&[Algorithm::HS256, Algorithm::RS256]),
    )
    .unwrap();
    let forged = sign(
        Algorithm::HS256,
        Some("oct-1"),
        &claims(),
        &EncodingKey::from_secret(leaked),
    );
    assert_eq!(
        verify(&verifier, &forged).await,
        Err(JwtError::BadSignature)
    );
}

#[tokio::test]
async fn algorithms_outside_the_configured_list_are_rejected() {
    let cases = [
        (
            &[Algorithm::HS256, Algorithm::RS256][..],
            sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec_key()),
        ),
        (
            &[Algorithm::RS256],
            sign(Algorithm::HS256, None, &claims(), &hs_key()),
        ),
        (
            &ALL,
            sign(Algorithm::RS384, Some("rsa-1"), &claims(), &rsa_key()),
        ),
        (
            &ALL,
            sign(Algorithm::PS256, Some("rsa-1"), &claims(), &rsa_key()),
        ),
        (&ALL, sign(Algorithm::HS512, None, &claims(), &hs_key())),
    ];
    for (allowed, token) in cases {
        assert_eq!(
            verify(&verifier(allowed), &token).await,
            Err(JwtError::AlgorithmNotAllowed),
            "{allowed:?}"
        );
    }
}

#[tokio::test]
async fn a_kid_not_in_the_jwks_file_or_of_the_wrong_type_is_unknown() {
    let verifier = verifier(&ALL);
    let cases = [
        sign(Algorithm::RS256, Some("rsa-9"), &claims(), &rsa_key()),
        sign(Algorithm::RS256, Some("ec-1"), &claims(), &rsa_key()),
        sign(Algorithm::ES256, Some("rsa-1"), &claims(), &ec_key()),
    ];
    for token in cases {
        assert_eq!(
            verify(&verifier, &token).await,
            Err(JwtError::UnknownKey),
            "{token}"
        );
    }
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_any_key_is_used() {
    let verifier = verifier(&ALL);
    let good = hs256(&claims());
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let oversized = hs256(&claims_with("pad", json!("x".repeat(MAX_TOKEN_BYTES))));
    assert!(oversized.len() > MAX_TOKEN_BYTES);
    let signed_raw = |header: &str, payload: &str| {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &hs_key(), Algorithm::HS256).unwrap();
        format!("{message}.{signature}")
    };
    let alg = r#"{"alg":"HS256"}"#;
    let cases = [
        ("empty", String::new()),
        ("garbage", "garbage".to_owned()),
        ("unicode garbage", "令牌.令牌.令牌".to_owned()),
        ("two parts", format!("{header}.{payload}")),
        ("four parts", format!("{good}.")),
        ("three dots", "...".to_owned()),
        ("two dots only", "..".to_owned()),
        ("empty header", format!(".{payload}.{signature}")),
        ("empty payload", format!("{header}..{signature}")),
        ("not base64url", format!("{header}.{payload}$.{signature}")),
        (
            "standard base64 alphabet",
            format!("{header}.{payload}.{}+/", &signature[2..]),
        ),
        ("padding", format!("{header}=.{payload}.{signature}")),
        ("whitespace", format!(" {good}")),
        ("bearer prefix", format!("Bearer {good}")),
        ("oversized", oversized),
        (
            "header not JSON",
            format!("{}.{payload}.{signature}", b64("not json")),
        ),
        (
            "header without alg",
            format!("{}.{payload}.{signature}", b64(r#"{"typ":"JWT"}"#)),
        ),
        (
            "alg not a string",
            format!("{}.{payload}.{signature}", b64(r#"{"alg":256}"#)),
        ),
        (
            "duplicate alg",
            format!(
                "{}.{payload}.{signature}",
                b64(r#"{"alg":"HS256","alg":"none"}"#)
            ),
        ),
        (
            "crit header",
            format!(
                "{}.{payload}.{signature}",
                b64(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#)
            ),
        ),
        ("signed payload not JSON", signed_raw(alg, "not json")),
        ("signed payload an array", signed_raw(alg, "[1,2]")),
        (
            "header an array",
            format!("{}.{payload}.{signature}", b64(r#"["HS256"]"#)),
        ),
        ("no exp", hs256(&claims_without("exp"))),
        (
            "exp a string",
            hs256(&claims_with("exp", json!("tomorrow"))),
        ),
        ("iat a string", hs256(&claims_with("iat", json!("today")))),
        ("aud a number", hs256(&claims_with("aud", json!(42)))),
        ("sub a number", hs256(&claims_with("sub", json!(42)))),
    ];
    for (what, token) in cases {
        assert_eq!(
            verify(&verifier, &token).await,
            Err(JwtError::Malformed),
            "{what}"
        );
    }
}

#[test]
fn codes_are_stable_and_descriptions_are_sentences() {
    let all = [
        (JwtError::Malformed, "malformed_token"),
        (JwtError::AlgorithmNotAllowed, "algorithm_not_allowed"),
        (JwtError::UnknownKey, "unknown_key"),
        (JwtError::BadSignature, "bad_signature"),
        (JwtError::Expired, "token_expired"),
        (JwtError::NotYetValid, "token_not_yet_valid"),
        (JwtError::WrongIssuer, "wrong_issuer"),
        (JwtError::WrongAudience, "wrong_audience"),
        (JwtError::MissingSubject, "missing_subject"),
        (JwtError::KeysUnavailable, "keys_unavailable"),
    ];
    for (error, code) in all {
        assert_eq!(error.code(), code);
        let description = error.description();
        assert!(description.ends_with('.'), "{description}");
        assert!(description.starts_with(char::is_uppercase), "{description}");
    }
}

#[test]
fn setup_refuses_algorithms_without_a_key_source() {
    let no_secret = JwtConfig {
        hs256_secret: None,
        ..config(&ALL)
    };
    assert!(matches!(
        JwtVerifier::new(no_secret),
        Err(JwtSetupError::MissingSecret(Algorithm::HS256))
    ));
    let no_jwks = JwtConfig {
        jwks_file: None,
        ..config(&[Algorithm::HS256, Algorithm::ES256])
    };
    assert!(matches!(
        JwtVerifier::new(no_jwks),
        Err(JwtSetupError::MissingJwks(Algorithm::ES256))
    ));
    // HS256 alone needs no JWKS; RS256 alone needs no secret.
    JwtVerifier::new(JwtConfig {
        jwks_file: None,
        ..config(&[Algorithm::HS256])
    })
    .unwrap();
    JwtVerifier::new(JwtConfig {
        hs256_secret: None,
        ..config(&[Algorithm::RS256])
    })
    .unwrap();
    assert!(matches!(
        JwtVerifier::new(config(&[])),
        Err(JwtSetupError::NoAlgorithms)
    ));
    // jwks.json has no P-384 key, and there is no URL that might bring one.
    assert!(matches!(
        JwtVerifier::new(config(&[Algorithm::HS256, Algorithm::ES384])),
        Err(JwtSetupError::NoKeyForAlgorithms { .. })
    ));
    // A file that covers one of the allowed algorithms is enough.
    JwtVerifier::new(config(&[Algorithm::ES256, Algorithm::ES384])).unwrap();
}

#[test]
fn setup_refuses_a_short_secret_without_showing_it() {
    let short = "only-31-bytes-of-secret-1234567";
    assert_eq!(short.len(), 31);
    let error = JwtVerifier::new(JwtConfig {
        hs256_secret: Some(SecretString::from(short)),
        ..config(&ALL)
    })
    .unwrap_err();
    assert!(matches!(error, JwtSetupError::SecretTooShort));
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(short) && !shown.contains("31"), "{shown}");
}

#[test]
fn setup_reports_an_unreadable_or_invalid_jwks_file() {
    let missing = JwtConfig {
        jwks_file: Some(fixture_path("no-such-file.json")),
        ..config(&ALL)
    };
    let error = JwtVerifier::new(missing).unwrap_err();
    assert!(matches!(error, JwtSetupError::JwksFileUnreadable { .. }));
    assert!(error.to_string().contains("no-such-file.json"), "{error}");

    let cases = [
        ("pem.json", String::from_utf8(fixture("rsa_public.pem")).unwrap()),
        ("no-keys.json", r#"{"keys": []}"#.to_owned()),
        ("array.json", "[]".to_owned()),
        (
            "only-unusable.json",
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]})
                .to_string(),
        ),
    ];
    for (name, contents) in cases {
        let error = with_jwks_file(name, &contents, config(&ALL)).unwrap_err();
        assert!(
            matches!(error, JwtSetupError::JwksFileInvalid { .. }),
            "{name}: {error}"
        );
    }
}

#[test]
fn only_usable_signature_keys_are_taken_from_a_jwks() {
    let good: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let rsa = good["keys"][0].clone();
    let ec = good["keys"][1].clone();
    let with = |key: &Value, field: &str, value: Value| {
        let mut key = key.clone();
        key[field] = value;
        key
    };
    let jwks = json!({"keys": [
        rsa,
        ec,
        with(&rsa, "use", json!("enc")),
        with(&rsa, "alg", json!("RSA-OAEP")),
        with(&rsa, "alg", json!("ES256")),
        with(&rsa, "n", json!(b64([0xff; 128]))),
        with(&ec, "x", json!("AAAA")),
        with(&ec, "crv", json!("P-521")),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
        {"kty": "whatever"},
        "not an object",
    ]});
    let keys = KeySet::from_json(jwks.to_string().as_bytes()).unwrap();
    let kinds: Vec<_> = keys
        .keys
        .iter()
        .map(|k| (k.kid.as_deref(), k.kind))
        .collect();
    assert_eq!(
        kinds,
        [(Some("rsa-1"), KeyKind::Rsa), (Some("ec-1"), KeyKind::P256)]
    );
    // A key whose JWK names an algorithm serves only that one.
    assert!(
        keys.find(Algorithm::RS256, KeyKind::Rsa, Some("rsa-1"))
            .is_some()
    );
    assert!(
        keys.find(Algorithm::PS256, KeyKind::Rsa, Some("rsa-1"))
            .is_none()
    );
}

#[test]
fn debug_output_shows_no_secret_and_no_url_query() {
    let config = JwtConfig {
        jwks_url: Some(
            "https://user:pass@login.example.com/jwks.json?access_token=query-secret"
                .parse()
                .unwrap(),
        ),
        ..config(&ALL)
    };
    let verifier = JwtVerifier::new(config.clone()).unwrap();
    let shown = format!("{config:?} {verifier:?}");
    for hidden in [SECRET, "query-secret", "pass"] {
        assert!(!shown.contains(hidden), "{hidden} in {shown}");
    }
    assert!(shown.contains("login.example.com/jwks.json"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

#[test]
fn verification_can_run_in_a_spawned_task() {
    fn send_and_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let verifier = verifier(&ALL);
    send_and_sync(&verifier);
    send(verifier.verify("x", now()));
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests and answers what it is told.
struct KeyServer {
    url: Url,
    state: ServerState,
}

#[derive(Clone)]
struct ServerState {
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(StatusCode, Vec<u8>)>>,
}

impl KeyServer {
    async fn start(body: Vec<u8>) -> Self {
        async fn answer(State(state): State<ServerState>) -> (StatusCode, Vec<u8>) {
            state.hits.fetch_add(1, Ordering::SeqCst);
            state.answer.lock().unwrap().clone()
        }
        let state = ServerState {
            hits: Arc::new(AtomicUsize::new(0)),
            answer: Arc::new(Mutex::new((StatusCode::OK, body))),
        };
        let app = axum::Router::new()
            .route("/keys", axum::routing::get(answer))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let url = format!("http://{address}/keys?access_token=query-secret")
            .parse()
            .unwrap();
        Self { url, state }
    }

    fn answer(&self, status: StatusCode, body: Vec<u8>) {
        *self.state.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn verifier(&self) -> JwtVerifier {
        JwtVerifier::new(JwtConfig {
            hs256_secret: None,
            jwks_url: Some(self.url.clone()),
            jwks_file: None,
            ..config(&[Algorithm::RS256, Algorithm::ES256])
        })
        .unwrap()
    }
}

fn rs256(kid: &str) -> String {
    sign(Algorithm::RS256, Some(kid), &claims(), &rsa_key())
}

/// Claims valid for the whole of a test that moves time forward by up to an hour.
fn long_claims() -> Value {
    claims_with("exp", json!(now().timestamp() + 7200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_url_is_fetched_once_on_first_use_even_by_concurrent_callers() {
    let server = KeyServer::start(fixture("jwks.json")).await;
    let verifier = server.verifier();
    assert_eq!(server.hits(), 0, "fetched lazily, not at setup");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let verifier = verifier.clone();
        tasks.spawn(async move { verifier.verify(&rs256("rsa-1"), now()).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap(), user_42());
    }
    assert_eq!(server.hits(), 1);
    let es256 = sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec_key());
    assert_eq!(verify_at(&verifier, &es256, at(1)).await, user_42());
    assert_eq!(server.hits(), 1, "served from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_at_most_once_a_minute() {
    let server = KeyServer::start(fixture("jwks.json")).await;
    let verifier = server.verifier();
    let claims = long_claims();
    let token = |kid: &str| sign(Algorithm::RS256, Some(kid), &claims, &rsa_key());
    assert_eq!(verify(&verifier, &token("rsa-1")).await, user_42());
    assert_eq!(server.hits(), 1);

    // Within the minute after the first fetch: no refetch at all.
    assert_eq!(
        verify_at(&verifier, &token("rsa-new"), at(30)).await,
        Err(JwtError::UnknownKey)
    );
    assert_eq!(server.hits(), 1);

    // A minute on: exactly one refetch, shared by concurrent callers, then still unknown.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let verifier = verifier.clone();
        let token = token(&format!("made-up-{i}"));
        tasks.spawn(async move { verifier.verify(&token, at(61)).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap(), Err(JwtError::UnknownKey));
    }
    assert_eq!(server.hits(), 2);

    // Another unknown kid within that minute: no new fetch; known keys keep working.
    assert_eq!(
        verify_at(&verifier, &token("another"), at(100)).await,
        Err(JwtError::UnknownKey)
    );
    assert_eq!(
        verify_at(&verifier, &token("rsa-1"), at(100)).await,
        user_42()
    );
    assert_eq!(server.hits(), 2);

    // And a minute after the refetch, one more.
    assert_eq!(
        verify_at(&verifier, &token("another"), at(122)).await,
        Err(JwtError::UnknownKey)
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_rotated_key_verifies_after_a_refetch() {
    let server = KeyServer::start(fixture("jwks.json")).await;
    let verifier = server.verifier();
    let claims = long_claims();
    let old = sign(Algorithm::RS256, Some("rsa-1"), &claims, &rsa_key());
    let new = sign(Algorithm::RS256, Some("rsa-2"), &claims, &rotated_rsa_key());
    assert_eq!(verify(&verifier, &old).await, user_42());

    server.answer(StatusCode::OK, fixture("jwks_rotated.json"));
    assert_eq!(verify_at(&verifier, &new, at(61)).await, user_42());
    assert_eq!(server.hits(), 2);
    // The withdrawn key is gone with the old document.
    assert_eq!(
        verify_at(&verifier, &old, at(62)).await,
        Err(JwtError::UnknownKey)
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn cached_keys_are_refreshed_when_old_and_kept_if_the_refresh_fails() {
    let server = KeyServer::start(fixture("jwks.json")).await;
    let verifier = server.verifier();
    let claims = long_claims();
    let old = sign(Algorithm::RS256, Some("rsa-1"), &claims, &rsa_key());
    assert_eq!(verify(&verifier, &old).await, user_42());

    // Old keys, key server down: one failed refresh, and the cached keys still serve.
    server.answer(StatusCode::SERVICE_UNAVAILABLE, b"down".to_vec());
    let later = JWKS_MAX_AGE_SECONDS + 1;
    assert_eq!(verify_at(&verifier, &old, at(later)).await, user_42());
    assert_eq!(server.hits(), 2);
    assert_eq!(verify_at(&verifier, &old, at(later + 10)).await, user_42());
    assert_eq!(server.hits(), 2, "no retry within the minute");

    // The issuer withdrew `rsa-1`: the next refresh drops it without a restart.
    server.answer(StatusCode::OK, fixture("jwks_rotated.json"));
    assert_eq!(
        verify_at(&verifier, &old, at(later + 61)).await,
        Err(JwtError::UnknownKey)
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn without_cached_keys_a_failed_fetch_is_keys_unavailable_and_retried_soon() {
    let server = KeyServer::start(b"<html>oops</html>".to_vec()).await;
    let verifier = server.verifier();
    let token = rs256("rsa-1");
    assert_eq!(
        verify(&verifier, &token).await,
        Err(JwtError::KeysUnavailable)
    );
    assert_eq!(
        verify_at(&verifier, &token, at(1)).await,
        Err(JwtError::KeysUnavailable)
    );
    assert_eq!(server.hits(), 1, "failures are rate-limited too");

    server.answer(StatusCode::OK, fixture("jwks.json"));
    let retry = JWKS_RETRY_WITHOUT_KEYS_SECONDS;
    assert_eq!(verify_at(&verifier, &token, at(retry)).await, user_42());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn fetch_failures_are_reported_without_the_url_query() {
    let server = KeyServer::start(Vec::new()).await;
    let remote = RemoteJwks::new(server.url.clone()).unwrap();
    let cases = [
        (StatusCode::NOT_FOUND, b"query-secret".to_vec(), "HTTP 404"),
        (StatusCode::OK, b"query-secret".to_vec(), "not a JWKS"),
        (
            StatusCode::OK,
            vec![b' '; MAX_JWKS_BYTES + 1],
            "larger than",
        ),
    ];
    for (status, body, expected) in cases {
        server.answer(status, body);
        let error = remote.fetch().await.err().unwrap().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("query-secret"), "{error}");
    }

    // Nothing listening: a transport error, without the URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url: Url = format!("http://127.0.0.1:{port}/keys?access_token=query-secret")
        .parse()
        .unwrap();
    let error = RemoteJwks::new(url.clone())
        .unwrap()
        .fetch()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(!error.contains("query-secret"), "{error}");
    let verifier = JwtVerifier::new(JwtConfig {
        jwks_url: Some(url),
        jwks_file: None,
        ..config(&[Algorithm::RS256])
    })
    .unwrap();
    assert_eq!(
        verify(&verifier, &rs256("rsa-1")).await,
        Err(JwtError::KeysUnavailable)
    );
    assert_eq!(
        redacted_url(&server.url),
        format!("http://{}/keys", server.url.authority())
    );
}

#[tokio::test]
async fn the_jwks_file_is_consulted_before_the_url() {
    let server = KeyServer::start(fixture("jwks_rotated.json")).await;
    let verifier = JwtVerifier::new(JwtConfig {
        jwks_url: Some(server.url.clone()),
        ..config(&ALL)
    })
    .unwrap();
    assert_eq!(verify(&verifier, &rs256("rsa-1")).await, user_42());
    assert_eq!(server.hits(), 0);
    let new = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &claims(),
        &rotated_rsa_key(),
    );
    assert_eq!(verify(&verifier, &new).await, user_42());
    assert_eq!(server.hits(), 1);
}

// --- Verifications remembered (`verified.rs`).

#[tokio::test]
async fn a_token_verified_once_is_not_verified_again() {
    let verifier = verifier(&ALL);
    let token = rs256("rsa-1");
    assert_eq!(verify(&verifier, &token).await, user_42());
    assert_eq!(verifier.signatures_checked(), 1);
    for seconds in [0, 1, 300, 600 + LEEWAY_SECONDS - 1] {
        assert_eq!(verify_at(&verifier, &token, at(seconds)).await, user_42());
    }
    assert_eq!(verifier.signatures_checked(), 1, "answered from memory");
    // Clones share what was remembered.
    assert_eq!(verify(&verifier.clone(), &token).await, user_42());
    assert_eq!(verifier.signatures_checked(), 1);
    // And only the hash of the token is kept.
    let entry = verifier
        .inner
        .verified
        .get(&verified::hash(&token), now().timestamp());
    assert!(!format!("{:?}", entry.unwrap().verified).contains(&token[..20]));

    verifier.forget_verified();
    assert_eq!(verify(&verifier, &token).await, user_42());
    assert_eq!(
        verifier.signatures_checked(),
        2,
        "forgotten: verified in full"
    );
}

/// The token path's check without an await: only what is remembered, the same answer as
/// `verify`; anything else is left to `verify` (`None`), which looks the token up again (a hash)
/// but checks no signature twice.
#[tokio::test]
async fn verify_now_answers_only_what_is_remembered() {
    let verifier = verifier(&ALL);
    let token = rs256("rsa-1");
    assert!(
        verifier.verify_now(&token, now()).is_none(),
        "not verified yet"
    );
    assert_eq!(verifier.signatures_checked(), 0);
    let first = verify(&verifier, &token).await.unwrap();
    let again = verifier.verify_now(&token, at(300)).unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(verifier.signatures_checked(), 1);
    // Expired (`exp` is now + 600) but still remembered: the refusal `verify` gives, with no
    // signature checked.
    let expired_at = at(600 + LEEWAY_SECONDS);
    assert_eq!(
        verifier.verify_now(&token, expired_at),
        Some(Err(JwtError::Expired))
    );
    assert_eq!(
        verify_at(&verifier, &token, expired_at).await,
        Err(JwtError::Expired)
    );
    assert_eq!(verifier.signatures_checked(), 1);
    // Past what memory keeps: left to `verify`.
    assert!(verifier.verify_now(&token, at(3600 * 24)).is_none());
    assert_eq!(
        verifier
            .verify_now("a".repeat(64 << 10), now())
            .map(|answer| answer.err()),
        Some(Some(JwtError::Malformed)),
    );
    verifier.forget_verified();
    assert!(verifier.verify_now(&token, at(300)).is_none(), "forgotten");
}

#[tokio::test]
async fn a_remembered_token_hands_out_the_claims_its_verification_derived() {
    let verifier = verifier(&ALL);
    let token = rs256("rsa-1");
    let first = verify(&verifier, &token).await.unwrap();
    // What the token path keys and names the caller by, worked out with the claims.
    assert_eq!(
        first.caller_id(),
        crate::auth::subject::caller_id(Some(ISSUER), "user-42")
    );
    assert_eq!(&**first.session_name(), "user-42");
    // A hit shares that one value: no copy, nothing derived again.
    let again = verify_at(&verifier, &token, at(300)).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(verifier.signatures_checked(), 1);
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_expired_or_before_its_nbf() {
    let verifier = verifier(&ALL);
    let t = now().timestamp();
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims_with("nbf", json!(t + 20)),
        &rsa_key(),
    );
    assert_eq!(verify(&verifier, &token).await, user_42());
    // The same leeway as a full verification: `exp` is now + 600.
    assert_eq!(
        verify_at(&verifier, &token, at(600 + LEEWAY_SECONDS - 1)).await,
        user_42()
    );
    assert_eq!(
        verify_at(&verifier, &token, at(600 + LEEWAY_SECONDS)).await,
        Err(JwtError::Expired)
    );
    // A request carrying an earlier time (clocks differ between threads and hosts): valid
    // from nbf - leeway, as in a full verification.
    assert_eq!(
        verify_at(&verifier, &token, at(20 - LEEWAY_SECONDS)).await,
        user_42()
    );
    assert_eq!(
        verify_at(&verifier, &token, at(20 - LEEWAY_SECONDS - 1)).await,
        Err(JwtError::NotYetValid)
    );
    assert_eq!(verifier.signatures_checked(), 1);
    // A full verification agrees at both edges.
    let fresh = self::verifier(&ALL);
    for (seconds, expected) in [
        (600 + LEEWAY_SECONDS, Err(JwtError::Expired)),
        (20 - LEEWAY_SECONDS - 1, Err(JwtError::NotYetValid)),
    ] {
        fresh.forget_verified();
        assert_eq!(verify_at(&fresh, &token, at(seconds)).await, expected);
    }
}

#[tokio::test]
async fn a_token_not_yet_valid_or_refused_is_not_remembered() {
    let verifier = verifier(&ALL);
    let t = now().timestamp();
    let early = hs256(&claims_with("nbf", json!(t + LEEWAY_SECONDS + 1)));
    assert_eq!(verify(&verifier, &early).await, Err(JwtError::NotYetValid));
    assert_eq!(verify(&verifier, &early).await, Err(JwtError::NotYetValid));
    assert_eq!(
        verifier.signatures_checked(),
        2,
        "each refusal was a full check"
    );
    // Valid later: verified then, not served from a remembered refusal.
    assert_eq!(verify_at(&verifier, &early, at(1)).await, user_42());
    assert_eq!(verifier.signatures_checked(), 3);

    let forged = flip_signature(&rs256("rsa-1"));
    for _ in 0..2 {
        assert_eq!(
            verify(&verifier, &forged).await,
            Err(JwtError::BadSignature)
        );
    }
    assert_eq!(verifier.signatures_checked(), 5);
    let (entries, _) = verifier.inner.verified.size();
    assert_eq!(entries, 1, "only the valid token is remembered");
}

#[tokio::test]
async fn the_same_claims_under_another_signature_are_verified_in_full() {
    let verifier = verifier(&ALL);
    let token = rs256("rsa-1");
    assert_eq!(verify(&verifier, &token).await, user_42());
    // Same header and claims, a different signature: a different hash, so a full check.
    assert_eq!(
        verify(&verifier, &flip_signature(&token)).await,
        Err(JwtError::BadSignature)
    );
    assert_eq!(verifier.signatures_checked(), 2);
    // Same claims signed another way: verified on its own merits, then remembered too.
    let es256 = sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec_key());
    assert_eq!(verify(&verifier, &es256).await, user_42());
    assert_eq!(verify(&verifier, &es256).await, user_42());
    assert_eq!(verify(&verifier, &token).await, user_42());
    assert_eq!(verifier.signatures_checked(), 3);
}

#[tokio::test]
async fn a_refetch_of_the_jwks_url_retires_what_its_old_keys_verified() {
    let server = KeyServer::start(fixture("jwks.json")).await;
    let verifier = server.verifier();
    let token = sign(Algorithm::RS256, Some("rsa-1"), &long_claims(), &rsa_key());
    assert_eq!(verify(&verifier, &token).await, user_42());
    assert_eq!(verify_at(&verifier, &token, at(60)).await, user_42());
    assert_eq!(verifier.signatures_checked(), 1);

    // Keys old and the key server down: one refresh attempt, the remembered answer stands.
    server.answer(StatusCode::SERVICE_UNAVAILABLE, b"down".to_vec());
    let later = JWKS_MAX_AGE_SECONDS + 1;
    // The refresh is `verify`'s to make: `verify_now` answers while the keys are fresh only.
    assert_eq!(verifier.verify_now(&token, at(60)), Some(user_42()));
    assert_eq!(verifier.verify_now(&token, at(later)), None);
    assert_eq!(server.hits(), 1);
    assert_eq!(verify_at(&verifier, &token, at(later)).await, user_42());
    assert_eq!((server.hits(), verifier.signatures_checked()), (2, 1));

    // A successful refetch (same keys): checked again once with the new key set, then
    // remembered again.
    server.answer(StatusCode::OK, fixture("jwks.json"));
    assert_eq!(
        verify_at(&verifier, &token, at(later + 61)).await,
        user_42()
    );
    assert_eq!((server.hits(), verifier.signatures_checked()), (3, 2));
    assert_eq!(
        verify_at(&verifier, &token, at(later + 62)).await,
        user_42()
    );
    assert_eq!(verifier.signatures_checked(), 2);
}

#[tokio::test]
async fn tokens_verified_with_the_secret_or_the_file_ignore_the_url_generation() {
    let server = KeyServer::start(fixture("jwks_rotated.json")).await;
    let verifier = JwtVerifier::new(JwtConfig {
        jwks_url: Some(server.url.clone()),
        ..config(&ALL)
    })
    .unwrap();
    let from_file = rs256("rsa-1");
    let from_secret = hs256(&claims());
    assert_eq!(verify(&verifier, &from_file).await, user_42());
    assert_eq!(verify(&verifier, &from_secret).await, user_42());
    // A token only the URL knows makes the verifier fetch it: a new generation.
    let from_url = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &claims(),
        &rotated_rsa_key(),
    );
    assert_eq!(verify(&verifier, &from_url).await, user_42());
    assert_eq!((server.hits(), verifier.signatures_checked()), (1, 3));
    for token in [&from_file, &from_secret, &from_url] {
        assert_eq!(verify_at(&verifier, token, at(1)).await, user_42());
    }
    assert_eq!(verifier.signatures_checked(), 3);
}

#[tokio::test]
async fn what_is_remembered_stays_within_its_bound() {
    // Each entry weighs VERIFIED_ENTRY_BYTES + its subject, issuer and session name; room for
    // about 10.
    let max_bytes = 10 * (super::limits::VERIFIED_ENTRY_BYTES as u64 + 40);
    let cache = verified::VerifiedCache::new(max_bytes);
    let t = now().timestamp();
    for i in 0..500u32 {
        let verified = Verified {
            claims: Arc::new(Claims::new(format!("user-{i:06}"), Some(ISSUER.to_owned()))),
            validity: claims::Validity {
                exp: t + 600,
                nbf: None,
            },
            remote_generation: None,
        };
        cache.insert(verified::hash(format!("token-{i}")), verified, t);
        let (entries, bytes) = cache.size();
        assert!(bytes <= max_bytes, "{bytes} bytes in {entries} entries");
        assert!(entries <= 10, "{entries} entries");
    }
    // Already expired: not worth an entry.
    let expired = Verified {
        claims: Arc::new(Claims::new("late".to_owned(), None)),
        validity: claims::Validity {
            exp: t - LEEWAY_SECONDS,
            nbf: None,
        },
        remote_generation: None,
    };
    let key = verified::hash("late");
    cache.insert(key, expired, t);
    assert!(cache.get(&key, t).is_none());
}
