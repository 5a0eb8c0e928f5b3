//! The JSON line of an audit event, written by hand: the same object `tracing_subscriber`'s JSON
//! formatter writes (`timestamp`, `level`, the fields at the top level in the order given,
//! `target`), at a fraction of its cost. Its formatter serialises through serde one small piece
//! at a time (each checked as UTF-8 again), formats the timestamp into a fresh `String`, and
//! `Display` fields into another; on the token path, where every request writes an audit line,
//! that was about a quarter of the server's CPU time.
//!
//! Only audit events outside any span take this path; every other line, and an audit line inside
//! a span (debug logging on, where the line carries the span), goes to the wrapped formatter.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `inner`, with the events of target `audit` written by [`write_line`].
#[derive(Debug)]
pub(super) struct AuditFirst<F> {
    pub(super) audit: &'static str,
    pub(super) inner: F,
}

impl<S, N, F> FormatEvent<S, N> for AuditFirst<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != self.audit || ctx.lookup_current().is_some() {
            return self.inner.format_event(ctx, writer, event);
        }
        write_line(writer, now(), meta, event)
    }
}

/// The log line's time. Read here, as `tracing_subscriber` reads it for its own lines.
#[allow(clippy::disallowed_methods)]
pub(super) fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One audit line: `{"timestamp":…,"level":…,<fields>,"target":…}` and a newline.
fn write_line(
    mut out: Writer<'_>,
    at: Duration,
    meta: &tracing::Metadata<'_>,
    event: &Event<'_>,
) -> fmt::Result {
    out.write_str("{\"timestamp\":\"")?;
    write_timestamp(&mut out, at)?;
    write!(out, "\",\"level\":\"{}\"", meta.level().as_str())?;
    let mut fields = Fields {
        out: &mut out,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    // Targets are module paths: nothing in them to escape.
    write!(out, ",\"target\":\"{}\"}}", meta.target())?;
    out.write_char('\n')
}

/// `2026-12-07T01:45:48.760792Z`, as `tracing_subscriber` writes it; the part down to the second
/// is formatted once a second per thread.
pub(super) fn write_timestamp(out: &mut impl fmt::Write, at: Duration) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = at.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            text.clear();
            let time = i64::try_from(secs)
                .ok()
                .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
                .unwrap_or_default();
            write!(text, "{}", time.format("%Y-%m-%dT%H:%M:%S"))?;
            *second = secs;
        }
        out.write_str(text)?;
        out.write_str(fraction(&mut [0; 8], at.subsec_micros()))
    })
}

/// `.uuuuuuZ` for `micros` (below a million), written into `buf` without the formatting
/// machinery (`{:06}` through `write!` was about 400 instructions an audit line).
fn fraction(buf: &mut [u8; 8], micros: u32) -> &str {
    buf[0] = b'.';
    buf[7] = b'Z';
    let mut rest = micros;
    for digit in buf[1..7].iter_mut().rev() {
        // `rest % 10` is below 10: the cast cannot truncate.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // ASCII digits and punctuation: always UTF-8.
    std::str::from_utf8(buf).unwrap_or(".000000Z")
}

/// Writes each field as `,"name":value`, strings escaped as JSON strings.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = write!(self.out, ",\"{}\":", field.name()).and_then(|()| value(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Escaped directly, without the formatting machinery `format_args!` would go through.
        self.field(field, |out| {
            out.write_char('"')?;
            Escaped(&mut *out).write_str(value)?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write_string(out, format_args!("{value:?}")));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }
}

/// `value` as a JSON string: quoted, with `"`, `\` and control characters escaped as serde_json
/// escapes them.
fn write_string(out: &mut impl fmt::Write, value: fmt::Arguments<'_>) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_fmt(value)?;
    out.write_char('"')
}

/// Writes what it is given as the inside of a JSON string.
pub(super) struct Escaped<'a, W: fmt::Write>(pub(super) &'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Most values (ids, names, times) need nothing escaped: one tight scan, one write.
        if !needs_escape(text.as_bytes()) {
            return self.0.write_str(text);
        }
        let mut plain = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

