//! What signs `AssumeRole`: fixed credentials, or temporary ones kept fresh in the background.

use super::error::CredentialsError;
use super::renew;
use super::value::Credentials;

/// Hands out the credentials that sign `AssumeRole`.
#[derive(Debug, Clone)]
pub enum CredentialsProvider {
    /// Fixed credentials: environment, config file, an AK or StsToken profile, the dev emulator.
    Static(Credentials),
    /// Temporary credentials kept fresh by a background task.
    Renewing(renew::Renewing),
}

impl CredentialsProvider {
    /// The credentials to sign the next request with. Returns at once while the current ones
    /// are valid; waits (bounded) only when none are.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Renewing(renewing) => renewing.credentials().await,
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            Self::Static(credentials) => credentials.source(),
            Self::Renewing(renewing) => renewing.source(),
        }
    }
}
