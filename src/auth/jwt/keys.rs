//! Verification keys: which kind of key an algorithm needs, and the usable keys of a JWKS
//! document, from a file or fetched (`remote.rs`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;

use super::error::JwtSetupError;
use super::limits::MIN_RSA_MODULUS_BITS;

/// The type of public key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// `None` for HMAC, which uses the configured secret and never a JWKS key.
    pub(super) fn for_algorithm(algorithm: Algorithm) -> Option<Self> {
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
pub(super) struct PublicKey {
    pub(super) kid: Option<String>,
    pub(super) kind: KeyKind,
    /// The JWK's `alg`, when it names one: the key is then good for that algorithm only.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// The usable keys of one JWKS document.
pub(super) struct KeySet {
    pub(super) keys: Vec<PublicKey>,
}

impl KeySet {
    /// Keeps the signature keys we can use and skips the rest (encryption keys, `oct` secrets,
    /// unknown types, short RSA keys, unreadable entries), so one odd key does not take the
    /// others down with it. Fails only when the document is not a JWKS at all.
    pub(super) fn from_json(bytes: &[u8]) -> Result<Self, String> {
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
    pub(super) fn find(
        &self,
        algorithm: Algorithm,
        kind: KeyKind,
        kid: Option<&str>,
    ) -> Option<&DecodingKey> {
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

pub(super) fn load_jwks_file(path: &Path) -> Result<KeySet, JwtSetupError> {
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
