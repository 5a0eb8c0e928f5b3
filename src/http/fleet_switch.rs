//! The kill switch in fleet mode (issue 15): the state stored in the fleet store wins.
//!
//! At start-up the stored state is applied before the first request; from then on every stored
//! change is applied within a second (the follower in [`crate::fleet::kill_switch`]), exactly as
//! a local admin call would (gauge, cached tokens dropped on disable). An admin call applies at
//! once and then stores the change, with this replica's id and the time, for the others. When
//! the store cannot be reached, the admin call still applies locally (an incident must not wait
//! for Redis) and says so; when the store answers again, the stored state replaces every change
//! made only locally meanwhile.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::{AppState, ProfileState};
use crate::fleet::kill_switch::{FleetSwitches, FollowTiming, SwitchState};
use crate::fleet::store::FleetStore;
use crate::fleet::switchboard::Switchboard;

/// How long start-up waits for the stored state before starting with every profile enabled:
/// enough for a cold connection (TLS included), short enough not to hold up a start while
/// Redis is gone. The follower applies the stored state as soon as Redis answers.
const START_READ_WITHIN: Duration = Duration::from_millis(500);

/// Where an applied state comes from, for its log line.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Start,
    Fleet,
}

/// Applies the stored kill-switch state to every profile before serving, follows it until
/// `cancel`, and returns `state` with the switchboard that admin calls and readiness use.
pub async fn start(store: FleetStore, state: AppState, cancel: &CancellationToken) -> AppState {
    let board = Arc::new(Switchboard::new(store));
    follow_profiles(&board, &state, cancel).await;
    state.with_fleet_switch(board)
}

/// Applies the stored state of `state`'s current profiles and follows it until `cancel`: at
/// start-up, and again (the previous follower cancelled) when a reload adds or removes
/// profiles, so an added profile obeys the fleet's switch too.
pub async fn follow_profiles(
    board: &Arc<Switchboard>,
    state: &AppState,
    cancel: &CancellationToken,
) {
    let names = profile_names(state);
    let within = START_READ_WITHIN.max(board.store().command_timeout());
    let known = match board.switches().read_within(&names, within).await {
        Ok(stored) => {
            let _order = board.lock().await;
            apply(board, state, &stored, Origin::Start).await;
            stored
        }
        Err(error) => {
            tracing::warn!(%error, "kill switch: cannot read the fleet's state; every profile starts enabled and takes the stored state as soon as the fleet store answers");
            FleetSwitches::new()
        }
    };
    let (stored, _follower) =
        board
            .switches()
            .follow_from(known, names, FollowTiming::default(), cancel.child_token());
    tokio::spawn(follow(
        board.clone(),
        state.clone(),
        stored,
        cancel.child_token(),
    ));
}

fn profile_names(state: &AppState) -> Vec<String> {
    state.profiles().iter().map(|p| p.name.clone()).collect()
}

/// Applies every stored change, and the whole stored state each time the store comes back
/// (which replaces the changes made only locally while it was gone).
async fn follow(
    board: Arc<Switchboard>,
    state: AppState,
    mut stored: watch::Receiver<FleetSwitches>,
    cancel: CancellationToken,
) {
    let mut up = board.store().watch_up();
    up.borrow_and_update();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = stored.changed() => {
                if changed.is_err() {
                    return;
                }
                // Taken after the lock, so an admin change in between is not undone by an
                // older read.
                let _order = board.lock().await;
                let switches = stored.borrow_and_update().clone();
                apply(&board, &state, &switches, Origin::Fleet).await;
            }
            changed = up.changed() => {
                if changed.is_err() {
                    return;
                }
                if *up.borrow_and_update() {
                    let _order = board.lock().await;
                    let switches = match board.switches().read(&profile_names(&state)).await {
                        Ok(switches) => switches,
                        Err(_) => stored.borrow().clone(),
                    };
                    apply(&board, &state, &switches, Origin::Fleet).await;
                }
            }
        }
    }
}

