//! From the settings as given to one [`Config`]: each global setting parsed in turn, in the
//! order problem lines have always listed them, then the profiles.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use reqwest::Url;

use super::problems::{Problems, shown};
use super::profile::MIN_SERVE_WINDOW_SECONDS;
use super::raw::Raw;
use super::settings::Key;
use super::validated::{Config, Mode, TlsFiles};
use super::{admin, credentials, fleet, login, profiles, values};
use crate::network::Grouping;
use crate::sts::names::DurationSeconds;
use crate::telemetry::LogFormat;

const DEFAULT_DEV_LISTEN: &str = "127.0.0.1:8080";
/// `stsvend dev` takes any free port for admin, so the one-command start never fails on a busy
/// 9090; the banner prints where it is.
const DEFAULT_DEV_ADMIN_LISTEN: &str = "127.0.0.1:0";
/// Where the ECS metadata service answers on every instance: plain HTTP is allowed to it.
pub(super) const ECS_METADATA_HOST: &str = "100.100.100.200";

pub(super) fn validate(mut raw: Raw, mode: Mode, problems: &mut Problems) -> Option<Config> {
    let mut warnings = std::mem::take(&mut raw.warnings);
    let dev = matches!(mode, Mode::Dev { .. });
    let listen = listen(&raw, mode, problems);
    let endpoints = endpoints(&raw, dev, &mut warnings, problems);
    let admin_listen = admin_listen(&raw, mode, problems);
    let admin = admin::parse(
        raw.get(Key::AdminHosts),
        raw.get(Key::AdminToken),
        raw.get(Key::AdminTokenFile),
        problems,
    );
    if let Some(addr) = admin_listen {
        warnings.extend(admin::warning(addr, &admin));
    }
    let tls = tls(&raw, problems);
    let log_format = log_format(&raw, problems);
    let trusted_proxies = trusted_proxies(&raw, problems);
    let limits = Limits::parse(&raw, problems);
    let min_remaining = min_remaining(&raw, &mut warnings, problems);
    let config_watch = values::whole_number(
        raw.or_default(Key::ConfigWatchSeconds).as_ref(),
        0..=3600,
        "of seconds from 0 (no watching) to 3600",
        problems,
    );
    let credentials = credentials::parse(&raw, dev, &mut warnings, problems);
    let fleet = fleet::parse(&raw, dev, &mut warnings, problems);
    let replica_id = raw.get(Key::ReplicaId).map(|id| id.value.clone());
    // An invalid prefix length is reported on its own; check policies against the default's.
    let ipv6_prefix = limits
        .grouping
        .as_ref()
        .map_or(crate::network::DEFAULT_IPV6_PREFIX_LENGTH, |g| {
            g.ipv6_prefix
        });
    // Asked of the settings as given, so that a login profile with other problems still has
    // its missing session secret reported in the same run.
    let logins = raw.profiles.iter().any(|(name, profile)| {
        profile
            .or_default(name, Key::Auth)
            .is_some_and(|auth| login::Platforms::parse(auth.value.trim()).is_some())
    });
    let profiles = profiles::parse(
        std::mem::take(&mut raw.profiles),
        dev,
        min_remaining,
        ipv6_prefix,
        &mut warnings,
        problems,
    );
    let sessions = login::sessions(&raw, logins, dev, problems);
    Some(Config {
        listen: listen?,
        sts_endpoint: endpoints.sts?,
        base_sts_endpoint: endpoints.base_sts?,
        ecs_metadata_endpoint: endpoints.metadata?,
        admin_listen: admin_listen?,
        admin,
        tls,
        log_format,
        trusted_proxies,
        sts_budget_per_second: limits.sts_budget_per_second?,
        max_connections: limits.max_connections?,
        grouping: limits.grouping?,
        new_tokens_per_network_per_minute: limits.new_tokens_per_network_per_minute?,
        max_connections_per_address: limits.max_connections_per_address?,
        min_remaining: Duration::from_secs(min_remaining?),
        // 0: only SIGHUP and the admin route reload.
        config_watch: config_watch.map(|s| (s > 0).then(|| Duration::from_secs(s)))?,
        profiles,
        credentials,
        warnings,
        given: Vec::new(),
        injected: Vec::new(),
        fleet,
        sessions,
        replica_id,
        inputs: super::inputs::Inputs::default(),
    })
}

/// `stsvend dev` listens on loopback by default and, without `--allow-remote`, only there.
fn listen(raw: &Raw, mode: Mode, problems: &mut Problems) -> Option<SocketAddr> {
    listen_address(
        raw,
        mode,
        (Key::Listen, DEFAULT_DEV_LISTEN),
        "hands out emulated credentials and listens on loopback only",
        problems,
    )
}

fn admin_listen(raw: &Raw, mode: Mode, problems: &mut Problems) -> Option<SocketAddr> {
    listen_address(
        raw,
        mode,
        (Key::AdminListen, DEFAULT_DEV_ADMIN_LISTEN),
        "keeps its admin listener (metrics, kill switch) on loopback",
        problems,
    )
}

