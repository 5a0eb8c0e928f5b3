//! Fleet mode's store for `serve` and `check`: this replica's name and the connection.

use std::collections::HashMap;

use crate::config::Config;
use crate::config::fleet::replica_id;
use crate::fleet::store::{FleetStore, StoreError};

/// The store of `config`'s fleet, as this replica, or `None` for one process. Does not wait
/// for Redis: a store that is down connects when Redis comes up.
pub(super) fn connect(
    config: &Config,
    env: &HashMap<String, String>,
) -> Result<Option<FleetStore>, StoreError> {
    let Some(settings) = &config.fleet else {
        return Ok(None);
    };
    let id = replica_id(
        config.replica_id.as_deref(),
        env.get("HOSTNAME").map(String::as_str),
        rand::random(),
    );
    FleetStore::connect(settings, &id).map(Some)
}

/// What `stsvend check` says of the store: the server and its version, and a sealed probe
/// value written, read back and opened. `Err` carries the line to print.
pub(super) async fn check(store: &FleetStore) -> Result<String, String> {
    let version = store
        .version()
        .await
        .map_err(|error| format!("cannot reach the fleet store: {error}"))?;
    let took = store
        .probe()
        .await
        .map_err(|error| format!("the sealed probe value did not round-trip: {error}"))?;
    Ok(format!(
        "{} {}; a sealed probe value round-tripped in {:.1} ms",
        version.server,
        version.version,
        took.as_secs_f64() * 1000.0
    ))
}
