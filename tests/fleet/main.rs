//! Fleet mode's Redis building blocks against a real `redis-server` (Debian's package; `.ci/run`
//! installs it). Each test starts its own server on a free loopback port.

mod budget;
mod helpers;
mod kill_switch;
mod limits;
mod store;
mod tokens;
