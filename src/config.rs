//! Settings: environment variables and an optional TOML file, parsed once at start-up into one
//! typed, validated [`Config`].
//!
//! Every problem is collected and reported together, one line each, naming the setting and what
//! would be valid; `main` prints them and exits with code 2. Environment variables override the
//! file. Nothing reads settings after start-up.
//!
//! File layout (see `config/stsvend.example.toml`): global keys at the top level, one
//! `[profiles.NAME]` table per profile. The `STSVEND_ROLE_ARN`-style variables configure the
//! profile named `default`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use crate::credentials::{Credentials, Origin};
pub use crate::profile_name::DEFAULT_PROFILE;
use crate::profile_name::valid_profile_name;
use crate::sts::AssumeRole;
use crate::sts::names::{valid_role_arn, valid_session_name};
use crate::sts::policy::{self, LogstoreRef};
pub use crate::telemetry::LogFormat;

const DEFAULT_REGION: &str = "cn-shanghai";
const DEFAULT_SESSION_NAME: &str = "stsvend";
const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// STS's own bounds for `DurationSeconds` (the role's `MaxSessionDuration` may lower the top).
const DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43200;
/// The SLS plugin reuses a token for 300 s without looking at `Expiration`; 600 s leaves room for
/// batching delays and slow networks on top.
const DEFAULT_MIN_REMAINING_SECONDS: u64 = 600;
/// The refresher needs this much of a token's life between "fetched" and "too old to serve".
const MIN_SERVE_WINDOW_SECONDS: u64 = 60;
const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// A fifth of the account's AssumeRole quota (about 100 per second, shared by everything in the
/// account), so stsvend can never exhaust it.
const DEFAULT_STS_BUDGET_PER_SECOND: u32 = 20;
/// Open connections on the public listener. An idle connection holds about 10 KiB (a TLS one
/// more), so the default bounds a crowd of them near 100 MiB, well above what a load balancer
/// or a launch spike opens.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000_000;
/// New per-caller tokens per caller network (IPv4 /24, IPv6 /64) and minute. Carrier-grade NAT
/// puts thousands of legitimate users behind one /24; tokens last an hour, so 60 a minute (3600
/// an hour) still serves every one of them, while one network holds at most a sixteenth of the
/// default budget's caller lane (16 a second).
const DEFAULT_NEW_TOKENS_PER_NETWORK_PER_MINUTE: u32 = 60;
/// Open connections from one client address (an IPv6 /64). A carrier-grade NAT puts thousands
/// of phones behind one address: 10 000 of them fetching every 5 minutes and holding their
/// connection 5 s is about 170 at once, so 1000 leaves six times that, while one address alone
/// takes at most a tenth of the default global cap. Above `max_connections` it has no effect.
const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1000;
/// The admin listener stays on loopback unless the operator opens it (a container sets
/// 0.0.0.0:9090 so probes reach it).
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Where the ECS metadata service answers on every instance.
const DEFAULT_ECS_METADATA_HOST: &str = "100.100.100.200";
const DEFAULT_DEV_LISTEN: &str = "127.0.0.1:8080";
/// What `stsvend dev` assumes when nothing is configured, so that one command works.
pub const DEV_ROLE_ARN: &str = "acs:ram::1234567890123456:role/stsvend-dev";
pub const DEV_LOGSTORE: &str = "dev-project/dev-logstore";

/// Which command is loading the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `stsvend serve`: real STS, real credentials.
    Serve,
    /// `stsvend dev`: the built-in emulator supplies endpoint and credentials.
    Dev { allow_remote: bool },
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base URL of STS (`https://sts.<region>.aliyuncs.com/` unless overridden). Ignored in dev.
    pub sts_endpoint: Url,
    /// Base URL of the ECS metadata service (`http://100.100.100.200/` unless overridden).
    pub ecs_metadata_endpoint: Url,
    pub min_remaining: Duration,
    /// Where `/metrics`, `/healthz`, `/readyz` and the kill switch are served. The same address
    /// as `listen` puts them on the public port (only if the operator says so).
    pub admin_listen: SocketAddr,
    /// Host names and token guarding the admin routes.
    pub admin: AdminAccess,
    /// Certificate chain and key for native HTTPS on the public port; plain HTTP without.
    pub tls: Option<TlsFiles>,
    pub log_format: LogFormat,
    /// Proxies (the load balancer in front) whose `X-Forwarded-For` / `X-Real-IP` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Process-wide cap on `AssumeRole` calls per second.
    pub sts_budget_per_second: std::num::NonZeroU32,
    /// Connections the public listener holds open at once; further ones wait in the kernel's
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// How addresses are grouped: IPv6 by prefix for rate limits and caches, IPv4 networks for
    /// the new-token limit.
    pub grouping: crate::network::Grouping,
    /// New per-caller tokens per caller network and minute.
    pub new_tokens_per_network_per_minute: std::num::NonZeroU32,
    /// Connections one client address (an IPv6 /64) holds open at once on each listener; at
    /// most `max_connections` in effect.
    pub max_connections_per_address: usize,
    /// Sorted by name; `default` serves `/get_sts_token`.
    pub profiles: Vec<Profile>,
    /// The service's own AccessKey, when configured by environment or file.
    pub credentials: Option<Credentials>,
    /// Things that are allowed but worth telling the operator, logged once at start-up.
    pub warnings: Vec<String>,
}

