//! Logging: `tracing` to standard error, filtered by `RUST_LOG` (default `info`).

use std::collections::HashMap;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` uses the usual directive syntax
/// (`info`, `stsvend=debug,hyper=info`, …); an invalid value falls back to `info` with a warning.
pub fn init(env: &HashMap<String, String>) {
    let directives = env.get("RUST_LOG").map_or("info", String::as_str);
    let (filter, bad) = match EnvFilter::try_new(directives) {
        Ok(filter) => (filter, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        // Colour codes only for a person at a terminal, not for log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if bad {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }
}
