//! Turning a JWT subject into an STS `RoleSessionName`, so ActionTrail shows who wrote what, and
//! into the key that per-caller caches and per-user rate limits use.
//!
//! STS accepts `[A-Za-z0-9.@_-]`, and we keep to at most 32 characters (PROTOCOL.md §1.4). The
//! mapping is injective, so two subjects never share a session name (nor, therefore, the
//! credentials STS issues for it) unless they collide on a 64-bit hash:
//! - a *hashed name* is at most 15 characters of the subject (other characters become `-`), `_`,
//!   and 16 lower-case hex digits of the subject's SHA-1: it always ends in `_` + 16 hex digits;
//! - a subject that is already a valid session name is used as it is, *unless it has that
//!   shape*; then it is hashed like any other, so no subject can pose as another's hashed name.
//!
//! Caches and rate limits do not use the session name at all but [`caller_id`], a digest of the
//! exact (issuer, subject) pair, so the same `sub` from two issuers is two callers.

use sha1::{Digest, Sha1};

use crate::sts::names::SessionName;

const MAX_LEN: usize = SessionName::MAX_LEN;
/// 16 hex digits: 64 bits of the hash.
const HASH_HEX: usize = 16;
/// What is left of the 32 characters for the readable part of a hashed name.
const MAX_READABLE: usize = MAX_LEN - HASH_HEX - 1;

/// The longest subject the audit log writes as given.
const MAX_LOGGED_LEN: usize = 128;

/// A subject as the audit log writes it: as given when it is at most [`MAX_LOGGED_LEN`]
/// characters of printable ASCII, otherwise `sha1:` and the first 16 hex digits of its hash. The
/// subject is personal data, and an attacker's megabyte of control characters must never reach
/// the log.
#[derive(Debug)]
pub struct Logged<'a>(pub &'a str);

impl std::fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject = self.0;
        if subject.len() <= MAX_LOGGED_LEN && subject.bytes().all(|b| b.is_ascii_graphic()) {
            return f.write_str(subject);
        }
        f.write_str("sha1:")?;
        for byte in Sha1::digest(subject.as_bytes()).iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Who a JWT caller is, exactly: a fixed-size digest of the length-prefixed (issuer, subject)
/// pair (the first 128 bits of its SHA-1). Small, `Copy`, and without the subject's text.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct CallerId([u8; 16]);