/// One named token profile: which role, for how long, scoped how, and who may ask.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub call: AssumeRole,
    pub scope: Scope,
    pub access: Access,
}

/// What the session policy of a profile's tokens allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only `log:PostLogStoreLogs` on these logstores.
    Logstores(Vec<LogstoreRef>),
    /// An operator-supplied policy document.
    Document,
    /// No session policy: every permission of the role.
    Unrestricted,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Logstores(stores) => {
                let names: Vec<String> = stores.iter().map(ToString::to_string).collect();
                write!(f, "log:PostLogStoreLogs on {}", names.join(", "))
            }
            Self::Document => f.write_str("custom session policy"),
            Self::Unrestricted => f.write_str("every permission of the role (no session policy)"),
        }
    }
}

/// PEM files for the public listener's certificate, re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

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

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Environment variables this version understands (besides the official SDK names). Any other
/// `STSVEND_` variable is refused: a typo such as `STSVEND_LOGSTORES` must not silently hand out
/// tokens with every permission of the role.
/// (The per-profile variables are in [`PROFILE_SETTINGS`].)
const KNOWN_ENV: &[&str] = &[
    "STSVEND_CONFIG",
    "STSVEND_REGION",
    "STSVEND_STS_ENDPOINT",
    "STSVEND_ECS_METADATA_ENDPOINT",
    "STSVEND_MIN_REMAINING_SECONDS",
    "STSVEND_LISTEN",
    "STSVEND_TRUSTED_PROXIES",
    "STSVEND_STS_BUDGET_PER_SECOND",
    "STSVEND_MAX_CONNECTIONS",
    "STSVEND_IPV6_PREFIX_LENGTH",
    "STSVEND_IPV4_NETWORK_PREFIX_LENGTH",
    "STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE",
    "STSVEND_MAX_CONNECTIONS_PER_ADDRESS",
    "STSVEND_ADMIN_LISTEN",
    "STSVEND_ADMIN_HOSTS",
    "STSVEND_ADMIN_TOKEN",
    "STSVEND_ADMIN_TOKEN_FILE",
    "STSVEND_TLS_CERT",
    "STSVEND_TLS_KEY",
    "STSVEND_LOG_FORMAT",
];

fn known_env(name: &str) -> bool {
    KNOWN_ENV.contains(&name) || PROFILE_SETTINGS.iter().any(|(_, env, _)| *env == name)
}

/// Every `STSVEND_` variable this version reads, global and per-profile (for tests that
/// generate settings; the lists above are the one source).
pub fn env_names() -> impl Iterator<Item = &'static str> {
    KNOWN_ENV
        .iter()
        .copied()
        .chain(PROFILE_SETTINGS.iter().map(|(_, env, _)| *env))
}

/// Every key of the file's top level (besides `profiles`), and of a `[profiles.NAME]` table.
pub fn file_keys() -> (Vec<&'static str>, Vec<&'static str>) {
    let global = GLOBAL_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "profiles")
        .collect();
    let profile = PROFILE_SETTINGS.iter().map(|(key, _, _)| *key).collect();
    (global, profile)
}

const GLOBAL_KEYS: &[&str] = &[
    "listen",
    "region",
    "sts_endpoint",
    "ecs_metadata_endpoint",
    "trusted_proxies",
    "sts_budget_per_second",
    "max_connections",
    "ipv6_prefix_length",
    "ipv4_network_prefix_length",
    "new_tokens_per_network_per_minute",
    "max_connections_per_address",
    "admin_listen",
    "admin_hosts",
    "admin_token",
    "admin_token_file",
    "tls_cert",
    "tls_key",
    "log_format",
    "min_remaining_seconds",
    "access_key_id",
    "access_key_secret",
    "security_token",
    "profiles",
];

/// Per-profile settings: file key, the environment variable that sets it for the `default`
/// profile, and whether a list (TOML array or comma-separated text) is accepted.
const PROFILE_SETTINGS: &[(&str, &str, bool)] = &[
    ("role_arn", "STSVEND_ROLE_ARN", false),
    ("role_session_name", "STSVEND_ROLE_SESSION_NAME", false),
    ("duration_seconds", "STSVEND_DURATION_SECONDS", false),
    ("logstore", "STSVEND_LOGSTORE", true),
    ("policy", "STSVEND_POLICY", false),
    ("auth", "STSVEND_AUTH", false),
    ("jwt_hs256_secret", "STSVEND_JWT_HS256_SECRET", false),
    ("jwt_jwks_url", "STSVEND_JWT_JWKS_URL", false),
    ("jwt_jwks_file", "STSVEND_JWT_JWKS_FILE", false),
    ("jwt_issuer", "STSVEND_JWT_ISSUER", false),
    ("jwt_audience", "STSVEND_JWT_AUDIENCE", false),
    ("jwt_algorithms", "STSVEND_JWT_ALGORITHMS", true),
    (
        "rate_limit_per_minute",
        "STSVEND_RATE_LIMIT_PER_MINUTE",
        false,
    ),
    ("rate_limit_burst", "STSVEND_RATE_LIMIT_BURST", false),
    ("cors_origins", "STSVEND_CORS_ORIGINS", true),
    ("bind_source_ip", "STSVEND_BIND_SOURCE_IP", false),
    (
        "jwt_accept_any_audience",
        "STSVEND_JWT_ACCEPT_ANY_AUDIENCE",
        false,
    ),
];

