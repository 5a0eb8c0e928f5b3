//! What the service under test logs, captured in-process as JSON lines: events by message,
//! denials by request id, audit lines.

use std::sync::{Arc, Mutex};

use super::http::Answer;

/// Everything the service logs on this thread, as JSON lines, while the guard lives. With the
/// default current-thread test runtime the service's tasks run on this thread too, so this sees
/// every event of the service under test (and nothing from tests on other threads).
#[derive(Debug, Clone, Default)]
pub(crate) struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

/// One `io::Write` handle into a [`LogCapture`].
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub(crate) fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        // tracing caches, per log statement, whether anyone listens. While at most one
        // dispatcher is registered, that is decided by asking the default of whichever thread
        // reaches the statement first: a test without a capture would silence the statement
        // for every other thread too. A second dispatcher that lives forever makes tracing ask
        // every registered dispatcher, and leaves the decision to each thread's default.
        static KEEPER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        KEEPER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let capture = Self::default();
        let buffer = capture.buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(buffer.clone()))
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far, raw.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    /// Every event logged so far.
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("log lines are JSON"))
            .collect()
    }

    /// The events whose message is `message`.
    pub(crate) fn events_with_message(&self, message: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }
}

/// The `request denied` log events of the request that got `answer` (by its request id).
pub(crate) fn denials_for(logs: &LogCapture, answer: &Answer) -> Vec<serde_json::Value> {
    let id = answer.header("x-request-id").unwrap_or_default();
    logs.events_with_message("request denied")
        .into_iter()
        .filter(|event| event["span"]["request_id"] == id)
        .collect()
}

/// Checks that `answer` was logged as exactly one denial with `reason` for `client_ip` on
/// profile `default`, or (for a 2xx) not at all.
pub(crate) fn assert_logged_denial(
    logs: &LogCapture,
    answer: &Answer,
    reason: &str,
    client_ip: &str,
) {
    let denials = denials_for(logs, answer);
    if (200..300).contains(&answer.status) {
        assert!(
            denials.is_empty(),
            "a served request was logged as denied: {denials:?}"
        );
        return;
    }
    assert_eq!(denials.len(), 1, "one log line per denial: {denials:?}");
    let fields = &denials[0]["fields"];
    assert_eq!(fields["reason"], reason, "{fields}");
    assert_eq!(fields["client_ip"], client_ip, "{fields}");
    assert_eq!(fields["profile"], "default", "{fields}");
}

/// The audit log lines (target `stsvend::audit`) captured so far.
pub(crate) fn audit_lines(logs: &LogCapture) -> Vec<serde_json::Value> {
    logs.events()
        .into_iter()
        .filter(|event| event["target"] == stsvend::http::audit::TARGET)
        .collect()
}

/// The one audit line of the request that got `answer` (by its request id).
pub(crate) fn audit_line_for(logs: &LogCapture, answer: &Answer) -> serde_json::Value {
    let id = answer
        .header("x-request-id")
        .expect("every answer has a request id");
    let lines: Vec<serde_json::Value> = audit_lines(logs)
        .into_iter()
        .filter(|line| line["fields"]["request_id"] == id)
        .collect();
    assert_eq!(lines.len(), 1, "one audit line per request: {lines:#?}");
    lines[0].clone()
}
