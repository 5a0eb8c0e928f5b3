//! The credential value: an AccessKey pair, its STS token and expiry, with a `Debug` that hides
//! the secrets. A leaf: the STS signer and the settings hold it without reaching the chain.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::origin::Origin;

/// An AccessKey pair, optionally with the STS token that must accompany a temporary key.
///
/// `Debug` never shows the secret or the token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    /// When temporary credentials stop working; `None` for a permanent AccessKey.
    expiration: Option<DateTime<Utc>>,
    origin: Origin,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: Option<SecretString>,
        origin: Origin,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            expiration: None,
            origin,
        }
    }

    /// The same credentials, temporary until `expiration`.
    #[must_use]
    pub fn expiring(mut self, expiration: DateTime<Utc>) -> Self {
        self.expiration = Some(expiration);
        self
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret, for the signer only.
    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    /// The STS token, sent as the `SecurityToken` request parameter when present.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token
            .as_ref()
            .map(ExposeSecret::expose_secret)
    }

    pub fn expiration(&self) -> Option<DateTime<Utc>> {
        self.expiration
    }

    /// Where these credentials came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The origin's name, as logs and metrics show it, e.g. `environment`.
    pub fn source(&self) -> &'static str {
        self.origin.as_str()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"** redacted **")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expiration", &self.expiration)
            .field("source", &self.origin.as_str())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CredentialsProvider;

    #[test]
    fn debug_output_hides_secret_and_token() {
        let credentials = Credentials::new(
            "LTAI-id",
            SecretString::from("very-secret-value"),
            Some(SecretString::from("token-value")),
            Origin::Environment,
        );
        let shown = format!(
            "{credentials:?} {:?}",
            CredentialsProvider::Static(credentials.clone())
        );
        assert!(shown.contains("LTAI-id"));
        assert!(!shown.contains("very-secret-value"));
        assert!(!shown.contains("token-value"));
    }
}
