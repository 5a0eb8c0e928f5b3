//! Why a token is refused ([`JwtError`]) and why a verifier cannot be built ([`JwtSetupError`]).

use std::path::PathBuf;

use jsonwebtoken::Algorithm;

use super::limits::MIN_HMAC_SECRET_BYTES;

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
