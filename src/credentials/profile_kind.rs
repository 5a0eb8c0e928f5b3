//! What a profile (in the CLI's file or the INI file) asks for, and turning it into what the
//! chain uses: fixed credentials or a renewing source.

use secrecy::SecretString;

use super::error::SourceError;
use super::found::Found;
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
    EcsRamRole {
        role: String,
    },
}

impl ProfileKind {
    /// Turns a profile into credentials or a renewing source; `what` names the profile for errors.
    pub(super) fn build(
        self,
        source: Origin,
        what: &str,
        ctx: &Context<'_>,
    ) -> Result<Found, SourceError> {
        let required = |value: String, field: &str| {
            if value.is_empty() {
                Err(SourceError::new(format!("{what} has no `{field}`")))
            } else {
                Ok(value)
            }
        };
        Ok(match self {
            Self::AccessKey { id, secret } => Found::Static(Credentials::new(
                required(id, "access_key_id")?,
                SecretString::from(required(secret, "access_key_secret")?),
                None,
                source,
            )),
            Self::StsToken { id, secret, token } => Found::Static(Credentials::new(
                required(id, "access_key_id")?,
                SecretString::from(required(secret, "access_key_secret")?),
                Some(SecretString::from(required(token, "sts_token")?)),
                source,
            )),
            Self::RamRoleArn {
                id,
                secret,
                role_arn,
                session_name,
                duration_seconds,
            } => {
                let role_arn = required(role_arn, "role arn")?;
                let Some(role_arn) = RoleArn::parse(&role_arn) else {
                    return Err(SourceError::new(format!(
                        "{what}: {role_arn:?} is not a RAM role ARN"
                    )));
                };
                let session_name = session_name
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| SessionName::DEFAULT.to_owned());
                let Some(session_name) = SessionName::parse(&session_name) else {
                    return Err(SourceError::new(format!(
                        "{what}: session name {session_name:?} must be {}",
                        SessionName::RULE
                    )));
                };
                let duration_seconds = duration_seconds
                    .filter(|d| *d > 0)
                    .unwrap_or(DurationSeconds::DEFAULT.get());
                let Some(duration_seconds) = DurationSeconds::new(duration_seconds) else {
                    return Err(SourceError::new(format!(
                        "{what}: duration {duration_seconds} is outside {}-{} seconds",
                        DurationSeconds::RANGE.start(),
                        DurationSeconds::RANGE.end()
                    )));
                };
                Found::Temporary(
                    Box::new(renew::Temporary::RamRoleArn {
                        client: ctx.sts.clone(),
                        base: Credentials::new(
                            required(id, "access_key_id")?,
                            SecretString::from(required(secret, "access_key_secret")?),
                            None,
                            source,
                        ),
                        call: crate::sts::AssumeRole {
                            role_arn: role_arn.into(),
                            role_session_name: session_name.into(),
                            duration_seconds: duration_seconds.get(),
                            policy: None,
                        },
                        source,
                    }),
                    None,
                )
            }
            Self::EcsRamRole { role } => {
                let role = required(role, "role name")?;
                let ecs = ecs::Ecs::with_role(ctx.env, ctx.metadata_endpoint, &role)?;
                Found::Temporary(Box::new(renew::Temporary::Ecs(ecs)), None)
            }
        })
    }
}
