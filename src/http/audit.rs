//! The audit log: one line per token handed out or refused, at `info` on the target
//! [`TARGET`], so collectors can route it apart from operational logs (and `RUST_LOG` cannot
//! switch it off by accident, see [`crate::telemetry`]).
//!
//! A line says who asked (request id, profile, client address, JWT subject, RoleSessionName),
//! and for a token which one (the first 8 characters of its AccessKeyId, its expiry, whether this
//! request was the first to receive it — `fresh`, with STS's RequestId — or it came from a
//! cache). Never a secret or a token: the line is built from [`Token`]'s public, non-secret
//! fields only, never from its body.
//!
//! The subject is personal data. It is logged as given when it is short printable ASCII (a
//! user id), and otherwise as a hash, so an attacker's megabyte of control characters never
//! reaches the log. Fields are formatted only when the line is written: nothing here allocates
//! when audit logging is off.

use std::net::IpAddr;

use crate::auth::jwt::Claims;
use crate::auth::subject::Logged;
use crate::telemetry::{self, AuditLine, Preset};
use crate::tokens::token::Token;

/// The `tracing` target of every audit line.
pub use crate::telemetry::AUDIT_TARGET as TARGET;

/// Who asked for a token.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The id in the response's `x-request-id` header.
    pub request_id: &'a str,
    pub profile: &'a str,
    pub client_ip: IpAddr,
    /// The verified JWT's claims (its `sub` is logged as the subject), when the profile checks
    /// JWTs and the token passed.
    pub claims: Option<&'a Claims>,
}

/// `token` was handed to `caller`. Whether it is `fresh` is decided here: the first request to
/// receive a token is, every later one is served from a cache.
pub fn issued(caller: &Caller<'_>, token: &Token) {
    let fresh = token.take_fresh();
    let source = if fresh { "fresh" } else { "cache" };
    let sts_request_id = if fresh {
        token.sts_request_id.as_deref()
    } else {
        None
    };
    if telemetry::audit(ISSUED, issued_fields(caller, token, fresh, sts_request_id)) {
        return;
    }
    tracing::info!(
        target: TARGET,
        outcome = "issued",
        request_id = caller.request_id,
        profile = caller.profile,
        client_ip = %caller.client_ip,
        subject = caller.claims.map(|c| tracing::field::display(Logged(c.subject()))),
        role_session_name = token.role_session_name.as_str(),
        access_key_id_prefix = token.key_id_prefix.as_str(),
        expiration = token.expiration_text.as_str(),
        source,
        sts_request_id,
        "token issued"
    );
}

/// The start of [`issued`]'s line on the direct path: its message and outcome.
const ISSUED: Preset = crate::audit_preset!("message" => "token issued", "outcome" => "issued");
/// The start of [`denied`]'s line on the direct path.
const DENIED: Preset = crate::audit_preset!("message" => "request denied", "outcome" => "denied");

