//! Shared state of the HTTP handlers: the published token of every profile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::refresh::Snapshot;

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState {
    profiles: Arc<HashMap<String, watch::Receiver<Snapshot>>>,
}

impl AppState {
    pub fn new(profiles: HashMap<String, watch::Receiver<Snapshot>>) -> Self {
        Self {
            profiles: Arc::new(profiles),
        }
    }

    /// The token feed of the profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&watch::Receiver<Snapshot>> {
        self.profiles.get(name)
    }

    /// Every profile and its feed, sorted by name.
    pub fn profiles(&self) -> Vec<(&str, &watch::Receiver<Snapshot>)> {
        let mut all: Vec<_> = self.profiles.iter().map(|(k, v)| (k.as_str(), v)).collect();
        all.sort_by_key(|(name, _)| *name);
        all
    }
}
