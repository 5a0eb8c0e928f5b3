//! Asking for a configuration reload (SIGHUP, `POST /admin/reload`, the file watcher) and what
//! the answer is. One task does the reloading (`startup`'s reloader): asks queue on its
//! channel and are served one at a time, in order, so concurrent asks never interleave and
//! none is dropped; each re-reads the files when its turn comes.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::diff::ConfigDiff;
use crate::config::{self, Config, ConfigFile, Mode};

/// Asks waiting for the reloader at most; a further ask waits for room (bounded by its
/// caller).
const QUEUED_ASKS: usize = 16;

/// Who asked for a reload, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Signal,
    Admin,
    Watch,
}

impl Trigger {
    /// The word the log lines use (`signal`, `admin`, `watch`), as the answers' serde does.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Admin => "admin",
            Self::Watch => "watch",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new configuration runs; what it changed.
    Applied(ConfigDiff),
    /// The file and the secrets read the same as what runs: nothing done.
    Unchanged,
    /// The new configuration does not validate (or cannot be set up): the running one stays.
    /// One line per problem, as start-up words them; no secret in them.
    Refused(Vec<String>),
}

impl Outcome {
    /// The `result` label of `stsvend_config_reloads_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied(_) => "applied",
            Self::Unchanged => "unchanged",
            Self::Refused(_) => "refused",
        }
    }
}

/// One ask: who, and where the outcome goes.
#[derive(Debug)]
pub struct Ask {
    pub trigger: Trigger,
    pub reply: oneshot::Sender<Outcome>,
}

/// The way to ask the reloader. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloads(mpsc::Sender<Ask>);

/// Why no outcome came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("the service is stopping; nothing reloads any more")]
    Stopped,
    #[error("the reload did not finish within {0:?}")]
    TimedOut(Duration),
}

impl Reloads {
    /// A handle and the receiving end the reloader serves.
    pub fn channel() -> (Self, mpsc::Receiver<Ask>) {
        let (tx, rx) = mpsc::channel(QUEUED_ASKS);
        (Self(tx), rx)
    }

    /// Asks for a reload and waits for its outcome, queueing included, at most `within`.
    pub async fn ask(&self, trigger: Trigger, within: Duration) -> Result<Outcome, AskError> {
        let (reply, outcome) = oneshot::channel();
        let asked = async {
            self.0
                .send(Ask { trigger, reply })
                .await
                .map_err(|_| AskError::Stopped)?;
            outcome.await.map_err(|_| AskError::Stopped)
        };
        tokio::time::timeout(within, asked)
            .await
            .map_err(|_| AskError::TimedOut(within))?
    }
}

/// Where the configuration comes from, to read it again: the file (if any), the environment
/// as read at start-up (a running process's environment cannot change), the command's mode,
/// and what `stsvend dev` changes after reading (its emulator's endpoints).
#[derive(Clone)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub env: HashMap<String, String>,
    pub mode: Mode,
    pub adjust: Option<Adjust>,
}

/// A change made to every configuration read, after validation; an error refuses it.
pub type Adjust = Arc<dyn Fn(&mut Config) -> Result<(), String> + Send + Sync>;

impl fmt::Debug for Source {
    // The environment holds secrets: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("mode", &self.mode)
            .field("adjust", &self.adjust.is_some())
            .finish()
    }
}

impl Source {
    /// Reads the file (if any) and validates everything; on failure, one line per problem,
    /// worded as start-up prints them (after `stsvend: `).
    pub fn read(&self) -> Result<Config, Vec<String>> {
        let file = match &self.path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some(ConfigFile {
                    path: path.display().to_string(),
                    text,
                }),
                Err(error) => {
                    return Err(vec![format!(
                        "cannot read config file `{}`: {error} (given by --config or STSVEND_CONFIG)",
                        path.display()
                    )]);
                }
            },
            None => None,
        };
        let mut config = config::load(file.as_ref(), &self.env, self.mode).map_err(|errors| {
            errors
                .0
                .iter()
                .map(|p| format!("invalid setting {p}"))
                .collect::<Vec<_>>()
        })?;
        if let Some(adjust) = &self.adjust {
            adjust(&mut config).map_err(|line| vec![line])?;
        }
        Ok(config)
    }
}