#[derive(Default)]
struct Raw {
    listen: Option<Setting>,
    region: Option<Setting>,
    sts_endpoint: Option<Setting>,
    ecs_metadata_endpoint: Option<Setting>,
    trusted_proxies: Option<Setting>,
    sts_budget_per_second: Option<Setting>,
    max_connections: Option<Setting>,
    ipv6_prefix_length: Option<Setting>,
    ipv4_network_prefix_length: Option<Setting>,
    new_tokens_per_network_per_minute: Option<Setting>,
    max_connections_per_address: Option<Setting>,
    admin_listen: Option<Setting>,
    admin_hosts: Option<Setting>,
    admin_token: Option<Setting>,
    admin_token_file: Option<Setting>,
    tls_cert: Option<Setting>,
    tls_key: Option<Setting>,
    log_format: Option<Setting>,
    min_remaining_seconds: Option<Setting>,
    access_key_id: Option<Setting>,
    access_key_secret: Option<Setting>,
    security_token: Option<Setting>,
    profiles: BTreeMap<String, RawProfile>,
}

/// Loads and validates the configuration from an optional file and the process environment
/// (passed in as a map so tests never touch the real environment).
pub fn load(
    file: Option<&ConfigFile>,
    env: &HashMap<String, String>,
    mode: Mode,
) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let mut raw = Raw::default();
    if let Some(file) = file {
        read_file(file, &mut raw, &mut problems);
    }
    read_env(env, &mut raw, &mut problems);
    let config = validate(raw, mode, &mut problems);
    match config {
        Some(config) if problems.0.is_empty() => Ok(config),
        _ => Err(ConfigErrors(problems.0)),
    }
}

fn read_file(file: &ConfigFile, raw: &mut Raw, problems: &mut Problems) {
    let table: toml::Table = match toml::from_str(&file.text) {
        Ok(table) => table,
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
            return;
        }
    };
    let origin = |key: &str| format!("`{}` in `{}`", name_shown(key), file.path);
    for (key, value) in &table {
        let slot = match key.as_str() {
            "listen" => &mut raw.listen,
            "region" => &mut raw.region,
            "sts_endpoint" => &mut raw.sts_endpoint,
            "ecs_metadata_endpoint" => &mut raw.ecs_metadata_endpoint,
            "trusted_proxies" => &mut raw.trusted_proxies,
            "sts_budget_per_second" => &mut raw.sts_budget_per_second,
            "max_connections" => &mut raw.max_connections,
            "ipv6_prefix_length" => &mut raw.ipv6_prefix_length,
            "ipv4_network_prefix_length" => &mut raw.ipv4_network_prefix_length,
            "new_tokens_per_network_per_minute" => &mut raw.new_tokens_per_network_per_minute,
            "max_connections_per_address" => &mut raw.max_connections_per_address,
            "admin_listen" => &mut raw.admin_listen,
            "admin_hosts" => &mut raw.admin_hosts,
            "admin_token" => &mut raw.admin_token,
            "admin_token_file" => &mut raw.admin_token_file,
            "tls_cert" => &mut raw.tls_cert,
            "tls_key" => &mut raw.tls_key,
            "log_format" => &mut raw.log_format,
            "min_remaining_seconds" => &mut raw.min_remaining_seconds,
            "access_key_id" => &mut raw.access_key_id,
            "access_key_secret" => &mut raw.access_key_secret,
            "security_token" => &mut raw.security_token,
            "profiles" => {
                read_file_profiles(value, file, raw, problems);
                continue;
            }
            _ => {
                problems.add(
                    origin(key),
                    format!("unknown key; known keys are {}", GLOBAL_KEYS.join(", ")),
                );
                continue;
            }
        };
        let list = matches!(key.as_str(), "trusted_proxies" | "admin_hosts");
        if let Some(value) = scalar(value, &origin(key), list, problems) {
            *slot = Some(Setting {
                origin: origin(key),
                place: Place::ConfigFile,
                value,
            });
        }
    }
}

fn read_file_profiles(
    value: &toml::Value,
    file: &ConfigFile,
    raw: &mut Raw,
    problems: &mut Problems,
) {
    let Some(profiles) = value.as_table() else {
        problems.add(
            format!("`profiles` in `{}`", file.path),
            "must be a table of profiles, e.g. [profiles.default]",
        );
        return;
    };
    for (name, body) in profiles {
        let shown_name = name_shown(name);
        let origin = |key: &str| {
            format!(
                "`profiles.{shown_name}.{}` in `{}`",
                name_shown(key),
                file.path
            )
        };
        if !valid_profile_name(name) {
            problems.add(
                format!("`profiles.{shown_name}` in `{}`", file.path),
                "profile names are 1-64 of a-z, 0-9, - and _, starting with a letter or digit",
            );
        }
        let Some(body) = body.as_table() else {
            problems.add(
                format!("`profiles.{shown_name}` in `{}`", file.path),
                "must be a table of settings",
            );
            continue;
        };
        let profile = raw.profiles.entry(name.clone()).or_default();
        for (key, value) in body {
            let Some(&(key, _, list)) = PROFILE_SETTINGS.iter().find(|(k, _, _)| k == key) else {
                let known: Vec<&str> = PROFILE_SETTINGS.iter().map(|(k, _, _)| *k).collect();
                problems.add(
                    origin(key),
                    format!("unknown key; known keys are {}", known.join(", ")),
                );
                continue;
            };
            if let Some(value) = scalar(value, &origin(key), list, problems) {
                profile.0.insert(
                    key,
                    Setting {
                        origin: origin(key),
                        place: Place::ConfigFile,
                        value,
                    },
                );
            }
        }
    }
}

