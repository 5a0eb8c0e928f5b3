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
use super::source::{Context, Detect, SourceName};
use super::value::Credentials;
use super::{renew, sources};
use crate::clock::Clock;
use crate::sts::StsClient;

/// The sources' names in the order they are asked ([`sources::all`] holds them in this order).
pub const ORDER: [&str; 6] = [
    SourceName::Environment.as_str(),
    SourceName::Oidc.as_str(),
    SourceName::CliProfile.as_str(),
    SourceName::CredentialsFile.as_str(),
    SourceName::EcsRamRole.as_str(),
    SourceName::CredentialsUri.as_str(),
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
    let sts = sts_client(&inputs)?;
    let home = inputs
        .env
        .get("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let ctx = Context {
        env: inputs.env,
        home: home.as_deref(),
        sts: &sts,
        metadata_endpoint: &inputs.metadata_endpoint,
    };
    let mut decisions: Vec<Decision> = Vec::new();
    for source in sources::all(inputs.configured) {
        let name = source.name();
        match source.detect(&ctx).await {
            Ok(Detect::Skip(why)) => decisions.push(Decision {
                source: name.as_str(),
                verdict: Verdict::Skipped(why),
            }),
            Ok(Detect::Use((found, why))) => {
                return choose(name, found, why, decisions, &inputs.clock).await;
            }
            Err(error) => return Err(broken(name, error, decisions)),
        }
    }
    Err(ChainError::NothingConfigured { decisions })
}

/// The STS client the OIDC source and `RamRoleArn` profiles call, spending from the budget.
fn sts_client(inputs: &ChainInputs<'_>) -> Result<StsClient, ChainError> {
    let sts = StsClient::new(inputs.sts_endpoint.clone(), inputs.clock.clone()).map_err(|e| {
        let error = SourceError::new(format!("cannot build the STS client: {e}"));
        broken(SourceName::Oidc, error, Vec::new())
    })?;
    Ok(match &inputs.budget {
        Some(budget) => sts.with_budget(budget.clone()),
        None => sts,
    })
}

/// Makes the chosen source's provider. A configured source that cannot deliver now is broken
/// now, not at the first token request: start-up fails with its error.
async fn choose(
    name: SourceName,
    found: Found,
    why: String,
    mut decisions: Vec<Decision>,
    clock: &Clock,
) -> Result<Chain, ChainError> {
    let provider = match found {
        Found::Static(credentials) => CredentialsProvider::Static(credentials),
        Found::Temporary(temporary, first) => {
            let first = match first {
                Some(first) => first,
                None => match temporary.fetch().await {
                    Ok(first) => first,
                    Err(error) => return Err(broken(name, error, decisions)),
                },
            };
            CredentialsProvider::Renewing(renew::spawn(*temporary, Some(first), clock.clone()))
        }
    };
    crate::metrics::record_base_credentials_source(name.as_str());
    decisions.push(Decision {
        source: name.as_str(),
        verdict: Verdict::Chosen(why),
    });
    fill_not_tried(&mut decisions);
    Ok(Chain {
        provider,
        decisions,
    })
}

/// The chain stopped at `name`, configured but broken; the later sources were not tried.
fn broken(name: SourceName, error: SourceError, mut decisions: Vec<Decision>) -> ChainError {
    decisions.push(Decision {
        source: name.as_str(),
        verdict: Verdict::Broken(error.message.clone()),
    });
    fill_not_tried(&mut decisions);
    ChainError::Broken {
        source_name: name.as_str(),
        message: error.message,
        decisions,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_asks_its_sources_in_the_reported_order() {
        let names: Vec<&str> = sources::all(None)
            .iter()
            .map(|source| source.name().as_str())
            .collect();
        assert_eq!(names, ORDER);
    }
}
