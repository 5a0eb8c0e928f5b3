//! The fleet settings, `STSVEND_REDIS_*` and `STSVEND_FLEET_SIZE_HINT`, parsed from the
//! environment map that `main` collects once. No `STSVEND_REDIS_URL`: no fleet, and the other
//! fleet settings are refused rather than silently ignored.
//!
//! Secrets (the password, the encryption keys, a password inside the URL) live in redacting
//! types; error messages name the setting and never repeat its value.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use super::seal::EncryptionKey;

pub const URL: &str = "STSVEND_REDIS_URL";
pub const PASSWORD: &str = "STSVEND_REDIS_PASSWORD";
pub const PASSWORD_FILE: &str = "STSVEND_REDIS_PASSWORD_FILE";
pub const CA_FILE: &str = "STSVEND_REDIS_CA_FILE";
pub const KEY_PREFIX: &str = "STSVEND_REDIS_KEY_PREFIX";
pub const ENCRYPTION_KEY: &str = "STSVEND_REDIS_ENCRYPTION_KEY";
pub const ENCRYPTION_KEY_FILE: &str = "STSVEND_REDIS_ENCRYPTION_KEY_FILE";
pub const PREVIOUS_ENCRYPTION_KEY: &str = "STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY";
pub const PREVIOUS_ENCRYPTION_KEY_FILE: &str = "STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY_FILE";
pub const COMMAND_TIMEOUT_MS: &str = "STSVEND_REDIS_COMMAND_TIMEOUT_MS";
pub const FLEET_SIZE_HINT: &str = "STSVEND_FLEET_SIZE_HINT";

/// Every name this module reads, for unknown-name detection.
pub const NAMES: [&str; 11] = [
    URL,
    PASSWORD,
    PASSWORD_FILE,
    CA_FILE,
    KEY_PREFIX,
    ENCRYPTION_KEY,
    ENCRYPTION_KEY_FILE,
    PREVIOUS_ENCRYPTION_KEY,
    PREVIOUS_ENCRYPTION_KEY_FILE,
    COMMAND_TIMEOUT_MS,
    FLEET_SIZE_HINT,
];

pub const DEFAULT_KEY_PREFIX: &str = "stsvend:";
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_COMMAND_TIMEOUT_MS: u64 = 10_000;
const MAX_PREFIX_LEN: usize = 64;
/// Secret files are small; a larger one is a wrong path, not a key.
const MAX_SECRET_FILE_BYTES: u64 = 4096;
const MAX_FLEET_SIZE_HINT: u32 = 1000;

/// Where Redis is and how to reach it. `Debug` never shows a password.
#[derive(Clone)]
pub struct RedisUrl {
    /// The URL as given, which may hold a password.
    full: SecretString,
    /// The same URL with any password replaced, for logs and `stsvend check`.
    shown: String,
    tls: bool,
}

impl RedisUrl {
    /// The URL with its password, for the client only.
    pub fn expose(&self) -> &str {
        self.full.expose_secret()
    }

    pub fn tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

/// Validated fleet settings.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub url: RedisUrl,
    /// A password given beside the URL (the URL's own is in [`RedisUrl`]).
    pub password: Option<SecretString>,
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub encryption_key: EncryptionKey,
    pub previous_encryption_key: Option<EncryptionKey>,
    pub command_timeout: Duration,
    pub fleet_size_hint: Option<NonZeroU32>,
}

