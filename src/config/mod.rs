//! Settings: environment variables and an optional TOML file, parsed once at start-up into one
//! typed, validated [`Config`]; and again on a reload (`diff` says what a new one changes).
//!
//! Every problem is collected and reported together, one line each, naming the setting and what
//! would be valid; `main` prints them and exits with code 2. Environment variables override the
//! file. Only a reload reads settings after start-up.
//!
//! File layout (see `config/stsvend.example.toml`): global keys at the top level, one
//! `[profiles.NAME]` table per profile. The `STSVEND_ROLE_ARN`-style variables configure the
//! profile named `default`.
//!
//! One job per file: [`settings`] is the table of every setting; `file.rs` and `env.rs` read
//! the two sources into `raw.rs`'s values as given; `validate.rs` turns the global ones, and
//! `profiles.rs`/`profile.rs`/`access.rs` each profile, into `validated.rs`'s [`Config`], with
//! `values.rs`, `admin.rs` and `credentials.rs` for shared kinds of value; `problems.rs` words
//! what is wrong; `injected.rs` knows the variables Kubernetes and Docker put beside ours.

use std::collections::HashMap;

pub use crate::profile_name::DEFAULT_PROFILE;
pub use crate::telemetry::LogFormat;

mod access;
mod admin;
mod credentials;
pub mod diff;
mod env;
#[cfg(test)]
mod env_tests;
mod file;
pub mod fleet;
mod injected;
pub mod inputs;
pub mod login;
mod problems;
mod profile;
mod profiles;
mod rate_limit;
mod raw;
#[cfg(test)]
mod sdk_tests;
mod secret;
mod setting;
pub mod settings;
#[cfg(test)]
mod tests;
mod validate;
mod validated;
mod values;

pub use access::{Access, AuthMode, JwtAlgorithm, JwtSettings, RateLimit};
pub use admin::{AdminAccess, AdminToken, MIN_ADMIN_TOKEN_BYTES};
pub use file::ConfigFile;
pub use injected::Injected;
pub use problems::{ConfigErrors, Problem};
pub use profiles::{DEV_LOGSTORE, DEV_ROLE_ARN};
pub use setting::Given;
pub use validated::{Config, Mode, Profile, Scope, TlsFiles};

/// Loads and validates the configuration from an optional file and the process environment
/// (passed in as a map so tests never touch the real environment).
pub fn load(
    file: Option<&ConfigFile>,
    env: &HashMap<String, String>,
    mode: Mode,
) -> Result<Config, ConfigErrors> {
    let mut problems = problems::Problems::default();
    let mut raw = raw::Raw::default();
    if let Some(file) = file {
        file::read(file, &mut raw, &mut problems);
    }
    let injected = env::read(env, &mut raw, &mut problems);
    let given = raw.given();
    let inputs = inputs::digest(&raw);
    let config = validate::validate(raw, mode, &mut problems);
    match config {
        Some(config) if problems.0.is_empty() => Ok(Config {
            given,
            injected,
            inputs,
            ..config
        }),
        _ => Err(ConfigErrors(problems.0)),
    }
}

/// Every `STSVEND_` variable this version reads, global and per-profile (for tests that
/// generate settings; the settings table is the one source).
pub fn env_names() -> impl Iterator<Item = &'static str> {
    settings::stsvend_env_names()
}

/// Every key of the file's top level (besides `profiles`), and of a `[profiles.NAME]` table.
pub fn file_keys() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        settings::file_keys(settings::Level::Global).collect(),
        settings::file_keys(settings::Level::Profile).collect(),
    )
}
