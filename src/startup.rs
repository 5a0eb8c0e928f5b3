//! Assembles the service from a validated [`Config`]: the STS client, one refresher per profile,
//! the router and the listener; then runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use jsonwebtoken::Algorithm;

use crate::auth::jwt::{JwtConfig, JwtSetupError, JwtVerifier};
use crate::clock::Clock;
use crate::config::{AuthMode, Config, JwtAlgorithm, JwtSettings, Profile};
use crate::credentials::CredentialsProvider;
use crate::fleet::callers::FleetCallers;
use crate::fleet::shared::FleetShared;
use crate::fleet::store::FleetStore;
use crate::http::ProfileState;
use crate::http::admin;
use crate::http::limits::RateLimits;
use crate::http::logins;
use crate::http::{self, AppState};
use crate::server;
use crate::server::tls::{Tls, TlsError};
use crate::sts::StsClient;
use crate::sts::budget::StsBudget;
use crate::tokens::callers::{self, CallerTokens, FarCache};
use crate::tokens::shared::{self, StsFetcher};
use crate::tokens::store::Tokens;

/// Once asked to stop, how long in-flight requests get before the process exits anyway. Below
/// the 10 s that orchestrators commonly allow between SIGTERM and SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);
/// Connections the admin listener holds open at once: scrapers and probes need a handful.
pub const ADMIN_MAX_CONNECTIONS: usize = 128;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTPS client for STS")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot use the TLS certificate (STSVEND_TLS_CERT / STSVEND_TLS_KEY)")]
    Tls(#[source] TlsError),
    #[error("profile `{profile}`: cannot set up JWT checks")]
    Jwt {
        profile: String,
        #[source]
        source: JwtSetupError,
    },
    #[error("profile `{profile}`: cannot set up mini program logins")]
    Login {
        profile: String,
        #[source]
        source: logins::LoginSetupError,
    },
}

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

fn jwt_config(settings: &JwtSettings) -> JwtConfig {
    JwtConfig {
        hs256_secret: settings.hs256_secret.clone(),
        jwks_url: settings.jwks_url.clone(),
        jwks_file: settings.jwks_file.clone(),
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        algorithms: settings
            .algorithms
            .iter()
            .map(|a| match a {
                JwtAlgorithm::Hs256 => Algorithm::HS256,
                JwtAlgorithm::Rs256 => Algorithm::RS256,
                JwtAlgorithm::Es256 => Algorithm::ES256,
            })
            .collect(),
    }
}

/// A built service, listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    /// The admin listener, unless the admin routes share the public one.
    admin: Option<(TcpListener, Router)>,
    tls: Option<Tls>,
    max_connections: usize,
    max_connections_per_address: usize,
    grouping: crate::network::Grouping,
    cancel: CancellationToken,
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

/// What every profile's token keepers are made from.
struct TokenSources<'a> {
    config: &'a Config,
    client: StsClient,
    credentials: CredentialsProvider,
    clock: Clock,
    cancel: &'a CancellationToken,
    /// Fleet mode: shared and per-caller tokens are shared with the other replicas through it.
    fleet: Option<&'a FleetStore>,
}

impl TokenSources<'_> {
    /// One profile's shared token (fetched ahead from now on), its per-caller tokens when it
    /// has callers of its own, its JWT verifier and its limits.
    fn profile_state(&self, profile: &Profile) -> Result<ProfileState, StartupError> {
        let fetcher = StsFetcher {
            client: self.client.clone(),
            credentials: self.credentials.clone(),
            call: profile.call.clone(),
        };
        let far = self.fleet.map(|store| -> Arc<dyn shared::FarShared> {
            let cancel = self.cancel.child_token();
            FleetShared::start(
                store.clone(),
                profile.name.clone(),
                self.clock.clone(),
                cancel,
            )
        });
        let (shared, _task) = shared::spawn(
            profile.name.clone(),
            fetcher,
            self.clock.clone(),
            self.config.min_remaining,
            self.cancel.child_token(),
            Arc::new(tokio::sync::Notify::new()),
            far,
        );
        let access = &profile.access;
        let verifier = access
            .jwt
            .as_ref()
            .map(|settings| JwtVerifier::new(jwt_config(settings)))
            .transpose()
            .map_err(|source| StartupError::Jwt {
                profile: profile.name.clone(),
                source,
            })?;
        let logins = logins::for_profile(access.login.as_ref(), self.config.sessions.as_ref())
            .map_err(|source| StartupError::Login {
                profile: profile.name.clone(),
                source,
            })?;
        let per_caller = access.auth != AuthMode::None || access.bind_source_ip;
        let callers = per_caller.then(|| -> Arc<dyn Tokens> {
            let far = self.fleet.map(|store| -> Arc<dyn FarCache> {
                FleetCallers::new(store.clone(), profile.name.clone(), self.clock.clone())
            });
            CallerTokens::with_settings(
                profile.name.clone(),
                profile.call.clone(),
                self.client.clone(),
                self.credentials.clone(),
                self.clock.clone(),
                caller_settings(self.config),
                far,
            )
        });
        crate::metrics::record_profile_enabled(&profile.name, true);
        Ok(ProfileState {
            name: profile.name.clone(),
            shared,
            callers,
            limits: RateLimits::with_grouping(access.rate_limit, self.config.grouping),
            auth: access.auth,
            verifier,
            logins,
            bind_source_ip: access.bind_source_ip,
            cors_origins: access.cors_origins.clone(),
            would_deny: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
        })
    }
}