/// Makes every profile follow `stored` (a profile absent from it is enabled). Call with the
/// board's lock held.
async fn apply(board: &Switchboard, state: &AppState, stored: &FleetSwitches, origin: Origin) {
    for profile in state.profiles() {
        let change = stored.get(&profile.name);
        let enabled = change.is_none_or(|c| c.enabled);
        if profile.is_enabled() != enabled {
            profile.apply_enabled(enabled).await;
            log_applied(&profile.name, enabled, change, origin);
            crate::metrics::record_kill_switch_fleet_change(&profile.name, enabled);
        }
        board.record(&profile.name, change.cloned(), false);
        record_origin(board, &profile.name);
    }
}

fn log_applied(profile: &str, enabled: bool, change: Option<&SwitchState>, origin: Origin) {
    let message = match origin {
        Origin::Start => "kill switch: starts disabled, as stored in the fleet",
        Origin::Fleet => "kill switch changed by the fleet",
    };
    match change {
        Some(change) => tracing::warn!(
            profile,
            enabled,
            changed_by = %change.changed_by,
            changed_at = %change.changed_at_text(),
            "{message}"
        ),
        None => tracing::warn!(
            profile,
            enabled,
            "{message} (the fleet store holds no change for it)"
        ),
    }
}

fn record_origin(board: &Switchboard, profile: &str) {
    let applied = board.applied(profile);
    let changed = applied.change.as_ref().map(|change| {
        let at = change.changed_at.timestamp_millis() as f64 / 1000.0;
        (change.changed_by.as_str(), at)
    });
    crate::metrics::record_kill_switch_origin(profile, changed, applied.local_only);
}

/// The admin kill switch on a fleet replica: applies at once, then stores the change for the
/// fleet. The answer is the profile's new state, who changed it and when, and whether the fleet
/// store took it (`"fleet":{"stored":false,"reason":…}` when the change is local only).
pub async fn switch(
    board: &Switchboard,
    profile: &ProfileState,
    enabled: bool,
    now: DateTime<Utc>,
) -> Value {
    let _order = board.lock().await;
    // Before the store is asked: an incident must not wait for Redis.
    profile.set_enabled(enabled).await;
    let mut fleet = Map::new();
    match board.store_change(&profile.name, enabled, now).await {
        Ok(_) => {
            fleet.insert("stored".into(), Value::Bool(true));
        }
        Err(error) => {
            tracing::warn!(profile = %profile.name, enabled, %error, "kill switch changed on this replica only: the fleet store did not take it; when the store answers again, its stored state wins");
            fleet.insert("stored".into(), Value::Bool(false));
            fleet.insert("reason".into(), Value::String(error.to_string()));
        }
    }
    record_origin(board, &profile.name);
    fleet.insert("store_up".into(), Value::Bool(board.store().is_up()));
    let mut body = Map::new();
    body.insert("profile".into(), Value::String(profile.name.clone()));
    body.extend(profile_view(board, profile));
    body.remove("local_only");
    body.insert("fleet".into(), Value::Object(fleet));
    Value::Object(body)
}

/// One profile as the fleet sees it on this replica: enabled, who changed it and when (absent
/// when never switched), and whether that change is local only.
fn profile_view(board: &Switchboard, profile: &ProfileState) -> Map<String, Value> {
    let applied = board.applied(&profile.name);
    let mut view = Map::new();
    view.insert("enabled".into(), Value::Bool(profile.is_enabled()));
    if let Some(change) = &applied.change {
        view.insert(
            "changed_by".into(),
            Value::String(change.changed_by.clone()),
        );
        view.insert("changed_at".into(), Value::String(change.changed_at_text()));
    }
    view.insert("local_only".into(), Value::Bool(applied.local_only));
    view
}

/// The `fleet` part of the admin `/readyz`: this replica, whether the store answers, and each
/// profile's kill-switch state with who changed it and when.
pub fn readiness(board: &Switchboard, state: &AppState) -> Value {
    let profiles: Map<String, Value> = state
        .profiles()
        .iter()
        .map(|profile| {
            (
                profile.name.clone(),
                Value::Object(profile_view(board, profile)),
            )
        })
        .collect();
    json!({
        "replica": board.store().replica_id(),
        "store_up": board.store().is_up(),
        "profiles": profiles,
    })
}
