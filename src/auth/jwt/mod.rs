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
//! A token verified once is remembered, by the SHA-256 of the whole token, until it expires or
//! the JWKS URL's keys change, so a caller presenting it again costs a hash, not a signature
//! check (`verified.rs` says what keeps such an entry standing; the time checks and their
//! leeway are the same).
//!
//! What does not live here: reading the settings (`config/`) and turning a [`JwtError`] into a
//! `401` (the HTTP layer).
//!
//! One job per file: `token.rs` the token's shape, `claims.rs` the claim checks and [`Claims`],
//! `keys.rs` the JWKS keys and the JWKS file, `remote.rs` the fetched and cached JWKS URL,
//! `verified.rs` the verifications remembered, `error.rs` the errors, `limits.rs` the numbers.
//! This file holds the configuration and the verifier that runs the checks in order.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

mod claims;
mod error;
mod keys;
mod limits;
mod remote;
#[cfg(test)]
mod tests;
mod token;
mod verified;

pub use claims::Claims;
pub use error::{JwtError, JwtSetupError};
pub use limits::{
    JWKS_MAX_AGE_SECONDS, JWKS_REFETCH_INTERVAL_SECONDS, LEEWAY_SECONDS, MAX_JWKS_BYTES,
    MAX_TOKEN_BYTES, MAX_VERIFIED_LIFETIME, MIN_HMAC_SECRET_BYTES, VERIFIED_CACHE_BYTES,
};

use claims::RawClaims;
use keys::{KeyKind, KeySet, load_jwks_file};
use remote::{RemoteJwks, redacted_url, too_old};
use token::{Header, Parts, json_object};
use verified::{Decision, TokenHash, Verified, VerifiedCache};

/// How a profile verifies JWTs; already validated by `config/access.rs`.
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

/// Verifies bearer JWTs for one profile. Cheap to clone: clones share the JWKS cache and the
/// verifications remembered.
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
    verified: VerifiedCache,
    /// Signatures checked so far: what the verified cache saves is visible in tests.
    signatures_checked: AtomicU64,
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

