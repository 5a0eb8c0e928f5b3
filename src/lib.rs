//! stsvend hands short-lived, least-privilege Alibaba Cloud STS credentials to web pages and mini
//! programs, so they can upload logs straight to Simple Log Service.
//!
//! A map of the crate, in the order a request meets it:
//! - [`config`]: environment and TOML file → one validated [`config::Config`];
//! - [`startup`]: builds the STS client, one token keeper per profile, the routers, the listeners;
//! - [`server`], [`tls`]: the accept loop (limits, graceful shutdown) and reloadable HTTPS;
//! - [`tokens`]: the refresh-ahead engine: the shared per-profile token, per-caller tokens in
//!   bounded memory, and the one interface the HTTP layer asks them through;
//! - [`auth`]: JWT verification and subject → session name;
//! - [`admin`]: the admin listener: health, readiness, metrics, the kill switch;
//! - [`http`]: `GET /get_sts_token[/{profile}]`, `/healthz`, `/readyz`, the error shape;
//! - [`sts`]: the V1 signer, the `AssumeRole` request and response, session policies;
//! - [`credentials`]: the service's own AccessKey, held in redacting types;
//! - [`emulator`]: the local STS behind `stsvend dev` and the integration tests;
//! - [`cmd`]: the subcommands' work: `serve` and `dev` wiring, `check` (the operator's dry run)
//!   and `healthcheck`;
//! - [`fleet`]: fleet mode's Redis store (sealed tokens, budget, limits, kill switch);
//! - [`metrics`], [`audit`]: Prometheus series and the one-line-per-token audit log;
//! - [`clock`], [`profile_name`], [`outbound`], [`telemetry`], [`shutdown`]: small
//!   infrastructure that imports nothing above it.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod credentials;
pub mod emulator;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod network;
pub mod outbound;
pub mod profile_name;
pub mod server;
pub mod shutdown;
pub mod startup;
pub mod sts;
pub mod telemetry;
pub mod tls;
pub mod tokens;
