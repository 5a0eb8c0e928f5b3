//! The reloader: one task that serves reload asks one at a time. Each reads the configuration
//! again, refuses it whole if it does not validate (or a profile cannot be set up), and
//! otherwise builds the next generation: unchanged profiles kept as they are (tokens, limiter
//! state, kill switch), changed ones rebuilt around their token keepers unless their STS call
//! changed, added ones built, removed ones stopped; then the routers are rebuilt and swapped
//! in whole. Requests in flight finish on the generation they started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering;

use super::parts::{
    Carried, Keepers, ProfileTasks, StartupError, Surfaces, TokenSources, unix_seconds,
};
use crate::config::Config;
use crate::config::diff::{self, ConfigDiff};
use crate::config::inputs::Inputs;
use crate::http::ProfileState;
use crate::http::state::Profiles;
use crate::http::{AppState, fleet_switch};
use crate::reload::{Ask, Outcome, Reloads, Source, Trigger};
use crate::server::Routes;
use crate::server::watch::Watched;
use crate::tokens::store::Tokens;

/// How long the watcher waits for the reload it asked for.
const WATCH_ASK_WAIT: Duration = Duration::from_secs(60);

/// Everything a reload rebuilds from, and what it swaps.
#[derive(Debug)]
pub(super) struct Reloader {
    pub(super) source: Source,
    /// What runs: the last configuration applied, with the start-up values of the settings
    /// only a restart applies.
    pub(super) running: Config,
    /// The digests of the last configuration read and applied, as read: the same again is a
    /// no-op.
    pub(super) last_read: Inputs,
    pub(super) sources: TokenSources,
    pub(super) surfaces: Surfaces,
    pub(super) state: AppState,
    pub(super) tasks: HashMap<String, ProfileTasks>,
    pub(super) public: Routes,
    pub(super) admin: Option<Routes>,
    /// What the file watcher looks at, updated after each reload.
    pub(super) watching: ConfigWatch,
    /// Fleet mode: stops the kill-switch follower of the current set of profiles.
    pub(super) switch_follow: CancellationToken,
}

/// The next generation's profiles, before anything is swapped.
struct Built {
    profiles: Profiles,
    /// Tasks of profiles rebuilt or new, by name (unchanged profiles keep theirs), and whether
    /// their keepers are new (else the running ones carried over).
    tasks: HashMap<String, (ProfileTasks, bool)>,
}

impl Built {
    /// A failed build: the tasks it started stop; carried keepers keep running.
    fn abandon(&self) {
        for (tasks, new_keepers) in self.tasks.values() {
            tasks.rest.cancel();
            if *new_keepers {
                tasks.tokens.cancel();
            }
        }
    }
}

impl Reloader {
    /// Serves asks until `stop`, one at a time and in order.
    pub(super) async fn run(mut self, mut asks: mpsc::Receiver<Ask>, stop: CancellationToken) {
        loop {
            let ask = tokio::select! {
                ask = asks.recv() => match ask {
                    Some(ask) => ask,
                    None => return,
                },
                () = stop.cancelled() => return,
            };
            let outcome = self.reload(ask.trigger).await;
            let now = unix_seconds(&self.sources.clock);
            crate::metrics::record_config_reload(outcome.label(), now);
            // The asker may have given up waiting; the reload counts all the same.
            let _ = ask.reply.send(outcome);
        }
    }

    /// What the file watcher watches, following this reloader's configuration.
    pub(super) fn watch(&self) -> ConfigWatch {
        self.watching.clone()
    }

