//! Turning a JWT subject into an STS `RoleSessionName`, so ActionTrail shows who wrote what.
//!
//! STS accepts `[A-Za-z0-9.@_-]`, and we keep to at most 32 characters (PROTOCOL.md §1.4). A
//! subject that already fits is used as it is. Anything else is mapped (other characters become
//! `-`), shortened, and given an 8-character hash of the original subject, so that two subjects
//! that map to the same text still get different session names.

use sha1::{Digest, Sha1};

const MAX_LEN: usize = 32;
const HASH_LEN: usize = 8;

/// The `RoleSessionName` for `subject`. Pure and deterministic.
pub fn session_name(subject: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-');
    if (2..=MAX_LEN).contains(&subject.len()) && subject.chars().all(allowed) {
        return subject.to_owned();
    }
    let mapped: String = subject
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_LEN - HASH_LEN - 1)
        .collect();
    let digest = Sha1::digest(subject.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{mapped}_{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (2..=MAX_LEN).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
    }

    #[test]
    fn a_subject_that_fits_is_kept() {
        assert_eq!(session_name("oA1b2C3d-wx_openid"), "oA1b2C3d-wx_openid");
        assert_eq!(session_name("user@example.com"), "user@example.com");
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
}