/// A TOML string or integer as text; with `list`, an array of strings joined by commas.
fn scalar(
    value: &toml::Value,
    origin: &str,
    list: bool,
    problems: &mut Problems,
) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) if list => {
            let strings: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            if strings.is_none() {
                problems.add(origin, "must be a list of strings");
            }
            strings.map(|s| s.join(","))
        }
        _ => {
            problems.add(
                origin,
                if list {
                    "must be a string or a list of strings"
                } else {
                    "must be a string or a number"
                },
            );
            None
        }
    }
}

fn read_env(env: &HashMap<String, String>, raw: &mut Raw, problems: &mut Problems) {
    let get = |name: &str| {
        env.get(name).filter(|v| !v.is_empty()).map(|v| Setting {
            origin: format!("`{name}`"),
            place: Place::Environment,
            value: v.clone(),
        })
    };
    let set = |slot: &mut Option<Setting>, name: &str| {
        if let Some(setting) = get(name) {
            *slot = Some(setting);
        }
    };
    set(&mut raw.listen, "STSVEND_LISTEN");
    set(&mut raw.region, "STSVEND_REGION");
    set(&mut raw.sts_endpoint, "STSVEND_STS_ENDPOINT");
    set(
        &mut raw.ecs_metadata_endpoint,
        "STSVEND_ECS_METADATA_ENDPOINT",
    );
    set(
        &mut raw.min_remaining_seconds,
        "STSVEND_MIN_REMAINING_SECONDS",
    );
    set(&mut raw.trusted_proxies, "STSVEND_TRUSTED_PROXIES");
    set(&mut raw.admin_listen, "STSVEND_ADMIN_LISTEN");
    set(&mut raw.admin_hosts, "STSVEND_ADMIN_HOSTS");
    set(&mut raw.admin_token, "STSVEND_ADMIN_TOKEN");
    set(&mut raw.admin_token_file, "STSVEND_ADMIN_TOKEN_FILE");
    set(&mut raw.tls_cert, "STSVEND_TLS_CERT");
    set(&mut raw.tls_key, "STSVEND_TLS_KEY");
    set(&mut raw.log_format, "STSVEND_LOG_FORMAT");
    set(
        &mut raw.sts_budget_per_second,
        "STSVEND_STS_BUDGET_PER_SECOND",
    );
    set(&mut raw.max_connections, "STSVEND_MAX_CONNECTIONS");
    set(&mut raw.ipv6_prefix_length, "STSVEND_IPV6_PREFIX_LENGTH");
    set(
        &mut raw.ipv4_network_prefix_length,
        "STSVEND_IPV4_NETWORK_PREFIX_LENGTH",
    );
    set(
        &mut raw.new_tokens_per_network_per_minute,
        "STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE",
    );
    set(
        &mut raw.max_connections_per_address,
        "STSVEND_MAX_CONNECTIONS_PER_ADDRESS",
    );
    set(&mut raw.access_key_id, "ALIBABA_CLOUD_ACCESS_KEY_ID");
    set(
        &mut raw.access_key_secret,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    );
    set(&mut raw.security_token, "ALIBABA_CLOUD_SECURITY_TOKEN");
    if PROFILE_SETTINGS
        .iter()
        .any(|(_, name, _)| get(name).is_some())
    {
        let profile = raw.profiles.entry(DEFAULT_PROFILE.to_owned()).or_default();
        for (key, name, _) in PROFILE_SETTINGS {
            if let Some(setting) = get(name) {
                profile.0.insert(key, setting);
            }
        }
    }
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("STSVEND_") && !known_env(k))
        .collect();
    unknown.sort();
    for name in unknown {
        let suggestion = KNOWN_ENV
            .iter()
            .copied()
            .chain(PROFILE_SETTINGS.iter().map(|(_, name, _)| *name))
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
}

