//! Verifies the bearer JWTs an app's own login service issues, for profiles in `jwt` mode.
//!
//! The checks, in order (the first failure is the answer):
//! 1. shape: at most [`MAX_TOKEN_BYTES`], three base64url parts, a JSON header;
//! 2. algorithm: the header's `alg` must be one of the configured algorithms. The token never
//!    chooses how it is verified: `none`, and anything not configured, stops here;
//! 3. key: HMAC algorithms use only the configured secret; RSA, EC and EdDSA use only a JWKS key
//!    of the matching type, found by `kid` (or the only such key when the token has no `kid`);
//! 4. signature;
//! 5. claims: `exp` (required), `nbf`, `iss` and `aud` (when configured), `sub` (required).
//!
//! Time is an argument: [`JwtVerifier::verify`] never reads the clock, and jsonwebtoken's own
//! time checks (which would) are not used. Only its key handling and signature primitives are.
//!
//! A JWKS URL is fetched on first use and cached. A `kid` we do not know triggers a refetch, at
//! most once per [`JWKS_REFETCH_INTERVAL_SECONDS`] per verifier, and concurrent callers share it,
//! so a flood of made-up `kid`s costs the key server one request a minute. Cached keys older
//! than [`JWKS_MAX_AGE_SECONDS`] are refreshed on the next use, so a key the issuer withdraws
//! stops verifying without a restart.
//!
//! What does not live here: reading the settings (`config.rs`) and turning a [`JwtError`] into a
//! `401` (the HTTP layer).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How far `exp` and `nbf` may be off, to absorb clock skew between the issuer and us.
pub const LEEWAY_SECONDS: i64 = 30;
/// Longer tokens are refused before any parsing. Real ones are well under 2 KiB; the cap keeps
/// base64 and JSON work per request small.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest HMAC secret we accept: 256 bits, the output size of SHA-256 (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// An unknown `kid` refetches the JWKS URL at most this often.
pub const JWKS_REFETCH_INTERVAL_SECONDS: i64 = 60;
/// While no keys have ever been fetched, a failed fetch is retried this soon: every request is
/// failing meanwhile, so waiting a whole refetch interval would be a minute-long outage.
const JWKS_RETRY_WITHOUT_KEYS_SECONDS: i64 = 5;
/// Cached JWKS keys older than this are refetched on next use (failures keep the old keys).
pub const JWKS_MAX_AGE_SECONDS: i64 = 15 * 60;
/// The most of a JWKS response we read. A JWKS with a handful of RSA keys is a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A key server is on the request path of the first request, so it must answer quickly.
const JWKS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// RSA keys below this size are ignored (NIST SP 800-57 retired 1024-bit RSA years ago).
const MIN_RSA_MODULUS_BITS: usize = 2048;

/// How a profile verifies JWTs; already validated by `config.rs`.
#[derive(Clone)]
pub struct JwtConfig {
    /// The shared secret for HS256 (and HS384/HS512 if configured).
    pub hs256_secret: Option<SecretString>,
    pub jwks_url: Option<Url>,
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (the claim may be a string or an array containing it), when set.
    pub audience: Option<String>,
    /// The only algorithms accepted.
    pub algorithms: Vec<Algorithm>,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "** redacted **"),
            )
            .field("jwks_url", &self.jwks_url.as_ref().map(redacted_url))
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: who the caller is, as the login service names them. Not empty, otherwise
    /// unchecked: it can hold anything a JSON string can.
    pub subject: String,
    /// `iss`, if the token has one: caches and rate limits key callers by (issuer, subject).
    pub issuer: Option<String>,
}

/// Why a token was refused. Each variant is one check; none carries any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// No `Authorization: Bearer` header at all.
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token has no subject")]
    MissingSubject,
    /// Our problem, not the caller's: the JWKS could not be fetched and no keys are cached.
    #[error("JWKS keys unavailable")]
    KeysUnavailable,
}

