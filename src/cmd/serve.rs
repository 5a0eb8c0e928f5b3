//! `stsvend serve` and `stsvend dev`: base credentials (the chain, or the emulator's), the app,
//! the start-up log lines, and serving until a shutdown signal.

use std::collections::HashMap;
use std::sync::Arc;

#[cfg(feature = "dev")]
use super::dev::{self, Dev};
#[cfg(feature = "dev")]
use super::dev_login;
use super::fleet;
use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::credentials::CredentialsProvider;
use crate::credentials::chain::{self, ChainError, ChainInputs};
use crate::fleet::store::StoreError;
use crate::http::admin::RenderMetrics;
use crate::metrics::{self, Metrics};
#[cfg(feature = "dev")]
use crate::reload::Adjust;
use crate::reload::Source;
use crate::server::shutdown;
use crate::startup::{App, StartupError};
use crate::sts::budget::StsBudget;
use crate::telemetry;

/// Without the `dev` feature there is never an emulator to keep running.
#[cfg(not(feature = "dev"))]
type Dev = std::convert::Infallible;

/// How serving can fail.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The credential chain found nothing usable: a configuration problem (exit 2).
    #[error(transparent)]
    Credentials(ChainError),
    /// A setting that only fails when used (a JWKS file, TLS files): also exit 2.
    #[error(transparent)]
    Setup(StartupError),
    #[error("cannot start the STS emulator")]
    Emulator(#[source] std::io::Error),
    /// `stsvend dev` in a binary built without the `dev` feature (the production image).
    #[error(
        "`stsvend dev` is not built into this binary (it was built without the cargo feature `dev`)"
    )]
    DevNotBuiltIn,
    #[error(transparent)]
    Startup(StartupError),
    #[error("cannot read the bound address")]
    Address(#[source] std::io::Error),
    #[error("cannot read the admin address")]
    AdminAddress(#[source] std::io::Error),
    #[error(transparent)]
    Serve(std::io::Error),
    /// The fleet store cannot be set up (its TLS files, say): a configuration problem.
    #[error(transparent)]
    Fleet(StoreError),
}

impl ServeError {
    /// Whether the operator's settings are at fault (exit 2) rather than the run.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Credentials(_) | Self::Setup(_) | Self::Fleet(_) | Self::DevNotBuiltIn
        )
    }
}

