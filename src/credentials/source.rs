//! The words the chain and its sources share: the sources' names, what a source is asked with
//! and how it answers. Imports nothing of the chain, so the renewing sources use it too; the
//! [`super::sources::Source`] trait, whose answer names what the chain builds, is beside them.

use std::path::Path;

use super::origin::Origin;

/// The chain's sources, in the order they are asked. [`SourceName::as_str`] is the name the
/// chain report, `stsvend check` and the metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceName {
    Environment,
    Oidc,
    CliProfile,
    CredentialsFile,
    EcsRamRole,
    CredentialsUri,
}

impl SourceName {
    /// The origin of what this source delivers (the environment source's may also be the config
    /// file); its name is the source's name.
    pub(super) const fn origin(self) -> Origin {
        match self {
            Self::Environment => Origin::Environment,
            Self::Oidc => Origin::Oidc,
            Self::CliProfile => Origin::CliProfile,
            Self::CredentialsFile => Origin::CredentialsFile,
            Self::EcsRamRole => Origin::EcsRamRole,
            Self::CredentialsUri => Origin::CredentialsUri,
        }
    }

    pub(super) const fn as_str(self) -> &'static str {
        self.origin().as_str()
    }
}

/// A source's answer when the chain asks it.
pub(super) enum Detect<T> {
    /// Not configured here; the reason goes into the chain report.
    Skip(String),
    Use(T),
}

/// What the chain's sources may need besides the environment.
pub(super) struct Context<'a> {
    pub(super) env: &'a std::collections::HashMap<String, String>,
    /// `HOME`, when set and not empty: where the CLI profile and the credentials file live.
    pub(super) home: Option<&'a Path>,
    pub(super) sts: &'a crate::sts::StsClient,
    pub(super) metadata_endpoint: &'a reqwest::Url,
}
