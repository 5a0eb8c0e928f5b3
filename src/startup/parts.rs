//! What the service is built from and rebuilt from on a reload: every profile's state (token
//! keepers, verifier, logins, limits) and the routers around them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use axum::Router;
use jsonwebtoken::Algorithm;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::{JwtConfig, JwtSetupError, JwtVerifier};
use crate::clock::Clock;
use crate::config::diff::{call_fingerprint, per_caller};
use crate::config::login::Sessions;
use crate::config::{Config, JwtAlgorithm, JwtSettings, Profile};
use crate::credentials::CredentialsProvider;
use crate::fleet::callers::FleetCallers;
use crate::fleet::shared::FleetShared;
use crate::fleet::store::FleetStore;
use crate::http::admin;
use crate::http::limits::RateLimits;
use crate::http::logins;
use crate::http::{self, AppState, ProfileState};
use crate::server::Served;
use crate::server::tls::TlsError;
use crate::sts::StsClient;
use crate::tokens::callers::{self, CallerTokens, FarCache};
use crate::tokens::shared::{self, SharedToken, StsFetcher};
use crate::tokens::store::Tokens;

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

/// What every profile's state is made from: settings only a restart changes, and the
/// shared clients. Kept by the reloader to build the profiles a reload adds or changes.
#[derive(Clone)]
pub(super) struct TokenSources {
    pub(super) client: StsClient,
    pub(super) credentials: CredentialsProvider,
    pub(super) clock: Clock,
    pub(super) min_remaining: Duration,
    pub(super) callers: callers::CallerSettings,
    pub(super) grouping: crate::network::Grouping,
    /// The app's: every profile's tasks stop with it, or earlier with their own token.
    pub(super) cancel: CancellationToken,
    /// Fleet mode: shared and per-caller tokens are shared with the other replicas through it.
    pub(super) fleet: Option<FleetStore>,
    pub(super) fleet_size: u32,
}

impl fmt::Debug for TokenSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSources")
            .field("credentials", &self.credentials)
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

/// A profile's token keepers, and what stops their tasks.
#[derive(Clone)]
pub(super) struct Keepers {
    pub(super) shared: SharedToken,
    pub(super) callers: Option<Arc<dyn Tokens>>,
    pub(super) stop: CancellationToken,
}

/// What stops a profile's background tasks: its token keepers (kept by a reload that leaves
/// its STS call alone), and the rest (fleet rate limits), rebuilt with any change.
#[derive(Debug)]
pub(super) struct ProfileTasks {
    pub(super) tokens: CancellationToken,
    pub(super) rest: CancellationToken,
}

impl ProfileTasks {
    pub(super) fn stop(&self) {
        self.tokens.cancel();
        self.rest.cancel();
    }
}

/// What a profile's state starts from besides its settings.
pub(super) struct Carried<'a> {
    pub(super) keepers: &'a Keepers,
    pub(super) rest: &'a CancellationToken,
    pub(super) enabled: bool,
    pub(super) would_deny: u64,
}

impl TokenSources {
    pub(super) fn new(
        config: &Config,
        client: StsClient,
        (credentials, clock): (CredentialsProvider, Clock),
        cancel: CancellationToken,
        fleet: Option<FleetStore>,
    ) -> Self {
        let fleet_size = config
            .fleet
            .as_ref()
            .and_then(|f| f.fleet_size_hint)
            .map_or(
                crate::fleet::budget::ASSUMED_FLEET_SIZE,
                std::num::NonZeroU32::get,
            );
        Self {
            client,
            credentials,
            clock,
            min_remaining: config.min_remaining,
            callers: caller_settings(config),
            grouping: config.grouping,
            cancel,
            fleet,
            fleet_size,
        }
    }

    /// One profile's shared token (fetched ahead from now on) and its per-caller tokens when
    /// it has callers of its own. In fleet mode both are stored under the profile's name and
    /// its STS call's fingerprint.
    pub(super) fn keepers(&self, profile: &Profile) -> Keepers {
        let stop = self.cancel.child_token();
        let keyed = format!("{}#{}", profile.name, call_fingerprint(&profile.call));
        let fetcher = StsFetcher {
            client: self.client.clone(),
            credentials: self.credentials.clone(),
            call: profile.call.clone(),
        };
        let far = self
            .fleet
            .as_ref()
            .map(|store| -> Arc<dyn shared::FarShared> {
                FleetShared::start(
                    store.clone(),
                    profile.name.clone(),
                    keyed.clone(),
                    self.clock.clone(),
                    stop.child_token(),
                )
            });
        let (shared, _task) = shared::spawn(
            profile.name.clone(),
            fetcher,
            self.clock.clone(),
            self.min_remaining,
            stop.child_token(),
            Arc::new(tokio::sync::Notify::new()),
            far,
        );
        let callers = per_caller(profile).then(|| -> Arc<dyn Tokens> {
            let far = self.fleet.as_ref().map(|store| -> Arc<dyn FarCache> {
                FleetCallers::new(
                    store.clone(),
                    profile.name.clone(),
                    keyed.clone(),
                    self.clock.clone(),
                )
            });
            CallerTokens::with_settings(
                profile.name.clone(),
                profile.call.clone(),
                self.client.clone(),
                self.credentials.clone(),
                self.clock.clone(),
                self.callers,
                far,
            )
        });
        Keepers {
            shared,
            callers,
            stop,
        }
    }

