//! Where the service's own credentials come from: the Alibaba Cloud default credential chain.
//!
//! The sources, in the official SDKs' order (PROTOCOL.md §6), each in its own module:
//! 1. environment — `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `_SECURITY_TOKEN` (parsed with the
//!    rest of the settings in [`crate::config`], so a half-set pair is a configuration error);
//! 2. [`oidc`] — ACK RRSA: `AssumeRoleWithOIDC` with a token file that is re-read on every call;
//! 3. [`profile`] — the Alibaba Cloud CLI's `~/.aliyun/config.json`;
//! 4. [`ini`] — `~/.alibabacloud/credentials.ini` or `ALIBABA_CLOUD_CREDENTIALS_FILE`;
//! 5. [`ecs`] — the ECS instance RAM role from the metadata service;
//! 6. [`uri`] — `ALIBABA_CLOUD_CREDENTIALS_URI`.
//!
//! [`chain::load`] picks the first source that is configured. Unlike the official SDKs, a source
//! that is configured but broken stops the chain with its error rather than falling through to a
//! different identity. Temporary credentials (OIDC, ECS, URI, a RamRoleArn profile) are renewed in
//! the background by [`renew`].

pub mod chain;
mod ecs;
mod ini;
mod oidc;
mod profile;
pub mod renew;
mod uri;

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

/// An AccessKey pair, optionally with the STS token that must accompany a temporary key.
///
/// `Debug` never shows the secret or the token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    /// When temporary credentials stop working; `None` for a permanent AccessKey.
    expiration: Option<DateTime<Utc>>,
    source: &'static str,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: Option<SecretString>,
        source: &'static str,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            expiration: None,
            source,
        }
    }

    /// The same credentials, temporary until `expiration`.
    #[must_use]
    pub fn expiring(mut self, expiration: DateTime<Utc>) -> Self {
        self.expiration = Some(expiration);
        self
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret, for the signer only.
    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    /// The STS token, sent as the `SecurityToken` request parameter when present.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token
            .as_ref()
            .map(ExposeSecret::expose_secret)
    }

    pub fn expiration(&self) -> Option<DateTime<Utc>> {
        self.expiration
    }

    /// Which source produced these credentials, e.g. `environment`.
    pub fn source(&self) -> &'static str {
        self.source
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"** redacted **")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expiration", &self.expiration)
            .field("source", &self.source)
            .finish()
    }
}

/// Hands out the credentials that sign `AssumeRole`.
#[derive(Debug, Clone)]
pub enum CredentialsProvider {
    /// Fixed credentials: environment, config file, an AK or StsToken profile, the dev emulator.
    Static(Credentials),
    /// Temporary credentials kept fresh by a background task.
    Renewing(renew::Renewing),
}

impl CredentialsProvider {
    /// The credentials to sign the next request with. Returns at once while the current ones
    /// are valid; waits (bounded) only when none are.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Renewing(renewing) => renewing.credentials().await,
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            Self::Static(credentials) => credentials.source(),
            Self::Renewing(renewing) => renewing.source(),
        }
    }
}

/// No valid base credentials right now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no valid credentials from `{source_name}`: {reason}")]
pub struct CredentialsError {
    pub source_name: &'static str,
    pub reason: String,
}

/// A configured source that cannot deliver: the chain stops here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
}

impl SourceError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A source's answer when the chain asks it.
enum Detect<T> {
    /// Not configured here; the reason goes into the chain report.
    Skip(String),
    Use(T),
}

/// What a profile (CLI or INI file) asks for, in the modes that make sense for a server.
enum ProfileKind {
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

/// What a source hands the chain.
enum Found {
    Static(Credentials),
    /// A renewing source, with the first credentials if detection already fetched them.
    Temporary(Box<renew::Temporary>, Option<Credentials>),
}

/// What the chain's sources may need besides the environment.
struct Context<'a> {
    env: &'a std::collections::HashMap<String, String>,
    sts: &'a crate::sts::StsClient,
    metadata_endpoint: &'a reqwest::Url,
}

