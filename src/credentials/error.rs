//! The chain's errors: a configured source that cannot deliver, and no valid credentials now.

/// No valid base credentials right now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no valid credentials from `{source_name}`: {reason}")]
pub struct CredentialsError {
    pub source_name: &'static str,
    pub reason: String,
}

/// A configured source that cannot deliver: the chain stops here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
}

impl SourceError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
