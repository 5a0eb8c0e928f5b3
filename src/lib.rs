//! stsvend hands short-lived, least-privilege Alibaba Cloud STS credentials to web pages and mini
//! programs, so they can upload logs straight to Simple Log Service.
//!
//! The module map, one line per module. Commands and wiring:
//! - [`cmd`]: the subcommands: serve, dev, check, healthcheck;
//! - [`config`]: environment and TOML file → one validated Config, driven by one settings table;
//! - [`startup`]: builds the STS client, the token keepers, the routers and the listeners, and
//!   rebuilds the profiles and routers when the configuration is reloaded;
//! - [`reload`]: asking for a reload (SIGHUP, admin route, file watcher) and its outcome.
//!
//! From the socket inward:
//! - [`server`]: accept loop, connection limits, HTTPS with reload, graceful shutdown;
//! - [`http`]: token, health and admin routes, the error shape, rate limits, the audit line;
//! - [`auth`]: who is calling: JWT verification, subject → session name;
//! - [`login`]: mini program login: WeChat / Alipay code exchanges, Alipay's RSA2, stsvend's
//!   session tokens;
//! - [`tokens`]: the refresh-ahead engine: shared and per-caller tokens behind one interface;
//! - [`fleet`]: fleet mode's Redis store: sealed tokens, budget, limits, kill switch;
//! - [`sts`]: V1 signer, `AssumeRole` request and response, policies, names, the budget;
//! - [`credentials`]: the service's own credentials: the chain of sources, renewal, redaction;
//! - [`emulator`]: the local STS and SLS sink behind `stsvend dev` and the tests (cargo
//!   feature `dev`, on by default).
//!
//! Leaves, importing nothing above them:
//! - [`clock`]: wall time, passed in so pure logic can be tested with fixed times;
//! - [`metrics`]: Prometheus series;
//! - [`network`]: client address grouping: IPv6 prefixes, IPv4 networks;
//! - [`outbound`]: the one outgoing-HTTP client builder;
//! - [`profile_name`]: the default profile's name and which names are valid;
//! - [`telemetry`]: log output (JSON or text), the audit target kept on.

pub mod auth;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod credentials;
#[cfg(feature = "dev")]
pub mod emulator;
pub mod fleet;
pub mod http;
pub mod login;
pub mod metrics;
pub mod network;
pub mod outbound;
pub mod profile_name;
pub mod reload;
pub mod server;
pub mod startup;
pub mod sts;
pub mod telemetry;
pub mod tokens;