impl ProfileKind {
    /// Turns a profile into credentials or a renewing source; `what` names the profile for errors.
    fn build(
        self,
        source: &'static str,
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
                if !crate::sts::names::valid_role_arn(&role_arn) {
                    return Err(SourceError::new(format!(
                        "{what}: {role_arn:?} is not a RAM role ARN"
                    )));
                }
                let session_name = session_name
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "stsvend".to_owned());
                if !crate::sts::names::valid_session_name(&session_name) {
                    return Err(SourceError::new(format!(
                        "{what}: session name {session_name:?} must be 2-32 of A-Z a-z 0-9 . @ _ -"
                    )));
                }
                let duration_seconds = duration_seconds.filter(|d| *d > 0).unwrap_or(3600);
                if !(900..=43200).contains(&duration_seconds) {
                    return Err(SourceError::new(format!(
                        "{what}: duration {duration_seconds} is outside 900-43200 seconds"
                    )));
                }
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
                            role_arn,
                            role_session_name: session_name,
                            duration_seconds,
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

/// Short HTTP timeouts for local endpoints (metadata service, credentials URI), never proxied:
/// the metadata service must be reached directly, and off-cloud it must fail fast.
fn local_http_client(
    connect: std::time::Duration,
    total: std::time::Duration,
) -> Result<reqwest::Client, SourceError> {
    crate::sts::client::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("stsvend/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .timeout(total)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SourceError::new(format!("cannot build an HTTP client: {e}")))
}

/// Reads a local endpoint's answer: at most 64 KiB, and an error text without the URL.
async fn read_small_body(response: reqwest::Response) -> Result<Vec<u8>, String> {
    crate::outbound::read_capped(response, 64 * 1024)
        .await
        .map_err(|e| match e {
            crate::outbound::BodyError::TooLarge => "answered a body larger than 64 KiB".to_owned(),
            crate::outbound::BodyError::Transport(e) => crate::outbound::error_text(e),
        })
}

/// The JSON both the metadata service and a credentials URI answer with:
/// `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}`.
fn credentials_from_json(bytes: &[u8], source: &'static str) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        code: Option<String>,
        access_key_id: Option<String>,
        access_key_secret: Option<String>,
        security_token: Option<String>,
        expiration: Option<String>,
    }
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|_| "answered something that is not a JSON object".to_owned())?;
    if body.code.as_deref() != Some("Success") {
        let code: String = body.code.unwrap_or_default().chars().take(60).collect();
        return Err(format!("answered Code {code:?}, not \"Success\""));
    }
    let (Some(id), Some(secret), Some(token), Some(expiration)) = (
        body.access_key_id.filter(|v| !v.is_empty()),
        body.access_key_secret.filter(|v| !v.is_empty()),
        body.security_token.filter(|v| !v.is_empty()),
        body.expiration,
    ) else {
        return Err(
            "the answer lacks AccessKeyId, AccessKeySecret, SecurityToken or Expiration".to_owned(),
        );
    };
    let expiration = crate::sts::response::parse_expiration(&expiration)
        .ok_or_else(|| "Expiration is not a UTC time like 2026-11-26T12:00:00Z".to_owned())?;
    Ok(Credentials::new(
        id,
        SecretString::from(secret),
        Some(SecretString::from(token)),
        source,
    )
    .expiring(expiration))
}

/// Whether an environment flag is set to true (`true`, case-insensitive, as the SDKs read it).
fn flag(env: &std::collections::HashMap<String, String>, name: &str) -> bool {
    env.get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A non-empty environment value.
fn var<'a>(env: &'a std::collections::HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_uri_answers_are_checked() {
        let ok = br#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-11-26T12:00:00Z","LastUpdated":"x"}"#;
        let credentials = credentials_from_json(ok, "test").unwrap();
        assert_eq!(credentials.access_key_id(), "STS.a");
        assert!(credentials.expiration().is_some());
        let cases: [(&[u8], &str); 4] = [
            (br#"{"Code":"Failed"}"#, "not \"Success\""),
            (br#"{"Code":"Success","AccessKeyId":"STS.a"}"#, "lacks"),
            (b"<html>", "not a JSON object"),
            (br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"later"}"#, "Expiration"),
        ];
        for (body, expected) in cases {
            let error = credentials_from_json(body, "test").unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secret_and_token() {
        let credentials = Credentials::new(
            "LTAI-id",
            SecretString::from("very-secret-value"),
            Some(SecretString::from("token-value")),
            "environment",
        );
        let shown = format!(
            "{credentials:?} {:?}",
            CredentialsProvider::Static(credentials.clone())
        );
        assert!(shown.contains("LTAI-id"));
        assert!(!shown.contains("very-secret-value"));
        assert!(!shown.contains("token-value"));
    }
}