fn validate(raw: Raw, mode: Mode, problems: &mut Problems) -> Option<Config> {
    let mut warnings = Vec::new();
    let dev = matches!(mode, Mode::Dev { .. });

    let listen_default = if dev {
        DEFAULT_DEV_LISTEN
    } else {
        DEFAULT_LISTEN
    };
    let listen = parse_listen(
        raw.listen.as_ref(),
        listen_default,
        "`STSVEND_LISTEN`",
        problems,
    );
    if let (
        Mode::Dev {
            allow_remote: false,
        },
        Some(addr),
    ) = (mode, listen)
        && !addr.ip().is_loopback()
    {
        problems.add(
            raw.listen.as_ref().map_or("`STSVEND_LISTEN`".to_owned(), |s| s.origin.clone()),
            format!(
                "`stsvend dev` hands out emulated credentials and listens on loopback only; {addr} is not a loopback address (pass --allow-remote to override)"
            ),
        );
    }

    let region = raw
        .region
        .as_ref()
        .map_or(DEFAULT_REGION.to_owned(), |s| s.value.clone());
    if !valid_region(&region) {
        problems.add(
            raw.region
                .as_ref()
                .map_or(String::new(), |s| s.origin.clone()),
            format!(
                "must be a region id such as cn-shanghai or ap-southeast-1, got {}",
                shown(&region)
            ),
        );
    }
    let sts_endpoint = match &raw.sts_endpoint {
        Some(setting) => {
            if dev {
                warnings.push(format!(
                    "{} is ignored by `stsvend dev`, which uses its built-in STS emulator",
                    setting.origin
                ));
            }
            parse_endpoint(setting, None, problems)
        }
        None => Url::parse(&format!("https://sts.{region}.aliyuncs.com/")).ok(),
    };
    let ecs_metadata_endpoint = match &raw.ecs_metadata_endpoint {
        Some(setting) => parse_endpoint(setting, Some(DEFAULT_ECS_METADATA_HOST), problems),
        None => Url::parse(&format!("http://{DEFAULT_ECS_METADATA_HOST}/")).ok(),
    };

    // `stsvend dev` takes any free port for admin, so the one-command start never fails on a
    // busy 9090; the banner prints where it is.
    let admin_listen = parse_listen(
        raw.admin_listen.as_ref(),
        if dev {
            "127.0.0.1:0"
        } else {
            DEFAULT_ADMIN_LISTEN
        },
        "`STSVEND_ADMIN_LISTEN`",
        problems,
    );
    if let (Mode::Dev { allow_remote }, Some(addr)) = (mode, admin_listen)
        && !allow_remote
        && !addr.ip().is_loopback()
    {
        problems.add(
            raw.admin_listen.as_ref().map_or("`STSVEND_ADMIN_LISTEN`".to_owned(), |s| s.origin.clone()),
            format!(
                "`stsvend dev` keeps its admin listener (metrics, kill switch) on loopback; {addr} is not a loopback address (pass --allow-remote to override)"
            ),
        );
    }
    let admin = admin::parse(
        raw.admin_hosts.as_ref(),
        raw.admin_token.as_ref(),
        raw.admin_token_file.as_ref(),
        problems,
    );
    if let Some(addr) = admin_listen {
        warnings.extend(admin::warning(addr, &admin));
    }
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.value.trim().into(),
            key: key.value.trim().into(),
        }),
        (Some(cert), None) => {
            problems.add(
                &cert.origin,
                "is set but STSVEND_TLS_KEY is not; set both (PEM files) or neither",
            );
            None
        }
        (None, Some(key)) => {
            problems.add(
                &key.origin,
                "is set but STSVEND_TLS_CERT is not; set both (PEM files) or neither",
            );
            None
        }
        (None, None) => None,
    };
    let log_format = match raw
        .log_format
        .as_ref()
        .map(|s| (s, s.value.trim().to_ascii_lowercase()))
    {
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            }
        }
        Some((_, v)) if v == "json" => LogFormat::Json,
        Some((_, v)) if v == "pretty" => LogFormat::Pretty,
        Some((setting, _)) => {
            problems.add(
                &setting.origin,
                format!("must be json or pretty, got {}", shown(&setting.value)),
            );
            LogFormat::Json
        }
    };

    let mut trusted_proxies = Vec::new();
    if let Some(setting) = &raw.trusted_proxies {
        for item in setting
            .value
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let parsed = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => trusted_proxies.push(net.trunc()),
                Err(_) => problems.add(
                    &setting.origin,
                    format!(
                        "must list IP addresses or CIDRs such as 10.0.0.0/8, got {}",
                        shown(item)
                    ),
                ),
            }
        }
    }
    let sts_budget_per_second = whole_number(
        raw.sts_budget_per_second.as_ref(),
        DEFAULT_STS_BUDGET_PER_SECOND,
        1..=100,
        "from 1 to 100 (STS allows about 100 AssumeRole calls per second for the whole account)",
        problems,
    )
    .and_then(std::num::NonZeroU32::new);
    let max_connections = whole_number(
        raw.max_connections.as_ref(),
        DEFAULT_MAX_CONNECTIONS,
        MAX_CONNECTIONS_RANGE,
        "of connections from 1 to 1000000",
        problems,
    );
    let grouping = address_grouping(&raw, problems);
    let new_tokens_per_network_per_minute = whole_number(
        raw.new_tokens_per_network_per_minute.as_ref(),
        DEFAULT_NEW_TOKENS_PER_NETWORK_PER_MINUTE,
        1..=1_000_000,
        "of tokens from 1 to 1000000",
        problems,
    )
    .and_then(std::num::NonZeroU32::new);
    let max_connections_per_address = whole_number(
        raw.max_connections_per_address.as_ref(),
        DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        MAX_CONNECTIONS_RANGE,
        "of connections from 1 to 1000000",
        problems,
    );

    let min_remaining = match &raw.min_remaining_seconds {
        Some(setting) => match setting.value.trim().parse::<u64>() {
            Ok(n) if n <= u64::from(*DURATION_RANGE.end()) => Some(n),
            _ => {
                problems.add(
                    &setting.origin,
                    format!(
                        "must be a whole number of seconds from 0 to {}, got {}",
                        DURATION_RANGE.end(),
                        shown(&setting.value)
                    ),
                );
                None
            }
        },
        None => Some(DEFAULT_MIN_REMAINING_SECONDS),
    };
    if let Some(n) = min_remaining
        && n < 300 + MIN_SERVE_WINDOW_SECONDS
    {
        warnings.push(format!(
            "the minimum remaining validity is {n}s; the SLS STS plugin keeps a token for 300s without checking it, so a client may use a token after it expires"
        ));
    }

    let credentials = if dev {
        if raw.access_key_id.is_some() || raw.access_key_secret.is_some() {
            warnings.push(
                "AccessKey settings are ignored by `stsvend dev`; the emulator issues its own"
                    .to_owned(),
            );
        }
        None
    } else {
        parse_credentials(&raw, problems)
    };

    let mut raw_profiles = raw.profiles;
    if dev {
        let default = raw_profiles.entry(DEFAULT_PROFILE.to_owned()).or_default();
        let dev_default = |value: &str| Setting {
            origin: "dev default".to_owned(),
            place: Place::DevDefault,
            value: value.to_owned(),
        };
        if default.get("role_arn").is_none() {
            default.0.insert("role_arn", dev_default(DEV_ROLE_ARN));
        }
        if default.get("logstore").is_none() && default.get("policy").is_none() {
            default.0.insert("logstore", dev_default(DEV_LOGSTORE));
        }
    }
    if raw_profiles.is_empty() {
        problems.add(
            "`STSVEND_ROLE_ARN`",
            "is required: the ARN of the RAM role to assume, like acs:ram::1234567890123456:role/sls-web-tracking (or declare [profiles.NAME] tables in the config file)",
        );
    }
    // An invalid prefix length is reported on its own; check policies against the default's.
    let ipv6_prefix = grouping
        .as_ref()
        .map_or(crate::network::DEFAULT_IPV6_PREFIX_LENGTH, |g| {
            g.ipv6_prefix
        });
    let mut profiles = Vec::new();
    for (name, raw_profile) in raw_profiles {
        // A name the file got wrong is already reported; its settings' problems would only
        // repeat a name that may not even fit on a line (found by `tests/fuzz`).
        if !valid_profile_name(&name) {
            continue;
        }
        if let Some(profile) =
            parse_profile(&name, &raw_profile, min_remaining, ipv6_prefix, problems)
        {
            if profile.scope == Scope::Unrestricted {
                warnings.push(format!(
                    "profile `{name}` has neither a logstore nor a policy: its tokens carry every permission of role {}; set STSVEND_LOGSTORE=project/logstore to allow only log uploads",
                    profile.call.role_arn
                ));
            }
            if let Some(jwt) = profile
                .access
                .jwt
                .as_ref()
                .filter(|j| j.accept_any_audience)
            {
                warnings.push(format!(
                    "profile `{name}` accepts JWTs for any audience{} (jwt_accept_any_audience): a token your identity provider issued for another app works here too",
                    if jwt.issuer.is_none() { " and from any issuer its keys verify" } else { "" }
                ));
            }
            profiles.push(profile);
        }
    }

    Some(Config {
        listen: listen?,
        sts_endpoint: sts_endpoint?,
        ecs_metadata_endpoint: ecs_metadata_endpoint?,
        admin_listen: admin_listen?,
        admin,
        tls,
        log_format,
        trusted_proxies,
        sts_budget_per_second: sts_budget_per_second?,
        max_connections: max_connections?,
        grouping: grouping?,
        new_tokens_per_network_per_minute: new_tokens_per_network_per_minute?,
        max_connections_per_address: max_connections_per_address?,
        min_remaining: Duration::from_secs(min_remaining?),
        profiles,
        credentials,
        warnings,
    })
}

