//! The names STS accepts: role ARNs and session names. The rules live here, below every module
//! that checks them (settings, the credential chain, the emulator), so none of those needs another.

/// `acs:ram::<account id>:role/<role name>`.
pub fn valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("acs:ram::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    !account.is_empty()
        && account.len() <= 32
        && account.chars().all(|c| c.is_ascii_digit())
        && (1..=64).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// STS documents 2-64 characters today but older documentation and error texts say 32;
/// 32 satisfies both.
pub fn valid_session_name(name: &str) -> bool {
    (2..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
}