impl JwtError {
    /// A stable machine-readable name, for the JSON error body and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingSubject => "missing_subject",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// A sentence for the caller's developer. Fixed text: it never echoes the token.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => {
                "This endpoint requires a JWT from your login service in the header `Authorization: Bearer <token>`."
            }
            Self::Malformed => {
                "The bearer token is not a well-formed JWT: it needs three base64url parts, a JSON header and claims, and a numeric `exp` claim."
            }
            Self::AlgorithmNotAllowed => {
                "The token's signing algorithm (`alg`) is not one this service accepts."
            }
            Self::UnknownKey => {
                "The token was signed with a key this service does not know (`kid`)."
            }
            Self::BadSignature => "The token's signature does not verify.",
            Self::Expired => "The token has expired (`exp`); log in again to get a new one.",
            Self::NotYetValid => "The token is not valid yet (`nbf`); check the issuer's clock.",
            Self::WrongIssuer => {
                "The token comes from an issuer this service does not accept (`iss`)."
            }
            Self::WrongAudience => "The token is not meant for this service (`aud`).",
            Self::MissingSubject => {
                "The token does not say who the caller is (`sub` is missing or empty)."
            }
            Self::KeysUnavailable => {
                "The keys to verify the token cannot be loaded right now; try again shortly."
            }
        }
    }
}

/// Why a verifier cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("no JWT algorithm is configured")]
    NoAlgorithms,
    #[error("JWT algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(Algorithm),
    #[error("JWT algorithm {0:?} needs an HMAC secret, and none is configured")]
    MissingSecret(Algorithm),
    #[error("JWT algorithm {0:?} needs a JWKS URL or JWKS file, and neither is configured")]
    MissingJwks(Algorithm),
    /// Says neither the secret nor its length.
    #[error("the HMAC secret is shorter than {MIN_HMAC_SECRET_BYTES} bytes")]
    SecretTooShort,
    #[error("cannot read JWKS file `{}`", path.display())]
    JwksFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JWKS file `{}` is not usable: {reason}", path.display())]
    JwksFileInvalid { path: PathBuf, reason: String },
    #[error("JWKS file `{}` has no key for any of the JWT algorithms {algorithms:?}", path.display())]
    NoKeyForAlgorithms {
        path: PathBuf,
        algorithms: Vec<Algorithm>,
    },
    #[error("cannot build an HTTP client for the JWKS URL: {0}")]
    HttpClient(String),
}

