//! What a profile (in the CLI's file or the INI file) asks for, and turning it into what the
//! chain uses: fixed credentials or a renewing source.

use secrecy::SecretString;

use super::env::var;
use super::error::SourceError;
use super::found::Found;
use super::oidc::{Fields, Oidc};
use super::origin::Origin;
use super::source::Context;
use super::value::Credentials;
use super::{ecs, renew};
use crate::sts::names::{DurationSeconds, RoleArn, SessionName};

/// What a profile asks for, in the modes that make sense for a server.
pub(super) enum ProfileKind {
    AccessKey {
        id: String,
        secret: String,
    },
    StsToken {
        id: String,
        secret: String,
        token: String,
    },
    RamRoleArn {
        id: String,
        secret: String,
        role_arn: String,
        session_name: Option<String>,
        duration_seconds: Option<u32>,
    },
    /// `AssumeRoleWithOIDC` (an INI section of type `oidc_role_arn`).
    OidcRoleArn {
        role_arn: String,
        provider_arn: String,
        token_file: String,
        session_name: String,
    },
    EcsRamRole {
        role: String,
    },
}

/// A profile's field, else the variable the SDKs' providers fall back to when it is empty
/// (`role_arn or ALIBABA_CLOUD_ROLE_ARN` in `RamRoleArnCredentialsProvider` and
/// `OIDCRoleArnCredentialsProvider`).
fn or_env(value: String, ctx: &Context<'_>, name: &str) -> String {
    if value.is_empty() {
        var(ctx.env, name).unwrap_or_default().to_owned()
    } else {
        value
    }
}

/// A profile's value as errors show it: its first line, cut at 60 characters. A value the file
/// continued on further lines may have swallowed the lines under it, a secret among them.
pub(super) fn shown(value: &str) -> String {
    let mut lines = value.lines();
    let first = lines.next().unwrap_or_default();
    let cut: String = first.chars().take(60).collect();
    let more = lines.count();
    let mut text = format!("{cut:?}");
    if cut.len() < first.len() {
        text.push('…');
    }
    if more > 0 {
        text.push_str(&format!(" (and {more} more line(s), not shown)"));
    }
    text
}

/// An error when `value` is empty.
fn required(what: &str, value: String, field: &str) -> Result<String, SourceError> {
    if value.is_empty() {
        Err(SourceError::new(format!("{what} has no `{field}`")))
    } else {
        Ok(value)
    }
}

/// The role's ARN, else the `ALIBABA_CLOUD_ROLE_ARN` it falls back to, checked.
fn role_arn(what: &str, value: String, ctx: &Context<'_>) -> Result<String, SourceError> {
    let role_arn = required(
        what,
        or_env(value, ctx, "ALIBABA_CLOUD_ROLE_ARN"),
        "role arn",
    )?;
    match RoleArn::parse(&role_arn) {
        Some(parsed) => Ok(parsed.into()),
        None => Err(SourceError::new(format!(
            "{what}: {} is not a RAM role ARN",
            shown(&role_arn)
        ))),
    }
}

/// The session name, else `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else stsvend's default, checked.
fn session_name(what: &str, value: String, ctx: &Context<'_>) -> Result<String, SourceError> {
    let name = or_env(value, ctx, "ALIBABA_CLOUD_ROLE_SESSION_NAME");
    let name = if name.is_empty() {
        SessionName::DEFAULT.to_owned()
    } else {
        name
    };
    match SessionName::parse(&name) {
        Some(parsed) => Ok(parsed.into()),
        None => Err(SourceError::new(format!(
            "{what}: session name {} must be {}",
            shown(&name),
            SessionName::RULE
        ))),
    }
}

impl ProfileKind {
    /// Turns a profile into credentials or a renewing source; `what` names the profile for errors.
    pub(super) fn build(
        self,
        source: Origin,
        what: &str,
        ctx: &Context<'_>,
    ) -> Result<Found, SourceError> {
        let access_key = |id: String, secret: String, token: Option<String>| {
            Ok::<_, SourceError>(Credentials::new(
                required(what, id, "access_key_id")?,
                SecretString::from(required(what, secret, "access_key_secret")?),
                match token {
                    Some(token) => Some(SecretString::from(required(what, token, "sts_token")?)),
                    None => None,
                },
                source,
            ))
        };
        Ok(match self {
            Self::AccessKey { id, secret } => Found::Static(access_key(id, secret, None)?),
            Self::StsToken { id, secret, token } => {
                Found::Static(access_key(id, secret, Some(token))?)
            }
            Self::RamRoleArn {
                id,
                secret,
                role_arn: arn,
                session_name: session,
                duration_seconds,
            } => {
                let call = crate::sts::AssumeRole {
                    role_arn: role_arn(what, arn, ctx)?,
                    role_session_name: session_name(what, session.unwrap_or_default(), ctx)?,
                    duration_seconds: duration(what, duration_seconds)?,
                    policy: None,
                };
                let temporary = renew::Temporary::RamRoleArn {
                    client: ctx.sts.clone(),
                    base: access_key(id, secret, None)?,
                    call,
                    source,
                };
                Found::Temporary(Box::new(temporary), None)
            }
            Self::OidcRoleArn {
                role_arn: arn,
                provider_arn,
                token_file,
                session_name: session,
            } => {
                let env = |value, name| or_env(value, ctx, name);
                let token_file = env(token_file, "ALIBABA_CLOUD_OIDC_TOKEN_FILE");
                let fields = Fields {
                    role_arn: role_arn(what, arn, ctx)?,
                    provider_arn: required(
                        what,
                        env(provider_arn, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
                        "oidc_provider_arn",
                    )?,
                    token_file: required(what, token_file, "oidc_token_file_path")?.into(),
                    token_setting: what.to_owned(),
                    session_name: session_name(what, session, ctx)?,
                };
                let oidc = Oidc::new(source, ctx.sts, fields)?;
                Found::Temporary(Box::new(renew::Temporary::Oidc(oidc)), None)
            }
            Self::EcsRamRole { role } => {
                let role = required(what, role, "role name")?;
                let ecs = ecs::Ecs::with_role(ctx.env, ctx.metadata_endpoint, &role)?;
                Found::Temporary(Box::new(renew::Temporary::Ecs(ecs)), None)
            }
        })
    }
}

/// The profile's duration, else the default, checked.
fn duration(what: &str, seconds: Option<u32>) -> Result<u32, SourceError> {
    let seconds = seconds
        .filter(|d| *d > 0)
        .unwrap_or(DurationSeconds::DEFAULT.get());
    match DurationSeconds::new(seconds) {
        Some(duration) => Ok(duration.get()),
        None => Err(SourceError::new(format!(
            "{what}: duration {seconds} is outside {}-{} seconds",
            DurationSeconds::RANGE.start(),
            DurationSeconds::RANGE.end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn errors_show_only_a_values_first_line() {
        assert_eq!(shown("access_key"), "\"access_key\"");
        let swallowed = "access_key\naccess_key_secret = hunter2";
        let text = shown(swallowed);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.ends_with("(and 1 more line(s), not shown)"), "{text}");
        assert_eq!(shown(&"x".repeat(100)), format!("{:?}…", "x".repeat(60)));
    }
}
