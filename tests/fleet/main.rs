//! Fleet mode's Redis building blocks against a real `redis-server` (Debian's package; `.ci/run`
//! installs it). Each test starts its own server on a free loopback port.
// The 80-line rule is for the service's own functions; a scenario test reads top to bottom.
#![allow(clippy::too_many_lines)]

mod apps;
mod budget;
mod helpers;
mod kill_switch;
mod kill_switch_app;
mod limits;
mod limits_app;
mod outage_app;
mod reload_app;
mod replica;
mod shared_app;
mod store;
mod tokens;
mod tokens_app;
mod wiring;