/// An `IP:PORT` setting; `name` is the variable to blame when the default is used.
fn parse_listen(
    setting: Option<&Setting>,
    default: &str,
    name: &str,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    let text = setting.map_or(default, |s| s.value.as_str());
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                setting.map_or(name.to_owned(), |s| s.origin.clone()),
                format!(
                    "must be IP:PORT such as 0.0.0.0:8080 or [::]:8080, got {}",
                    shown(text)
                ),
            );
            None
        }
    }
}

/// A base URL: https, or plain http for loopback hosts and `http_host` (the metadata service is
/// plain HTTP on a link-local address by design).
fn parse_endpoint(
    setting: &Setting,
    http_host: Option<&str>,
    problems: &mut Problems,
) -> Option<Url> {
    // A URL with `user:password@` must not have its password echoed to the terminal.
    let value = if setting.value.contains('@') {
        "a URL with user information (not shown)".to_owned()
    } else {
        shown(&setting.value)
    };
    let fail = |problems: &mut Problems, why: &str| {
        problems.add(&setting.origin, format!("{why}, got {value}"));
        None
    };
    let Ok(url) = Url::parse(setting.value.trim()) else {
        return fail(
            problems,
            "must be a URL such as https://sts-vpc.cn-shanghai.aliyuncs.com",
        );
    };
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return fail(
            problems,
            "must be a plain base URL without credentials, query or fragment",
        );
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return fail(problems, "must name a host"),
    };
    let plain_ok = loopback || http_host.is_some_and(|h| url.host_str() == Some(h));
    match url.scheme() {
        "https" => Some(url),
        "http" if plain_ok => Some(url),
        "http" => fail(
            problems,
            "must use https:// (plain http:// is allowed only for loopback hosts such as a local emulator, because the request carries credentials)",
        ),
        _ => fail(problems, "must be an https:// URL"),
    }
}

