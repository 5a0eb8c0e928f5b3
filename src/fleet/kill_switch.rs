//! The fleet's kill switch: each profile's state {enabled, changed by which replica, when} in
//! one Redis hash, a PUBLISH on every change, and a follower task per replica that applies a
//! change within a second (pub/sub, with polling while the subscription is down). A replica
//! reads the stored state before it serves, so one started during an incident starts disabled.
//!
//! The state is not secret (profile names and replica ids), so it is stored as readable JSON for
//! operators; it is bounded in size and parsed defensively. A state that cannot be read keeps
//! the last known one.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::{FleetStore, StoreError};

/// The largest stored state of one profile.
const MAX_STATE_BYTES: usize = 512;
/// Profiles one replica follows at most (a config has a handful).
pub const MAX_PROFILES: usize = 1024;
/// How long subscribing may take before the follower polls instead.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between start-up reads while the store does not answer.
const START_RETRY_PAUSE: Duration = Duration::from_millis(20);

static SET: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/kill_switch_set.lua")));
static READ: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/kill_switch_read.lua")));

/// One profile's stored kill-switch state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchState {
    pub enabled: bool,
    /// The replica whose admin API changed it.
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
}

/// The stored state of the followed profiles; a profile never switched is absent (enabled).
pub type FleetSwitches = HashMap<String, SwitchState>;

#[derive(Serialize, Deserialize)]
struct Stored {
    enabled: bool,
    changed_by: String,
    changed_at: String,
}