impl CallerId {
    /// The digest itself, for keys that must outlive the process (the fleet store digests it
    /// again under its own key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// The key for `subject` as issued by `issuer` (`None` when the token has no `iss`).
pub fn caller_id(issuer: Option<&str>, subject: &str) -> CallerId {
    let mut hash = Sha1::new();
    // Length prefixes keep ("ab", "c") apart from ("a", "bc"); the flag keeps no issuer apart
    // from an empty one.
    match issuer {
        Some(issuer) => {
            hash.update([1]);
            hash.update((issuer.len() as u64).to_be_bytes());
            hash.update(issuer.as_bytes());
        }
        None => hash.update([0]),
    }
    hash.update((subject.len() as u64).to_be_bytes());
    hash.update(subject.as_bytes());
    let digest = hash.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    CallerId(id)
}

/// True for text that ends like a hashed name: `_` and 16 lower-case hex digits.
pub fn has_hashed_shape(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > HASH_HEX
        && bytes[bytes.len() - HASH_HEX - 1] == b'_'
        && bytes[bytes.len() - HASH_HEX..]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The `RoleSessionName` for `subject`. Pure and deterministic.
pub fn session_name(subject: &str) -> String {
    if SessionName::parse(subject).is_some() && !has_hashed_shape(subject) {
        return subject.to_owned();
    }
    let mut name: String = subject
        .chars()
        .map(|c| if SessionName::allowed_char(c) { c } else { '-' })
        .take(MAX_READABLE)
        .collect();
    name.push('_');
    for byte in &Sha1::digest(subject.as_bytes())[..HASH_HEX / 2] {
        name.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        name.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule written out again, so these tests do not check the names module against itself.
    fn valid(name: &str) -> bool {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-');
        (2..=32).contains(&name.len()) && name.chars().all(allowed)
    }

    #[test]
    fn short_printable_subjects_are_logged_as_given_and_others_hashed() {
        assert_eq!(
            Logged("oA1b2C3d-wx_openid").to_string(),
            "oA1b2C3d-wx_openid"
        );
        assert_eq!(Logged(&"x".repeat(128)).to_string(), "x".repeat(128));
        for hostile in ["a b", "a\nb", "用户", &"x".repeat(129), "a\u{1b}[31mb"] {
            let logged = Logged(hostile).to_string();
            assert!(logged.starts_with("sha1:"), "{hostile:?} -> {logged}");
            assert_eq!(logged.len(), 5 + 16);
        }
        assert_ne!(Logged("a b").to_string(), Logged("a  b").to_string());
    }

    #[test]
    fn a_subject_that_fits_is_kept() {
        assert_eq!(session_name("oA1b2C3d-wx_openid"), "oA1b2C3d-wx_openid");
        assert_eq!(session_name("user@example.com"), "user@example.com");
        // Shorter hex tails, upper-case hex or no underscore are not the reserved shape.
        assert_eq!(session_name("user_9638bf00"), "user_9638bf00");
        assert_eq!(session_name("u_9638BF009638BF00"), "u_9638BF009638BF00");
    }

    #[test]
    fn fixed_vectors() {
        // SHA-1("victim user@example.com") starts 9638bf0016b0d28a (python3 hashlib).
        let cases = [
            (
                "victim user@example.com",
                "victim-user@exa_9638bf0016b0d28a",
            ),
            // The literal subject from issue 13 is a valid name: kept as it is.
            (
                "victim-user@example.com_9638bf00",
                "victim-user@example.com_9638bf00",
            ),
            // A subject posing as a hashed name is hashed itself.
            (
                "victim-user@exa_9638bf0016b0d28a",
                "victim-user@exa_eac75ec2905d6d5f",
            ),
            ("用户一", "---_5cf0813eaf947b68"),
        ];
        for (subject, name) in cases {
            assert_eq!(session_name(subject), name, "subject {subject:?}");
        }
    }

    #[test]
    fn verbatim_and_hashed_names_never_meet() {
        let tricky = [
            "victim user@example.com",
            "victim-user@example.com_9638bf00",
            "victim-user@exa_9638bf0016b0d28a",
            "a_0000000000000000",
            "_0000000000000000",
        ];
        let names: Vec<String> = tricky.iter().map(|s| session_name(s)).collect();
        for (subject, name) in tricky.iter().zip(&names) {
            assert!(valid(name), "{subject:?} -> {name:?}");
            // Every name of the reserved shape came through the hash.
            if has_hashed_shape(name) {
                assert_ne!(name, subject, "{subject:?} kept although it has the shape");
            }
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn hostile_subjects_become_valid_distinct_names() {
        let long = "x".repeat(500);
        let subjects = [
            "a b",
            "a-b",
            "用户一",
            "用户二",
            "../../etc/passwd",
            &long,
            "x",
            "",
            "a\\nb",
            "a\\u{0}b",
        ];
        let names: Vec<String> = subjects.iter().map(|s| session_name(s)).collect();
        for (subject, name) in subjects.iter().zip(&names) {
            assert!(valid(name), "{subject:?} -> {name:?}");
        }
        // "a b" maps to "a-b" but must not collide with the real "a-b".
        assert_ne!(names[0], names[1]);
        assert_ne!(names[2], names[3], "CJK subjects of the same length differ");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(session_name("用户一"), names[2], "deterministic");
    }

    #[test]
    fn caller_ids_are_the_exact_issuer_and_subject() {
        let a = caller_id(Some("https://idp"), "alice");
        assert_eq!(a, caller_id(Some("https://idp"), "alice"));
        assert_ne!(a, caller_id(Some("https://other"), "alice"));
        assert_ne!(a, caller_id(None, "alice"));
        assert_ne!(caller_id(None, "alice"), caller_id(Some(""), "alice"));
        assert_ne!(caller_id(Some("ab"), "c"), caller_id(Some("a"), "bc"));
        assert_ne!(
            caller_id(None, "victim user@example.com"),
            caller_id(None, "victim-user@example.com_9638bf00")
        );
    }
}
