//! The `stsvend` subcommands' work, below the command line that `main` parses: `serve` and
//! `dev` (one wiring, with the emulator in place of STS for `dev`), `check` and `healthcheck`.

pub mod check;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "dev")]
pub mod dev_login;
mod fleet;
pub mod healthcheck;
pub mod serve;
