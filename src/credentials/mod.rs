//! Where the service's own credentials come from: the Alibaba Cloud default credential chain.
//!
//! The sources, in the official SDKs' order (PROTOCOL.md §6), each in its own module:
//! 1. environment — `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `_SECURITY_TOKEN` (parsed with the
//!    rest of the settings in [`crate::config`], so a half-set pair is a configuration error);
//! 2. [`oidc`] — ACK RRSA: `AssumeRoleWithOIDC` with a token file that is re-read on every call;
//! 3. [`profile`] — the Alibaba Cloud CLI's `~/.aliyun/config.json`;
//! 4. [`ini`] — `~/.alibabacloud/credentials.ini` or `ALIBABA_CLOUD_CREDENTIALS_FILE`, read by
//!    [`configparser`] exactly as the Python SDK reads it;
//! 5. [`ecs`] — the ECS instance RAM role from the metadata service;
//! 6. [`uri`] — `ALIBABA_CLOUD_CREDENTIALS_URI`.
//!
//! Each source is one implementation of one trait ([`sources`]), and [`chain::load`] is a loop
//! over them that picks the first source that is configured. Unlike the official SDKs, a source
//! that is configured but broken stops the chain with its error rather than falling through to a
//! different identity. Temporary credentials (OIDC, ECS, URI, a RamRoleArn profile) are renewed in
//! the background by [`renew`].
//!
//! Beside the sources: [`value`] (the redacting credential value) and [`origin`] (where it came
//! from), [`provider`] (what signs `AssumeRole`), [`error`], [`source`] and [`found`] (how a
//! source answers the chain), [`profile_kind`] (a CLI or INI profile's mode), [`local`] (the
//! metadata service's and a credentials URI's HTTP and JSON), [`env`] (the SDKs' environment
//! flags).

pub mod chain;
mod configparser;
mod ecs;
mod env;
mod error;
mod found;
mod ini;
mod local;
mod oidc;
mod origin;
mod profile;
mod profile_kind;
mod provider;
pub mod renew;
mod source;
mod sources;
mod uri;
mod value;

pub use env::CHAIN_VARIABLES;
pub use error::{CredentialsError, SourceError};
pub use origin::Origin;
pub use provider::CredentialsProvider;
pub use value::Credentials;
