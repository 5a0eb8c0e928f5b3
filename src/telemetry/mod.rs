//! Logging: `tracing` to standard error as JSON lines or human-readable text, filtered by
//! `RUST_LOG` (default `info`), written by a background thread so a slow log reader never
//! stalls a request.
//!
//! Audit lines (target `stsvend::audit`, see [`crate::http::audit`]) are always on at `info`, whatever
//! `RUST_LOG` says, unless `RUST_LOG` names that target itself.

mod direct;
mod json;
pub mod preset;
mod writer;

use std::collections::HashMap;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub use direct::{AUDIT_TARGET, AuditLine, JsonFields, audit, direct_lines, format_line};
pub use preset::Preset;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors (the default when standard error is not a
    /// terminal, as in a container).
    Json,
    /// Human-readable lines (the default at a terminal).
    Pretty,
}

/// Keeps the log writer thread running; dropping it flushes the lines still buffered. Hold it
/// until the process exits.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct TelemetryGuard {
    _writer: Option<writer::Flusher>,
}

/// Counts the lines the writer dropped, for [`crate::metrics`].
static DROPPED: OnceLock<writer::LineWriter> = OnceLock::new();

/// Log lines dropped so far because standard error could not keep up, once [`init`] has run.
pub fn dropped_log_lines() -> Option<u64> {
    DROPPED.get().map(writer::LineWriter::dropped)
}

/// Installs the global subscriber in the given format; returns a guard that must live as long
/// as the process (the non-blocking writer). `RUST_LOG` uses the usual directive syntax (`info`,
/// `stsvend=debug,hyper=info`, …); an invalid value falls back to `info` with a warning. A
/// second call installs nothing and returns an empty guard.
pub fn init(env: &HashMap<String, String>, format: LogFormat) -> TelemetryGuard {
    init_with_writer(env, format, std::io::stderr())
}

/// [`init`] writing to `out` instead of standard error (the allocation benchmark and its test
/// log to a sink, through the very path the service uses).
pub fn init_with_writer<W>(
    env: &HashMap<String, String>,
    format: LogFormat,
    out: W,
) -> TelemetryGuard
where
    W: std::io::Write + Send + 'static,
{
    let (filter, bad) = filter(env);
    // Lossy: when the buffer is full, a line is dropped rather than making the request that
    // logs it wait for standard error. Losing a log line under extreme pressure is the lesser
    // harm; the count is exported as `stsvend_log_lines_dropped_total` so it is not silent.
    let Some((writer, flusher)) = writer::start(out) else {
        eprintln!("stsvend: cannot start the log writer thread; logging nothing");
        return TelemetryGuard { _writer: None };
    };
    if !install(format, filter, writer.clone()) {
        return TelemetryGuard { _writer: None };
    }
    if format == LogFormat::Json {
        direct::install(writer.clone());
    }
    let _ = DROPPED.set(writer);
    if bad {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }
    TelemetryGuard {
        _writer: Some(flusher),
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
            .with_env_filter(filter)
            .with_writer(writer)
            // Audit lines by hand, the same objects at a fraction of the cost (see `json`).
            .event_format(json::AuditFirst {
                audit: AUDIT_TARGET,
                inner: tracing_subscriber::fmt::format()
                    .json()
                    // Event fields at the top level next to `timestamp`, `level` and `target`,
                    // and the request span (with its `request_id`) as `span`.
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(true),
            })
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
