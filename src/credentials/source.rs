//! What the chain asks a source with, and how a source answers: skip (and why) or use.

/// A source's answer when the chain asks it.
pub(super) enum Detect<T> {
    /// Not configured here; the reason goes into the chain report.
    Skip(String),
    Use(T),
}

/// What the chain's sources may need besides the environment.
pub(super) struct Context<'a> {
    pub(super) env: &'a std::collections::HashMap<String, String>,
    pub(super) sts: &'a crate::sts::StsClient,
    pub(super) metadata_endpoint: &'a reqwest::Url,
}