/// Verifies bearer JWTs for one profile. Cheap to clone: clones share the JWKS cache.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audience: Option<String>,
    /// The configured secret; the only key HMAC tokens are ever checked with.
    hmac_key: Option<DecodingKey>,
    file: Option<(PathBuf, KeySet)>,
    remote: Option<RemoteJwks>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("JwtVerifier")
            .field("algorithms", &inner.algorithms)
            .field("issuer", &inner.issuer)
            .field("audience", &inner.audience)
            .field(
                "hmac_key",
                &inner.hmac_key.as_ref().map(|_| "** redacted **"),
            )
            .field(
                "jwks_file",
                &inner
                    .file
                    .as_ref()
                    .map(|(path, keys)| (path, keys.keys.len())),
            )
            .field(
                "jwks_url",
                &inner
                    .remote
                    .as_ref()
                    .map(|remote| redacted_url(&remote.url)),
            )
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the JWKS file now (errors are setup errors); a JWKS URL is fetched lazily on first
    /// use and cached.
    pub fn new(config: JwtConfig) -> Result<Self, JwtSetupError> {
        if config.algorithms.is_empty() {
            return Err(JwtSetupError::NoAlgorithms);
        }
        let hmac_key = match &config.hs256_secret {
            Some(secret) => {
                let bytes = secret.expose_secret().as_bytes();
                if bytes.len() < MIN_HMAC_SECRET_BYTES {
                    return Err(JwtSetupError::SecretTooShort);
                }
                Some(DecodingKey::from_secret(bytes))
            }
            None => None,
        };
        let file = config
            .jwks_file
            .map(|path| load_jwks_file(&path).map(|keys| (path, keys)))
            .transpose()?;
        let remote = config.jwks_url.map(RemoteJwks::new).transpose()?;
        let mut asymmetric = Vec::new();
        for &algorithm in &config.algorithms {
            if algorithm.family() == AlgorithmFamily::Hmac {
                if hmac_key.is_none() {
                    return Err(JwtSetupError::MissingSecret(algorithm));
                }
                continue;
            }
            let Some(kind) = KeyKind::for_algorithm(algorithm) else {
                return Err(JwtSetupError::UnsupportedAlgorithm(algorithm));
            };
            if file.is_none() && remote.is_none() {
                return Err(JwtSetupError::MissingJwks(algorithm));
            }
            asymmetric.push((algorithm, kind));
        }
        // Without a URL the file is all there will ever be, so a file that can verify none of
        // the algorithms is a mistake. One that covers only some is fine: by default RS256 and
        // ES256 are both allowed, and most issuers use one of them.
        if let (Some((path, keys)), None) = (&file, &remote)
            && !asymmetric.is_empty()
            && !asymmetric
                .iter()
                .any(|(_, kind)| keys.keys.iter().any(|key| key.kind == *kind))
        {
            return Err(JwtSetupError::NoKeyForAlgorithms {
                path: path.clone(),
                algorithms: asymmetric.iter().map(|(alg, _)| *alg).collect(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                algorithms: config.algorithms,
                issuer: config.issuer,
                audience: config.audience,
                hmac_key,
                file,
                remote,
            }),
        })
    }

    /// Verifies a bearer token at wall-clock `now`.
    ///
    /// Awaits only when the JWKS URL must be fetched (first use, unknown `kid`, stale keys),
    /// for at most the fetch timeout.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, JwtError> {
        let parts = Parts::split(token)?;
        let header: Header = json_object(&parts.header)?;
        // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        // Parsing accepts only the exact names of real algorithms, so `none`, `None` and
        // friends fail here, as does anything the configuration does not list.
        let algorithm = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| self.inner.algorithms.contains(alg))
            .ok_or(JwtError::AlgorithmNotAllowed)?;
        let key = self.key(algorithm, header.kid.as_deref(), now).await?;
        // Any error here means the key cannot check this signature; the key was picked by
        // type, so that is the token's fault, not ours.
        let valid =
            jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), &key, algorithm)
                .unwrap_or(false);
        if !valid {
            return Err(JwtError::BadSignature);
        }
        let claims: RawClaims = json_object(&parts.payload)?;
        claims.check(
            now,
            self.inner.issuer.as_deref(),
            self.inner.audience.as_deref(),
        )
    }

    /// The key to check an `algorithm` signature with: the secret for HMAC, else a JWKS key.
    async fn key(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DecodingKey, JwtError> {
        let inner = &self.inner;
        let Some(kind) = KeyKind::for_algorithm(algorithm) else {
            // HMAC: never a JWKS key, even an `oct` one, whatever the `kid` says.
            return inner.hmac_key.clone().ok_or(JwtError::UnknownKey);
        };
        if let Some(key) = inner
            .file
            .as_ref()
            .and_then(|(_, keys)| keys.find(algorithm, kind, kid))
        {
            return Ok(key.clone());
        }
        let Some(remote) = &inner.remote else {
            return Err(JwtError::UnknownKey);
        };
        let cached = remote.cached();
        if let Some((keys, fetched_at)) = &cached.keys {
            if too_old(*fetched_at, now) {
                // Refresh, unless someone else is already at it: then use what we have.
                remote.refresh(cached.generation, now, false).await;
            } else if let Some(key) = keys.find(algorithm, kind, kid) {
                return Ok(key.clone());
            }
        }
        // Unknown key, stale keys or none yet: one refetch at most (shared, rate-limited).
        let cached = remote.cached();
        if let Some((keys, _)) = &cached.keys
            && let Some(key) = keys.find(algorithm, kind, kid)
        {
            return Ok(key.clone());
        }
        remote.refresh(cached.generation, now, true).await;
        match &remote.cached().keys {
            None => Err(JwtError::KeysUnavailable),
            Some((keys, _)) => keys
                .find(algorithm, kind, kid)
                .cloned()
                .ok_or(JwtError::UnknownKey),
        }
    }
}