impl SwitchState {
    /// `changed_at` as stored and shown to operators: RFC 3339, UTC, milliseconds.
    pub fn changed_at_text(&self) -> String {
        self.changed_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn encode(&self) -> String {
        let stored = Stored {
            enabled: self.enabled,
            changed_by: self.changed_by.clone(),
            changed_at: self.changed_at_text(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            enabled: stored.enabled,
            changed_at: DateTime::parse_from_rfc3339(&stored.changed_at)
                .ok()?
                .with_timezone(&Utc),
            changed_by: stored.changed_by,
        })
    }
}

/// How the follower keeps up.
#[derive(Debug, Clone, Copy)]
pub struct FollowTiming {
    /// Reads the state this often while subscribed, in case a message was lost or the
    /// subscription died quietly (a dead connection does not always end the message stream).
    pub poll_subscribed: Duration,
    /// Reads the state this often while the subscription is down: under a second, the
    /// issue's bound on applying a change.
    pub poll_unsubscribed: Duration,
    /// The longest pause between attempts to subscribe again.
    pub resubscribe_max: Duration,
}

impl Default for FollowTiming {
    fn default() -> Self {
        Self {
            poll_subscribed: Duration::from_secs(1),
            poll_unsubscribed: Duration::from_millis(500),
            resubscribe_max: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KillSwitchStore {
    store: FleetStore,
    hash: String,
    channel: String,
}

impl KillSwitchStore {
    pub fn new(store: FleetStore) -> Self {
        let hash = store.key("kill_switch");
        Self {
            channel: hash.clone(),
            hash,
            store,
        }
    }

    /// Switches `profile` on or off for the whole fleet as of `now`, and tells every replica.
    pub async fn set(
        &self,
        profile: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<SwitchState, StoreError> {
        let state = SwitchState {
            enabled,
            changed_by: self.store.replica_id().to_owned(),
            changed_at: now,
        };
        self.store
            .script::<i64>(
                SET.key(&self.hash)
                    .arg(profile)
                    .arg(state.encode())
                    .arg(&self.channel),
            )
            .await?;
        Ok(state)
    }

    /// The stored state of `profiles`. A state too large or not understood is an error: the
    /// caller keeps what it knew.
    pub async fn read(&self, profiles: &[String]) -> Result<FleetSwitches, StoreError> {
        if profiles.len() > MAX_PROFILES {
            return Err(StoreError::TooLarge(MAX_PROFILES));
        }
        let mut invocation = READ.prepare_invoke();
        invocation.key(&self.hash).arg(MAX_STATE_BYTES);
        for profile in profiles {
            invocation.arg(profile);
        }
        let states: Vec<Vec<u8>> = self.store.script(&invocation).await?;
        if states.len() != profiles.len() {
            return Err(StoreError::Malformed(
                "kill switch: one state per profile expected",
            ));
        }
        let mut switches = FleetSwitches::new();
        for (profile, bytes) in profiles.iter().zip(states) {
            match bytes.as_slice() {
                b"" => {}
                b"!" => return Err(StoreError::TooLarge(MAX_STATE_BYTES)),
                bytes => {
                    let state = SwitchState::decode(bytes)
                        .ok_or(StoreError::Malformed("kill switch state"))?;
                    switches.insert(profile.clone(), state);
                }
            }
        }
        Ok(switches)
    }

    /// Reads the stored state (so that the first request already obeys it), then follows it
    /// until `cancel`. The receiver holds the last known state; it keeps it while the store is
    /// down and takes the stored state again when the store is back. `Err` when the first read
    /// fails: the caller starts from its own state and the follower catches up.
    pub async fn follow(
        &self,
        profiles: Vec<String>,
        timing: FollowTiming,
        cancel: CancellationToken,
    ) -> (
        watch::Receiver<FleetSwitches>,
        Result<(), StoreError>,
        tokio::task::JoinHandle<()>,
    ) {
        let first = self.read(&profiles).await;
        let known = first.as_ref().cloned().unwrap_or_default();
        let (rx, task) = self.follow_from(known, profiles, timing, cancel);
        (rx, first.map(drop), task)
    }

    /// Follows the stored state of `profiles` until `cancel`, starting from `known` (what the
    /// caller read itself, or nothing): the receiver changes only when the stored state does.
    pub fn follow_from(
        &self,
        known: FleetSwitches,
        profiles: Vec<String>,
        timing: FollowTiming,
        cancel: CancellationToken,
    ) -> (watch::Receiver<FleetSwitches>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(known);
        let follower = Follower {
            switches: self.clone(),
            profiles,
            tx,
            timing,
        };
        (rx, tokio::spawn(follower.run(cancel)))
    }

    /// The stored state of `profiles`, trying again while the store is unreachable until
    /// `within` has passed: at start-up the first command also opens the connection (and its TLS
    /// handshake), which may take longer than one command timeout.
    pub async fn read_within(
        &self,
        profiles: &[String],
        within: Duration,
    ) -> Result<FleetSwitches, StoreError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.read(profiles).await {
                Err(error)
                    if error.is_down()
                        && tokio::time::Instant::now() + START_RETRY_PAUSE < deadline =>
                {
                    tokio::time::sleep(START_RETRY_PAUSE).await;
                }
                result => return result,
            }
        }
    }
}

struct Follower {
    switches: KillSwitchStore,
    profiles: Vec<String>,
    tx: watch::Sender<FleetSwitches>,
    timing: FollowTiming,
}

impl Follower {
    /// Reads the stored state and publishes it if it changed; `false` when it could not.
    async fn refresh(&self) -> bool {
        match self.switches.read(&self.profiles).await {
            Ok(stored) => {
                self.tx.send_if_modified(|known| {
                    let changed = *known != stored;
                    if changed {
                        known.clone_from(&stored);
                    }
                    changed
                });
                true
            }
            Err(error) => {
                tracing::debug!(%error, "kill switch: keeping the last known state");
                false
            }
        }
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        let client = self.switches.store.client().clone();
        let channel = self.switches.channel.clone();
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        subscribed.ok()?.ok()
    }

    async fn run(self, cancel: CancellationToken) {
        let mut pause = self.timing.poll_unsubscribed;
        loop {
            if let Some(pubsub) = self.subscribe().await {
                pause = self.timing.poll_unsubscribed;
                // A change between the last read and the subscription is read here.
                if self.refresh().await && self.listen(pubsub, &cancel).await {
                    return;
                }
            }
            // Polls until it is time to try subscribing again.
            let until = tokio::time::Instant::now() + pause;
            while tokio::time::Instant::now() < until {
                let _ = self.refresh().await;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(self.timing.poll_unsubscribed) => {}
                }
            }
            pause = (pause * 2).min(self.timing.resubscribe_max);
        }
    }

    /// Applies every published change until the subscription ends or the store is down (the
    /// subscription did not survive then: a restarted server forgets it); `true` when
    /// cancelled.
    async fn listen(&self, pubsub: redis::aio::PubSub, cancel: &CancellationToken) -> bool {
        let mut messages = pubsub.into_on_message();
        let mut up = self.switches.store.watch_up();
        let mut ticks = tokio::time::interval(self.timing.poll_subscribed);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let read = tokio::select! {
                () = cancel.cancelled() => return true,
                // The message only says "changed": the hash is the truth, so read it.
                message = messages.next() => match message {
                    Some(_) => self.refresh().await,
                    None => false,
                },
                _ = ticks.tick() => self.refresh().await,
                changed = up.changed() => changed.is_ok() && *up.borrow_and_update(),
            };
            if !read {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_state_round_trips_and_garbage_is_refused() {
        let state = SwitchState {
            enabled: false,
            changed_by: "pod-a".into(),
            changed_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
        };
        let encoded = state.encode();
        assert_eq!(
            encoded,
            r#"{"enabled":false,"changed_by":"pod-a","changed_at":"2026-03-01T12:00:00.000Z"}"#
        );
        assert_eq!(SwitchState::decode(encoded.as_bytes()), Some(state));
        assert_eq!(SwitchState::decode(b"{}"), None);
        assert_eq!(SwitchState::decode(b"\xff\x00"), None);
        assert_eq!(
            SwitchState::decode(br#"{"enabled":true,"changed_by":"x","changed_at":"yesterday"}"#),
            None
        );
    }
}
