//! Fleet mode's settings (`STSVEND_REDIS_*`, `STSVEND_FLEET_SIZE_HINT`, `STSVEND_REPLICA_ID`):
//! rows of the one table like every other setting, checked by [`FleetSettings::parse`], whose
//! problems (each naming its setting, none repeating a secret) join the others.

use std::collections::HashMap;

use super::problems::Problems;
use super::raw::Raw;
use super::settings::Key;
use crate::fleet::settings::{FleetSettings, FleetSettingsError, URL};

/// The rows [`FleetSettings::parse`] reads, by their variables.
const FLEET_KEYS: [Key; 11] = [
    Key::RedisUrl,
    Key::RedisPassword,
    Key::RedisPasswordFile,
    Key::RedisCaFile,
    Key::RedisKeyPrefix,
    Key::RedisEncryptionKey,
    Key::RedisEncryptionKeyFile,
    Key::RedisPreviousEncryptionKey,
    Key::RedisPreviousEncryptionKeyFile,
    Key::RedisCommandTimeoutMs,
    Key::FleetSizeHint,
];

/// The longest replica id: it is written beside kill-switch changes and as a lock owner.
const MAX_REPLICA_ID_LEN: usize = 64;

/// The fleet settings given (file or environment), or `None` for one process as before.
/// `stsvend dev` runs alone: fleet settings are ignored there, with a warning.
pub(super) fn parse(
    raw: &Raw,
    dev: bool,
    warnings: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<FleetSettings> {
    let given: HashMap<String, String> = FLEET_KEYS
        .iter()
        .filter_map(|&key| Some((key.spec().env.to_owned(), raw.get(key)?.value.clone())))
        .collect();
    if dev {
        if !given.is_empty() || raw.get(Key::ReplicaId).is_some() {
            warnings
                .push("fleet settings are ignored by `stsvend dev`, which runs alone".to_owned());
        }
        return None;
    }
    let settings = match FleetSettings::parse(&given) {
        Ok(settings) => settings,
        Err(error) => {
            report(&error, problems);
            return None;
        }
    };
    match (raw.get(Key::ReplicaId), &settings) {
        (Some(id), None) => problems.add(
            &id.origin,
            "is set but `STSVEND_REDIS_URL` is not; a replica id only matters in fleet mode",
        ),
        (Some(id), Some(_)) if !valid_replica_id(&id.value) => problems.add(
            &id.origin,
            format!("must be 1 to {MAX_REPLICA_ID_LEN} letters, digits, `.`, `_`, `:` or `-`"),
        ),
        _ => {}
    }
    settings
}

/// This replica's name: `STSVEND_REPLICA_ID`, else the host name (on Kubernetes the pod's name,
/// in Docker the container id) when it is a valid id, else `replica-` and `nonce` in hex.
pub fn replica_id(given: Option<&str>, hostname: Option<&str>, nonce: u32) -> String {
    given
        .or(hostname.filter(|name| valid_replica_id(name)))
        .map_or_else(|| format!("replica-{nonce:08x}"), str::to_owned)
}

/// Whether `id` can name a replica (the pod name always can).
pub fn valid_replica_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REPLICA_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// One problem line, under the setting at fault, so it reads like every other setting's.
fn report(error: &FleetSettingsError, problems: &mut Problems) {
    let (setting, message) = match error {
        FleetSettingsError::Invalid { name, reason } => (*name, reason.clone()),
        FleetSettingsError::Unreadable { name, path, reason } => {
            (*name, format!("cannot read {path}: {reason}"))
        }
        FleetSettingsError::Both(name, other) => {
            (*name, format!("and `{other}` are both set; set one"))
        }
        FleetSettingsError::WithoutUrl(name) => (
            *name,
            format!("is set but `{URL}` is not; fleet settings need a Redis URL"),
        ),
        FleetSettingsError::MissingKey => (URL, error.to_string()),
    };
    problems.add(format!("`{setting}`"), message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::settings::NAMES;

    #[test]
    fn the_table_has_a_row_for_every_name_fleet_settings_read() {
        let envs: Vec<&str> = FLEET_KEYS.iter().map(|key| key.spec().env).collect();
        assert_eq!(envs, NAMES);
    }

    #[test]
    fn the_tables_defaults_are_the_fleet_defaults() {
        use crate::config::settings::Fallback;
        use crate::fleet::settings::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_KEY_PREFIX};
        assert_eq!(
            Key::RedisKeyPrefix.spec().default,
            Fallback::Value(DEFAULT_KEY_PREFIX)
        );
        let Fallback::Value(timeout_ms) = Key::RedisCommandTimeoutMs.spec().default else {
            panic!("the command timeout has a default value");
        };
        assert_eq!(timeout_ms, DEFAULT_COMMAND_TIMEOUT.as_millis().to_string());
    }

    #[test]
    fn the_replica_id_is_given_or_the_host_name_or_made_up() {
        assert_eq!(replica_id(Some("a"), Some("pod-1"), 7), "a");
        assert_eq!(replica_id(None, Some("pod-1"), 7), "pod-1");
        assert_eq!(replica_id(None, Some("not valid"), 7), "replica-00000007");
        assert_eq!(replica_id(None, None, 0xabc), "replica-00000abc");
    }

    #[test]
    fn replica_ids_are_names_not_text() {
        assert!(valid_replica_id("stsvend-7c9f8d6b5-x2x4q"));
        assert!(valid_replica_id("10.0.3.7:8080"));
        assert!(!valid_replica_id(""));
        assert!(!valid_replica_id("two words"));
        assert!(!valid_replica_id(&"a".repeat(65)));
    }
}