/// The three parts of a compact JWS, decoded from base64url.
struct Parts<'a> {
    /// `header.payload`, the bytes the signature covers.
    signed: &'a str,
    header: Vec<u8>,
    payload: Vec<u8>,
    /// Still base64url: jsonwebtoken decodes it itself.
    signature: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        if header.is_empty() || payload.is_empty() {
            return Err(JwtError::Malformed);
        }
        // Strict base64url without padding: no `=`, no whitespace, no non-canonical trailing
        // bits, so one token has exactly one spelling.
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)
        };
        let decoded_header = decode(header)?;
        let decoded_payload = decode(payload)?;
        decode(signature)?;
        Ok(Self {
            signed: &token[..header.len() + 1 + payload.len()],
            header: decoded_header,
            payload: decoded_payload,
            signature,
        })
    }
}

/// Parses a header or claims set, which must be a JSON object. serde would also fill a struct
/// from an array (`[1, 2]` as `exp`, `nbf`), which no issuer means.
fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JwtError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed)
}

/// The JOSE header fields we read. Unknown fields are ignored; duplicate ones make serde fail.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The registered claims we check. A claim of the wrong JSON type makes the token malformed.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    /// Not checked, but must be a number if present.
    #[serde(default)]
    #[allow(dead_code)] // read only to reject a non-numeric `iat`
    iat: Option<NumericDate>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    sub: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Seconds since the epoch. RFC 7519 allows fractions; they are rounded down.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(seconds) = number.as_i64() {
            return Ok(Self(seconds));
        }
        match number.as_f64() {
            // `as` saturates, which is what we want for absurdly distant dates.
            Some(seconds) if seconds.is_finite() => Ok(Self(seconds.floor() as i64)),
            _ => Err(serde::de::Error::custom("not a NumericDate")),
        }
    }
}

impl RawClaims {
    fn check(
        self,
        now: DateTime<Utc>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Claims, JwtError> {
        let now = now.timestamp();
        // A token without `exp` would be valid forever; we treat it as not a token for us.
        let Some(NumericDate(exp)) = self.exp else {
            return Err(JwtError::Malformed);
        };
        // RFC 7519 §4.1.4: valid only *before* `exp`.
        if now >= exp.saturating_add(LEEWAY_SECONDS) {
            return Err(JwtError::Expired);
        }
        if let Some(NumericDate(nbf)) = self.nbf
            && now.saturating_add(LEEWAY_SECONDS) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(issuer) = issuer
            && self.iss.as_deref() != Some(issuer)
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = audience {
            let matches = match &self.aud {
                Some(Audience::One(aud)) => aud == audience,
                Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
                None => false,
            };
            if !matches {
                return Err(JwtError::WrongAudience);
            }
        }
        match self.sub {
            Some(subject) if !subject.is_empty() => Ok(Claims {
                subject,
                issuer: self.iss,
            }),
            _ => Err(JwtError::MissingSubject),
        }
    }
}

/// The type of public key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// `None` for HMAC, which uses the configured secret and never a JWKS key.
    fn for_algorithm(algorithm: Algorithm) -> Option<Self> {
        match algorithm.family() {
            AlgorithmFamily::Hmac => None,
            AlgorithmFamily::Rsa => Some(Self::Rsa),
            AlgorithmFamily::Ec if algorithm == Algorithm::ES256 => Some(Self::P256),
            AlgorithmFamily::Ec if algorithm == Algorithm::ES384 => Some(Self::P384),
            AlgorithmFamily::Ec => None,
            AlgorithmFamily::Ed => Some(Self::Ed25519),
        }
    }
}

