//! `stsvend check`: loads the settings and the credential chain and says, in plain lines, what
//! would happen; with `--live`, performs one `AssumeRole` per profile. Never prints a secret.

use std::collections::HashMap;
use std::io::Write;

use super::fleet;
use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::Credentials;
use crate::credentials::chain::{self, ChainInputs};
use crate::sts::StsClient;

/// How the check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The credential chain found nothing usable, or a source is broken (exit 2).
    ChainFailed,
    /// Base credentials or a live `AssumeRole` failed (exit 1).
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::ChainFailed => 2,
        }
    }
}

/// Runs the check, writing the report to `out`.
pub async fn run(
    config: &Config,
    env: &HashMap<String, String>,
    live: bool,
    out: &mut impl Write,
) -> Outcome {
    // Output errors (a closed pipe) must not turn into a panic; the exit code still tells.
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    report_settings(config, &mut say);
    if !report_fleet(config, env, &mut say).await {
        return Outcome::Failed;
    }
    say("credential chain (in the official SDKs' order):".to_owned());
    let clock = Clock::System;
    let loaded = chain::load(ChainInputs {
        env,
        configured: config.credentials.clone(),
        sts_endpoint: config.base_sts_endpoint.clone(),
        metadata_endpoint: config.ecs_metadata_endpoint.clone(),
        clock: clock.clone(),
        budget: None,
    })
    .await;
    let chain = match loaded {
        Ok(chain) => chain,
        Err(error) => {
            for decision in error.decisions() {
                say(format!("  {decision}"));
            }
            say(format!("FAILED: {error}"));
            return Outcome::ChainFailed;
        }
    };
    for decision in &chain.decisions {
        say(format!("  {decision}"));
    }
    let base = match chain.provider.credentials().await {
        Ok(base) => base,
        Err(error) => {
            say(format!("FAILED: {error}"));
            return Outcome::Failed;
        }
    };
    say(format!(
        "base credentials: OK, AccessKey {}{}",
        prefix(base.access_key_id()),
        base.expiration()
            .map(|e| format!(
                ", valid until {}",
                e.format(crate::sts::response::EXPIRATION_FORMAT)
            ))
            .unwrap_or_default()
    ));
    if !live {
        say(
            "not calling STS; run `stsvend check --live` to try one AssumeRole per profile"
                .to_owned(),
        );
        return Outcome::Ok;
    }
    assume_each_role(config, &base, clock, &mut say).await
}

/// Fleet mode: whether its store answers and a sealed value round-trips. `false`: it failed.
async fn report_fleet(
    config: &Config,
    env: &HashMap<String, String>,
    say: &mut impl FnMut(String),
) -> bool {
    let Some(settings) = &config.fleet else {
        return true;
    };
    let checked = match fleet::connect(config, env) {
        Ok(Some(store)) => fleet::check(&store)
            .await
            .map(|line| format!("as replica {}: OK, {line}", store.replica_id())),
        Ok(None) => return true,
        Err(error) => Err(error.to_string()),
    };
    match checked {
        Ok(line) => {
            say(format!("fleet store {} {line}", settings.url));
            true
        }
        Err(line) => {
            say(format!("fleet store {}: FAILED: {line}", settings.url));
            false
        }
    }
}

/// The profiles, the settings given and the warnings.
fn report_settings(config: &Config, say: &mut impl FnMut(String)) {
    say(format!(
        "settings: OK, {} profile(s), STS at {}",
        config.profiles.len(),
        config.sts_endpoint
    ));
    if config.base_sts_endpoint != config.sts_endpoint {
        say(format!(
            "  the base credentials' own STS calls go to {} (ALIBABA_CLOUD_STS_REGION)",
            config.base_sts_endpoint
        ));
    }
    for profile in &config.profiles {
        say(format!(
            "  profile {:<12} role {}  session {}  {}s  {}",
            profile.name,
            profile.call.role_arn,
            profile.call.role_session_name,
            profile.call.duration_seconds,
            profile.scope
        ));
    }
    // From the settings table: what the operator set, so a value that did not take is seen.
    // Secrets are never shown (`config::Given` holds none).
    say(format!(
        "  {} setting(s) given; the others have their defaults (the README's settings table)",
        config.given.len()
    ));
    for given in &config.given {
        say(format!("    {} = {}", given.setting, given.value));
    }
    // Not settings, but names that look like ones: say why they did not stop start-up.
    for variable in &config.injected {
        say(format!(
            "    {} ignored: set by {}",
            variable.name, variable.by
        ));
    }
    for warning in &config.warnings {
        say(format!("  warning: {warning}"));
    }
}

/// `--live`: one `AssumeRole` per profile, with the base credentials.
async fn assume_each_role(
    config: &Config,
    base: &Credentials,
    clock: Clock,
    say: &mut impl FnMut(String),
) -> Outcome {
    let client = match StsClient::new(config.sts_endpoint.clone(), clock) {
        Ok(client) => client,
        Err(error) => {
            say(format!("FAILED: cannot build the STS client: {error}"));
            return Outcome::Failed;
        }
    };
    let mut outcome = Outcome::Ok;
    for profile in &config.profiles {
        match client.assume_role(base, &profile.call).await {
            Ok(issued) => {
                say(format!(
                    "profile {}: OK, AssumeRole issued {}… valid until {} (STS request {})",
                    profile.name,
                    issued.key_id_prefix(),
                    issued
                        .expiration
                        .format(crate::sts::response::EXPIRATION_FORMAT),
                    issued.request_id.as_deref().unwrap_or("none")
                ));
                say(format!(
                    "  effective session policy: {}",
                    profile
                        .call
                        .policy
                        .as_deref()
                        .unwrap_or("none: the token carries every permission of the role")
                ));
            }
            Err(error) => {
                outcome = Outcome::Failed;
                say(format!("profile {}: FAILED: {error}", profile.name));
                if let Some(hint) = error.hint() {
                    say(format!("  hint: {hint}"));
                }
            }
        }
    }
    outcome
}

fn prefix(id: &str) -> String {
    let shown: String = id.chars().take(8).collect();
    if shown.len() < id.len() {
        format!("{shown}…")
    } else {
        shown
    }
}