/// A fleet setting that cannot be used. Each names the setting; none repeats a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetSettingsError {
    #[error("`{name}`: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("`{name}`: cannot read {path}: {reason}")]
    Unreadable {
        name: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{0}` and `{1}` are both set; set one")]
    Both(&'static str, &'static str),
    #[error(
        "fleet mode needs `{ENCRYPTION_KEY}` or `{ENCRYPTION_KEY_FILE}` (32 random bytes, base64, such as the output of `openssl rand -base64 32`): nothing is stored in Redis unencrypted"
    )]
    MissingKey,
    #[error("`{0}` is set but `{URL}` is not; fleet settings need a Redis URL")]
    WithoutUrl(&'static str),
}

fn invalid(name: &'static str, reason: impl Into<String>) -> FleetSettingsError {
    FleetSettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}

impl FleetSettings {
    /// The fleet settings in `env`, or `None` when `STSVEND_REDIS_URL` is not set (one
    /// process, as before fleet mode).
    pub fn parse(env: &HashMap<String, String>) -> Result<Option<Self>, FleetSettingsError> {
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let Some(url) = get(URL) else {
            return match NAMES.iter().find(|name| get(name).is_some()) {
                Some(name) => Err(FleetSettingsError::WithoutUrl(name)),
                None => Ok(None),
            };
        };
        let (url, url_has_password) = parse_url(url)?;
        let password = secret(env, PASSWORD, PASSWORD_FILE)?;
        if url_has_password && password.is_some() {
            return Err(invalid(
                URL,
                format!(
                    "holds a password and `{PASSWORD}`/`{PASSWORD_FILE}` gives another; keep one"
                ),
            ));
        }
        let ca_file = get(CA_FILE).map(PathBuf::from);
        if ca_file.is_some() && !url.tls {
            return Err(invalid(CA_FILE, format!("needs a `rediss://` `{URL}`")));
        }
        let key_prefix = parse_prefix(get(KEY_PREFIX).unwrap_or(DEFAULT_KEY_PREFIX))?;
        let encryption_key = secret(env, ENCRYPTION_KEY, ENCRYPTION_KEY_FILE)?
            .ok_or(FleetSettingsError::MissingKey)
            .and_then(|text| parse_key(ENCRYPTION_KEY, text.expose_secret()))?;
        let previous_encryption_key =
            match secret(env, PREVIOUS_ENCRYPTION_KEY, PREVIOUS_ENCRYPTION_KEY_FILE)? {
                Some(text) => Some(parse_key(PREVIOUS_ENCRYPTION_KEY, text.expose_secret())?),
                None => None,
            };
        let command_timeout = match get(COMMAND_TIMEOUT_MS) {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(text) => parse_timeout(text)?,
        };
        let fleet_size_hint = get(FLEET_SIZE_HINT)
            .map(|text| {
                text.parse::<NonZeroU32>()
                    .ok()
                    .filter(|n| n.get() <= MAX_FLEET_SIZE_HINT)
                    .ok_or_else(|| {
                        invalid(
                            FLEET_SIZE_HINT,
                            format!("must be a whole number from 1 to {MAX_FLEET_SIZE_HINT}"),
                        )
                    })
            })
            .transpose()?;
        Ok(Some(Self {
            url,
            password,
            ca_file,
            key_prefix,
            encryption_key,
            previous_encryption_key,
            command_timeout,
            fleet_size_hint,
        }))
    }
}

fn parse_url(text: &str) -> Result<(RedisUrl, bool), FleetSettingsError> {
    // The parser's own message could quote the URL; ours never does.
    let mut url = url::Url::parse(text).map_err(|_| {
        invalid(
            URL,
            "is not a URL; expected redis://host:port[/db] or rediss://host:port[/db]",
        )
    })?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        _ => return Err(invalid(URL, "must start with redis:// or rediss:// (TLS)")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(URL, "has no host"));
    }
    let has_password = url.password().is_some();
    if has_password {
        let _ = url.set_password(Some("redacted"));
    }
    Ok((
        RedisUrl {
            full: SecretString::from(text.to_owned()),
            shown: url.to_string(),
            tls,
        },
        has_password,
    ))
}

fn parse_prefix(text: &str) -> Result<String, FleetSettingsError> {
    // Braces would change the hash slot of every key (`{...}` is a cluster hash tag).
    let fine = text.len() <= MAX_PREFIX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if fine {
        Ok(text.to_owned())
    } else {
        Err(invalid(
            KEY_PREFIX,
            format!(
                "must be up to {MAX_PREFIX_LEN} printable ASCII characters without spaces or braces"
            ),
        ))
    }
}

