//! The vocabulary every settings parser shares: a raw value and where it came from, a profile's
//! raw values, and the problems found. A leaf of `config`, so the parsers in `config/` need
//! nothing from the module that calls them.

use std::collections::BTreeMap;
use std::fmt;

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value came from: an environment variable or `key` in the file.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// A raw value and where it came from.
#[derive(Clone)]
pub(super) struct Setting {
    /// Where, for error lines: the variable, or the key and the file.
    pub(super) origin: String,
    /// Where, for decisions that depend on it (whose credentials these are).
    pub(super) place: Place,
    pub(super) value: String,
}

/// Which kind of place a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Environment,
    ConfigFile,
    /// Filled in by `stsvend dev`.
    DevDefault,
}

/// A profile's raw settings by file key (see [`super::PROFILE_SETTINGS`]).
#[derive(Default)]
pub(super) struct RawProfile(pub(super) BTreeMap<&'static str, Setting>);

impl RawProfile {
    pub(super) fn get(&self, key: &str) -> Option<&Setting> {
        self.0.get(key)
    }
}

/// Collects problems while parsing.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, setting: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            setting: setting.into(),
            message: message.into(),
        });
    }
}

/// A value quoted for an error line: escaped, and cut short so a pasted document does not flood
/// the terminal.
pub(super) fn shown(value: &str) -> String {
    let cut: String = value.chars().take(60).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}