/// [`issued`]'s fields for the direct path after [`ISSUED`], in the order of its `tracing` event.
fn issued_fields<'a>(
    caller: &'a Caller<'_>,
    token: &'a Token,
    fresh: bool,
    sts_request_id: Option<&'a str>,
) -> impl FnOnce(&mut AuditLine<'_>) + 'a {
    move |line| {
        caller_fields(line, caller);
        line.fields(&token.audit_fields);
        line.preset(if fresh {
            crate::audit_preset!("source" => "fresh")
        } else {
            crate::audit_preset!("source" => "cache")
        });
        if let Some(id) = sts_request_id {
            line.str("sts_request_id", id);
        }
    }
}

/// `caller` was refused; `reason` says why in a few fixed words.
pub fn denied(caller: &Caller<'_>, reason: &str) {
    if telemetry::audit(DENIED, denied_fields(caller, reason)) {
        return;
    }
    tracing::info!(
        target: TARGET,
        outcome = "denied",
        request_id = caller.request_id,
        profile = caller.profile,
        client_ip = %caller.client_ip,
        subject = caller.claims.map(|c| tracing::field::display(Logged(c.subject()))),
        role_session_name = caller.claims.map(|c| &**c.session_name()),
        reason,
        "request denied"
    );
}

/// [`denied`]'s fields for the direct path after [`DENIED`], in the order of its `tracing` event.
fn denied_fields<'a>(
    caller: &'a Caller<'_>,
    reason: &'a str,
) -> impl FnOnce(&mut AuditLine<'_>) + 'a {
    move |line| {
        caller_fields(line, caller);
        if let Some(claims) = caller.claims {
            line.str("role_session_name", claims.session_name());
        }
        line.str("reason", reason);
    }
}

/// Who asked, the fields after a line's message and outcome.
fn caller_fields(line: &mut AuditLine<'_>, caller: &Caller<'_>) {
    line.str("request_id", caller.request_id);
    line.str("profile", caller.profile);
    line.ip("client_ip", caller.client_ip);
    if let Some(claims) = caller.claims {
        line.fields(claims.audit_fields());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::DateTime;
    use secrecy::SecretString;

    use super::*;
    use crate::sts::IssuedCredentials;

    /// The line `log` writes through tracing_subscriber's JSON formatter set up as the service
    /// sets it up, its timestamp replaced by `at`'s.
    fn through_tracing(log: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .with_writer(move || Capture(out.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        with_timestamp(&text)
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const AT: &str = "2026-12-07T01:45:48.760792Z";

    /// `line` with its timestamp (always the first field, 27 characters) set to [`AT`].
    fn with_timestamp(line: &str) -> String {
        let start = "{\"timestamp\":\"".len();
        format!("{}{AT}{}", &line[..start], &line[start + AT.len()..])
    }

    fn direct(head: Preset, fields: impl FnOnce(&mut AuditLine<'_>)) -> String {
        let mut out = String::new();
        telemetry::format_line(
            &mut out,
            Duration::new(1_796_607_948, 760_792_123),
            head,
            fields,
        );
        out
    }

    fn token(request_id: Option<&str>) -> Token {
        let issued = IssuedCredentials::new(
            "STS.NSubjectAudit",
            SecretString::from("audit-secret"),
            SecretString::from("audit-security-token"),
            DateTime::from_timestamp(1_796_611_548, 0).unwrap(),
            request_id.map(str::to_owned),
        );
        Token::new(&issued, "u-\"q\"".into(), tokio::time::Instant::now())
    }

    #[test]
    fn direct_lines_are_the_lines_tracing_writes_byte_for_byte() {
        let hostile = "a \"quoted\"\nsubject that is not printable ascii";
        let openid = Claims::new("oA1b2C3d-wx_openid".to_owned(), None);
        let hostile = Claims::new(hostile.to_owned(), Some("https://issuer".to_owned()));
        let callers = [
            Caller {
                request_id: "0123456789abcdef0123456789abcdef",
                profile: "default",
                client_ip: "203.0.113.9".parse().unwrap(),
                claims: None,
            },
            Caller {
                request_id: "r-2",
                profile: "pro\\file",
                client_ip: "2001:db8::7".parse().unwrap(),
                claims: Some(&openid),
            },
            Caller {
                request_id: "",
                profile: "p",
                client_ip: "10.0.0.255".parse().unwrap(),
                claims: Some(&hostile),
            },
        ];
        for caller in &callers {
            // Without the service's logging installed, `issued` and `denied` log through tracing.
            let token = token(Some("STS-REQ-1"));
            let fresh = through_tracing(|| issued(caller, &token));
            let cached = through_tracing(|| issued(caller, &token));
            let fields = issued_fields(caller, &token, true, Some("STS-REQ-1"));
            assert_eq!(direct(ISSUED, fields), fresh);
            let fields = issued_fields(caller, &token, false, None);
            assert_eq!(direct(ISSUED, fields), cached);
            assert!(!fresh.contains("audit-secret") && !fresh.contains("audit-security-token"));
            let reference = through_tracing(|| denied(caller, "rate limited (address)"));
            let fields = denied_fields(caller, "rate limited (address)");
            assert_eq!(direct(DENIED, fields), reference);
        }
    }
}
