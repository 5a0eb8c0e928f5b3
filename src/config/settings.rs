//! The one table of settings: every variable and file key stsvend reads, with its kind, its
//! default and one line of documentation. Reading the environment and the file, refusing unknown
//! names, the defaults the parsers fall back to, what `stsvend check` shows and the README's
//! settings table (held to it by a test) all come from here; nothing else lists settings.
//!
//! A setting is named in code by its [`Key`], so a typo is a compile error, not a silent `None`.

use crate::sts::names::SessionName;

/// Where a setting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The whole process: a top-level key of the file.
    Global,
    /// One profile: a key of `[profiles.NAME]`; the variable configures the `default` profile.
    Profile,
    /// Read from the environment only, before the settings or beside them (no file key).
    EnvOnly,
}

/// What a value looks like: how the file may write it and how `stsvend check` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Comma-separated text, or in the file a TOML array of strings.
    List,
    Number,
    /// `true` or `false`.
    Flag,
    Path,
    /// A URL, shown without user information, query or fragment (they may carry a credential).
    Url,
    /// An AccessKey id: shown by its first characters only, as everywhere else.
    KeyId,
    /// Never shown.
    Secret,
}

/// What applies when a setting is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing: the feature is off, or another source is used.
    None,
    /// Must be given.
    Required,
    /// This value, read exactly as if the operator had written it.
    Value(&'static str),
    /// Worked out from other settings or from the terminal; the text says how.
    Derived(&'static str),
}

/// One row of the table.
#[derive(Debug)]
pub struct Spec {
    pub key: Key,
    /// The environment variable.
    pub env: &'static str,
    /// The key in the file (top level, or in `[profiles.NAME]`); `None` for environment only.
    pub file_key: Option<&'static str>,
    pub level: Level,
    pub kind: Kind,
    pub default: Fallback,
    /// Said after the default in the README, such as what `stsvend dev` uses instead.
    pub default_note: &'static str,
    pub doc: &'static str,
}

/// Declares [`Key`] and [`SETTINGS`] from one list, so the two cannot disagree: the `n`th row
/// is the `n`th key.
macro_rules! table {
    ($($key:ident => $env:literal, $file:expr, $level:ident, $kind:ident, $default:expr, $note:literal, $doc:literal;)*) => {
        /// A setting, by name in code. Its row is [`Key::spec`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key { $($key),* }

        /// Every setting. The order of each level's rows is the order error messages list them.
        pub static SETTINGS: &[Spec] = &[$(Spec {
            key: Key::$key,
            env: $env,
            file_key: $file,
            level: Level::$level,
            kind: Kind::$kind,
            default: $default,
            default_note: $note,
            doc: $doc,
        }),*];
    };
}

use Fallback::{Derived, None as Unset, Required, Value};

// The defaults' reasons:
// - `sts_budget_per_second` 20: a fifth of the account's AssumeRole quota (about 100 per second,
//   shared by everything in the account), so stsvend can never exhaust it.
// - `max_connections` 10000: an idle connection holds about 10 KiB (a TLS one more), so this
//   bounds a crowd of them near 100 MiB, well above what a load balancer or a launch spike opens.
// - `new_tokens_per_network_per_minute` 60: carrier-grade NAT puts thousands of legitimate users
//   behind one /24; tokens last an hour, so 60 a minute (3600 an hour) still serves every one of
//   them, while one network holds at most a sixteenth of the default budget's caller lane.
// - `max_connections_per_address` 1000: 10 000 phones behind one NAT address fetching every 5
//   minutes and holding their connection 5 s is about 170 at once, so 1000 leaves six times
//   that, while one address alone takes at most a tenth of the default global cap.
// - `min_remaining_seconds` 600: the SLS plugin reuses a token for 300 s without looking at
//   `Expiration`; 600 s leaves room for batching delays and slow networks on top.
// - `admin_listen` stays on loopback unless the operator opens it (a container sets
//   0.0.0.0:9090 so probes reach it).
// - `rate_limit_per_minute` 1200, burst 300: one phone fetches a token every five minutes; a
//   carrier-grade NAT address can front thousands of them, and an app-launch spike arrives all
//   at once. That lets them through while capping one abusive address at 20 requests a second.
table! {
    Listen => "STSVEND_LISTEN", Some("listen"), Global, Text,
        Value("0.0.0.0:8080"), "(`dev`: `127.0.0.1:8080`)", "listen address, IP:PORT";
    Region => "STSVEND_REGION", Some("region"), Global, Text,
        Value("cn-shanghai"), "", "region of the STS endpoint";
    StsEndpoint => "STSVEND_STS_ENDPOINT", Some("sts_endpoint"), Global, Url,
        Derived("from the region"), "", "STS base URL instead of the region's";
    EcsMetadataEndpoint => "STSVEND_ECS_METADATA_ENDPOINT", Some("ecs_metadata_endpoint"), Global, Url,
        Value("http://100.100.100.200"), "", "base URL of the ECS metadata service";
    TrustedProxies => "STSVEND_TRUSTED_PROXIES", Some("trusted_proxies"), Global, List,
        Unset, "", "CIDRs of the proxies whose X-Forwarded-For is believed";
    StsBudgetPerSecond => "STSVEND_STS_BUDGET_PER_SECOND", Some("sts_budget_per_second"), Global, Number,
        Value("20"), "", "process-wide cap on AssumeRole calls per second";
    MaxConnections => "STSVEND_MAX_CONNECTIONS", Some("max_connections"), Global, Number,
        Value("10000"), "", "connections the public listener holds open at once";
    Ipv6PrefixLength => "STSVEND_IPV6_PREFIX_LENGTH", Some("ipv6_prefix_length"), Global, Number,
        Value("64"), "", "IPv6 callers are grouped per prefix of this length";
    Ipv4NetworkPrefixLength => "STSVEND_IPV4_NETWORK_PREFIX_LENGTH", Some("ipv4_network_prefix_length"), Global, Number,
        Value("24"), "", "the IPv4 network new per-caller tokens are limited per";
    NewTokensPerNetworkPerMinute => "STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", Some("new_tokens_per_network_per_minute"), Global, Number,
        Value("60"), "", "new per-caller tokens per caller network and minute";
    MaxConnectionsPerAddress => "STSVEND_MAX_CONNECTIONS_PER_ADDRESS", Some("max_connections_per_address"), Global, Number,
        Value("1000"), "", "connections one client address holds open on a listener";
    AdminListen => "STSVEND_ADMIN_LISTEN", Some("admin_listen"), Global, Text,
        Value("127.0.0.1:9090"), "(`dev`: a free loopback port, shown in the banner; loopback only unless `--allow-remote`)",
        "admin listener address: health, readiness, metrics, kill switch";
    AdminHosts => "STSVEND_ADMIN_HOSTS", Some("admin_hosts"), Global, List,
        Unset, "", "host names the admin routes answer to besides addresses and localhost";
    AdminToken => "STSVEND_ADMIN_TOKEN", Some("admin_token"), Global, Secret,
        Unset, "", "bearer token for /metrics and the kill switch";
    AdminTokenFile => "STSVEND_ADMIN_TOKEN_FILE", Some("admin_token_file"), Global, Path,
        Unset, "", "the admin token, read from this file at start-up";
    TlsCert => "STSVEND_TLS_CERT", Some("tls_cert"), Global, Path,
        Unset, "", "PEM certificate chain for native HTTPS";
    TlsKey => "STSVEND_TLS_KEY", Some("tls_key"), Global, Path,
        Unset, "", "PEM private key for native HTTPS";
    ConfigWatchSeconds => "STSVEND_CONFIG_WATCH_SECONDS", Some("config_watch_seconds"), Global, Number,
        Value("5"), "", "how often the config file and the `_FILE` secrets are checked for changes";
    LogFormat => "STSVEND_LOG_FORMAT", Some("log_format"), Global, Text,
        Derived("`json`, or `pretty` at a terminal"), "", "log line format";
    MinRemainingSeconds => "STSVEND_MIN_REMAINING_SECONDS", Some("min_remaining_seconds"), Global, Number,
        Value("600"), "", "never serve a token with less validity left";
    AccessKeyId => "ALIBABA_CLOUD_ACCESS_KEY_ID", Some("access_key_id"), Global, KeyId,
        Unset, "", "AccessKey that calls AssumeRole";
    AccessKeySecret => "ALIBABA_CLOUD_ACCESS_KEY_SECRET", Some("access_key_secret"), Global, Secret,
        Unset, "", "its secret";
    SecurityToken => "ALIBABA_CLOUD_SECURITY_TOKEN", Some("security_token"), Global, Secret,
        Unset, "", "its STS token, when that AccessKey is temporary";
    RedisUrl => "STSVEND_REDIS_URL", Some("redis_url"), Global, Url,
        Unset, "", "fleet mode: replicas share state through this Redis (`redis://` or `rediss://`)";
    RedisPassword => "STSVEND_REDIS_PASSWORD", Some("redis_password"), Global, Secret,
        Unset, "", "Redis password, when not in the URL";
    RedisPasswordFile => "STSVEND_REDIS_PASSWORD_FILE", Some("redis_password_file"), Global, Path,
        Unset, "", "the Redis password, read from this file at start-up";
    RedisCaFile => "STSVEND_REDIS_CA_FILE", Some("redis_ca_file"), Global, Path,
        Unset, "", "PEM CA bundle for a `rediss://` URL";
    RedisKeyPrefix => "STSVEND_REDIS_KEY_PREFIX", Some("redis_key_prefix"), Global, Text,
        Value("stsvend:"), "", "prefix of every key fleet mode writes";
    RedisEncryptionKey => "STSVEND_REDIS_ENCRYPTION_KEY", Some("redis_encryption_key"), Global, Secret,
        Unset, "", "32 random bytes, base64: seals every stored token (fleet mode needs it)";
    RedisEncryptionKeyFile => "STSVEND_REDIS_ENCRYPTION_KEY_FILE", Some("redis_encryption_key_file"), Global, Path,
        Unset, "", "the encryption key, read from this file at start-up";
    RedisPreviousEncryptionKey => "STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY", Some("redis_previous_encryption_key"), Global, Secret,
        Unset, "", "the key being rolled out of use: still opens what it sealed";
    RedisPreviousEncryptionKeyFile => "STSVEND_REDIS_PREVIOUS_ENCRYPTION_KEY_FILE", Some("redis_previous_encryption_key_file"), Global, Path,
        Unset, "", "the previous key, read from this file at start-up";
    RedisCommandTimeoutMs => "STSVEND_REDIS_COMMAND_TIMEOUT_MS", Some("redis_command_timeout_ms"), Global, Number,
        Value("50"), "", "bound on every Redis command; slower counts as down";
    FleetSizeHint => "STSVEND_FLEET_SIZE_HINT", Some("fleet_size_hint"), Global, Number,
        Derived("4 assumed"), "", "replicas expected: while Redis is down each takes the budget / this";
    ReplicaId => "STSVEND_REPLICA_ID", Some("replica_id"), Global, Text,
        Derived("`HOSTNAME` (the pod's name), else random"), "", "this replica's name in the kill switch's history and Redis locks";
    SessionSecret => "STSVEND_SESSION_SECRET", Some("session_secret"), Global, Secret,
        Unset, "", "key of the session tokens `POST /session` issues (32+ bytes; `wechat`/`alipay` need it)";
    SessionSecretFile => "STSVEND_SESSION_SECRET_FILE", Some("session_secret_file"), Global, Path,
        Unset, "", "the session secret, read from this file at start-up";
    SessionPreviousSecret => "STSVEND_SESSION_PREVIOUS_SECRET", Some("session_previous_secret"), Global, Secret,
        Unset, "", "the session secret being rolled out: its sessions stay valid until they expire";
    SessionPreviousSecretFile => "STSVEND_SESSION_PREVIOUS_SECRET_FILE", Some("session_previous_secret_file"), Global, Path,
        Unset, "", "the previous session secret, read from this file at start-up";
    SessionTtlSeconds => "STSVEND_SESSION_TTL_SECONDS", Some("session_ttl_seconds"), Global, Number,
        Value("86400"), "", "how long a session token lasts (60 to 2592000)";
    LoginRateLimitPerMinute => "STSVEND_LOGIN_RATE_LIMIT_PER_MINUTE", Some("login_rate_limit_per_minute"), Global, Number,
        Value("60"), "", "`POST /session` attempts per client address prefix and minute";
    LoginRateLimitBurst => "STSVEND_LOGIN_RATE_LIMIT_BURST", Some("login_rate_limit_burst"), Global, Number,
        Value("20"), "", "burst on top of the login rate limit";
    Config => "STSVEND_CONFIG", None, EnvOnly, Path,
        Unset, "", "path of the TOML file";
    RustLog => "RUST_LOG", None, EnvOnly, Text,
        Value("info"), "", "log filter";
    StsRegion => "ALIBABA_CLOUD_STS_REGION", None, EnvOnly, Text,
        Unset, "", "the base credentials' own STS region; the profiles' too unless stsvend's are set";
    VpcEndpointEnabled => "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", None, EnvOnly, Flag,
        Value("false"), "", "`true`: that region's VPC endpoint";

    RoleArn => "STSVEND_ROLE_ARN", Some("role_arn"), Profile, Text,
        Required, "", "the RAM role to assume";
    RoleSessionName => "STSVEND_ROLE_SESSION_NAME", Some("role_session_name"), Profile, Text,
        Value(SessionName::DEFAULT), "", "RoleSessionName, shown in ActionTrail";
    DurationSeconds => "STSVEND_DURATION_SECONDS", Some("duration_seconds"), Profile, Number,
        Value("3600"), "", "token lifetime in seconds";
    Logstore => "STSVEND_LOGSTORE", Some("logstore"), Profile, List,
        Unset, "", "logstores the session policy allows log uploads to";
    Policy => "STSVEND_POLICY", Some("policy"), Profile, Text,
        Unset, "", "a whole session policy document instead";
    Auth => "STSVEND_AUTH", Some("auth"), Profile, Text,
        Value("none"), "", "none, jwt, report, or mini program login: wechat, alipay or wechat,alipay";
    JwtHs256Secret => "STSVEND_JWT_HS256_SECRET", Some("jwt_hs256_secret"), Profile, Secret,
        Unset, "", "HS256 key";
    JwtHs256SecretFile => "STSVEND_JWT_HS256_SECRET_FILE", Some("jwt_hs256_secret_file"), Profile, Path,
        Unset, "", "the HS256 key, read from this file at start-up";
    JwtJwksUrl => "STSVEND_JWT_JWKS_URL", Some("jwt_jwks_url"), Profile, Url,
        Unset, "", "JWKS for RS256/ES256";
    JwtJwksFile => "STSVEND_JWT_JWKS_FILE", Some("jwt_jwks_file"), Profile, Path,
        Unset, "", "JWKS from a file";
    JwtIssuer => "STSVEND_JWT_ISSUER", Some("jwt_issuer"), Profile, Text,
        Unset, "", "required iss";
    JwtAudience => "STSVEND_JWT_AUDIENCE", Some("jwt_audience"), Profile, Text,
        Unset, "", "required aud";
    JwtAlgorithms => "STSVEND_JWT_ALGORITHMS", Some("jwt_algorithms"), Profile, List,
        Derived("what the keys verify"), "", "accepted JWT algorithms";
    RateLimitPerMinute => "STSVEND_RATE_LIMIT_PER_MINUTE", Some("rate_limit_per_minute"), Profile, Number,
        Value("1200"), "", "requests per client address and per JWT user";
    RateLimitBurst => "STSVEND_RATE_LIMIT_BURST", Some("rate_limit_burst"), Profile, Number,
        Value("300"), "", "burst on top of the rate limit";
    CorsOrigins => "STSVEND_CORS_ORIGINS", Some("cors_origins"), Profile, List,
        Unset, "", "exact browser origins allowed";
    BindSourceIp => "STSVEND_BIND_SOURCE_IP", Some("bind_source_ip"), Profile, Flag,
        Value("false"), "", "bind each token to the caller's address";
    JwtAcceptAnyAudience => "STSVEND_JWT_ACCEPT_ANY_AUDIENCE", Some("jwt_accept_any_audience"), Profile, Flag,
        Value("false"), "", "accept JWTs without an audience check";
    WechatAppid => "STSVEND_WECHAT_APPID", Some("wechat_appid"), Profile, Text,
        Unset, "", "the WeChat mini program's AppID (auth `wechat`)";
    WechatAppSecret => "STSVEND_WECHAT_APP_SECRET", Some("wechat_app_secret"), Profile, Secret,
        Unset, "", "its AppSecret";
    WechatAppSecretFile => "STSVEND_WECHAT_APP_SECRET_FILE", Some("wechat_app_secret_file"), Profile, Path,
        Unset, "", "the AppSecret, read from this file at start-up";
    WechatApiBase => "STSVEND_WECHAT_API_BASE", Some("wechat_api_base"), Profile, Url,
        Value("https://api.weixin.qq.com"), "", "base URL of WeChat's server API";
    AlipayAppid => "STSVEND_ALIPAY_APPID", Some("alipay_appid"), Profile, Text,
        Unset, "", "the Alipay mini program's app id (auth `alipay`)";
    AlipayAppPrivateKeyFile => "STSVEND_ALIPAY_APP_PRIVATE_KEY_FILE", Some("alipay_app_private_key_file"), Profile, Path,
        Unset, "", "the app's RSA private key (PKCS#1 or PKCS#8, PEM or bare base64)";
    AlipayPublicKeyFile => "STSVEND_ALIPAY_PUBLIC_KEY_FILE", Some("alipay_public_key_file"), Profile, Path,
        Unset, "", "Alipay's public key, to verify its answers";
    AlipayGateway => "STSVEND_ALIPAY_GATEWAY", Some("alipay_gateway"), Profile, Url,
        Value("https://openapi.alipay.com/gateway.do"), "", "Alipay's OpenAPI gateway";
}

impl Key {
    /// This setting's row.
    pub fn spec(self) -> &'static Spec {
        // `table!` writes the rows in the keys' order (a test holds it).
        &SETTINGS[self as usize]
    }
}

