//! The validated configuration: what the rest of the service reads. A leaf of `config`: the
//! parsers build these values and import nothing else from each other through it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;

use super::access::Access;
use super::admin::AdminAccess;
use super::setting::Given;
use crate::credentials::Credentials;
use crate::fleet::settings::FleetSettings;
use crate::sts::AssumeRole;
use crate::sts::policy::LogstoreRef;
use crate::telemetry::LogFormat;

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
    /// Base URL of STS for the profiles' tokens (`https://sts.<region>.aliyuncs.com/` unless
    /// overridden). Ignored in dev.
    pub sts_endpoint: Url,
    /// Base URL of STS for the base credentials' own calls (`AssumeRoleWithOIDC`, a
    /// `RamRoleArn` profile's `AssumeRole`): the official SDKs' `ALIBABA_CLOUD_STS_REGION`
    /// endpoint when that is set, else `sts_endpoint`.
    pub base_sts_endpoint: Url,
    /// Base URL of the ECS metadata service (`http://100.100.100.200/` unless overridden).
    pub ecs_metadata_endpoint: Url,
    pub min_remaining: Duration,
    /// How often the config file and the `_FILE` secrets are checked for changes (a reload
    /// follows one); `None`: only SIGHUP and `POST /admin/reload` reload.
    pub config_watch: Option<Duration>,
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
    /// Every setting the operator gave, as `stsvend check` lists them (no secret in it).
    pub given: Vec<Given>,
    /// `STSVEND_`-like variables Kubernetes service links or Docker links injected: not
    /// settings, ignored, each logged at debug level at start-up.
    pub injected: Vec<super::injected::Injected>,
    /// Fleet mode: the Redis the replicas share state through. `None`: one process.
    pub fleet: Option<FleetSettings>,
    /// Mini program login: the session tokens' settings, when some profile accepts logins.
    pub sessions: Option<super::login::Sessions>,
    /// `STSVEND_REPLICA_ID` as given (see [`super::fleet::replica_id`] for the default).
    pub replica_id: Option<String>,
    /// What each setting was given as (digests, files' contents included), for telling what a
    /// reload changes; and the files to watch.
    pub inputs: super::inputs::Inputs,
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