/// One verification key from a JWKS.
struct PublicKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's `alg`, when it names one: the key is then good for that algorithm only.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// The usable keys of one JWKS document.
struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// Keeps the signature keys we can use and skips the rest (encryption keys, `oct` secrets,
    /// unknown types, short RSA keys, unreadable entries), so one odd key does not take the
    /// others down with it. Fails only when the document is not a JWKS at all.
    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JWKS document (a JSON object with `keys`): {e}"))?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| PublicKey::from_jwk(&jwk))
            .collect();
        Ok(Self { keys })
    }

    /// The key for a token's `kid`; without one, the only key of the right type, if there is
    /// exactly one (RFC 7517 §4.5 leaves `kid` optional).
    fn find(&self, algorithm: Algorithm, kind: KeyKind, kid: Option<&str>) -> Option<&DecodingKey> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|key| key.kind == kind && key.algorithm.is_none_or(|alg| alg == algorithm));
        let found = match kid {
            Some(kid) => candidates.find(|key| key.kid.as_deref() == Some(kid)),
            None => match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        };
        found.map(|key| &key.key)
    }
}

impl PublicKey {
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|usage| *usage != PublicKeyUse::Signature)
        {
            return None;
        }
        let algorithm = match jwk.common.key_algorithm {
            // An encryption algorithm (RSA-OAEP…) means this is not a signing key.
            Some(alg) => Some(Algorithm::try_from(alg).ok()?),
            None => None,
        };
        let decode = |value: &str| URL_SAFE_NO_PAD.decode(value).ok();
        let (kind, key) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let modulus = decode(&rsa.n)?;
                let exponent = decode(&rsa.e)?;
                let leading_zeros = modulus.iter().take_while(|b| **b == 0).count();
                if (modulus.len() - leading_zeros) * 8 < MIN_RSA_MODULUS_BITS || exponent.is_empty()
                {
                    return None;
                }
                let key = DecodingKey::from_rsa_raw_components(&modulus, &exponent);
                (KeyKind::Rsa, key)
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let (kind, size) = match ec.curve {
                    EllipticCurve::P256 => (KeyKind::P256, 32),
                    EllipticCurve::P384 => (KeyKind::P384, 48),
                    _ => return None,
                };
                // jsonwebtoken does not check coordinate sizes; a short one would only fail later.
                if decode(&ec.x)?.len() != size || decode(&ec.y)?.len() != size {
                    return None;
                }
                (kind, DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?)
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                if decode(&okp.x)?.len() != 32 {
                    return None;
                }
                (
                    KeyKind::Ed25519,
                    DecodingKey::from_ed_components(&okp.x).ok()?,
                )
            }
            // `oct` keys are shared secrets: publishing one in a JWKS makes it public, and using
            // it would let anyone forge HMAC tokens. Other types we cannot verify with.
            _ => return None,
        };
        if algorithm.is_some_and(|alg| KeyKind::for_algorithm(alg) != Some(kind)) {
            return None;
        }
        Some(Self {
            kid: jwk.common.key_id.clone(),
            kind,
            algorithm,
            key,
        })
    }
}

