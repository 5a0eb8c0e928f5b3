//! The default credential chain: asks each source in the official SDKs' order and keeps the
//! first that is configured. A configured but broken source stops the chain with its error; it
//! never falls through to a different identity. The decisions are kept for `stsvend check` and
//! for the error when nothing is configured.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use reqwest::Url;

use super::error::SourceError;
use super::found::Found;
use super::provider::CredentialsProvider;
use super::source::{Context, Detect};
use super::value::Credentials;
use super::{ecs, ini, oidc, profile, renew, uri};
use crate::clock::Clock;
use crate::sts::StsClient;

/// The sources in the order they are asked.
pub const ORDER: [&str; 6] = [
    "environment",
    oidc::SOURCE,
    profile::SOURCE,
    ini::SOURCE,
    ecs::SOURCE,
    uri::SOURCE,
];

/// What the chain needs. `Debug` names the environment's variables, never their values.
pub struct ChainInputs<'a> {
    pub env: &'a HashMap<String, String>,
    /// The environment source, already parsed and checked with the other settings.
    pub configured: Option<Credentials>,
    pub sts_endpoint: Url,
    pub metadata_endpoint: Url,
    pub clock: Clock,
    /// The process-wide AssumeRole budget, which a `RamRoleArn` profile's calls spend too.
    pub budget: Option<std::sync::Arc<crate::sts::budget::StsBudget>>,
}

impl fmt::Debug for ChainInputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.env.keys().collect();
        names.sort();
        f.debug_struct("ChainInputs")
            .field("env", &names)
            .field("configured", &self.configured)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("metadata_endpoint", &self.metadata_endpoint)
            .finish_non_exhaustive()
    }
}

/// What one source said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Chosen(String),
    Skipped(String),
    Broken(String),
    /// An earlier source was chosen.
    NotTried,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub source: &'static str,
    pub verdict: Verdict,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Chosen(why) => write!(f, "{:<17} chosen: {why}", self.source),
            Verdict::Skipped(why) => write!(f, "{:<17} skipped: {why}", self.source),
            Verdict::Broken(why) => write!(f, "{:<17} BROKEN: {why}", self.source),
            Verdict::NotTried => write!(
                f,
                "{:<17} not tried: an earlier source was chosen",
                self.source
            ),
        }
    }
}

/// The chosen provider and how it was chosen.
#[derive(Debug)]
pub struct Chain {
    pub provider: CredentialsProvider,
    pub decisions: Vec<Decision>,
}

impl Chain {
    /// The chosen source and why, for the start-up log line.
    pub fn chosen(&self) -> (&'static str, &str) {
        self.decisions
            .iter()
            .find_map(|d| match &d.verdict {
                Verdict::Chosen(why) => Some((d.source, why.as_str())),
                _ => None,
            })
            .unwrap_or(("none", ""))
    }
}

/// The chain could not produce a provider.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    #[error("credential source `{source_name}` is configured but broken: {message}")]
    Broken {
        source_name: &'static str,
        message: String,
        decisions: Vec<Decision>,
    },
    #[error(
        "no credentials found for calling STS; set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, run on ECS with an instance RAM role, or on ACK with RRSA (see the README), or try `stsvend dev`"
    )]
    NothingConfigured { decisions: Vec<Decision> },
}

impl ChainError {
    pub fn decisions(&self) -> &[Decision] {
        match self {
            Self::Broken { decisions, .. } | Self::NothingConfigured { decisions } => decisions,
        }
    }
}

