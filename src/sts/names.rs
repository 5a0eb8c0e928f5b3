//! What STS accepts as a role ARN, a session name and a session duration, as types: a value of
//! [`RoleArn`], [`SessionName`] or [`DurationSeconds`] has passed the rule, once. The rules live
//! here, below every module that checks them (settings, the credential chain, the emulator,
//! per-caller session names), so none of those needs another and none keeps its own copy.

use std::fmt;
use std::ops::RangeInclusive;

/// `acs:ram::<account id>:role/<role name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleArn(String);

impl RoleArn {
    /// `Some` when `text` (taken as it is, not trimmed) is a RAM role ARN.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("acs:ram::")?;
        let (account, role) = rest.split_once(":role/")?;
        let valid = !account.is_empty()
            && account.len() <= 32
            && account.chars().all(|c| c.is_ascii_digit())
            && (1..=64).contains(&role.len())
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RoleArn> for String {
    fn from(arn: RoleArn) -> Self {
        arn.0
    }
}

/// A `RoleSessionName` stsvend sends: 2-32 of `A-Z a-z 0-9 . @ _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionName(String);

impl SessionName {
    /// STS documents 2-64 characters today but older documentation and error texts say 32;
    /// 32 satisfies both.
    pub const MAX_LEN: usize = 32;
    /// The longest name STS itself accepts (what the emulator enforces).
    pub const STS_MAX_LEN: usize = 64;
    /// The name stsvend's own calls carry unless a setting says otherwise.
    pub const DEFAULT: &str = "stsvend";
    /// The rule in words, for error messages.
    pub const RULE: &str = "2-32 of A-Z a-z 0-9 . @ _ -";

    /// `Some` when `text` is a valid session name of at most [`Self::MAX_LEN`] characters.
    pub fn parse(text: &str) -> Option<Self> {
        within(text, Self::MAX_LEN).then(|| Self(text.to_owned()))
    }

    /// Whether STS itself would take `text` (up to [`Self::STS_MAX_LEN`] characters).
    pub fn accepted_by_sts(text: &str) -> bool {
        within(text, Self::STS_MAX_LEN)
    }

    /// The characters a session name may hold.
    pub fn allowed_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn within(text: &str, max_len: usize) -> bool {
    (2..=max_len).contains(&text.len()) && text.chars().all(SessionName::allowed_char)
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SessionName> for String {
    fn from(name: SessionName) -> Self {
        name.0
    }
}

/// `DurationSeconds` within STS's own bounds (the role's `MaxSessionDuration` may lower the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSeconds(u32);

impl DurationSeconds {
    pub const RANGE: RangeInclusive<u32> = 900..=43200;
    /// An hour: what the SDKs ask for, and the default `MaxSessionDuration` of a role.
    pub const DEFAULT: Self = Self(3600);

    /// `Some` when `seconds` is within [`Self::RANGE`].
    pub fn new(seconds: u32) -> Option<Self> {
        Self::RANGE.contains(&seconds).then_some(Self(seconds))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for DurationSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let good = "acs:ram::1234567890123456:role/sls-web-tracking";
        assert_eq!(
            RoleArn::parse(good).map(String::from).as_deref(),
            Some(good)
        );
        for bad in [
            "",
            "acs:ram::1234567890123456:role/",
            "acs:ram:::role/x",
            "acs:ram::12a4:role/x",
            "acs:ram::1234567890123456:user/x",
            " acs:ram::1234567890123456:role/x",
            "acs:ram::1234567890123456:role/a b",
        ] {
            assert_eq!(RoleArn::parse(bad), None, "{bad:?}");
        }
        let long_role = format!("acs:ram::1:role/{}", "r".repeat(65));
        assert_eq!(RoleArn::parse(&long_role), None);
    }

    #[test]
    fn session_names_keep_to_32_while_sts_takes_64() {
        assert!(SessionName::parse("stsvend").is_some());
        assert!(SessionName::parse("user@example.com_1.-").is_some());
        assert!(SessionName::parse(&"a".repeat(32)).is_some());
        for bad in ["a", "has space", "用户", &"a".repeat(33)] {
            assert_eq!(SessionName::parse(bad), None, "{bad:?}");
        }
        assert!(SessionName::accepted_by_sts(&"a".repeat(64)));
        assert!(!SessionName::accepted_by_sts(&"a".repeat(65)));
        assert!(SessionName::parse(SessionName::DEFAULT).is_some());
    }

    #[test]
    fn durations_are_sts_bounds() {
        assert_eq!(DurationSeconds::new(899), None);
        assert_eq!(
            DurationSeconds::new(900).map(DurationSeconds::get),
            Some(900)
        );
        assert_eq!(
            DurationSeconds::new(43200).map(DurationSeconds::get),
            Some(43200)
        );
        assert_eq!(DurationSeconds::new(43201), None);
        assert_eq!(DurationSeconds::new(3600), Some(DurationSeconds::DEFAULT));
    }
}
