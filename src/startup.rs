//! Assembles the service from a validated [`Config`]: the STS client, one refresher per profile,
//! the router and the listener; then runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::CredentialsProvider;
use crate::fleet::store::FleetStore;
use crate::http::admin;
use crate::http::{self, AppState};
use crate::reload::{Ask, Reloads, Source};
use crate::server::tls::Tls;
use crate::server::{self, Routes};
use crate::sts::StsClient;
use crate::sts::budget::StsBudget;

mod parts;
mod reload;

pub use parts::StartupError;
use parts::{Surfaces, TokenSources, unix_seconds};

/// Once asked to stop, how long in-flight requests get before the process exits anyway. Below
/// the 10 s that orchestrators commonly allow between SIGTERM and SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);
/// Connections the admin listener holds open at once: scrapers and probes need a handful.
pub const ADMIN_MAX_CONNECTIONS: usize = 128;

/// How often rate-limit state for quiet addresses and users is dropped.
/// How often a fleet replica pings its store while nothing else uses it: a store that is down
/// is noticed (and reconnected) within about this long.
const FLEET_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

async fn forget_idle_rate_limits(state: AppState, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FORGET_IDLE_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        for profile in state.profiles() {
            profile.limits.forget_idle();
            if let Some(logins) = &profile.logins {
                logins.forget_idle();
            }
        }
    }
}

/// Files the process needs besides its connections: listeners, log output, STS connections.
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Raises the process's soft open-files limit (`ulimit -n`, often 1024) as far as the hard
/// limit allows towards what the connection caps need, and warns when that is not enough:
/// connections past the limit would fail to be accepted instead of waiting under the cap.
fn raise_open_files_limit(max_connections: usize) {
    let besides = ADMIN_MAX_CONNECTIONS as u64 + FILES_BESIDES_CONNECTIONS;
    let needed = max_connections as u64 + besides;
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit >= needed => {}
        Ok(limit) => tracing::warn!(
            open_files_limit = limit,
            max_connections,
            "the open-files limit (ulimit -n) is below STSVEND_MAX_CONNECTIONS plus {besides}; raise its hard limit to {needed} or lower STSVEND_MAX_CONNECTIONS to {}",
            limit.saturating_sub(besides).max(1)
        ),
        Err(error) => {
            tracing::debug!(%error, "cannot read or raise the open-files limit");
        }
    }
}

/// A built service, listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Routes,
    /// The admin listener, unless the admin routes share the public one.
    admin: Option<(TcpListener, Routes)>,
    tls: Option<Tls>,
    max_connections: usize,
    max_connections_per_address: usize,
    grouping: crate::network::Grouping,
    cancel: CancellationToken,
    /// With a [`Source`] to read again: what rebuilds the profiles and routers, and the asks
    /// it serves.
    reloader: Option<(reload::Reloader, tokio::sync::mpsc::Receiver<Ask>)>,
}

/// The public listener, and the admin one unless both are asked for on the same port.
async fn bind_listeners(
    config: &Config,
) -> Result<(TcpListener, Option<TcpListener>), StartupError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })
    };
    let listener = bind(config.listen).await?;
    raise_open_files_limit(config.max_connections);
    // Port 0 means "any free port" twice, not the same address.
    let shared_port = config.admin_listen == config.listen && config.listen.port() != 0;
    let admin_listener = if shared_port {
        tracing::warn!(addr = %config.listen, "the admin routes (metrics, kill switch) share the public listener, as STSVEND_ADMIN_LISTEN asks");
        None
    } else {
        Some(bind(config.admin_listen).await?)
    };
    Ok((listener, admin_listener))
}

