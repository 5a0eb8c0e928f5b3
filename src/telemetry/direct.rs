//! Audit lines written straight to the log writer: the same JSON object [`super::json`] writes for
//! an audit event, without going through `tracing`'s event machinery. On the token path every
//! request writes one, and dispatching it as an event (the value set, the visitor, the
//! formatter's buffer, the writer lookup) cost as much as formatting it (`perf`: 8.5 % of the
//! server's CPU time for the line, 5.4 % of it formatting).
//!
//! `RUST_LOG` decides as before (`tracing::enabled!` at the audit target). The direct path is
//! there only once [`super::init`] has installed JSON logging; without it (tests with their own
//! subscriber, human-readable logs), or inside a span (debug logging on, where a line carries its
//! span), [`audit`] says so and the caller logs a `tracing` event instead.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::json::{Escaped, now, write_timestamp};
use super::preset::Preset;
use super::writer::LineWriter;

/// The `tracing` target of every audit line ([`crate::http::audit`] writes them). Defined in
/// logging, which keeps it on, so logging imports nothing above it.
pub const AUDIT_TARGET: &str = "stsvend::audit";

/// Where direct lines go: set by [`super::init`] for JSON logging.
static WRITER: OnceLock<LineWriter> = OnceLock::new();

/// Lines written by this path, so a test can tell it was taken (its output is the same).
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Audit lines written by the direct path so far.
pub fn direct_lines() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

/// A line buffer bigger than this after a hostile line is given back rather than kept.
const KEEP_BYTES: usize = 16 << 10;

pub(super) fn install(writer: LineWriter) {
    let _ = WRITER.set(writer);
}