    /// One profile's state around its keepers: its JWT verifier, logins and limits.
    pub(super) fn profile_state(
        &self,
        profile: &Profile,
        sessions: Option<&Sessions>,
        carried: &Carried<'_>,
    ) -> Result<ProfileState, StartupError> {
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
        let logins = logins::for_profile(access.login.as_ref(), sessions).map_err(|source| {
            StartupError::Login {
                profile: profile.name.clone(),
                source,
            }
        })?;
        let mut limits = RateLimits::with_grouping(access.rate_limit, self.grouping);
        if let Some(store) = &self.fleet {
            limits.share(store, &profile.name, self.fleet_size, carried.rest);
        }
        crate::metrics::record_profile_enabled(&profile.name, carried.enabled);
        Ok(ProfileState {
            name: profile.name.clone(),
            shared: carried.keepers.shared.clone(),
            callers: carried.keepers.callers.clone(),
            limits,
            auth: access.auth,
            verifier,
            logins,
            bind_source_ip: access.bind_source_ip,
            cors_origins: access.cors_origins.clone(),
            would_deny: AtomicU64::new(carried.would_deny),
            enabled: AtomicBool::new(carried.enabled),
        })
    }

    /// Every profile of `config`, new, and their tasks by name.
    pub(super) fn profiles(
        &self,
        config: &Config,
    ) -> Result<(Vec<ProfileState>, HashMap<String, ProfileTasks>), StartupError> {
        let mut profiles = Vec::new();
        let mut tasks = HashMap::new();
        for profile in &config.profiles {
            let (state, profile_tasks) = self.new_profile(profile, config.sessions.as_ref())?;
            profiles.push(state);
            tasks.insert(profile.name.clone(), profile_tasks);
        }
        Ok((profiles, tasks))
    }

    /// A new profile's state and tasks: new keepers, enabled.
    pub(super) fn new_profile(
        &self,
        profile: &Profile,
        sessions: Option<&Sessions>,
    ) -> Result<(ProfileState, ProfileTasks), StartupError> {
        let keepers = self.keepers(profile);
        let tasks = ProfileTasks {
            tokens: keepers.stop.clone(),
            rest: self.cancel.child_token(),
        };
        let carried = Carried {
            keepers: &keepers,
            rest: &tasks.rest,
            enabled: true,
            would_deny: 0,
        };
        match self.profile_state(profile, sessions, &carried) {
            Ok(state) => Ok((state, tasks)),
            Err(error) => {
                tasks.stop();
                Err(error)
            }
        }
    }
}

/// The routers' parts that outlive a reload: each listener's edge (its in-flight cap), the
/// dev routes, the metrics page and the reloader's handle, and whether the admin routes share
/// the public listener.
#[derive(Clone)]
pub(super) struct Surfaces {
    public_edge: http::edge::Edge,
    admin_edge: http::edge::Edge,
    extra_routes: Option<Router>,
    admin: admin::AdminParts,
    shared_port: bool,
}

impl fmt::Debug for Surfaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Surfaces")
            .field("shared_port", &self.shared_port)
            .finish_non_exhaustive()
    }
}

impl Surfaces {
    pub(super) fn new(
        extra_routes: Option<Router>,
        admin: admin::AdminParts,
        shared_port: bool,
    ) -> Self {
        Self {
            public_edge: http::edge::Edge::default(),
            admin_edge: http::edge::Edge::default(),
            extra_routes,
            admin,
            shared_port,
        }
    }

    /// The public router, and the admin router unless the admin routes are merged into the
    /// public one (when they share its listener).
    pub(super) fn routers(&self, config: &Config, state: &AppState) -> (Served, Option<Router>) {
        // Every router on the public listener shares one in-flight cap; each keeps its own
        // method rule (the token routes read only, the dev sink and kill switch take `POST`).
        let edge = &self.public_edge;
        let mut public = http::public_surface(state.clone(), edge);
        if let Some(extra) = &self.extra_routes {
            let methods = edge.with_methods(http::edge::Methods::Routed);
            public = public.map_router(|router| http::harden(extra.clone(), methods).merge(router));
        }
        let (app, parts, access) = (state.clone(), self.admin.clone(), &config.admin);
        if self.shared_port {
            let admin = admin::admin_routes(app, parts, access, edge);
            (public.map_router(|router| router.merge(admin)), None)
        } else {
            let admin = admin::admin_router(app, parts, access, &self.admin_edge);
            (public, Some(admin))
        }
    }
}

fn caller_settings(config: &Config) -> callers::CallerSettings {
    callers::CallerSettings {
        min_remaining: config.min_remaining,
        max_bytes: callers::MAX_CACHE_BYTES,
        new_tokens_per_network_per_minute: Some(config.new_tokens_per_network_per_minute),
    }
}

/// `clock`'s now as Unix seconds, for the metrics that say when.
pub(super) fn unix_seconds(clock: &Clock) -> f64 {
    clock.now().timestamp_millis() as f64 / 1000.0
}