/// Whether `text` holds a byte JSON escapes: a control character (below 0x20), `"` or `\`.
/// Eight bytes at a time (the classic "has a zero byte" tests on a `u64`), because every audit
/// line scans every value (`bench/instructions.sh`: about 100 instructions a request fewer
/// than a byte at a time, inside the method's spread).
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact for "is any byte below n" when n <= 0x80, and for "is any byte zero" (n = 1):
    // a byte with its high bit set (UTF-8 beyond ASCII) never counts.
    let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        // `chunks_exact(8)` makes this conversion infallible; were it not, "escape" is the safe
        // answer (the slow path escapes exactly).
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            return true;
        };
        let word = u64::from_le_bytes(bytes);
        if any_below(word, 0x20)
            || any_below(word ^ (ONES * u64::from(b'"')), 1)
            || any_below(word ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const AUDIT_TARGET: &str = "stsvend::audit";

    /// What a subscriber wrote, line by line.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes through tracing_subscriber's JSON formatter, configured as the
    /// service configures it, with or without [`AuditFirst`] in front.
    fn lines(audit_first: bool, log: impl Fn()) -> Vec<serde_json::Value> {
        let capture = Capture::default();
        let out = capture.clone();
        let inner = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true);
        let builder = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || out.clone());
        if audit_first {
            let subscriber = builder
                .event_format(AuditFirst {
                    audit: AUDIT_TARGET,
                    inner,
                })
                .finish();
            tracing::subscriber::with_default(subscriber, log);
        } else {
            let subscriber = builder.event_format(inner).finish();
            tracing::subscriber::with_default(subscriber, log);
        }
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str(line).expect(line))
            .collect()
    }

    #[test]
    fn audit_lines_are_the_objects_tracing_subscriber_writes() {
        let ip: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        let log = || {
            tracing::info!(
                target: AUDIT_TARGET,
                outcome = "issued",
                request_id = "0123456789abcdef0123456789abcdef",
                client_ip = %ip,
                subject = Some(tracing::field::display("a \"quoted\"\nsubject")),
                absent = None::<&str>,
                count = 3u64,
                delta = -2i64,
                flag = true,
                "token issued"
            );
            tracing::info!(target: AUDIT_TARGET, reason = "rate limit", "request denied");
            tracing::info!(target: "stsvend::other", "not an audit line");
        };
        let mut fast = lines(true, log);
        let mut reference = lines(false, log);
        assert_eq!(fast.len(), 3);
        for line in fast.iter_mut().chain(reference.iter_mut()) {
            let timestamp = line.as_object_mut().unwrap().remove("timestamp").unwrap();
            assert_eq!(timestamp.as_str().unwrap().len(), 27, "{timestamp}");
        }
        assert_eq!(fast, reference);
        assert_eq!(fast[0]["subject"], "a \"quoted\"\nsubject");
        assert!(fast[0].get("absent").is_none());
    }

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, format_args!("{text}")).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "plain",
            "",
            "quote \" and \\ backslash",
            "line\nbreak\r\ttab",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "用户 é",
            "\u{2028}",
        ] {
            assert_eq!(
                escaped(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_word_scan_finds_every_byte_to_escape_at_every_position() {
        let naive = |text: &[u8]| {
            text.iter()
                .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        };
        for len in 0..=24 {
            for position in 0..len {
                for byte in 0..=u8::MAX {
                    // Around the byte: plain ASCII and non-ASCII neighbours.
                    for fill in [b'a', 0x80, 0xff, 0x21, 0x5d] {
                        let mut text = vec![fill; len];
                        text[position] = byte;
                        assert_eq!(needs_escape(&text), naive(&text), "{text:?}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in "\\PC*|[\\x00-\\x7f]*") {
            proptest::prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
    }

    #[test]
    fn timestamps_are_tracing_subscribers_to_the_microsecond() {
        let vectors = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_796_607_948, 760_792_123, "2026-12-07T01:45:48.760792Z"),
            (1_796_607_948, 999_999_999, "2026-12-07T01:45:48.999999Z"),
            (951_782_400, 1_000, "2000-02-29T00:00:00.000001Z"),
            (1_796_607_949, 0, "2026-12-07T01:45:49.000000Z"),
        ];
        for (secs, nanos, expected) in vectors {
            let mut out = String::new();
            write_timestamp(&mut out, Duration::new(secs, nanos)).unwrap();
            assert_eq!(out, expected);
        }
    }
}