    async fn reload(&mut self, trigger: Trigger) -> Outcome {
        let new = match self.source.read() {
            Ok(new) => new,
            Err(problems) => return refused(trigger, problems),
        };
        if new.inputs == self.last_read {
            tracing::info!(
                trigger = trigger.as_str(),
                "configuration reload: nothing changed"
            );
            return Outcome::Unchanged;
        }
        let changes = diff::diff(&self.running, &new);
        let read = new.inputs.clone();
        let next = diff::merged(&self.running, new);
        let built = match self.build(&next, &changes) {
            Ok(built) => built,
            Err(error) => {
                return refused(trigger, vec![with_causes(&error)]);
            }
        };
        self.swap(next, built, &changes).await;
        self.last_read = read;
        log_applied(trigger, &changes, &self.running);
        Outcome::Applied(changes)
    }

    /// The next generation's profiles. Nothing runs differently yet, but the keepers of new
    /// and re-keyed profiles have started; on an error they are stopped again.
    fn build(&self, next: &Config, changes: &ConfigDiff) -> Result<Built, StartupError> {
        let mut built = Built {
            profiles: HashMap::new(),
            tasks: HashMap::new(),
        };
        for profile in &next.profiles {
            match self.build_one(profile, next, changes, &mut built) {
                Ok(state) => {
                    built.profiles.insert(profile.name.clone(), state);
                }
                Err(error) => {
                    built.abandon();
                    return Err(error);
                }
            }
        }
        Ok(built)
    }

    fn build_one(
        &self,
        profile: &crate::config::Profile,
        next: &Config,
        changes: &ConfigDiff,
        built: &mut Built,
    ) -> Result<Arc<ProfileState>, StartupError> {
        let name = &profile.name;
        let sessions = next.sessions.as_ref();
        let current = self.state.profile(name);
        let carried_keepers = match (&current, self.tasks.get(name)) {
            (Some(current), _) if !changes.profiles_changed.contains(name) => {
                return Ok(current.clone());
            }
            (Some(current), Some(tasks)) if !changes.tokens_dropped.contains(name) => {
                // Same STS call: the keepers (and their tokens) carry over.
                Some(Keepers {
                    shared: current.shared.clone(),
                    callers: current.callers.clone(),
                    stop: tasks.tokens.clone(),
                })
            }
            _ => None,
        };
        let new_keepers = carried_keepers.is_none();
        let keepers = carried_keepers.unwrap_or_else(|| self.sources.keepers(profile));
        let tasks = ProfileTasks {
            tokens: keepers.stop.clone(),
            rest: self.sources.cancel.child_token(),
        };
        // A changed profile keeps its kill switch; a new one starts enabled.
        let carried = Carried {
            keepers: &keepers,
            rest: &tasks.rest,
            enabled: current.as_ref().is_none_or(|c| c.is_enabled()),
            would_deny: current
                .as_ref()
                .map_or(0, |c| c.would_deny.load(Ordering::Relaxed)),
        };
        let state = self.sources.profile_state(profile, sessions, &carried);
        built.tasks.insert(name.clone(), (tasks, new_keepers));
        Ok(Arc::new(state?))
    }

    /// Makes `next` run: the profiles and routers swapped, then what only the old generation
    /// used stopped, and the tokens of removed and re-keyed profiles dropped.
    async fn swap(&mut self, next: Config, built: Built, changes: &ConfigDiff) {
        let dropped: Vec<Arc<ProfileState>> = changes
            .tokens_dropped
            .iter()
            .chain(&changes.profiles_removed)
            .filter_map(|name| self.state.profile(name))
            .collect();
        self.state = self
            .state
            .next_generation(built.profiles, next.trusted_proxies.clone());
        let (public, admin) = self.surfaces.routers(&next, &self.state);
        self.public.store(Arc::new(public));
        if let (Some(routes), Some(admin)) = (&self.admin, admin) {
            routes.store(Arc::new(admin.into()));
        }
        for (name, (tasks, new_keepers)) in built.tasks {
            if let Some(previous) = self.tasks.insert(name, tasks) {
                previous.rest.cancel();
                if new_keepers {
                    previous.tokens.cancel();
                }
            }
        }
        for name in &changes.profiles_removed {
            if let Some(tasks) = self.tasks.remove(name) {
                tasks.stop();
            }
        }
        // Requests still on the old generation may hold these profiles: none of their tokens
        // is handed out again.
        for profile in dropped {
            if let Some(callers) = &profile.callers {
                callers.clear().await;
            }
            Tokens::clear(&profile.shared).await;
        }
        if !(changes.profiles_added.is_empty() && changes.profiles_removed.is_empty())
            && let Some(board) = self.state.fleet_switch().cloned()
        {
            // The follower watches a fixed set of names: follow the new set instead.
            self.switch_follow.cancel();
            self.switch_follow = self.sources.cancel.child_token();
            fleet_switch::follow_profiles(&board, &self.state, &self.switch_follow).await;
        }
        self.watching.follow(&next);
        self.running = next;
    }
}