/// Asks the sources in order and returns the first configured one as a provider. Temporary
/// credentials are fetched once here (a source that cannot deliver is broken) and then renewed
/// in the background.
pub async fn load(inputs: ChainInputs<'_>) -> Result<Chain, ChainError> {
    let mut decisions: Vec<Decision> = Vec::new();
    let broken = |source: &'static str, error: SourceError, mut decisions: Vec<Decision>| {
        decisions.push(Decision {
            source,
            verdict: Verdict::Broken(error.message.clone()),
        });
        fill_not_tried(&mut decisions);
        ChainError::Broken {
            source_name: source,
            message: error.message,
            decisions,
        }
    };
    let mut sts =
        StsClient::new(inputs.sts_endpoint.clone(), inputs.clock.clone()).map_err(|e| {
            broken(
                oidc::SOURCE,
                SourceError::new(format!("cannot build the STS client: {e}")),
                Vec::new(),
            )
        })?;
    if let Some(budget) = &inputs.budget {
        sts = sts.with_budget(budget.clone());
    }
    let ctx = Context {
        env: inputs.env,
        sts: &sts,
        metadata_endpoint: &inputs.metadata_endpoint,
    };
    let home = inputs
        .env
        .get("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);

    // 1. Environment.
    let found = match inputs.configured {
        Some(credentials) => {
            // The key id is not secret, but logs elsewhere show only its first characters.
            let id: String = credentials.access_key_id().chars().take(8).collect();
            let why = format!("AccessKey {id}… from {}", describe_origin(&credentials));
            Some((Found::Static(credentials), why))
        }
        None => {
            decisions.push(skip(
                "environment",
                "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set",
            ));
            None
        }
    };
    let found = match found {
        Some(found) => Some(found),
        // 2. OIDC (RRSA).
        None => match oidc::detect(inputs.env, &sts) {
            Ok(Some(oidc)) => {
                let why = oidc.describe();
                Some((
                    Found::Temporary(Box::new(renew::Temporary::Oidc(oidc)), None),
                    why,
                ))
            }
            Ok(None) => {
                decisions.push(skip(
                    oidc::SOURCE,
                    "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE are not set",
                ));
                None
            }
            Err(error) => return Err(broken(oidc::SOURCE, error, decisions)),
        },
    };
    let found = match found {
        Some(found) => Some(found),
        // 3. CLI profile.
        None => match profile::detect(home.as_deref(), &ctx) {
            Ok(Detect::Use(found)) => Some(found),
            Ok(Detect::Skip(why)) => {
                decisions.push(skip(profile::SOURCE, &why));
                None
            }
            Err(error) => return Err(broken(profile::SOURCE, error, decisions)),
        },
    };
    let found = match found {
        Some(found) => Some(found),
        // 4. Credentials file.
        None => match ini::detect(home.as_deref(), &ctx) {
            Ok(Detect::Use(found)) => Some(found),
            Ok(Detect::Skip(why)) => {
                decisions.push(skip(ini::SOURCE, &why));
                None
            }
            Err(error) => return Err(broken(ini::SOURCE, error, decisions)),
        },
    };
    let found = match found {
        Some(found) => Some(found),
        // 5. ECS instance RAM role.
        None => match ecs::detect(inputs.env, &inputs.metadata_endpoint).await {
            Ok(Detect::Use((ecs, first))) => {
                let why = ecs.describe();
                Some((
                    Found::Temporary(Box::new(renew::Temporary::Ecs(ecs)), Some(first)),
                    why,
                ))
            }
            Ok(Detect::Skip(why)) => {
                decisions.push(skip(ecs::SOURCE, &why));
                None
            }
            Err(error) => return Err(broken(ecs::SOURCE, error, decisions)),
        },
    };
    let found = match found {
        Some(found) => Some(found),
        // 6. Credentials URI.
        None => match uri::detect(inputs.env) {
            Ok(Some(uri)) => {
                let why = uri.describe();
                Some((
                    Found::Temporary(Box::new(renew::Temporary::Uri(uri)), None),
                    why,
                ))
            }
            Ok(None) => {
                decisions.push(skip(
                    uri::SOURCE,
                    "ALIBABA_CLOUD_CREDENTIALS_URI is not set",
                ));
                None
            }
            Err(error) => return Err(broken(uri::SOURCE, error, decisions)),
        },
    };

    let Some((found, why)) = found else {
        return Err(ChainError::NothingConfigured { decisions });
    };
    let source = ORDER[decisions.len()];
    let provider = match found {
        Found::Static(credentials) => CredentialsProvider::Static(credentials),
        Found::Temporary(temporary, first) => {
            // A configured source that cannot deliver now is broken now, not at the first
            // token request: start-up fails with its error.
            let first = match first {
                Some(first) => first,
                None => match temporary.fetch().await {
                    Ok(first) => first,
                    Err(error) => return Err(broken(source, error, decisions)),
                },
            };
            CredentialsProvider::Renewing(renew::spawn(
                *temporary,
                Some(first),
                inputs.clock.clone(),
            ))
        }
    };
    crate::metrics::record_base_credentials_source(source);
    decisions.push(Decision {
        source,
        verdict: Verdict::Chosen(why),
    });
    fill_not_tried(&mut decisions);
    Ok(Chain {
        provider,
        decisions,
    })
}

fn skip(source: &'static str, why: &str) -> Decision {
    Decision {
        source,
        verdict: Verdict::Skipped(why.to_owned()),
    }
}

fn fill_not_tried(decisions: &mut Vec<Decision>) {
    for source in ORDER.iter().skip(decisions.len()) {
        decisions.push(Decision {
            source,
            verdict: Verdict::NotTried,
        });
    }
}

fn describe_origin(credentials: &Credentials) -> &'static str {
    if credentials.source() == "config file" {
        "the config file"
    } else if credentials.security_token().is_some() {
        "ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/_SECURITY_TOKEN"
    } else {
        "ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET"
    }
}
