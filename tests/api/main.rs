//! Integration tests: the real router on 127.0.0.1:0 against the built-in emulator or an
//! in-process mock STS. One test binary (see helpers/mod.rs for the shared pieces).
// The 80-line rule is for the service's own functions; a scenario test reads top to bottom.
#![allow(clippy::too_many_lines)]

mod helpers;

mod chain;
mod chain_fixture;
mod check;
mod config_errors;
mod emulator;
mod example_config;
mod failures;
mod faults;
mod hostile_addresses;
mod hostile_admin;
mod hostile_connections;
mod hostile_misc;
mod https;
mod login;
mod observability;
mod openapi;
mod production;
mod protect_callers;
mod protect_jwt;
mod protect_limits;
mod reload;
mod resources;
mod secrets;
mod shutdown;
mod signature_vectors;
mod sls_sink;
mod token;
