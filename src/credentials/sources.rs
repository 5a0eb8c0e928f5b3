//! The six sources as one trait, in the order the chain asks them ([`all`]). Each
//! implementation is a thin wrapper over its module's `detect`: it names the source, turns what
//! the module found into what the chain builds ([`Found`]) and says why it was chosen or skipped.
//!
//! Apart from [`super::source`] because the answer names [`Found`], and so the renewing sources
//! (which `Found` holds) and the chain would import each other.

use std::future::Future;
use std::pin::Pin;

use super::error::SourceError;
use super::found::Found;
use super::origin::Origin;
use super::source::{Context, Detect, SourceName};
use super::value::Credentials;
use super::{ecs, ini, oidc, profile, renew, uri};

/// What a configured source found, and why it was chosen (for the chain report).
pub(super) type Use = (Found, String);

/// A source's whole answer; an `Err` is a source that is configured but broken.
pub(super) type Outcome = Result<Detect<Use>, SourceError>;

/// The future a source answers with: boxed so the chain can hold the sources in one list. It is
/// awaited once per source at start-up, so the allocation costs nothing that matters.
pub(super) type Answer<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One source of the chain.
pub(super) trait Source: Send + Sync {
    fn name(&self) -> SourceName;
    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a>;
}

/// The sources in the official SDKs' order; `configured` is the environment source, already
/// parsed with the other settings.
pub(super) fn all(configured: Option<Credentials>) -> [Box<dyn Source>; 6] {
    [
        Box::new(Environment(configured)),
        Box::new(Rrsa),
        Box::new(CliProfile),
        Box::new(CredentialsFile),
        Box::new(EcsRamRole),
        Box::new(CredentialsUri),
    ]
}

/// 1. `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (or stsvend's config file), parsed by `config`.
struct Environment(Option<Credentials>);

impl Source for Environment {
    fn name(&self) -> SourceName {
        SourceName::Environment
    }

    fn detect<'a>(&'a self, _ctx: &'a Context<'a>) -> Answer<'a> {
        let outcome = match &self.0 {
            Some(credentials) => {
                // The key id is not secret, but logs elsewhere show only its first characters.
                let id: String = credentials.access_key_id().chars().take(8).collect();
                let why = format!("AccessKey {id}… from {}", describe_origin(credentials));
                Detect::Use((Found::Static(credentials.clone()), why))
            }
            None => Detect::Skip(
                "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set"
                    .to_owned(),
            ),
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }
}

fn describe_origin(credentials: &Credentials) -> &'static str {
    match credentials.origin() {
        Origin::ConfigFile => "the config file",
        _ if credentials.security_token().is_some() => {
            "ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/_SECURITY_TOKEN"
        }
        _ => "ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET",
    }
}

/// 2. ACK RRSA: `AssumeRoleWithOIDC`.
struct Rrsa;

impl Source for Rrsa {
    fn name(&self) -> SourceName {
        SourceName::Oidc
    }

    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a> {
        let outcome = oidc::detect(ctx.env, ctx.sts).map(|found| match found {
            Some(oidc) => {
                let why = oidc.describe();
                let temporary = Box::new(renew::Temporary::Oidc(oidc));
                Detect::Use((Found::Temporary(temporary, None), why))
            }
            None => Detect::Skip(
                "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE are not set"
                    .to_owned(),
            ),
        });
        Box::pin(std::future::ready(outcome))
    }
}

/// 3. The Alibaba Cloud CLI's profile.
struct CliProfile;

impl Source for CliProfile {
    fn name(&self) -> SourceName {
        SourceName::CliProfile
    }

    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a> {
        Box::pin(std::future::ready(profile::detect(ctx)))
    }
}

/// 4. The SDKs' credentials file.
struct CredentialsFile;

impl Source for CredentialsFile {
    fn name(&self) -> SourceName {
        SourceName::CredentialsFile
    }

    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a> {
        Box::pin(std::future::ready(ini::detect(ctx)))
    }
}

/// 5. The ECS instance RAM role; detecting it fetches the first credentials.
struct EcsRamRole;

impl Source for EcsRamRole {
    fn name(&self) -> SourceName {
        SourceName::EcsRamRole
    }

    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a> {
        Box::pin(async move {
            let found = ecs::detect(ctx.env, ctx.metadata_endpoint).await?;
            Ok(match found {
                Detect::Use((ecs, first)) => {
                    let why = ecs.describe();
                    let temporary = Box::new(renew::Temporary::Ecs(ecs));
                    Detect::Use((Found::Temporary(temporary, Some(first)), why))
                }
                Detect::Skip(why) => Detect::Skip(why),
            })
        })
    }
}

/// 6. `ALIBABA_CLOUD_CREDENTIALS_URI`.
struct CredentialsUri;

impl Source for CredentialsUri {
    fn name(&self) -> SourceName {
        SourceName::CredentialsUri
    }

    fn detect<'a>(&'a self, ctx: &'a Context<'a>) -> Answer<'a> {
        let outcome = uri::detect(ctx.env).map(|found| match found {
            Some(uri) => {
                let why = uri.describe();
                let temporary = Box::new(renew::Temporary::Uri(uri));
                Detect::Use((Found::Temporary(temporary, None), why))
            }
            None => Detect::Skip("ALIBABA_CLOUD_CREDENTIALS_URI is not set".to_owned()),
        });
        Box::pin(std::future::ready(outcome))
    }
}
