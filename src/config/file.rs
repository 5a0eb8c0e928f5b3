//! Reading the TOML file into [`Raw`]: top-level keys are global settings, `[profiles.NAME]`
//! tables profiles; which keys exist and which take lists comes from the settings table.

use std::fmt;

use super::problems::{Problems, name_shown, one_line};
use super::raw::Raw;
use super::setting::{Place, Setting};
use super::settings::{self, Kind, Level, Spec};
use crate::profile_name::valid_profile_name;

/// A configuration file's path (for messages) and its text. `Debug` shows the path only: the
/// text may hold an AccessKey secret.
#[derive(Clone)]
pub struct ConfigFile {
    pub path: String,
    pub text: String,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// The top-level key that holds the profiles' tables.
const PROFILES: &str = "profiles";

pub(super) fn read(file: &ConfigFile, raw: &mut Raw, problems: &mut Problems) {
    let Some(table) = parse(file, problems) else {
        return;
    };
    let origin = |key: &str| format!("`{}` in `{}`", name_shown(key), file.path);
    for (key, value) in &table {
        if key == PROFILES {
            read_profiles(value, file, raw, problems);
            continue;
        }
        let Some(spec) = settings::by_file_key(Level::Global, key) else {
            let known: Vec<&str> = settings::file_keys(Level::Global)
                .chain([PROFILES])
                .collect();
            problems.add(
                origin(key),
                format!("unknown key; known keys are {}", known.join(", ")),
            );
            continue;
        };
        if let Some(setting) = setting(value, origin(key), spec, problems) {
            raw.global.insert(spec.key, setting);
        }
    }
}

/// The file as a TOML table, or a problem saying where it stops being TOML.
fn parse(file: &ConfigFile, problems: &mut Problems) -> Option<toml::Table> {
    match toml::from_str(&file.text) {
        Ok(table) => Some(table),
        Err(e) => {
            let location = e
                .span()
                .map(|span| {
                    let before = file.text.get(..span.start).unwrap_or_default();
                    let line = before.matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            problems.add(
                format!("config file `{}`", file.path),
                format!("is not valid TOML{location}: {}", one_line(e.message())),
            );
            None
        }
    }
}

fn read_profiles(value: &toml::Value, file: &ConfigFile, raw: &mut Raw, problems: &mut Problems) {
    let Some(profiles) = value.as_table() else {
        problems.add(
            format!("`{PROFILES}` in `{}`", file.path),
            "must be a table of profiles, e.g. [profiles.default]",
        );
        return;
    };
    for (name, body) in profiles {
        let shown_name = name_shown(name);
        let origin = |key: &str| {
            format!(
                "`{PROFILES}.{shown_name}.{}` in `{}`",
                name_shown(key),
                file.path
            )
        };
        if !valid_profile_name(name) {
            problems.add(
                format!("`{PROFILES}.{shown_name}` in `{}`", file.path),
                "profile names are 1-64 of a-z, 0-9, - and _, starting with a letter or digit",
            );
        }
        let Some(body) = body.as_table() else {
            problems.add(
                format!("`{PROFILES}.{shown_name}` in `{}`", file.path),
                "must be a table of settings",
            );
            continue;
        };
        let profile = raw.profiles.entry(name.clone()).or_default();
        for (key, value) in body {
            let Some(spec) = settings::by_file_key(Level::Profile, key) else {
                let known: Vec<&str> = settings::file_keys(Level::Profile).collect();
                problems.add(
                    origin(key),
                    format!("unknown key; known keys are {}", known.join(", ")),
                );
                continue;
            };
            if let Some(setting) = setting(value, origin(key), spec, problems) {
                profile.0.insert(spec.key, setting);
            }
        }
    }
}

/// A TOML string, integer or boolean as text; for a list setting, also an array of strings,
/// joined by commas.
fn setting(
    value: &toml::Value,
    origin: String,
    spec: &Spec,
    problems: &mut Problems,
) -> Option<Setting> {
    let list = spec.kind == Kind::List;
    let text = match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) if list => {
            let strings: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            if strings.is_none() {
                problems.add(&origin, "must be a list of strings");
            }
            strings.map(|s| s.join(","))
        }
        _ => {
            problems.add(
                &origin,
                if list {
                    "must be a string or a list of strings"
                } else {
                    "must be a string or a number"
                },
            );
            None
        }
    };
    text.map(|value| Setting {
        origin,
        place: Place::ConfigFile,
        value,
    })
}
