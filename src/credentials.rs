//! Where the service's own AccessKey comes from.
//!
//! Today: the official SDKs' environment variables (`ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional `ALIBABA_CLOUD_SECURITY_TOKEN`) or the same keys in
//! the config file. The provider is an enum so that further sources (ECS RAM role, OIDC) slot in
//! as variants without changing the refresher, which asks for credentials before every attempt.
//! Temporary sources will make [`CredentialsProvider::credentials`] fallible and async.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// An AccessKey pair, optionally with the STS token that must accompany a temporary key.
///
/// `Debug` never shows the secret or the token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    source: &'static str,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: Option<SecretString>,
        source: &'static str,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            source,
        }
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

    /// Which source produced these credentials, e.g. `environment`.
    pub fn source(&self) -> &'static str {
        self.source
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
            .field("source", &self.source)
            .finish()
    }
}

/// Hands out the credentials that sign `AssumeRole`.
#[derive(Debug, Clone)]
pub enum CredentialsProvider {
    /// Fixed credentials from the environment, the config file, or the dev emulator.
    Static(Credentials),
}

impl CredentialsProvider {
    /// The credentials to sign the next request with.
    pub fn credentials(&self) -> Credentials {
        match self {
            Self::Static(credentials) => credentials.clone(),
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            Self::Static(credentials) => credentials.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secret_and_token() {
        let credentials = Credentials::new(
            "LTAI-id",
            SecretString::from("very-secret-value"),
            Some(SecretString::from("token-value")),
            "environment",
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