fn load_jwks_file(path: &Path) -> Result<KeySet, JwtSetupError> {
    let bytes = std::fs::read(path).map_err(|source| JwtSetupError::JwksFileUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let keys = KeySet::from_json(&bytes).map_err(|reason| JwtSetupError::JwksFileInvalid {
        path: path.to_owned(),
        reason,
    })?;
    if keys.keys.is_empty() {
        return Err(JwtSetupError::JwksFileInvalid {
            path: path.to_owned(),
            reason: "it has no RSA, EC (P-256, P-384) or Ed25519 signature key".to_owned(),
        });
    }
    Ok(keys)
}

/// A JWKS URL and what we last fetched from it.
struct RemoteJwks {
    url: Url,
    http: reqwest::Client,
    cache: RwLock<Cached>,
    /// Held for the whole fetch, so concurrent callers wait for one fetch instead of starting
    /// their own. Holds when the last attempt (successful or not) started.
    fetching: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

#[derive(Clone, Default)]
struct Cached {
    /// The keys and when they were fetched; `None` until the first successful fetch.
    keys: Option<(Arc<KeySet>, DateTime<Utc>)>,
    /// Bumped on every successful fetch, so a waiter can tell that someone fetched for it.
    generation: u64,
}

impl RemoteJwks {
    fn new(url: Url) -> Result<Self, JwtSetupError> {
        // No redirects: a redirect could silently move trust to another host.
        let http = crate::outbound::client_builder(JWKS_CONNECT_TIMEOUT, JWKS_TIMEOUT)
            .build()
            .map_err(|e| JwtSetupError::HttpClient(transport_error(e)))?;
        Ok(Self {
            url,
            http,
            cache: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    fn cached(&self) -> Cached {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the JWKS, unless a fetch finished since the caller saw `seen_generation` or the
    /// last attempt was too recent. With `wait` false, returns at once if a fetch is running.
    /// A failure is logged and keeps the old keys.
    async fn refresh(&self, seen_generation: u64, now: DateTime<Utc>, wait: bool) {
        let mut last_attempt = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        let cached = self.cached();
        if cached.generation != seen_generation {
            return;
        }
        let interval = if cached.keys.is_some() {
            JWKS_REFETCH_INTERVAL_SECONDS
        } else {
            JWKS_RETRY_WITHOUT_KEYS_SECONDS
        };
        if last_attempt.is_some_and(|last| within(last, now, interval)) {
            return;
        }
        *last_attempt = Some(now);
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(jwks_url = %redacted_url(&self.url), keys = keys.keys.len(), "fetched the JWKS");
                let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                cache.keys = Some((Arc::new(keys), now));
                cache.generation += 1;
            }
            Err(error) => {
                tracing::warn!(
                    jwks_url = %redacted_url(&self.url),
                    %error,
                    have_keys = cached.keys.is_some(),
                    "cannot fetch the JWKS; keeping the keys we have"
                );
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Transport(transport_error(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let body = read_capped(response).await?;
        KeySet::from_json(&body).map_err(FetchError::Invalid)
    }
}

/// Why a JWKS fetch failed; logged, never shown to callers. Holds no URL.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the key server answered HTTP {0}")]
    Status(u16),
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Invalid(String),
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    crate::outbound::read_capped(response, MAX_JWKS_BYTES)
        .await
        .map_err(|e| match e {
            crate::outbound::BodyError::TooLarge => FetchError::TooLarge,
            crate::outbound::BodyError::Transport(e) => FetchError::Transport(transport_error(e)),
        })
}

/// A reqwest error as one line, without the URL: its query may carry an access token.
fn transport_error(error: reqwest::Error) -> String {
    crate::outbound::error_text(error)
}

/// The URL for logs: scheme, host, port and path, without credentials, query or fragment.
fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Whether `then` and `now` are less than `seconds` apart. Either way round: requests carry
/// their own `now`, so a later fetch may see a slightly earlier time; a jump of the wall clock
/// by more than `seconds` just allows one early fetch.
fn within(then: DateTime<Utc>, now: DateTime<Utc>, seconds: i64) -> bool {
    (now - then).abs() < TimeDelta::seconds(seconds)
}

fn too_old(fetched_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    !within(fetched_at, now, JWKS_MAX_AGE_SECONDS)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::StatusCode;
    use chrono::TimeZone;
    use jsonwebtoken::{EncodingKey, encode};
    use serde_json::{Value, json};

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
        let path =
            std::env::temp_dir().join(format!("stsvend-jwt-test-{}-{name}", std::process::id()));
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
    ) -> Result<Claims, JwtError> {
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

    async fn verify(verifier: &JwtVerifier, token: &str) -> Result<Claims, JwtError> {
        verify_at(verifier, token, now()).await
    }

    fn user_42() -> Result<Claims, JwtError> {
        Ok(Claims {
            subject: "user-42".to_owned(),
            issuer: Some(ISSUER.to_owned()),
        })
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
            let subject = verify(&lax, &hs256(&claims)).await.map(|c| c.subject);
            assert_eq!(subject, user_42().map(|c| c.subject), "{claims}");
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
                jsonwebtoken::crypto::sign(message.as_bytes(), &hs_key(), Algorithm::HS256)
                    .unwrap();
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
}
