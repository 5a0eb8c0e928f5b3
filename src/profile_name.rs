//! Profile names: the one the unnamed route and the `STSVEND_ROLE_ARN`-style variables use, and
//! which names are valid. A leaf, so metrics can label by profile without reaching settings.

/// The profile `/get_sts_token` serves and the `STSVEND_ROLE_ARN`-style variables configure.
pub const DEFAULT_PROFILE: &str = "default";

/// 1-64 of `a-z 0-9 - _`, the first one `a-z` or `0-9`: a profile name becomes a path segment
/// and a metric label.
pub fn valid_profile_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
