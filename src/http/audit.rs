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

use std::fmt;
use std::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::tokens::token::Token;

/// The `tracing` target of every audit line.
pub use crate::telemetry::AUDIT_TARGET as TARGET;

/// The longest subject logged as given.
const MAX_SUBJECT_LEN: usize = 128;

/// Who asked for a token.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The id in the response's `x-request-id` header.
    pub request_id: &'a str,
    pub profile: &'a str,
    pub client_ip: IpAddr,
    /// The verified JWT `sub`, when the profile checks JWTs and the token passed.
    pub subject: Option<&'a str>,
}

/// `token` was handed to `caller`. Whether it is `fresh` is decided here: the first request to
/// receive a token is, every later one is served from a cache.
pub fn issued(caller: &Caller<'_>, token: &Token) {
    let fresh = token.take_fresh();
    tracing::info!(
        target: TARGET,
        outcome = "issued",
        request_id = caller.request_id,
        profile = caller.profile,
        client_ip = %caller.client_ip,
        subject = caller.subject.map(|s| tracing::field::display(Subject(s))),
        role_session_name = token.role_session_name.as_str(),
        access_key_id_prefix = token.key_id_prefix.as_str(),
        expiration = token.expiration_text.as_str(),
        source = if fresh { "fresh" } else { "cache" },
        sts_request_id = if fresh { token.sts_request_id.as_deref() } else { None },
        "token issued"
    );
}

/// `caller` was refused; `reason` says why in a few fixed words.
pub fn denied(caller: &Caller<'_>, reason: &str) {
    tracing::info!(
        target: TARGET,
        outcome = "denied",
        request_id = caller.request_id,
        profile = caller.profile,
        client_ip = %caller.client_ip,
        subject = caller.subject.map(|s| tracing::field::display(Subject(s))),
        role_session_name = caller.subject.map(|s| tracing::field::display(SessionName(s))),
        reason,
        "request denied"
    );
}

/// A subject as logged: as given when it is at most [`MAX_SUBJECT_LEN`] characters of printable
/// ASCII, otherwise `sha1:` and the first 16 hex digits of its hash.
struct Subject<'a>(&'a str);

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = self.0;
        if subject.len() <= MAX_SUBJECT_LEN && subject.bytes().all(|b| b.is_ascii_graphic()) {
            return f.write_str(subject);
        }
        f.write_str("sha1:")?;
        for byte in Sha1::digest(subject.as_bytes()).iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The RoleSessionName a subject's token would have (computed only when the line is written).
struct SessionName<'a>(&'a str);

impl fmt::Display for SessionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::auth::subject::session_name(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_subjects_are_logged_as_given_and_others_hashed() {
        assert_eq!(
            Subject("oA1b2C3d-wx_openid").to_string(),
            "oA1b2C3d-wx_openid"
        );
        assert_eq!(Subject(&"x".repeat(128)).to_string(), "x".repeat(128));
        for hostile in ["a b", "a\nb", "用户", &"x".repeat(129), "a\u{1b}[31mb"] {
            let logged = Subject(hostile).to_string();
            assert!(logged.starts_with("sha1:"), "{hostile:?} -> {logged}");
            assert_eq!(logged.len(), 5 + 16);
        }
        assert_ne!(Subject("a b").to_string(), Subject("a  b").to_string());
    }
}