/// An error and its causes on one line, as start-up prints a setup error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        line.push_str(": ");
        line.push_str(&next.to_string());
        cause = next.source();
    }
    line
}

fn refused(trigger: Trigger, problems: Vec<String>) -> Outcome {
    for problem in &problems {
        tracing::error!(
            trigger = trigger.as_str(),
            "configuration reload refused: {problem}"
        );
    }
    tracing::error!(
        trigger = trigger.as_str(),
        problems = problems.len(),
        "configuration reload refused; the running configuration keeps serving"
    );
    Outcome::Refused(problems)
}

fn log_applied(trigger: Trigger, changes: &ConfigDiff, running: &Config) {
    for setting in &changes.restart_needed {
        tracing::warn!(
            trigger = trigger.as_str(),
            setting,
            "configuration reload: {setting} changed; restart to apply"
        );
    }
    for warning in &running.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        trigger = trigger.as_str(),
        added = ?changes.profiles_added,
        removed = ?changes.profiles_removed,
        changed = ?changes.profiles_changed,
        tokens_dropped = ?changes.tokens_dropped,
        settings = ?changes.settings_changed,
        restart_needed = ?changes.restart_needed,
        "configuration reloaded"
    );
}

/// What the watcher looks at, as the running configuration says.
#[derive(Debug, Default, Clone)]
struct WatchSpec {
    files: Vec<PathBuf>,
    every: Option<Duration>,
}

/// The config file and the files its settings name, polled by [`crate::server::watch`]; a
/// change (or SIGHUP) asks the reloader.
#[derive(Debug, Clone)]
pub(super) struct ConfigWatch {
    path: Option<PathBuf>,
    reloads: Reloads,
    /// Updated after each reload, read by the watcher before each wait (not per request).
    current: Arc<std::sync::Mutex<WatchSpec>>,
}

impl ConfigWatch {
    /// Watches `path` and the files `config` names, asking `reloads` on a change.
    pub(super) fn new(path: Option<PathBuf>, reloads: Reloads, config: &Config) -> Self {
        let watch = Self {
            path,
            reloads,
            current: Arc::default(),
        };
        watch.follow(config);
        watch
    }

    fn follow(&self, config: &Config) {
        let spec = WatchSpec {
            files: self
                .path
                .iter()
                .cloned()
                .chain(config.inputs.files().iter().cloned())
                .collect(),
            every: config.config_watch,
        };
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = spec;
    }

    fn spec(&self) -> WatchSpec {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Watched for ConfigWatch {
    fn files(&self) -> Vec<PathBuf> {
        self.spec().files
    }

    fn every(&self) -> Option<Duration> {
        self.spec().every
    }

    async fn reload(&mut self, sighup: bool) {
        let trigger = if sighup {
            tracing::info!("received SIGHUP: reloading the configuration");
            Trigger::Signal
        } else {
            Trigger::Watch
        };
        if let Err(error) = self.reloads.ask(trigger, WATCH_ASK_WAIT).await {
            tracing::warn!(%error, trigger = trigger.as_str(), "configuration reload: no outcome");
        }
    }
}
