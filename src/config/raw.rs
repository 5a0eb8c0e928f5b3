//! The settings as given, before validation: global ones and each profile's, by [`Key`], with
//! the table's defaults one call away.

use std::collections::BTreeMap;

use super::setting::{Given, Setting};
use super::settings::{Key, Level};
use crate::profile_name::DEFAULT_PROFILE;

/// Everything the file and the environment gave.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) global: BTreeMap<Key, Setting>,
    pub(super) profiles: BTreeMap<String, RawProfile>,
    /// Said while reading (an `ALIBABA_CLOUD_` name nothing reads), logged with the others.
    pub(super) warnings: Vec<String>,
}

impl Raw {
    /// The value given for a global setting.
    pub(super) fn get(&self, key: Key) -> Option<&Setting> {
        self.global.get(&key)
    }

    /// The value given, or else the table's default as if its variable had given it.
    pub(super) fn or_default(&self, key: Key) -> Option<Setting> {
        let spec = key.spec();
        debug_assert_eq!(spec.level, Level::Global, "{key:?}");
        self.get(key)
            .cloned()
            .or_else(|| Setting::default_of(spec, format!("`{}`", spec.env)))
    }

    /// Every setting given, global ones first, each shown as `stsvend check` prints it.
    pub(super) fn given(&self) -> Vec<Given> {
        let global = self.global.iter();
        let profiles = self.profiles.values().flat_map(|p| p.0.iter());
        global
            .chain(profiles)
            .map(|(key, setting)| setting.given(key.spec().kind))
            .collect()
    }
}

/// A profile's settings as given.
#[derive(Default)]
pub(super) struct RawProfile(pub(super) BTreeMap<Key, Setting>);

impl RawProfile {
    pub(super) fn get(&self, key: Key) -> Option<&Setting> {
        self.0.get(&key)
    }

    /// The value given, or else the table's default as if profile `name` had been given it.
    pub(super) fn or_default(&self, name: &str, key: Key) -> Option<Setting> {
        self.get(key)
            .cloned()
            .or_else(|| Setting::default_of(key.spec(), profile_origin(name, key)))
    }
}

/// How problem lines name profile `name`'s setting `key` when the operator did not give it:
/// the variable for the `default` profile, the file key for the others.
pub(super) fn profile_origin(name: &str, key: Key) -> String {
    let spec = key.spec();
    debug_assert_eq!(spec.level, Level::Profile, "{key:?}");
    if name == DEFAULT_PROFILE {
        format!("`{}`", spec.env)
    } else {
        format!("`profiles.{name}.{}`", spec.file_key.unwrap_or_default())
    }
}
