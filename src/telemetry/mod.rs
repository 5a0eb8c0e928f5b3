//! Logging: `tracing` to standard error as JSON lines or human-readable text, filtered by
//! `RUST_LOG` (default `info`), written by a background thread so a slow log reader never
//! stalls a request.
//!
//! Audit lines (target `stsvend::audit`, see [`crate::http::audit`]) are always on at `info`, whatever
//! `RUST_LOG` says, unless `RUST_LOG` names that target itself.

use std::collections::HashMap;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors (the default when standard error is not a
    /// terminal, as in a container).
    Json,
    /// Human-readable lines (the default at a terminal).
    Pretty,
}

/// The `tracing` target of every audit line ([`crate::http::audit`] writes them). Defined here, where
/// the filter keeps it on, so logging imports nothing above it.
pub const AUDIT_TARGET: &str = "stsvend::audit";

/// Log lines held in memory while standard error is slow. A line is a few hundred bytes, so this
/// is a few megabytes at most; beyond it lines are dropped (and counted), never waited for.
const BUFFERED_LINES: usize = 16_384;

/// Keeps the log writer thread running; dropping it flushes the lines still buffered. Hold it
/// until the process exits.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct TelemetryGuard {
    _writer: Option<WorkerGuard>,
}

/// Counts the lines the writer dropped, for [`crate::metrics`].
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because standard error could not keep up, once [`init`] has run.
pub fn dropped_log_lines() -> Option<u64> {
    DROPPED.get().map(|counter| counter.dropped_lines() as u64)
}

/// Installs the global subscriber in the given format; returns a guard that must live as long
/// as the process (the non-blocking writer). `RUST_LOG` uses the usual directive syntax (`info`,
/// `stsvend=debug,hyper=info`, …); an invalid value falls back to `info` with a warning. A
/// second call installs nothing and returns an empty guard.
pub fn init(env: &HashMap<String, String>, format: LogFormat) -> TelemetryGuard {
    let (filter, bad) = filter(env);
    // Lossy: when the buffer is full, a line is dropped rather than making the request that
    // logs it wait for standard error. Losing a log line under extreme pressure is the lesser
    // harm; the count is exported as `stsvend_log_lines_dropped_total` so it is not silent.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("stsvend-log-writer")
        // Buffered: the writer thread drains every waiting line into the buffer and flushes
        // when the queue is empty, so a burst costs a few large writes instead of a system call
        // per line, and a quiet moment still flushes at once.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    if !install(format, filter, writer) {
        return TelemetryGuard { _writer: None };
    }
    let _ = DROPPED.set(dropped);
    if bad {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }
    TelemetryGuard {
        _writer: Some(guard),
    }
}

/// `RUST_LOG` (default `info`) plus audit lines at `info`; and whether `RUST_LOG` was invalid.
fn filter(env: &HashMap<String, String>) -> (EnvFilter, bool) {
    let directives = env.get("RUST_LOG").map_or("info", String::as_str);
    let (mut filter, bad) = match EnvFilter::try_new(directives) {
        Ok(filter) => (filter, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    if !directives.contains(AUDIT_TARGET)
        && let Ok(audit) = format!("{AUDIT_TARGET}=info").parse()
    {
        filter = filter.add_directive(audit);
    }
    (filter, bad)
}

/// Installs the global subscriber; false if one is installed already.
fn install<W>(format: LogFormat, filter: EnvFilter, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let installed = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            // Event fields at the top level next to `timestamp`, `level` and `target`, and the
            // request span (with its `request_id`) as `span`.
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .with_target(true)
            .try_init(),
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_target(true)
            // Colour codes only for a person at a terminal, not for log collectors.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    installed.is_ok()
}