/// The address of `key` (in dev, `dev_default` unless given), which `stsvend dev` without
/// `--allow-remote` keeps on loopback for the reason `why`.
fn listen_address(
    raw: &Raw,
    mode: Mode,
    (key, dev_listen): (Key, &str),
    why: &str,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    let setting = match (mode, raw.get(key)) {
        (Mode::Dev { .. }, None) => dev_default(key, dev_listen),
        _ => raw.or_default(key)?,
    };
    let addr = values::listen(&setting, problems)?;
    let local_only = mode
        == Mode::Dev {
            allow_remote: false,
        };
    if local_only && !addr.ip().is_loopback() {
        problems.add(
            &setting.origin,
            format!(
                "`stsvend dev` {why}; {addr} is not a loopback address (pass --allow-remote to override)"
            ),
        );
    }
    Some(addr)
}

/// What `stsvend dev` uses for `key` when it is not given, named by its variable.
fn dev_default(key: Key, value: &str) -> super::setting::Setting {
    super::setting::Setting {
        origin: format!("`{}`", key.spec().env),
        place: super::setting::Place::Default,
        value: value.to_owned(),
    }
}

/// The endpoints: the profiles' STS, the base credentials' STS and the metadata service.
struct Endpoints {
    sts: Option<Url>,
    base_sts: Option<Url>,
    metadata: Option<Url>,
}

/// The profiles' STS endpoint: `STSVEND_STS_ENDPOINT`, else `STSVEND_REGION`'s, else the
/// official SDKs' `ALIBABA_CLOUD_STS_REGION` (and VPC switch), else the default region's. The
/// base credentials' own STS calls go where the SDKs would send them when
/// `ALIBABA_CLOUD_STS_REGION` is set, else to the profiles' endpoint.
fn endpoints(
    raw: &Raw,
    dev: bool,
    warnings: &mut Vec<String>,
    problems: &mut Problems,
) -> Endpoints {
    let sdk = sdk_sts(raw, dev, warnings, problems);
    let region = raw.or_default(Key::Region);
    let region = region.as_ref().map_or("", |s| s.value.as_str());
    if !valid_region(region) {
        problems.add(
            raw.or_default(Key::Region)
                .map_or(String::new(), |s| s.origin),
            format!(
                "must be a region id such as cn-shanghai or ap-southeast-1, got {}",
                shown(region)
            ),
        );
    }
    let sts = match (raw.get(Key::StsEndpoint), raw.get(Key::Region), &sdk) {
        (Some(setting), _, _) => {
            if dev {
                warnings.push(format!(
                    "{} is ignored by `stsvend dev`, which uses its built-in STS emulator",
                    setting.origin
                ));
            }
            values::endpoint(setting, None, problems)
        }
        (None, None, Some(sdk)) => sdk.clone(),
        (None, _, _) => Url::parse(&format!("https://sts.{region}.aliyuncs.com/")).ok(),
    };
    let base_sts = match sdk {
        Some(sdk) => sdk,
        None => sts.clone(),
    };
    let metadata = raw
        .or_default(Key::EcsMetadataEndpoint)
        .and_then(|setting| values::endpoint(&setting, Some(ECS_METADATA_HOST), problems));
    Endpoints {
        sts,
        base_sts,
        metadata,
    }
}

