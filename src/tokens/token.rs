//! A token ready to hand out: the `/get_sts_token` response body, serialised once per token
//! rather than per request, and the non-secret facts the audit log needs.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::sts::IssuedCredentials;
use crate::telemetry::JsonFields;

/// `Debug` leaves the body out: it holds the secret and the security token.
pub struct Token {
    /// The exact `/get_sts_token` response body. Holds secrets; never log it.
    pub body: Bytes,
    pub key_id_prefix: String,
    pub expiration: DateTime<Utc>,
    /// `expiration` as the response and the audit log write it, formatted once per token.
    pub expiration_text: String,
    /// After this moment the token has less than `min_remaining` left and is not served.
    pub serve_until: Instant,
    /// The `RoleSessionName` it was issued for, for the audit log.
    pub role_session_name: String,
    /// STS's `RequestId` for the call that issued it, for the audit log.
    pub sts_request_id: Option<String>,
    /// Its part of every audit line that hands it out (RoleSessionName, AccessKeyId prefix,
    /// expiry), serialised once per token rather than once per request.
    pub audit_fields: JsonFields,
    /// Set by the first request that receives the token (see [`Token::take_fresh`]).
    served: AtomicBool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("body", &"** redacted **")
            .field("key_id_prefix", &self.key_id_prefix)
            .field("expiration", &self.expiration)
            .field("serve_until", &self.serve_until)
            .field("role_session_name", &self.role_session_name)
            .field("sts_request_id", &self.sts_request_id)
            .field("audit_fields", &self.audit_fields)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn new(
        issued: &IssuedCredentials,
        role_session_name: String,
        serve_until: Instant,
    ) -> Self {
        let token = Self::restored(
            issued.response_body(),
            issued.key_id_prefix().to_owned(),
            issued.expiration,
            serve_until,
            role_session_name,
            issued.request_id.clone(),
        );
        // Not handed to anyone yet: the first request to receive it audits it as `fresh`.
        token.served.store(false, Ordering::Relaxed);
        token
    }

    /// A token another replica issued and stored (fleet mode), from its parts. It counts as
    /// already served: the replica that received it from STS audits it as `fresh`.
    pub fn restored(
        body: Bytes,
        key_id_prefix: String,
        expiration: DateTime<Utc>,
        serve_until: Instant,
        role_session_name: String,
        sts_request_id: Option<String>,
    ) -> Self {
        let expiration_text = expiration
            .format(crate::sts::response::EXPIRATION_FORMAT)
            .to_string();
        let audit_fields = JsonFields::new(&[
            ("role_session_name", &role_session_name),
            ("access_key_id_prefix", &key_id_prefix),
            ("expiration", &expiration_text),
        ]);
        Self {
            body,
            key_id_prefix,
            expiration,
            expiration_text,
            serve_until,
            role_session_name,
            sts_request_id,
            audit_fields,
            served: AtomicBool::new(true),
        }
    }

    /// True exactly once: for the first request that receives this token (the audit log calls
    /// it `fresh`; later requests are served from a cache). Reads before it writes, so the
    /// common case (already served) does not contend on the cache line.
    pub fn take_fresh(&self) -> bool {
        !self.served.load(Ordering::Relaxed) && !self.served.swap(true, Ordering::Relaxed)
    }

    /// Whether it may still be handed out at `now`.
    pub fn servable(&self, now: Instant) -> bool {
        now < self.serve_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn a_token_debug_never_shows_the_body() {
        let issued = IssuedCredentials::new(
            "STS.debugcheck",
            SecretString::from("body-secret-value"),
            SecretString::from("body-token-value"),
            DateTime::from_timestamp(1_790_003_600, 0).unwrap(),
            None,
        );
        let token = Token::new(&issued, "stsvend".into(), Instant::now());
        let shown = format!("{token:?}");
        assert!(
            std::str::from_utf8(&token.body)
                .unwrap()
                .contains("body-secret-value")
        );
        assert!(
            !shown.contains("body-secret-value") && !shown.contains("body-token-value"),
            "{shown}"
        );
    }
}