/// What a verifier's memory says of a token, without waiting.
enum Recall<'a> {
    /// What a full verification would answer now.
    Answer(Result<Arc<Claims>, JwtError>),
    /// Verified with the JWKS URL's keys, which a full verification would refresh first (they
    /// are too old; `seen` is their generation): refresh, then decide again.
    KeysDue {
        verified: Verified,
        remote: &'a RemoteJwks,
        seen: u64,
    },
    /// Not remembered, or checked with keys since replaced: verify in full.
    Unknown,
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
                verified: VerifiedCache::new(VERIFIED_CACHE_BYTES),
                signatures_checked: AtomicU64::new(0),
            }),
        })
    }

    /// Verifies a bearer token at wall-clock `now`.
    ///
    /// A token verified before is answered from memory while it stays valid (`verified.rs`).
    /// Awaits only when the JWKS URL must be fetched (first use, unknown `kid`, stale keys),
    /// for at most the fetch timeout.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Arc<Claims>, JwtError> {
        // Too long to be ours: refused by the full checks, and never worth hashing.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        let key = verified::hash(token);
        match self.recall(&key, now) {
            Recall::Answer(answer) => return answer,
            Recall::KeysDue {
                verified,
                remote,
                seen,
            } => {
                // Boxed, like the full verification below: rare, and inline it would size
                // every remembered token's future (README, Performance, "Round 4"). Without
                // waiting on a refresh already running, as in [`Self::key`].
                Box::pin(remote.refresh(seen, now, false)).await;
                let generation = Some(remote.generation().0);
                if let Recall::Answer(answer) = self.decided(&key, &verified, now, generation) {
                    return answer;
                }
            }
            Recall::Unknown => {}
        }
        let verified = Box::pin(self.verify_in_full(token, now)).await?;
        let claims = verified.claims.clone();
        self.inner.verified.insert(key, verified, now.timestamp());
        Ok(claims)
    }

    /// [`Self::verify`]'s answer when it needs no waiting: a token remembered, whose keys need
    /// no refresh first. `None` when [`Self::verify`] has work to do.
    ///
    /// Takes the header's bytes as they are: only a remembered token is answered, and one is
    /// remembered only once verified in full, so the text need not be checked here (the check
    /// costs ~320 instructions for an RS256 token, on every request).
    pub fn verify_now(
        &self,
        token: impl AsRef<[u8]>,
        now: DateTime<Utc>,
    ) -> Option<Result<Arc<Claims>, JwtError>> {
        let token = token.as_ref();
        if token.len() > MAX_TOKEN_BYTES {
            return Some(Err(JwtError::Malformed));
        }
        match self.recall(&verified::hash(token), now) {
            Recall::Answer(answer) => Some(answer),
            Recall::KeysDue { .. } | Recall::Unknown => None,
        }
    }

    /// What memory says of the token hashed to `key` at `now`, without waiting.
    fn recall(&self, key: &TokenHash, now: DateTime<Utc>) -> Recall<'_> {
        let Some(entry) = self.inner.verified.get(key, now.timestamp()) else {
            return Recall::Unknown;
        };
        // `None` for an entry checked with the secret or the file, whose keys never change.
        let generation = match (entry.verified.remote_generation, &self.inner.remote) {
            (Some(_), Some(remote)) => {
                let (generation, fetched_at) = remote.generation();
                // A full verification would refresh keys this old first.
                if fetched_at.is_some_and(|fetched_at| too_old(fetched_at, now)) {
                    return Recall::KeysDue {
                        verified: entry.verified,
                        remote,
                        seen: generation,
                    };
                }
                Some(generation)
            }
            _ => None,
        };
        self.decided(key, &entry.verified, now, generation)
    }

    /// Whether `verified` stands at `now` under the key set's `generation`; forgotten when its
    /// keys have been replaced.
    fn decided(
        &self,
        key: &TokenHash,
        verified: &Verified,
        now: DateTime<Utc>,
        generation: Option<u64>,
    ) -> Recall<'_> {
        match verified.decide(now.timestamp(), generation) {
            Decision::Serve(claims) => Recall::Answer(Ok(claims)),
            Decision::Refuse(error) => Recall::Answer(Err(error)),
            Decision::Stale => {
                self.inner.verified.remove(key);
                Recall::Unknown
            }
        }
    }

    /// Forgets every verification remembered: the next use of each token is checked in full.
    /// A reload that changes the keys builds a new verifier instead, whose memory starts empty.
    pub fn forget_verified(&self) {
        self.inner.verified.clear();
    }

    /// How many signatures this verifier (and its clones) has checked: a remembered token
    /// costs none.
    pub fn signatures_checked(&self) -> u64 {
        self.inner.signatures_checked.load(Ordering::Relaxed)
    }

    /// Every check, in order, with no memory of earlier verifications.
    async fn verify_in_full(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, JwtError> {
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
        let (key, remote_generation) = self.key(algorithm, header.kid.as_deref(), now).await?;
        self.inner
            .signatures_checked
            .fetch_add(1, Ordering::Relaxed);
        // Any error here means the key cannot check this signature; the key was picked by
        // type, so that is the token's fault, not ours.
        let valid =
            jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), &key, algorithm)
                .unwrap_or(false);
        if !valid {
            return Err(JwtError::BadSignature);
        }
        let claims: RawClaims = json_object(&parts.payload)?;
        let (claims, validity) = claims.check(
            now,
            self.inner.issuer.as_deref(),
            self.inner.audience.as_deref(),
        )?;
        Ok(Verified {
            claims: Arc::new(claims),
            validity,
            remote_generation,
        })
    }

    /// The key to check an `algorithm` signature with: the secret for HMAC, else a JWKS key;
    /// for a key from the JWKS URL, also the generation of the key set it came from.
    async fn key(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(DecodingKey, Option<u64>), JwtError> {
        let inner = &self.inner;
        let Some(kind) = KeyKind::for_algorithm(algorithm) else {
            // HMAC: never a JWKS key, even an `oct` one, whatever the `kid` says.
            return inner
                .hmac_key
                .clone()
                .map(|key| (key, None))
                .ok_or(JwtError::UnknownKey);
        };
        if let Some(key) = inner
            .file
            .as_ref()
            .and_then(|(_, keys)| keys.find(algorithm, kind, kid))
        {
            return Ok((key.clone(), None));
        }
        let Some(remote) = &inner.remote else {
            return Err(JwtError::UnknownKey);
        };
        let found = |cached: &remote::Cached| {
            let (keys, _) = cached.keys.as_ref()?;
            let key = keys.find(algorithm, kind, kid)?;
            Some((key.clone(), Some(cached.generation)))
        };
        let cached = remote.cached();
        if let Some((_, fetched_at)) = &cached.keys {
            if too_old(*fetched_at, now) {
                // Refresh, unless someone else is already at it: then use what we have.
                remote.refresh(cached.generation, now, false).await;
            } else if let Some(found) = found(&cached) {
                return Ok(found);
            }
        }
        // Unknown key, stale keys or none yet: one refetch at most (shared, rate-limited).
        let cached = remote.cached();
        if let Some(found) = found(&cached) {
            return Ok(found);
        }
        remote.refresh(cached.generation, now, true).await;
        let cached = remote.cached();
        match &cached.keys {
            None => Err(JwtError::KeysUnavailable),
            Some(_) => found(&cached).ok_or(JwtError::UnknownKey),
        }
    }
}
