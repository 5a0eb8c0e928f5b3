//! Reading the environment into [`Raw`], over what the file gave, refusing `STSVEND_`
//! variables that are not in the settings table (but for those the platform injects), and
//! warning about `ALIBABA_CLOUD_` ones that nothing reads (other tools share those names, so
//! they are not refused).

use std::collections::HashMap;

use super::injected::{self, Injected};
use super::problems::{Problems, name_shown};
use super::raw::Raw;
use super::setting::{Place, Setting};
use super::settings::{self, Level};
use crate::profile_name::DEFAULT_PROFILE;

/// Returns the variables ignored as the platform's (see `injected.rs`).
pub(super) fn read(
    env: &HashMap<String, String>,
    raw: &mut Raw,
    problems: &mut Problems,
) -> Vec<Injected> {
    // An empty variable counts as unset.
    let get = |name: &str| {
        env.get(name).filter(|v| !v.is_empty()).map(|v| Setting {
            origin: format!("`{name}`"),
            place: Place::Environment,
            value: v.clone(),
        })
    };
    let sdk_endpoint = settings::SDK_ENDPOINT_KEYS.iter().map(|key| key.spec());
    for spec in settings::at(Level::Global).chain(sdk_endpoint) {
        if let Some(setting) = get(spec.env) {
            raw.global.insert(spec.key, setting);
        }
    }
    // The per-profile variables configure the profile named `default`.
    if settings::at(Level::Profile).any(|spec| get(spec.env).is_some()) {
        let profile = raw.profiles.entry(DEFAULT_PROFILE.to_owned()).or_default();
        for spec in settings::at(Level::Profile) {
            if let Some(setting) = get(spec.env) {
                profile.0.insert(spec.key, setting);
            }
        }
    }
    raw.warnings.extend(unknown_sdk_names(env));
    refuse_unknown(env, problems)
}

/// An `ALIBABA_CLOUD_` variable neither the settings nor the credential chain reads is likely a
/// typo (`ALIBABA_CLOUD_STS_REGOIN`), but another tool in the same environment may read it:
/// one warning each, naming the nearest name stsvend reads.
fn unknown_sdk_names(env: &HashMap<String, String>) -> Vec<String> {
    let known =
        || settings::sdk_env_names().chain(crate::credentials::CHAIN_VARIABLES.iter().copied());
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("ALIBABA_CLOUD_") && !known().any(|n| n == *k))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            let nearest = known()
                .map(|known| (strsim::levenshtein(name, known), known))
                .min()
                .map(|(distance, known)| {
                    if distance <= 3 {
                        format!("; did you mean `{known}`?")
                    } else {
                        format!(" (the nearest it reads is `{known}`)")
                    }
                })
                .unwrap_or_default();
            format!(
                "`{}` is not a variable stsvend reads{nearest}; ignored (other tools may read it)",
                name_shown(name)
            )
        })
        .collect()
}

/// A typo such as `STSVEND_LOGSTORES` must not silently hand out tokens with every permission
/// of the role: any `STSVEND_` variable not in the table is a problem, with the nearest name,
/// unless the platform put it there.
fn refuse_unknown(env: &HashMap<String, String>, problems: &mut Problems) -> Vec<Injected> {
    let mut unknown: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("STSVEND_") && !settings::stsvend_env_names().any(|n| n == *k)
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    unknown.sort_unstable();
    let (ignored, unknown) = injected::split(&unknown);
    for name in unknown {
        let suggestion = settings::stsvend_env_names()
            .map(|known| (strsim::levenshtein(name, known), known))
            .filter(|(distance, _)| *distance <= 3)
            .min()
            .map(|(_, known)| format!("; did you mean `{known}`?"))
            .unwrap_or_default();
        problems.add(
            format!("`{}`", name_shown(name)),
            format!(
                "is not a setting this version knows{suggestion} (see the README's settings table)"
            ),
        );
    }
    ignored
}