/// The rows of one level, in table order.
pub fn at(level: Level) -> impl Iterator<Item = &'static Spec> {
    SETTINGS.iter().filter(move |s| s.level == level)
}

/// The row whose file key is `key`, among one level's.
pub fn by_file_key(level: Level, key: &str) -> Option<&'static Spec> {
    at(level).find(|s| s.file_key == Some(key))
}

/// Every file key of one level, in table order.
pub fn file_keys(level: Level) -> impl Iterator<Item = &'static str> {
    at(level).filter_map(|s| s.file_key)
}

/// The official SDKs' variables that set the base credentials' STS endpoint, read with the
/// other settings (and, having no file key, from the environment only).
pub const SDK_ENDPOINT_KEYS: [Key; 2] = [Key::StsRegion, Key::VpcEndpointEnabled];

/// Every `ALIBABA_CLOUD_` variable in the table (the chain's own are listed in
/// [`crate::credentials::CHAIN_VARIABLES`]).
pub fn sdk_env_names() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .map(|s| s.env)
        .filter(|name| name.starts_with("ALIBABA_CLOUD_"))
}

/// Every `STSVEND_` variable this version knows. Any other is refused: a typo such as
/// `STSVEND_LOGSTORES` must not silently hand out tokens with every permission of the role.
pub fn stsvend_env_names() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .map(|s| s.env)
        .filter(|name| name.starts_with("STSVEND_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_its_own_row() {
        for (i, spec) in SETTINGS.iter().enumerate() {
            assert_eq!(spec.key as usize, i, "{spec:?}");
            assert!(std::ptr::eq(spec.key.spec(), spec));
        }
    }

    #[test]
    fn names_are_unique_and_levels_consistent() {
        let mut envs: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), SETTINGS.len(), "an environment variable twice");
        for level in [Level::Global, Level::Profile] {
            let mut keys: Vec<&str> = file_keys(level).collect();
            assert_eq!(
                keys.len(),
                at(level).count(),
                "{level:?} without a file key"
            );
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), at(level).count(), "a {level:?} file key twice");
        }
        assert!(at(Level::EnvOnly).all(|s| s.file_key.is_none()));
        assert!(by_file_key(Level::Global, "profiles").is_none());
    }

    /// The secrets with no `_FILE` twin, each with the reason.
    const SECRETS_WITHOUT_FILE: &[(Key, &str)] = &[
        (
            Key::AccessKeySecret,
            "the official SDKs' name, which no SDK reads as `_FILE`; a name of ours beside it would \
             look like theirs and behave differently. Its file forms are the SDKs' credentials \
             file (`ALIBABA_CLOUD_CREDENTIALS_FILE`) and the TOML file's `access_key_secret`",
        ),
        (
            Key::SecurityToken,
            "the SDKs' name too, always given with the AccessKey secret: the same file forms",
        ),
    ];

    /// The Docker and Kubernetes secrets convention: every secret can come from a mounted file.
    #[test]
    fn every_secret_has_a_file_twin_or_a_reason_not_to() {
        for spec in SETTINGS.iter().filter(|s| s.kind == Kind::Secret) {
            let twin = SETTINGS
                .iter()
                .find(|s| s.env == format!("{}_FILE", spec.env));
            let reason = SECRETS_WITHOUT_FILE
                .iter()
                .find(|(key, _)| *key == spec.key);
            if let Some((_, reason)) = reason {
                assert!(!reason.is_empty());
                assert!(twin.is_none(), "{} has a twin after all", spec.env);
                continue;
            }
            let twin = twin.unwrap_or_else(|| panic!("{} has no `_FILE` twin", spec.env));
            assert_eq!(twin.kind, Kind::Path, "{}", twin.env);
            assert_eq!(twin.level, spec.level, "{}", twin.env);
            assert_eq!(twin.default, Fallback::None, "{}", twin.env);
            assert_eq!(
                twin.file_key.map(str::to_owned),
                spec.file_key.map(|key| format!("{key}_file")),
                "{}",
                twin.env
            );
            // Next to its secret, so the README lists them together.
            assert_eq!(twin.key as usize, spec.key as usize + 1, "{}", twin.env);
        }
        for (key, _) in SECRETS_WITHOUT_FILE {
            assert_eq!(key.spec().kind, Kind::Secret, "{key:?}");
        }
    }

    /// The README's settings table: (variable, file key, default) per row. Read at compile
    /// time, so the test does no I/O.
    fn readme_rows() -> Vec<[String; 3]> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Settings\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Settings section");
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                assert_eq!(cells.len(), 4, "a row of four cells: {line}");
                [cells[0], cells[1], cells[2]].map(|c| c.trim().to_owned())
            })
            .collect()
    }

    /// How the README writes a row's file key and default.
    fn as_in_readme(spec: &Spec) -> [String; 3] {
        let file_key = match (spec.level, spec.file_key) {
            (Level::Profile, Some(key)) => format!("`profiles.NAME.{key}`"),
            (_, Some(key)) => format!("`{key}`"),
            (_, None) => "—".to_owned(),
        };
        let mut default = match spec.default {
            Fallback::None => "none".to_owned(),
            Fallback::Required => "— (required)".to_owned(),
            Fallback::Value(value) => format!("`{value}`"),
            Fallback::Derived(text) => text.to_owned(),
        };
        if !spec.default_note.is_empty() {
            default = format!("{default} {}", spec.default_note);
        }
        [format!("`{}`", spec.env), file_key, default]
    }

    #[test]
    fn the_readme_table_is_this_table_row_for_row() {
        let readme = readme_rows();
        let ours: Vec<[String; 3]> = SETTINGS.iter().map(as_in_readme).collect();
        for row in &readme {
            let mine = ours.iter().find(|r| r[0] == row[0]);
            assert_eq!(
                mine,
                Some(row),
                "README row {} differs from the table",
                row[0]
            );
        }
        for row in &ours {
            assert!(
                readme.iter().any(|r| r[0] == row[0]),
                "{} is missing from the README's settings table",
                row[0]
            );
        }
        assert_eq!(readme.len(), ours.len(), "a README row twice");
    }

    #[test]
    fn the_network_defaults_are_the_address_grouping_defaults() {
        let value = |key: Key| match key.spec().default {
            Fallback::Value(v) => v,
            other => panic!("{key:?} has no value default: {other:?}"),
        };
        let grouping = crate::network::Grouping::default();
        assert_eq!(
            value(Key::Ipv6PrefixLength),
            grouping.ipv6_prefix.to_string()
        );
        assert_eq!(
            value(Key::Ipv4NetworkPrefixLength),
            grouping.ipv4_network_prefix.to_string()
        );
        let metadata = value(Key::EcsMetadataEndpoint);
        assert_eq!(
            metadata.strip_prefix("http://"),
            Some(super::super::validate::ECS_METADATA_HOST)
        );
    }

    #[test]
    fn the_duration_default_is_the_names_module_default() {
        assert_eq!(Key::DurationSeconds.spec().default, Fallback::Value("3600"),);
        assert_eq!(
            crate::sts::names::DurationSeconds::DEFAULT.to_string(),
            "3600"
        );
    }
}
