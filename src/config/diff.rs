//! What a reloaded configuration changes against the running one, and the configuration that
//! then runs: the new one, but for the settings only a restart applies (listeners, the
//! credential chain, STS endpoints and budget, fleet store, connection caps, the token
//! keepers' process-wide settings), which keep their running values. Pure: the settings'
//! digests ([`super::inputs`]) and the profiles' STS calls are compared, nothing is read.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::inputs::Inputs;
use super::settings::Key;
use super::validated::{Config, Profile};
use crate::config::AuthMode;
use crate::sts::AssumeRole;

/// The global settings a reload applies besides [`SESSIONS`]; every other global one needs a
/// restart.
const RELOADABLE: &[Key] = &[
    Key::TrustedProxies,
    Key::AdminHosts,
    Key::AdminToken,
    Key::AdminTokenFile,
    Key::ConfigWatchSeconds,
];

/// The login sessions' settings (reloadable): every login profile is rebuilt when one changes.
const SESSIONS: &[Key] = &[
    Key::SessionSecret,
    Key::SessionSecretFile,
    Key::SessionPreviousSecret,
    Key::SessionPreviousSecretFile,
    Key::SessionTtlSeconds,
    Key::LoginRateLimitPerMinute,
    Key::LoginRateLimitBurst,
];

/// What a reload changes. Names only: no value, so it can be logged and answered as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub profiles_added: Vec<String>,
    pub profiles_removed: Vec<String>,
    /// Kept profiles whose settings changed: rebuilt, keeping their kill switch.
    pub profiles_changed: Vec<String>,
    /// Changed profiles whose cached tokens are dropped: their role, session name, duration or
    /// policy (logstores, policy text) changed, or whether tokens are per caller.
    pub tokens_dropped: Vec<String>,
    /// Global settings applied (variable names).
    pub settings_changed: Vec<&'static str>,
    /// Global settings that changed but keep their running value until a restart.
    pub restart_needed: Vec<&'static str>,
}

impl ConfigDiff {
    /// Whether nothing changed at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn reloadable(key: Key) -> bool {
    RELOADABLE.contains(&key) || SESSIONS.contains(&key)
}

/// The global keys whose digests differ between `a` and `b`.
fn changed_keys<'a>(a: &'a Inputs, b: &'a Inputs) -> impl Iterator<Item = Key> + 'a {
    let keys = a.global.keys().chain(b.global.keys());
    let mut keys: Vec<Key> = keys
        .filter(|k| a.global.get(k) != b.global.get(k))
        .copied()
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
}

/// What running `new` instead of `running` changes. `new` is the file as read; the restart
/// settings it changes are listed, not applied (see [`merged`]).
pub fn diff(running: &Config, new: &Config) -> ConfigDiff {
    let mut diff = ConfigDiff::default();
    let mut sessions_changed = false;
    for key in changed_keys(&running.inputs, &new.inputs) {
        let name = key.spec().env;
        if reloadable(key) {
            diff.settings_changed.push(name);
            sessions_changed |= SESSIONS.contains(&key);
        } else {
            diff.restart_needed.push(name);
        }
    }
    let old = |name: &str| running.profiles.iter().find(|p| p.name == name);
    for profile in &new.profiles {
        let Some(before) = old(&profile.name) else {
            diff.profiles_added.push(profile.name.clone());
            continue;
        };
        let settings_changed =
            running.inputs.profiles.get(&profile.name) != new.inputs.profiles.get(&profile.name);
        let logins = profile.access.login.is_some() || before.access.login.is_some();
        if settings_changed || (sessions_changed && logins) {
            diff.profiles_changed.push(profile.name.clone());
            if !keeps_tokens(before, profile) {
                diff.tokens_dropped.push(profile.name.clone());
            }
        }
    }
    diff.profiles_removed = running
        .profiles
        .iter()
        .filter(|p| !new.profiles.iter().any(|n| n.name == p.name))
        .map(|p| p.name.clone())
        .collect();
    diff
}

/// Whether a changed profile's cached tokens are still right for it: the same STS call and
/// tokens cached the same way (shared only, or also per caller).
pub fn keeps_tokens(before: &Profile, after: &Profile) -> bool {
    before.call == after.call && per_caller(before) == per_caller(after)
}

/// Whether a profile caches tokens per caller (JWT subject, session, address) besides its
/// shared one.
pub fn per_caller(profile: &Profile) -> bool {
    profile.access.auth != AuthMode::None || profile.access.bind_source_ip
}