/// The official SDKs' STS endpoint, read as `alibabacloud_credentials` reads it: only with
/// `ALIBABA_CLOUD_STS_REGION` (the SDKs otherwise call `sts.aliyuncs.com`, whatever the VPC
/// switch says); `sts-vpc.` when `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED` is `true` in any case
/// (`.lower() == 'true'`, nothing else, not even with spaces). `None` when the region is not
/// set; `Some(None)` when it is not valid (a problem is added).
fn sdk_sts(
    raw: &Raw,
    dev: bool,
    warnings: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<Option<Url>> {
    let vpc = raw.get(Key::VpcEndpointEnabled);
    let vpc_on = vpc.is_some_and(|v| v.value.eq_ignore_ascii_case("true"));
    if let Some(vpc) = vpc.filter(|v| !vpc_on && !v.value.eq_ignore_ascii_case("false")) {
        warnings.push(format!(
            "{} is {}, which the official SDKs and stsvend read as false; only `true` turns it on",
            vpc.origin,
            shown(&vpc.value)
        ));
    }
    let Some(region) = raw.get(Key::StsRegion) else {
        if let Some(vpc) = vpc.filter(|_| vpc_on) {
            warnings.push(format!(
                "{} has no effect without `ALIBABA_CLOUD_STS_REGION` (the official SDKs then ignore it too)",
                vpc.origin
            ));
        }
        return None;
    };
    if dev {
        warnings.push(format!(
            "{} is ignored by `stsvend dev`, which uses its built-in STS emulator",
            region.origin
        ));
    }
    // Not trimmed: the SDKs put the value into the host name as it is.
    if !valid_region(&region.value) {
        problems.add(
            &region.origin,
            format!(
                "must be a region id such as cn-shanghai or ap-southeast-1, got {}",
                shown(&region.value)
            ),
        );
        return Some(None);
    }
    let prefix = if vpc_on { "sts-vpc" } else { "sts" };
    Some(Url::parse(&format!("https://{prefix}.{}.aliyuncs.com/", region.value)).ok())
}

fn valid_region(region: &str) -> bool {
    (2..=40).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Both PEM files or neither.
fn tls(raw: &Raw, problems: &mut Problems) -> Option<TlsFiles> {
    match (raw.get(Key::TlsCert), raw.get(Key::TlsKey)) {
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
    }
}

/// JSON for machines; when not given, pretty at a terminal.
fn log_format(raw: &Raw, problems: &mut Problems) -> LogFormat {
    let Some(setting) = raw.get(Key::LogFormat) else {
        return if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        };
    };
    match setting.value.trim().to_ascii_lowercase().as_str() {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        _ => {
            problems.add(
                &setting.origin,
                format!("must be json or pretty, got {}", shown(&setting.value)),
            );
            LogFormat::Json
        }
    }
}

fn trusted_proxies(raw: &Raw, problems: &mut Problems) -> Vec<ipnet::IpNet> {
    let mut proxies = Vec::new();
    let Some(setting) = raw.get(Key::TrustedProxies) else {
        return proxies;
    };
    for item in values::items(setting) {
        let parsed = item
            .parse::<ipnet::IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => proxies.push(net.trunc()),
            Err(_) => problems.add(
                &setting.origin,
                format!(
                    "must list IP addresses or CIDRs such as 10.0.0.0/8, got {}",
                    shown(item)
                ),
            ),
        }
    }
    proxies
}

/// The process-wide bounds: the STS budget, connection caps, address grouping.
struct Limits {
    sts_budget_per_second: Option<NonZeroU32>,
    max_connections: Option<usize>,
    grouping: Option<Grouping>,
    new_tokens_per_network_per_minute: Option<NonZeroU32>,
    max_connections_per_address: Option<usize>,
}

impl Limits {
    fn parse(raw: &Raw, problems: &mut Problems) -> Self {
        let number = |key| raw.or_default(key);
        let sts_budget_per_second = values::whole_number(
            number(Key::StsBudgetPerSecond).as_ref(),
            1..=100,
            "from 1 to 100 (STS allows about 100 AssumeRole calls per second for the whole account)",
            problems,
        )
        .and_then(NonZeroU32::new);
        let max_connections = values::whole_number(
            number(Key::MaxConnections).as_ref(),
            1..=1_000_000,
            "of connections from 1 to 1000000",
            problems,
        );
        // IPv6 prefixes shorter than 32 bits would lump whole providers together.
        let ipv6_prefix = values::whole_number(
            number(Key::Ipv6PrefixLength).as_ref(),
            32..=128,
            "of bits from 32 to 128",
            problems,
        );
        let ipv4_network_prefix = values::whole_number(
            number(Key::Ipv4NetworkPrefixLength).as_ref(),
            8..=32,
            "of bits from 8 to 32",
            problems,
        );
        let new_tokens_per_network_per_minute = values::whole_number(
            number(Key::NewTokensPerNetworkPerMinute).as_ref(),
            1..=1_000_000,
            "of tokens from 1 to 1000000",
            problems,
        )
        .and_then(NonZeroU32::new);
        let max_connections_per_address = values::whole_number(
            number(Key::MaxConnectionsPerAddress).as_ref(),
            1..=1_000_000,
            "of connections from 1 to 1000000",
            problems,
        );
        Self {
            sts_budget_per_second,
            max_connections,
            grouping: ipv6_prefix
                .zip(ipv4_network_prefix)
                .map(|(ipv6, ipv4)| Grouping {
                    ipv6_prefix: ipv6,
                    ipv4_network_prefix: ipv4,
                }),
            new_tokens_per_network_per_minute,
            max_connections_per_address,
        }
    }
}

/// Seconds of validity a served token keeps at least, at most the longest duration.
fn min_remaining(raw: &Raw, warnings: &mut Vec<String>, problems: &mut Problems) -> Option<u64> {
    let setting = raw.or_default(Key::MinRemainingSeconds)?;
    let max = u64::from(*DurationSeconds::RANGE.end());
    let Some(n) = setting
        .value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
    else {
        problems.add(
            &setting.origin,
            format!(
                "must be a whole number of seconds from 0 to {max}, got {}",
                shown(&setting.value)
            ),
        );
        return None;
    };
    if n < 300 + MIN_SERVE_WINDOW_SECONDS {
        warnings.push(format!(
            "the minimum remaining validity is {n}s; the SLS STS plugin keeps a token for 300s without checking it, so a client may use a token after it expires"
        ));
    }
    Some(n)
}
