//! Fleet mode (issue 15): what several replicas share through Redis — sealed tokens with a
//! fleet-wide single flight, the STS budget, rate limits and the kill switch.
//!
//! This folder is the store's building blocks, all wired into the app: per-caller tokens
//! (through [`callers`]), the shared per-profile token (through [`shared`]), the kill switch
//! (through [`switchboard`] and `http::fleet_switch`), the STS budget ([`budget::share`], behind
//! the `sts::budget::SharedBudget` trait) and the rate limits (`http::limits`).
//! Every command is bounded by the command timeout, every value read back by a size limit, and
//! every failure is a typed [`store::StoreError`] so that callers can fall back to local
//! behaviour instead of failing.
//!
//! - [`settings`]: the `STSVEND_REDIS_*` settings, secrets in redacting types;
//! - [`seal`]: the AEAD that keeps every stored value unreadable without the key;
//! - [`store`]: the connection, up/down state, server version, the probe round trip;
//! - [`tokens`]: sealed tokens, the fleet-wide single flight, the shared token's lease;
//! - [`callers`]: per-caller tokens shared by the replicas, behind each one's local cache;
//! - [`shared`]: each profile's shared token, refreshed by the lease holder, read by the others;
//! - [`budget`]: the fleet-wide STS budget with its two lanes (one Lua script);
//! - [`limits`]: GCRA rate limits (one Lua script);
//! - [`allowance`]: what a replica admits on its own between the limits' answers (pure);
//! - [`kill_switch`]: the stored kill switch, its publication and its follower task;
//! - [`switchboard`]: this replica's side of it: who changed each profile, when, local only.

pub mod allowance;
pub mod budget;
pub mod callers;
pub mod kill_switch;
pub mod limits;
pub mod seal;
pub mod settings;
pub mod shared;
pub mod store;
mod stored;
pub mod switchboard;
pub mod tokens;