/// The public router, and the admin router with its listener (or the admin routes merged into
/// the public router when they share it).
fn routers(
    config: &Config,
    state: AppState,
    metrics: Option<admin::RenderMetrics>,
    extra_routes: Option<Router>,
    admin_listener: Option<TcpListener>,
) -> (Router, Option<(TcpListener, Router)>) {
    // Every router on the public listener shares one in-flight cap; each keeps its own
    // method rule (the token routes read only, the dev sink and kill switch take `POST`).
    let edge = http::edge::Edge::default();
    let mut public = http::public_router_on(state.clone(), &edge);
    if let Some(extra) = extra_routes {
        let extra = http::harden(extra, edge.with_methods(http::edge::Methods::Routed));
        public = extra.merge(public);
    }
    match admin_listener {
        Some(admin_listener) => (
            public,
            Some((
                admin_listener,
                admin::admin_router(state, metrics, &config.admin),
            )),
        ),
        None => (
            public.merge(admin::admin_routes(state, metrics, &config.admin, &edge)),
            None,
        ),
    }
}

fn caller_settings(config: &Config) -> callers::CallerSettings {
    callers::CallerSettings {
        min_remaining: config.min_remaining,
        max_bytes: callers::MAX_CACHE_BYTES,
        new_tokens_per_network_per_minute: Some(config.new_tokens_per_network_per_minute),
    }
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
        } = parts;
        let budget =
            budget.unwrap_or_else(|| Arc::new(StsBudget::new(config.sts_budget_per_second)));
        if let Some(store) = &fleet {
            let hint = config.fleet.as_ref().and_then(|f| f.fleet_size_hint);
            crate::fleet::budget::share(&budget, store, config.sts_budget_per_second, hint);
        }
        let tls = config
            .tls
            .as_ref()
            .map(Tls::load)
            .transpose()
            .map_err(StartupError::Tls)?;
        let (listener, admin_listener) = bind_listeners(config).await?;
        let client = StsClient::new(config.sts_endpoint.clone(), clock.clone())
            .map_err(StartupError::HttpClient)?
            .with_budget(budget);
        let cancel = CancellationToken::new();
        if let Some(store) = &fleet {
            follow_fleet_store(store, &cancel);
        }
        let sources = TokenSources {
            config,
            client,
            credentials,
            clock: clock.clone(),
            cancel: &cancel,
            fleet: fleet.as_ref(),
        };
        let mut profiles = config
            .profiles
            .iter()
            .map(|profile| sources.profile_state(profile))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(store) = &fleet {
            let fleet_size = config
                .fleet
                .as_ref()
                .and_then(|f| f.fleet_size_hint)
                .map_or(
                    crate::fleet::budget::ASSUMED_FLEET_SIZE,
                    std::num::NonZeroU32::get,
                );
            profiles
                .iter_mut()
                .for_each(|p| p.limits.share(store, &p.name, fleet_size, &cancel));
        }
        let mut state = AppState::new(profiles, config.trusted_proxies.clone(), clock);
        if let Some(store) = fleet {
            // Before serving: a replica started during an incident starts disabled.
            state = http::fleet_switch::start(store, state, &cancel).await;
        }
        tokio::spawn(forget_idle_rate_limits(state.clone(), cancel.child_token()));
        let (router, admin) = routers(config, state, metrics, extra_routes, admin_listener);
        Ok(Self {
            listener,
            router,
            admin,
            tls,
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            grouping: config.grouping,
            cancel,
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
        // SIGHUP reloads the certificate; without one it is only logged (never fatal).
        match &self.tls {
            Some(tls) => tokio::spawn(tls.clone().watch(stop.clone())),
            None => tokio::spawn(crate::server::shutdown::log_hangups(stop.clone())),
        };
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