fn parse_timeout(text: &str) -> Result<Duration, FleetSettingsError> {
    text.parse::<u64>()
        .ok()
        .filter(|ms| (1..=MAX_COMMAND_TIMEOUT_MS).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            invalid(
                COMMAND_TIMEOUT_MS,
                format!("must be milliseconds from 1 to {MAX_COMMAND_TIMEOUT_MS}"),
            )
        })
}

fn parse_key(name: &'static str, text: &str) -> Result<EncryptionKey, FleetSettingsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            invalid(
                name,
                "must be 32 bytes in base64 (44 characters), such as the output of `openssl rand -base64 32`",
            )
        })?;
    Ok(EncryptionKey::new(bytes))
}

/// A secret given inline (`name`) or in a file (`file_name`), not both.
fn secret(
    env: &HashMap<String, String>,
    name: &'static str,
    file_name: &'static str,
) -> Result<Option<SecretString>, FleetSettingsError> {
    let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
    match (get(name), get(file_name)) {
        (Some(_), Some(_)) => Err(FleetSettingsError::Both(name, file_name)),
        (Some(value), None) => Ok(Some(SecretString::from(value.trim().to_owned()))),
        (None, Some(path)) => read_secret_file(file_name, Path::new(path.trim())).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(name: &'static str, path: &Path) -> Result<SecretString, FleetSettingsError> {
    let unreadable = |reason: String| FleetSettingsError::Unreadable {
        name,
        path: path.display().to_string(),
        reason,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_SECRET_FILE_BYTES + 1)
                .read_to_string(&mut text)
        })
        .map_err(|error| unreadable(error.kind().to_string()))?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(unreadable(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(unreadable("the file is empty".to_owned()));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="; // 32 × 'A'
    const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 32 × 'B'

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<FleetSettings>, FleetSettingsError> {
        FleetSettings::parse(&env(pairs))
    }

    #[test]
    fn no_url_means_no_fleet_and_stray_settings_are_refused() {
        assert!(parse(&[]).unwrap().is_none());
        assert!(parse(&[("OTHER", "x")]).unwrap().is_none());
        assert_eq!(
            parse(&[(ENCRYPTION_KEY, KEY_A)]).unwrap_err(),
            FleetSettingsError::WithoutUrl(ENCRYPTION_KEY)
        );
    }

    #[test]
    fn defaults_and_every_setting() {
        let settings = parse(&[(URL, "redis://10.0.0.5:6379/2"), (ENCRYPTION_KEY, KEY_A)])
            .unwrap()
            .unwrap();
        assert_eq!(settings.key_prefix, "stsvend:");
        assert_eq!(settings.command_timeout, Duration::from_millis(50));
        assert!(!settings.url.tls());
        assert!(settings.password.is_none() && settings.previous_encryption_key.is_none());
        assert!(settings.fleet_size_hint.is_none());

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, format!("{KEY_B}\n")).unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "pw-from-file\n").unwrap();
        let settings = parse(&[
            (URL, "rediss://r-bp1.redis.rds.aliyuncs.com:6380"),
            (PASSWORD_FILE, password_file.to_str().unwrap()),
            (CA_FILE, "/etc/ssl/redis-ca.pem"),
            (KEY_PREFIX, "prod:"),
            (ENCRYPTION_KEY_FILE, key_file.to_str().unwrap()),
            (PREVIOUS_ENCRYPTION_KEY, KEY_A),
            (COMMAND_TIMEOUT_MS, "80"),
            (FLEET_SIZE_HINT, "3"),
        ])
        .unwrap()
        .unwrap();
        assert!(settings.url.tls());
        assert_eq!(settings.password.unwrap().expose_secret(), "pw-from-file");
        assert_eq!(
            settings.ca_file.unwrap(),
            PathBuf::from("/etc/ssl/redis-ca.pem")
        );
        assert_eq!(settings.key_prefix, "prod:");
        assert!(settings.previous_encryption_key.is_some());
        assert_eq!(settings.command_timeout, Duration::from_millis(80));
        assert_eq!(settings.fleet_size_hint.unwrap().get(), 3);
    }

    #[test]
    fn errors_name_the_setting() {
        let base = [(URL, "redis://h:6379"), (ENCRYPTION_KEY, KEY_A)];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = base.to_vec();
            pairs.retain(|(k, _)| *k != extra.0);
            pairs.push(extra);
            parse(&pairs).unwrap_err().to_string()
        };
        assert!(with((URL, "http://h")).starts_with("`STSVEND_REDIS_URL`"));
        assert!(with((URL, "not a url")).starts_with("`STSVEND_REDIS_URL`"));
        assert!(with((ENCRYPTION_KEY, "c2hvcnQ=")).starts_with("`STSVEND_REDIS_ENCRYPTION_KEY`"));
        assert!(
            with((PREVIOUS_ENCRYPTION_KEY, "!!"))
                .starts_with("`STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY`")
        );
        assert!(with((CA_FILE, "/ca.pem")).starts_with("`STSVEND_REDIS_CA_FILE`"));
        assert!(with((KEY_PREFIX, "{x}")).starts_with("`STSVEND_REDIS_KEY_PREFIX`"));
        assert!(with((COMMAND_TIMEOUT_MS, "0")).starts_with("`STSVEND_REDIS_COMMAND_TIMEOUT_MS`"));
        assert!(with((FLEET_SIZE_HINT, "0")).starts_with("`STSVEND_FLEET_SIZE_HINT`"));
        assert!(
            with((PASSWORD_FILE, "/nonexistent/pw")).starts_with("`STSVEND_REDIS_PASSWORD_FILE`")
        );
        assert_eq!(
            parse(&[(URL, "redis://h")]).unwrap_err(),
            FleetSettingsError::MissingKey
        );
        assert_eq!(
            parse(&[
                (URL, "redis://h"),
                (ENCRYPTION_KEY, KEY_A),
                (ENCRYPTION_KEY_FILE, "/k")
            ])
            .unwrap_err(),
            FleetSettingsError::Both(ENCRYPTION_KEY, ENCRYPTION_KEY_FILE)
        );
        assert!(
            parse(&[
                (URL, "redis://:pw@h"),
                (ENCRYPTION_KEY, KEY_A),
                (PASSWORD, "other")
            ])
            .unwrap_err()
            .to_string()
            .starts_with("`STSVEND_REDIS_URL`")
        );
    }

    #[test]
    fn neither_debug_nor_errors_show_a_secret() {
        let settings = parse(&[
            (URL, "redis://user:url-secret-pw@h:6379"),
            (ENCRYPTION_KEY, KEY_A),
            (PREVIOUS_ENCRYPTION_KEY, KEY_B),
        ])
        .unwrap()
        .unwrap();
        let shown = format!("{settings:?} {}", settings.url);
        assert!(shown.contains("user:redacted@h:6379"), "{shown}");
        assert!(!shown.contains("url-secret-pw"), "{shown}");
        assert!(!shown.contains(KEY_A) && !shown.contains(KEY_B) && !shown.contains("AAAA"));
        assert_eq!(settings.url.expose(), "redis://user:url-secret-pw@h:6379");

        let settings = parse(&[
            (URL, "redis://h"),
            (ENCRYPTION_KEY, KEY_A),
            (PASSWORD, "pw-inline"),
        ])
        .unwrap()
        .unwrap();
        assert!(!format!("{settings:?}").contains("pw-inline"));
        let error = parse(&[
            (URL, "redis://:pw-in-url@h"),
            (ENCRYPTION_KEY, "pw-in-url-not-a-key"),
        ])
        .unwrap_err()
        .to_string();
        assert!(!error.contains("pw-in-url"), "{error}");
    }
}
