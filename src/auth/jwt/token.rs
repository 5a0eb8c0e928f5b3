//! The token's shape: its three base64url parts, and the JSON objects in them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::error::JwtError;
use super::limits::MAX_TOKEN_BYTES;

/// The three parts of a compact JWS, decoded from base64url.
pub(super) struct Parts<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub(super) signed: &'a str,
    pub(super) header: Vec<u8>,
    pub(super) payload: Vec<u8>,
    /// Still base64url: jsonwebtoken decodes it itself.
    pub(super) signature: &'a str,
}

impl<'a> Parts<'a> {
    pub(super) fn split(token: &'a str) -> Result<Self, JwtError> {
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
pub(super) fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JwtError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed)
}

/// The JOSE header fields we read. Unknown fields are ignored; duplicate ones make serde fail.
#[derive(Deserialize)]
pub(super) struct Header {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) crit: Option<serde_json::Value>,
}
