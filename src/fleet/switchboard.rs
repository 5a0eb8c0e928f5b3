//! This replica's side of the fleet kill switch: for each profile, the change its current state
//! comes from (which replica, when) and whether that change is only local because the store did
//! not take it. The HTTP layer applies states to its profiles and reads this for its answers;
//! nothing here knows about profiles beyond their names.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::MutexGuard;

use super::kill_switch::{KillSwitchStore, SwitchState};
use super::store::{FleetStore, StoreError};

/// What one profile's current state on this replica comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The change behind the current state; `None` when the profile was never switched.
    pub change: Option<SwitchState>,
    /// The change was made on this replica while the store could not take it; the stored state
    /// replaces it when the store answers again.
    pub local_only: bool,
}

/// Cheap to share behind an `Arc`; one per replica.
#[derive(Debug)]
pub struct Switchboard {
    switches: KillSwitchStore,
    store: FleetStore,
    /// Held while a state is applied (and, for an admin call, stored), so that the follower
    /// never applies a read taken before an admin change over that change.
    order: tokio::sync::Mutex<()>,
    applied: Mutex<HashMap<String, Applied>>,
}

impl Switchboard {
    pub fn new(store: FleetStore) -> Self {
        Self {
            switches: KillSwitchStore::new(store.clone()),
            store,
            order: tokio::sync::Mutex::new(()),
            applied: Mutex::new(HashMap::new()),
        }
    }

    pub fn switches(&self) -> &KillSwitchStore {
        &self.switches
    }

    pub fn store(&self) -> &FleetStore {
        &self.store
    }

    /// Waits for any other application of a state to finish; hold the guard while applying.
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.order.lock().await
    }

    /// Stores `profile`'s new state for the fleet. When the store cannot take it, the change is
    /// recorded as this replica's own, local only, and the error says why.
    pub async fn store_change(
        &self,
        profile: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<SwitchState, StoreError> {
        match self.switches.set(profile, enabled, now).await {
            Ok(change) => {
                self.record(profile, Some(change.clone()), false);
                Ok(change)
            }
            Err(error) => {
                let change = SwitchState {
                    enabled,
                    changed_by: self.store.replica_id().to_owned(),
                    changed_at: now,
                };
                self.record(profile, Some(change), true);
                Err(error)
            }
        }
    }

    /// Records what `profile`'s current state comes from.
    pub fn record(&self, profile: &str, change: Option<SwitchState>, local_only: bool) {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        applied.insert(profile.to_owned(), Applied { change, local_only });
    }

    /// What `profile`'s current state comes from (never switched: the default).
    pub fn applied(&self, profile: &str) -> Applied {
        let applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        applied.get(profile).cloned().unwrap_or_default()
    }
}
