//! JWT verification (`JwtVerifier::verify`): any string, any base64url parts, any header and
//! claims, never panic and never verify without the configured key; a good token verifies.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use stsvend::auth::jwt::{Claims, JwtConfig, JwtError, JwtVerifier, LEEWAY_SECONDS};
use tokio::runtime::Runtime;

use crate::{check, json_value};

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
const ISSUER: &str = "https://login.example.com";
const AUDIENCE: &str = "stsvend";

/// A fixed moment: verification takes the time as an argument.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// Verifies with HS256 (the secret above) and RS256 (the test JWKS file), so tokens can try to
/// pass one algorithm's key off as the other's.
struct Fixture {
    runtime: Runtime,
    verifier: JwtVerifier,
}

impl Fixture {
    fn new() -> Self {
        let jwks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/jwks.json");
        let verifier = JwtVerifier::new(JwtConfig {
            hs256_secret: Some(SecretString::from(SECRET)),
            jwks_url: None,
            jwks_file: Some(jwks),
            issuer: Some(ISSUER.to_owned()),
            audience: Some(AUDIENCE.to_owned()),
            algorithms: vec![Algorithm::HS256, Algorithm::RS256],
        })
        .expect("verifier");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self { runtime, verifier }
    }

    fn verify(&self, token: &str) -> Result<Arc<Claims>, JwtError> {
        self.runtime.block_on(self.verifier.verify(token, now()))
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HS256 over `signed` with `key`.
fn hs256(signed: &str, key: &[u8]) -> String {
    jsonwebtoken::crypto::sign(
        signed.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .expect("HMAC signs")
}

#[test]
fn jwt_arbitrary_strings_never_verify() {
    let fixture = Fixture::new();
    let token = prop_oneof![
        ".{0,300}",
        "[A-Za-z0-9_\\-.=+/ ]{0,300}",
        // Over the size cap, made of token characters.
        "[A-Za-z0-9_\\-.]{8190,8200}",
    ];
    check("jwt_arbitrary_strings", token, |token| {
        prop_assert!(fixture.verify(&token).is_err());
        Ok(())
    });
}

#[test]
fn jwt_arbitrary_base64url_segments_never_verify() {
    let fixture = Fixture::new();
    let segment = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(b64),
        json_value().prop_map(|v| b64(v.to_string())),
        "[A-Za-z0-9_\\-]{0,40}={0,2}",
    ];
    check(
        "jwt_arbitrary_base64url_segments",
        prop::collection::vec(segment, 0..6),
        |segments| {
            prop_assert!(fixture.verify(&segments.join(".")).is_err());
            Ok(())
        },
    );
}

/// How a generated token is signed.
#[derive(Debug, Clone)]
enum Signing {
    /// HS256 with the configured secret: only this may verify.
    RightKey,
    /// HS256 with some other key.
    WrongKey(Vec<u8>),
    /// An empty signature part.
    Empty,
    /// Random bytes.
    Garbage(Vec<u8>),
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        2 => Just(Signing::RightKey),
        1 => prop::collection::vec(any::<u8>(), 0..48)
            .prop_filter("another key", |key| key != SECRET.as_bytes())
            .prop_map(Signing::WrongKey),
        1 => Just(Signing::Empty),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Signing::Garbage),
    ]
}

/// Numbers and non-numbers where `exp`, `nbf` and `iat` go: huge, negative, fractional, the
/// edges of i64 and f64, strings, arrays.
fn date_value() -> impl Strategy<Value = Value> {
    let now = now().timestamp();
    prop_oneof![
        (-100_000_i64..100_000).prop_map(move |d| json!(now + d)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(f64::MAX)),
        json_value(),
    ]
}

fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        4 => prop::sample::select(vec![
            "HS256", "RS256", "none", "None", "NONE", "HS384", "HS512", "ES256", "EdDSA", "PS256",
            "hs256", "HS256 ", "",
        ])
        .prop_map(|a| Value::String(a.to_owned())),
        1 => json_value(),
    ];
    (
        prop::option::of(alg),
        prop::option::of(prop_oneof![Just(json!("rsa-1")), json_value()]),
        prop::option::of(json_value()),
        prop::option::of(Just(json!("JWT"))),
    )
        .prop_map(|(alg, kid, crit, typ)| {
            let mut object = serde_json::Map::new();
            for (key, value) in [("alg", alg), ("kid", kid), ("crit", crit), ("typ", typ)] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

fn claims() -> impl Strategy<Value = Value> {
    let text = |good: &'static str| {
        prop_oneof![
            3 => Just(json!(good)),
            1 => Just(json!(["other", good])),
            1 => json_value(),
        ]
    };
    (
        prop::option::of(date_value()),
        prop::option::of(date_value()),
        prop::option::of(date_value()),
        prop::option::of(text(ISSUER)),
        prop::option::of(text(AUDIENCE)),
        prop::option::of(prop_oneof![".{0,20}".prop_map(Value::String), json_value()]),
    )
        .prop_map(|(exp, nbf, iat, iss, aud, sub)| {
            let mut object = serde_json::Map::new();
            for (key, value) in [
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
            ] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

#[test]
fn jwt_arbitrary_header_and_claims_verify_only_with_the_right_key() {
    let fixture = Fixture::new();
    let header = prop_oneof![4 => header(), 1 => json_value()];
    let claims = prop_oneof![4 => claims(), 1 => json_value()];
    check(
        "jwt_arbitrary_header_and_claims",
        (header, claims, signing()),
        |(header, claims, signing)| {
            let signed = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
            let signature = match &signing {
                Signing::RightKey => hs256(&signed, SECRET.as_bytes()),
                Signing::WrongKey(key) => hs256(&signed, key),
                Signing::Empty => String::new(),
                Signing::Garbage(bytes) => b64(bytes),
            };
            let result = fixture.verify(&format!("{signed}.{signature}"));
            let Ok(verified) = result else {
                return Ok(());
            };
            // It verified: then it was signed with our secret, says HS256, and its claims hold.
            prop_assert!(
                matches!(signing, Signing::RightKey),
                "verified with {signing:?}"
            );
            prop_assert_eq!(&header["alg"], &json!("HS256"));
            prop_assert!(header.get("crit").is_none());
            prop_assert_eq!(&claims["iss"], &json!(ISSUER));
            let aud = &claims["aud"];
            prop_assert!(
                aud == &json!(AUDIENCE)
                    || aud.as_array().is_some_and(|a| a.contains(&json!(AUDIENCE)))
            );
            prop_assert_eq!(Some(verified.subject()), claims["sub"].as_str());
            let exp = claims["exp"].as_f64().expect("a numeric exp");
            prop_assert!(exp + LEEWAY_SECONDS as f64 > now().timestamp() as f64);
            Ok(())
        },
    );
}

#[test]
fn jwt_token_signed_with_the_right_key_and_valid_claims_verifies() {
    let fixture = Fixture::new();
    let now = now().timestamp();
    let cases = (
        ".{1,40}",
        // Valid from a moment ago to far ahead, as `exp`; `nbf` and `iat` at or before now.
        1_i64..10_000_000_000,
        prop::option::of(-1_000_000_i64..=0),
        prop::option::of(-1_000_000_i64..=1_000_000),
        any::<bool>(),
        prop::collection::vec(("x-[a-z]{1,8}", json_value()), 0..3),
    );
    check(
        "jwt_valid_hs256_verifies",
        cases,
        |(sub, exp_in, nbf_in, iat_in, aud_array, extra)| {
            let mut claims = json!({
                "sub": sub,
                "iss": ISSUER,
                "aud": if aud_array { json!(["other", AUDIENCE]) } else { json!(AUDIENCE) },
                "exp": now + exp_in,
            });
            if let Some(nbf) = nbf_in {
                claims["nbf"] = json!(now + nbf);
            }
            if let Some(iat) = iat_in {
                claims["iat"] = json!(now + iat);
            }
            for (key, value) in extra {
                claims[key] = value;
            }
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .expect("encodes");
            prop_assert_eq!(
                fixture.verify(&token),
                Ok(Arc::new(Claims::new(sub, Some(ISSUER.to_owned()))))
            );
            Ok(())
        },
    );
}