/// A short digest of what a profile's tokens are minted with (role, session name, duration,
/// session policy). Fleet mode puts it in the profile's Redis keys, so a replica never takes
/// a token minted under another version of the profile from the store.
pub fn call_fingerprint(call: &AssumeRole) -> String {
    let mut hasher = Sha256::new();
    for part in [
        call.role_arn.as_bytes(),
        call.role_session_name.as_bytes(),
        &call.duration_seconds.to_be_bytes(),
        call.policy.as_deref().unwrap_or("\u{0}none").as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The configuration to run after a reload: `new`'s reloadable settings and profiles, and
/// `running`'s values (and digests) for the settings that need a restart, so the next reload
/// still tells them apart.
pub fn merged(running: &Config, new: Config) -> Config {
    let mut inputs = new.inputs.clone();
    inputs.global.retain(|key, _| reloadable(*key));
    inputs.global.extend(
        running
            .inputs
            .global
            .iter()
            .filter(|(key, _)| !reloadable(**key))
            .map(|(key, digest)| (*key, *digest)),
    );
    Config {
        admin: new.admin,
        trusted_proxies: new.trusted_proxies,
        config_watch: new.config_watch,
        profiles: new.profiles,
        sessions: new.sessions,
        warnings: new.warnings,
        given: new.given,
        injected: new.injected,
        inputs,
        ..running.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{ConfigFile, Mode, load};

    const ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

    fn config(text: &str) -> Config {
        let env: HashMap<String, String> = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTestKeyId"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret-value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let file = ConfigFile {
            path: "stsvend.toml".into(),
            text: text.into(),
        };
        load(Some(&file), &env, Mode::Serve).unwrap_or_else(|e| panic!("{e}"))
    }

    fn profile(name: &str, extra: &str) -> String {
        format!("[profiles.{name}]\nrole_arn = \"{ARN}\"\nlogstore = \"proj/{name}\"\n{extra}\n")
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let text = profile("web", "") + &profile("app", "cors_origins = \"https://a.example\"");
        let diff = diff(&config(&text), &config(&text));
        assert!(diff.is_empty(), "{diff:?}");
    }

    #[test]
    fn profiles_added_removed_and_changed_are_told_apart() {
        let before = config(&(profile("web", "") + &profile("old", "") + &profile("app", "")));
        let after = config(
            &(profile("web", "")
                + &profile("new", "")
                + &profile("app", "cors_origins = \"https://a.example\"")),
        );
        let diff = diff(&before, &after);
        assert_eq!(diff.profiles_added, ["new"]);
        assert_eq!(diff.profiles_removed, ["old"]);
        assert_eq!(diff.profiles_changed, ["app"]);
        // CORS is not part of the STS call: the tokens stay.
        assert!(diff.tokens_dropped.is_empty());
        assert!(diff.restart_needed.is_empty() && diff.settings_changed.is_empty());
    }

    #[test]
    fn a_new_policy_role_or_duration_drops_the_tokens() {
        let before = config(&(profile("web", "") + &profile("app", "")));
        let cases = [
            profile("web", "").replace("proj/web", "proj/other"),
            profile("web", "duration_seconds = 1800"),
            profile("web", "").replace("role/sls-web-tracking", "role/another"),
            profile("web", "bind_source_ip = true"),
        ];
        for web in cases {
            let diff = diff(&before, &config(&(web.clone() + &profile("app", ""))));
            assert_eq!(diff.profiles_changed, ["web"], "{web}");
            assert_eq!(diff.tokens_dropped, ["web"], "{web}");
        }
    }

    #[test]
    fn settings_that_need_a_restart_are_listed_and_keep_their_running_value() {
        let before = config(&profile("web", ""));
        let after = config(
            &("listen = \"127.0.0.1:7000\"\ntrusted_proxies = \"10.0.0.0/8\"\nmin_remaining_seconds = 900\n"
                .to_owned()
                + &profile("web", "")),
        );
        let diff = diff(&before, &after);
        assert_eq!(
            diff.restart_needed,
            ["STSVEND_LISTEN", "STSVEND_MIN_REMAINING_SECONDS"]
        );
        assert_eq!(diff.settings_changed, ["STSVEND_TRUSTED_PROXIES"]);
        assert!(diff.profiles_changed.is_empty());
        let running = merged(&before, after.clone());
        assert_eq!(running.listen, before.listen);
        assert_eq!(running.min_remaining, before.min_remaining);
        assert_eq!(running.trusted_proxies, after.trusted_proxies);
        // Reloading the same file again still lists what awaits a restart, nothing else.
        let again = super::diff(&running, &after);
        assert_eq!(again.restart_needed, diff.restart_needed);
        assert!(again.settings_changed.is_empty() && again.profiles_changed.is_empty());
    }

    #[test]
    fn a_changed_secret_file_changes_its_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hs256");
        std::fs::write(&path, "a".repeat(40)).unwrap();
        let text = profile(
            "web",
            &format!(
                "auth = \"jwt\"\njwt_hs256_secret_file = {:?}\njwt_issuer = \"i\"\njwt_audience = \"a\"",
                path.display().to_string()
            ),
        );
        let before = config(&text);
        assert_eq!(before.inputs.files(), std::slice::from_ref(&path));
        std::fs::write(&path, "b".repeat(40)).unwrap();
        let diff = diff(&before, &config(&text));
        assert_eq!(diff.profiles_changed, ["web"]);
        assert!(diff.tokens_dropped.is_empty(), "the STS call is the same");
    }

    #[test]
    fn the_fingerprint_follows_every_part_of_the_call() {
        let call = AssumeRole {
            role_arn: ARN.into(),
            role_session_name: "stsvend".into(),
            duration_seconds: 3600,
            policy: Some("{}".into()),
        };
        let base = call_fingerprint(&call);
        assert_eq!(base.len(), 16);
        assert_eq!(base, call_fingerprint(&call));
        let variants = [
            AssumeRole {
                role_arn: "x".into(),
                ..call.clone()
            },
            AssumeRole {
                role_session_name: "y".into(),
                ..call.clone()
            },
            AssumeRole {
                duration_seconds: 900,
                ..call.clone()
            },
            AssumeRole {
                policy: None,
                ..call.clone()
            },
            AssumeRole {
                policy: Some("{ }".into()),
                ..call
            },
        ];
        for variant in variants {
            assert_ne!(call_fingerprint(&variant), base, "{variant:?}");
        }
    }
}