/// Keeps `stsvend_fleet_store_up` current: pings the store every [`FLEET_HEALTH_INTERVAL`]
/// while nothing else uses it (which also drives reconnection) and follows its up/down state.
fn follow_fleet_store(store: &FleetStore, cancel: &CancellationToken) {
    store.spawn_health(FLEET_HEALTH_INTERVAL, cancel.child_token());
    let mut up = store.watch_up();
    let cancel = cancel.child_token();
    tokio::spawn(async move {
        loop {
            crate::metrics::record_fleet_store_up(*up.borrow_and_update());
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = up.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// The parts an [`App`] is built from: the validated config, the base credentials and the clock
/// (required, so [`App::builder`] takes them), and the optional parts only some callers have.
#[must_use = "an AppBuilder does nothing until `build` is awaited"]
pub struct AppBuilder<'c> {
    config: &'c Config,
    credentials: CredentialsProvider,
    clock: Clock,
    budget: Option<Arc<StsBudget>>,
    metrics: Option<admin::RenderMetrics>,
    extra_routes: Option<Router>,
    fleet: Option<FleetStore>,
    source: Option<Source>,
}

impl std::fmt::Debug for AppBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config and credentials print their own (redacted) forms; a metrics renderer is a
        // closure with nothing to show.
        f.debug_struct("AppBuilder")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .field("budget", &self.budget)
            .field("metrics", &self.metrics.is_some())
            .field("extra_routes", &self.extra_routes.is_some())
            .field("fleet", &self.fleet)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AppBuilder<'_> {
    /// Spends from a budget shared with other AssumeRole callers (the credential chain's
    /// `RamRoleArn` profiles). Without one the app gets its own, of `sts_budget_per_second`.
    pub fn budget(mut self, budget: Arc<StsBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The metrics page the admin listener serves (none: `/metrics` is not routed).
    pub fn metrics(mut self, metrics: admin::RenderMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Extra public routes (`stsvend dev`'s SLS sink and example page), hardened like the token
    /// routes but with the methods they route (`POST` for the sink).
    pub fn extra_routes(mut self, routes: Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// Fleet mode: share state with the other replicas through this store.
    pub fn fleet(mut self, store: FleetStore) -> Self {
        self.fleet = Some(store);
        self
    }

    /// Reloads (SIGHUP, `POST /admin/reload`, the file watcher) read the configuration again
    /// from `source`; without one nothing reloads but the TLS files.
    pub fn reload_from(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Binds the listeners and starts the refreshers (they fetch the first tokens right away).
    pub async fn build(self) -> Result<App, StartupError> {
        App::build_from(self).await
    }
}

impl App {
    /// Starts building the service; [`AppBuilder`] has the optional parts.
    pub fn builder(
        config: &Config,
        credentials: CredentialsProvider,
        clock: Clock,
    ) -> AppBuilder<'_> {
        AppBuilder {
            config,
            credentials,
            clock,
            budget: None,
            metrics: None,
            extra_routes: None,
            fleet: None,
            source: None,
        }
    }

    async fn build_from(parts: AppBuilder<'_>) -> Result<Self, StartupError> {
        let AppBuilder {
            config,
            credentials,
            clock,
            budget,
            metrics,
            extra_routes,
            fleet,
            source,
        } = parts;
        let budget = process_budget(config, budget, fleet.as_ref());
        let tls = load_tls(config)?;
        let (listener, admin_listener) = bind_listeners(config).await?;
        let client = StsClient::new(config.sts_endpoint.clone(), clock.clone())
            .map_err(StartupError::HttpClient)?
            .with_budget(budget);
        let cancel = CancellationToken::new();
        if let Some(store) = &fleet {
            follow_fleet_store(store, &cancel);
        }
        let sources = TokenSources::new(
            config,
            client,
            (credentials, clock.clone()),
            cancel.clone(),
            fleet.clone(),
        );
        let (profiles, tasks) = sources.profiles(config).inspect_err(|_| cancel.cancel())?;
        let mut state = AppState::new(profiles, config.trusted_proxies.clone(), clock.clone());
        // Replaced when a reload changes which profiles there are.
        let switch_follow = cancel.child_token();
        if let Some(store) = fleet {
            // Before serving: a replica started during an incident starts disabled.
            state = http::fleet_switch::start(store, state, &switch_follow).await;
        }
        tokio::spawn(forget_idle_rate_limits(state.clone(), cancel.child_token()));
        let asks = source.map(|source| (source, Reloads::channel()));
        let surfaces = Surfaces::new(
            extra_routes,
            admin::AdminParts {
                metrics,
                reloads: asks.as_ref().map(|(_, (reloads, _))| reloads.clone()),
            },
            admin_listener.is_none(),
        );
        let (public, admin) = surfaces.routers(config, &state);
        let router = server::routes(public);
        let admin = admin_listener.zip(admin.map(server::routes));
        crate::metrics::record_config_loaded(unix_seconds(&clock));
        let reloader = asks.map(|(source, (reloads, asks))| {
            let watching = reload::ConfigWatch::new(source.path.clone(), reloads, config);
            let reloader = reload::Reloader {
                source,
                running: config.clone(),
                last_read: config.inputs.clone(),
                sources,
                surfaces,
                state,
                tasks,
                public: router.clone(),
                admin: admin.as_ref().map(|(_, routes)| routes.clone()),
                watching,
                switch_follow,
            };
            (reloader, asks)
        });
        Ok(Self {
            listener,
            router,
            admin,
            tls,
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            grouping: config.grouping,
            cancel,
            reloader,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address (the public one when they are shared).
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.admin {
            Some((listener, _)) => listener.local_addr(),
            None => self.listener.local_addr(),
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests in flight finish
    /// (for at most [`SHUTDOWN_GRACE`]) and stops the refreshers.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let announce = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            announce.cancel();
        });
        // SIGHUP reloads the certificate and the configuration; with neither to reload it is
        // only logged (never fatal).
        if let Some(tls) = &self.tls {
            tokio::spawn(tls.clone().watch(stop.clone()));
        }
        match self.reloader {
            Some((reloader, asks)) => {
                let watch = reloader.watch();
                tokio::spawn(reloader.run(asks, stop.clone()));
                tokio::spawn(server::watch::watch(watch, stop.clone()));
            }
            None if self.tls.is_none() => {
                tokio::spawn(crate::server::shutdown::log_hangups(stop.clone()));
            }
            None => {}
        }
        let admin = self.admin.map(|(listener, router)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                server::serve(
                    listener,
                    router,
                    None,
                    server::Listener {
                        name: "admin",
                        max_connections: ADMIN_MAX_CONNECTIONS,
                        max_connections_per_address: self.max_connections_per_address,
                        grouping: self.grouping,
                    },
                    stop.cancelled_owned(),
                    SHUTDOWN_GRACE,
                )
                .await;
            })
        });
        server::serve(
            self.listener,
            self.router,
            self.tls,
            server::Listener {
                name: "public",
                max_connections: self.max_connections,
                max_connections_per_address: self.max_connections_per_address,
                grouping: self.grouping,
            },
            stop.clone().cancelled_owned(),
            SHUTDOWN_GRACE,
        )
        .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        // Refreshers stop last, so requests that were waiting for a token still get one.
        self.cancel.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The public listener's certificate, when it speaks HTTPS: one that cannot be used stops
/// start-up.
fn load_tls(config: &Config) -> Result<Option<Tls>, StartupError> {
    let tls = config.tls.as_ref().map(Tls::load).transpose();
    tls.map_err(StartupError::Tls)
}

/// The budget every AssumeRole of the process spends from (the one given, or a new one), in
/// fleet mode shared with the other replicas.
fn process_budget(
    config: &Config,
    budget: Option<Arc<StsBudget>>,
    fleet: Option<&FleetStore>,
) -> Arc<StsBudget> {
    let budget = budget.unwrap_or_else(|| Arc::new(StsBudget::new(config.sts_budget_per_second)));
    if let Some(store) = fleet {
        let hint = config.fleet.as_ref().and_then(|f| f.fleet_size_hint);
        crate::fleet::budget::share(&budget, store, config.sts_budget_per_second, hint);
    }
    budget
}