/// Serves until a shutdown signal. In `dev` mode the emulator replaces STS and supplies the
/// base credentials; `token_lifetime` shortens its tokens.
/// `source` is where `config` was read from, read again on each reload.
pub async fn run(
    #[cfg_attr(not(feature = "dev"), allow(unused_mut))] mut config: Config,
    #[cfg_attr(not(feature = "dev"), allow(unused_mut))] mut source: Source,
    token_lifetime: Option<u32>,
    env: &HashMap<String, String>,
) -> Result<(), ServeError> {
    let mode = source.mode;
    let clock = Clock::System;
    // Installed before anything records (the credential chain records its chosen source).
    let metrics = metrics::install();
    // One budget for every AssumeRole of the process: token profiles and base credentials.
    let budget = Arc::new(StsBudget::new(config.sts_budget_per_second));
    // Dropped at the end of this function, after the service has stopped.
    let (credentials, dev, dev_routes) = match mode {
        #[cfg(not(feature = "dev"))]
        Mode::Dev { .. } => {
            let _ = token_lifetime;
            return Err(ServeError::DevNotBuiltIn);
        }
        #[cfg(feature = "dev")]
        Mode::Dev { .. } => {
            let (dev, routes) = dev::start(clock.clone(), token_lifetime)
                .await
                .map_err(ServeError::Emulator)?;
            let login = dev_login::dev_login(&dev.emulator).map_err(|error| {
                ServeError::Emulator(std::io::Error::other(format!(
                    "the emulator's dev Alipay keys: {error}"
                )))
            })?;
            let endpoint = dev.emulator.endpoint();
            // Every configuration read, at start-up and on reloads, talks to the emulator.
            let adjust: Adjust = Arc::new(move |config: &mut Config| {
                config.sts_endpoint = endpoint.clone();
                dev_login::apply_login(config, &login);
                Ok(())
            });
            adjust(&mut config).map_err(|e| ServeError::Emulator(std::io::Error::other(e)))?;
            source.adjust = Some(adjust);
            (dev.credentials.clone(), Some(dev), Some(routes))
        }
        Mode::Serve => {
            let credentials = chain_credentials(&config, env, &clock, &budget).await?;
            (credentials, None::<Dev>, None)
        }
    };
    let mut builder = App::builder(&config, credentials.clone(), clock)
        .budget(budget)
        .metrics(metrics_page(metrics))
        .reload_from(source);
    if let Some(store) = fleet::connect(&config, env).map_err(ServeError::Fleet)? {
        if let Some(settings) = &config.fleet {
            tracing::info!(redis = %settings.url, replica = store.replica_id(), "fleet mode");
        }
        builder = builder.fleet(store);
    }
    if let Some(routes) = dev_routes {
        builder = builder.extra_routes(routes);
    }
    let app = builder.build().await.map_err(|error| match error {
        // A JWKS file, a key setting or TLS files that cannot be used (a certificate and a
        // key that do not match) are configuration problems.
        StartupError::Jwt { .. } | StartupError::Tls(_) => ServeError::Setup(error),
        other => ServeError::Startup(other),
    })?;
    let addr = app.local_addr().map_err(ServeError::Address)?;
    log_profiles(&config);
    let admin_addr = app.admin_addr().map_err(ServeError::AdminAddress)?;
    tracing::info!(%addr, %admin_addr, tls = config.tls.is_some(), sts = %config.sts_endpoint, credentials = credentials.source(), "listening");
    #[cfg(feature = "dev")]
    if let Some(dev) = &dev {
        dev::print_banner(addr, admin_addr, &config, dev.log_file.as_deref());
    }
    app.run_until(shutdown::signal())
        .await
        .map_err(ServeError::Serve)?;
    // The emulator stops after the service has.
    #[cfg(feature = "dev")]
    drop(dev);
    #[cfg(not(feature = "dev"))]
    let _ = dev;
    Ok(())
}

/// The base credentials from the chain, in the official SDKs' order.
async fn chain_credentials(
    config: &Config,
    env: &HashMap<String, String>,
    clock: &Clock,
    budget: &Arc<StsBudget>,
) -> Result<CredentialsProvider, ServeError> {
    let chain = chain::load(ChainInputs {
        env,
        configured: config.credentials.clone(),
        sts_endpoint: config.base_sts_endpoint.clone(),
        metadata_endpoint: config.ecs_metadata_endpoint.clone(),
        clock: clock.clone(),
        budget: Some(budget.clone()),
    })
    .await
    .map_err(ServeError::Credentials)?;
    let (source, why) = chain.chosen();
    let sts = &config.base_sts_endpoint;
    tracing::info!(source, detail = why, %sts, "credentials for calling STS");
    Ok(chain.provider)
}

fn log_profiles(config: &Config) {
    for profile in &config.profiles {
        tracing::info!(
            profile = %profile.name,
            role_arn = %profile.call.role_arn,
            duration_s = profile.call.duration_seconds,
            scope = %profile.scope.to_string(),
            "profile configured"
        );
    }
}

/// What the admin listener's `/metrics` serves. The log writer's dropped-line count is handed to
/// metrics at each render, here: metrics sits below telemetry and does not ask it.
fn metrics_page(metrics: Metrics) -> RenderMetrics {
    Arc::new(move || {
        if let Some(dropped) = telemetry::dropped_log_lines() {
            metrics::record_log_lines_dropped(dropped);
        }
        metrics.render()
    })
}
