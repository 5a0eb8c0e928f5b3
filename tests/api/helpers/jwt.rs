//! JWTs for the `jwt`-mode tests: the fixture keys under `tests/fixtures/jwt/`, claims that
//! pass every check, signing, and a fake key server (JWKS) that counts its hits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;

use super::fake::FakeServer;

/// The HS256 secret the protect tests configure (at least 32 bytes).
pub(crate) const JWT_SECRET: &str = "protect-tests-hs256-secret-0123456789abcdef";
pub(crate) const JWT_ISSUER: &str = "https://login.example.com";
pub(crate) const JWT_AUDIENCE: &str = "stsvend";

/// A file under `tests/fixtures/jwt/`.
pub(crate) fn jwt_fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

pub(crate) fn jwt_fixture(name: &str) -> Vec<u8> {
    let path = jwt_fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Seconds since the epoch, by the real clock (the service checks `exp` against it too).
pub(crate) fn unix_now() -> i64 {
    #[allow(clippy::disallowed_methods)] // tokens are checked against the real clock
    let now = Utc::now();
    now.timestamp()
}

/// Claims that pass every check (issuer, audience, an hour of validity) for `subject`.
pub(crate) fn jwt_claims(subject: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "sub": subject,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    })
}

/// A compact JWS of `claims` with `algorithm`, `kid` and `key`.
pub(crate) fn sign_jwt(
    algorithm: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("the test token signs")
}

pub(crate) fn hs256_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())
}

/// The private key of JWKS entry `rsa-1`.
pub(crate) fn rsa_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(&jwt_fixture("rsa_private.pem")).unwrap()
}

/// A second RSA key, not in `jwks.json`.
pub(crate) fn rotated_rsa_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(&jwt_fixture("rsa_rotated_private.pem")).unwrap()
}

/// The private key of JWKS entry `ec-1`.
pub(crate) fn ec_key() -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_ec_pem(&jwt_fixture("ec_private.pem")).unwrap()
}

/// A valid HS256 token for `subject`, signed with [`JWT_SECRET`].
pub(crate) fn hs256_jwt(subject: &str) -> String {
    sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        None,
        &jwt_claims(subject),
        &hs256_key(),
    )
}

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer(token: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

/// A key server on 127.0.0.1 answering every GET with a JWKS document, counting requests.
/// Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct JwksServer {
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<AtomicUsize>,
    server: FakeServer,
}

impl JwksServer {
    pub(crate) async fn start(body: Vec<u8>) -> Self {
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        let router = axum::Router::new().fallback(axum::routing::get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                (StatusCode::OK, [("content-type", "application/json")], body).into_response()
            }
        }));
        let server = FakeServer::start(router).await;
        Self { body, hits, server }
    }

    /// The URL to put in `STSVEND_JWT_JWKS_URL`.
    pub(crate) fn url(&self) -> String {
        self.server.url("/.well-known/jwks.json")
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn set_body(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }
}