/// Writes one audit line with `head` (its message and the fields known when compiling) and the
/// fields `fields` adds, unless audit lines are off. False when the direct path cannot write it
/// (see the module): log it through `tracing` then.
pub fn audit(head: Preset, fields: impl FnOnce(&mut AuditLine<'_>)) -> bool {
    let Some(writer) = WRITER.get() else {
        return false;
    };
    if !tracing::enabled!(target: AUDIT_TARGET, tracing::Level::INFO) {
        return true;
    }
    if tracing::dispatcher::get_default(|dispatch| dispatch.current_span().id().is_some()) {
        return false;
    }
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let mut fields = Some(fields);
    let _ = LINE.try_with(|cell| {
        if let Ok(mut line) = cell.try_borrow_mut()
            && let Some(fields) = fields.take()
        {
            write_line(writer, &mut line, head, fields);
            if line.capacity() > KEEP_BYTES {
                *line = String::new();
            }
        }
    });
    // Only if formatting a field logged an audit line itself, or the thread is exiting: a buffer
    // of its own then.
    if let Some(fields) = fields {
        write_line(writer, &mut String::new(), head, fields);
    }
    true
}

fn write_line(
    writer: &LineWriter,
    line: &mut String,
    head: Preset,
    fields: impl FnOnce(&mut AuditLine<'_>),
) {
    line.clear();
    format_line(line, now(), head, fields);
    // The writer never fails: a line that does not fit is dropped and counted there.
    let _ = (&*writer).write(line.as_bytes());
    WRITTEN.fetch_add(1, Ordering::Relaxed);
}

/// The whole line, newline included, as [`super::json`] writes an audit event at `at`.
pub fn format_line(
    out: &mut String,
    at: Duration,
    head: Preset,
    fields: impl FnOnce(&mut AuditLine<'_>),
) {
    out.push_str("{\"timestamp\":\"");
    // Writing to a String cannot fail.
    let _ = write_timestamp(out, at);
    out.push_str("\",\"level\":\"INFO\"");
    let mut line = AuditLine { out };
    line.preset(head);
    fields(&mut line);
    // Targets are module paths: nothing in them to escape.
    out.push_str(",\"target\":\"");
    out.push_str(AUDIT_TARGET);
    out.push_str("\"}\n");
}

/// The fields of one line, added in order as `,"name":value`.
#[derive(Debug)]
pub struct AuditLine<'a> {
    out: &'a mut String,
}

impl AuditLine<'_> {
    /// A string field.
    pub fn str(&mut self, name: &str, value: &str) {
        push_str_field(self.out, name, value);
    }

    /// A field formatted with `Display`, as a string.
    pub fn display(&mut self, name: &str, value: &dyn fmt::Display) {
        self.name(name);
        self.out.push('"');
        let _ = write!(Escaped(&mut *self.out), "{value}");
        self.out.push('"');
    }

    /// An address field, written as `Display` writes it.
    pub fn ip(&mut self, name: &str, ip: IpAddr) {
        self.name(name);
        self.out.push('"');
        match ip {
            IpAddr::V4(v4) => push_ipv4(self.out, v4.octets()),
            // Nothing in an IPv6 address's text needs escaping.
            IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push('"');
    }

    /// Fields serialised once beforehand (see [`JsonFields`]).
    pub fn fields(&mut self, fields: &JsonFields) {
        self.out.push_str(&fields.0);
    }

    /// Fields known when compiling (see [`Preset`]).
    pub fn preset(&mut self, fields: Preset) {
        self.out.push_str(fields.as_str());
    }

    fn name(&mut self, name: &str) {
        self.out.push_str(",\"");
        self.out.push_str(name);
        self.out.push_str("\":");
    }
}

/// String fields serialised once, for the part of a line that is the same on every line that
/// carries it (a token's part of its audit lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonFields(Box<str>);

impl JsonFields {
    pub fn new(fields: &[(&str, &str)]) -> Self {
        let mut out = String::new();
        for (name, value) in fields {
            push_str_field(&mut out, name, value);
        }
        Self(out.into_boxed_str())
    }

    /// Bytes held, for cache weighers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn push_str_field(out: &mut String, name: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":\"");
    let _ = Escaped(&mut *out).write_str(value);
    out.push('"');
}

/// `a.b.c.d` without the formatting machinery (four `Display` calls of `u8` through it), built
/// on the stack and appended once.
fn push_ipv4(out: &mut String, octets: [u8; 4]) {
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    // ASCII digits and dots: always UTF-8.
    if let Ok(text) = std::str::from_utf8(&buf[..len]) {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn line(fields: impl FnOnce(&mut AuditLine<'_>)) -> String {
        let mut out = String::new();
        format_line(
            &mut out,
            Duration::new(1_796_607_948, 760_792_123),
            crate::audit_preset!("message" => "token issued"),
            fields,
        );
        out
    }

    #[test]
    fn a_line_is_the_object_the_audit_formatter_writes() {
        let token = JsonFields::new(&[("role_session_name", "u-1"), ("expiration", "2026")]);
        let text = line(|line| {
            line.preset(crate::audit_preset!("outcome" => "issued"));
            line.ip("client_ip", IpAddr::V4(Ipv4Addr::new(10, 0, 200, 7)));
            line.display("subject", &"a \"quoted\"\nsubject");
            line.fields(&token);
            line.ip("v6", "2001:db8::7".parse().unwrap());
        });
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-12-07T01:45:48.760792Z\",\"level\":\"INFO\",\
             \"message\":\"token issued\",\"outcome\":\"issued\",\"client_ip\":\"10.0.200.7\",\
             \"subject\":\"a \\\"quoted\\\"\\nsubject\",\"role_session_name\":\"u-1\",\
             \"expiration\":\"2026\",\"v6\":\"2001:db8::7\",\"target\":\"stsvend::audit\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["subject"], "a \"quoted\"\nsubject");
    }

    #[test]
    fn a_preset_is_its_fields_as_str_would_write_them() {
        let preset = crate::audit_preset!("message" => "token issued", "source" => "cache");
        let mut by_str = String::new();
        push_str_field(&mut by_str, "message", "token issued");
        push_str_field(&mut by_str, "source", "cache");
        assert_eq!(preset.as_str(), by_str);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [9, 10, 99, 100],
            [1, 20, 109, 250],
        ] {
            let mut out = String::new();
            push_ipv4(&mut out, octets);
            assert_eq!(out, Ipv4Addr::from(octets).to_string());
        }
        for every in 0..=255u8 {
            let mut out = String::new();
            push_ipv4(&mut out, [every, every, 0, every]);
            assert_eq!(out, Ipv4Addr::new(every, every, 0, every).to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(line(|line| line.ip("ip", v6)).contains(",\"ip\":\"::1\","));
    }

    #[test]
    fn without_init_the_direct_path_declines() {
        // Unit tests never install the service's logging.
        let head = crate::audit_preset!("message" => "token issued");
        assert!(!audit(head, |_| unreachable!("not formatted")));
    }
}