fn parse_credentials(raw: &Raw, problems: &mut Problems) -> Option<Credentials> {
    match (&raw.access_key_id, &raw.access_key_secret) {
        (Some(id), Some(secret)) => {
            let id_ok = id.value.len() <= 128 && id.value.chars().all(|c| c.is_ascii_graphic());
            if !id_ok {
                problems.add(
                    &id.origin,
                    "must be an AccessKey id (printable ASCII, no spaces)",
                );
                return None;
            }
            Some(Credentials::new(
                id.value.clone(),
                SecretString::from(secret.value.clone()),
                raw.security_token
                    .as_ref()
                    .map(|t| SecretString::from(t.value.clone())),
                match id.place {
                    Place::Environment => Origin::Environment,
                    Place::ConfigFile | Place::DevDefault => Origin::ConfigFile,
                },
            ))
        }
        (Some(id), None) => {
            problems.add(
                &id.origin,
                "is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not; set both",
            );
            None
        }
        (None, Some(secret)) => {
            problems.add(
                &secret.origin,
                "is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not; set both",
            );
            None
        }
        (None, None) => {
            // Not an error: the credential chain looks at the other sources.
            if let Some(token) = &raw.security_token {
                problems.add(
                    &token.origin,
                    "is set without ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                );
            }
            None
        }
    }
}

fn parse_profile(
    name: &str,
    raw: &RawProfile,
    min_remaining: Option<u64>,
    ipv6_prefix: u8,
    problems: &mut Problems,
) -> Option<Profile> {
    let role_arn = match raw.get("role_arn") {
        Some(s) if valid_role_arn(s.value.trim()) => Some(s.value.trim().to_owned()),
        Some(s) => {
            problems.add(
                &s.origin,
                format!("must be a RAM role ARN like acs:ram::1234567890123456:role/sls-web-tracking, got {}", shown(&s.value)),
            );
            None
        }
        None => {
            let setting = if name == DEFAULT_PROFILE {
                "`STSVEND_ROLE_ARN`".to_owned()
            } else {
                format!("`profiles.{name}.role_arn`")
            };
            problems.add(
                setting,
                "is required: the ARN of the RAM role this profile assumes",
            );
            None
        }
    };
    let session_name = match raw.get("role_session_name") {
        Some(s) if valid_session_name(&s.value) => Some(s.value.clone()),
        Some(s) => {
            problems.add(
                &s.origin,
                format!(
                    "must be 2-32 of A-Z a-z 0-9 . @ _ -, got {}",
                    shown(&s.value)
                ),
            );
            None
        }
        None => Some(DEFAULT_SESSION_NAME.to_owned()),
    };
    let duration = match raw.get("duration_seconds") {
        Some(s) => match s.value.trim().parse::<u32>() {
            Ok(n) if DURATION_RANGE.contains(&n) => Some(n),
            _ => {
                problems.add(
                    &s.origin,
                    format!(
                        "must be a whole number of seconds from {} to {} (and at most the role's MaxSessionDuration), got {}",
                        DURATION_RANGE.start(),
                        DURATION_RANGE.end(),
                        shown(&s.value)
                    ),
                );
                None
            }
        },
        None => Some(DEFAULT_DURATION_SECONDS),
    };
    if let (Some(duration), Some(min_remaining)) = (duration, min_remaining)
        && min_remaining + MIN_SERVE_WINDOW_SECONDS > u64::from(duration)
    {
        problems.add(
            raw.get("duration_seconds").map_or_else(|| format!("profile `{name}`"), |s| s.origin.clone()),
            format!(
                "tokens last {duration}s but must keep {min_remaining}s of validity when served (STSVEND_MIN_REMAINING_SECONDS), leaving under {MIN_SERVE_WINDOW_SECONDS}s to use each one; raise the duration or lower the minimum remaining validity to at most {}",
                u64::from(duration).saturating_sub(MIN_SERVE_WINDOW_SECONDS)
            ),
        );
    }
    let (policy, scope) = match (raw.get("logstore"), raw.get("policy")) {
        (Some(l), Some(p)) => {
            problems.add(
                &p.origin,
                format!("cannot be combined with {}: set either a logstore list or a whole policy document", l.origin),
            );
            (None, None)
        }
        (Some(l), None) => match policy::parse_logstores(&l.value).and_then(|stores| {
            let text = policy::logstore_policy(&stores)?;
            Ok((text, stores))
        }) {
            Ok((text, stores)) => (Some(text), Some(Scope::Logstores(stores))),
            Err(e) => {
                problems.add(
                    &l.origin,
                    format!("{e}; expected project/logstore[,project/logstore…]"),
                );
                (None, None)
            }
        },
        (None, Some(p)) => match policy::check_policy_document(&p.value) {
            Ok(text) => (Some(text), Some(Scope::Document)),
            Err(e) => {
                problems.add(&p.origin, format!("the policy {e}"));
                (None, None)
            }
        },
        (None, None) => (None, Some(Scope::Unrestricted)),
    };
    let access = access::parse(name, raw, problems);
    if let (Some(access), Some(scope)) = (&access, &scope)
        && access.bind_source_ip
    {
        check_bound_policy_fits(name, raw, policy.as_deref(), scope, ipv6_prefix, problems);
    }
    Some(Profile {
        name: name.to_owned(),
        call: AssumeRole {
            role_arn: role_arn?,
            role_session_name: session_name?,
            duration_seconds: duration?,
            policy,
        },
        scope: scope?,
        access: access?,
    })
}

/// `policy` bound as it would be for the caller whose source (an address, or an IPv6 prefix of
/// `ipv6_prefix` bits) is written longest: the one place that knows what the binder is given.
fn bound_for_the_longest_source(
    policy: Option<&str>,
    ipv6_prefix: u8,
) -> Result<String, policy::PolicyError> {
    policy::bound_to_source_network(policy, policy::longest_source_network(ipv6_prefix))
}

/// With source-IP binding, every caller's policy gets a condition on its address, and STS
/// refuses one over 2048 bytes: a policy that fits alone may not fit once bound, and every
/// caller would get a 502. Binds it, as a request would, to the longest address, through the
/// binder itself so that a change to what it adds is checked too.
fn check_bound_policy_fits(
    name: &str,
    raw: &RawProfile,
    policy: Option<&str>,
    scope: &Scope,
    ipv6_prefix: u8,
    problems: &mut Problems,
) {
    let Err(error) = bound_for_the_longest_source(policy, ipv6_prefix) else {
        return;
    };
    let source = policy::longest_source_network(ipv6_prefix);
    let setting = match scope {
        Scope::Logstores(_) => raw.get("logstore"),
        Scope::Document => raw.get("policy"),
        Scope::Unrestricted => raw.get("bind_source_ip"),
    };
    let origin = setting.map_or_else(|| format!("profile `{name}`"), |s| s.origin.clone());
    let hint = match scope {
        Scope::Logstores(_) => "list fewer logstores (or use wildcards)",
        _ => "shorten the policy",
    };
    let bind = if name == DEFAULT_PROFILE {
        "STSVEND_BIND_SOURCE_IP".to_owned()
    } else {
        format!("profiles.{name}.bind_source_ip")
    };
    problems.add(
        origin,
        format!(
            "gives a session policy that, with {bind}=true, is too long for some callers: bound to the source {source} it {error}; {hint} or turn off {bind}"
        ),
    );
}

fn valid_region(region: &str) -> bool {
    (2..=40).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A whole-number setting within `range` (`default` when unset), or a problem saying it must
/// be a whole number `what` (the range in words).
/// `STSVEND_IPV6_PREFIX_LENGTH` (32 to 128: shorter would lump whole providers together) and
/// `STSVEND_IPV4_NETWORK_PREFIX_LENGTH` (8 to 32).
fn address_grouping(raw: &Raw, problems: &mut Problems) -> Option<crate::network::Grouping> {
    let ipv6_prefix = whole_number(
        raw.ipv6_prefix_length.as_ref(),
        crate::network::DEFAULT_IPV6_PREFIX_LENGTH,
        32..=128,
        "of bits from 32 to 128",
        problems,
    );
    let ipv4_network_prefix = whole_number(
        raw.ipv4_network_prefix_length.as_ref(),
        crate::network::DEFAULT_IPV4_NETWORK_PREFIX_LENGTH,
        8..=32,
        "of bits from 8 to 32",
        problems,
    );
    Some(crate::network::Grouping {
        ipv6_prefix: ipv6_prefix?,
        ipv4_network_prefix: ipv4_network_prefix?,
    })
}

fn whole_number<T>(
    setting: Option<&Setting>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
    problems: &mut Problems,
) -> Option<T>
where
    T: std::str::FromStr + PartialOrd,
{
    let Some(setting) = setting else {
        return Some(default);
    };
    let parsed = setting
        .value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n));
    if parsed.is_none() {
        problems.add(
            &setting.origin,
            format!(
                "must be a whole number {what}, got {}",
                shown(&setting.value)
            ),
        );
    }
    parsed
}

/// A file key or variable name as the operator must type it: bare when it can be, quoted and
/// escaped otherwise. Printed raw, a key such as `""` named nothing (`` `` in `stsvend.toml` ``,
/// found by `tests/fuzz`) and one holding a newline broke the one-line-per-problem output.
fn name_shown(key: &str) -> std::borrow::Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(format!("{key:?}"))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

mod access;
mod admin;
mod setting;
#[cfg(test)]
mod tests;

pub use access::{Access, AuthMode, JwtAlgorithm, JwtSettings, RateLimit};
pub use admin::{AdminAccess, AdminToken, MIN_ADMIN_TOKEN_BYTES};
pub use setting::Problem;
use setting::{Place, Problems, RawProfile, Setting, shown};
