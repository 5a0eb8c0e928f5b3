//! ACK RRSA: `AssumeRoleWithOIDC` with the pod's projected service-account token.
//!
//! Configured by `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//! `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (all three, as ACK's webhook injects them), optionally
//! `ALIBABA_CLOUD_ROLE_SESSION_NAME`. The token file is re-read on every call because the kubelet
//! rotates it. The call is unsigned and goes to the base credentials' STS endpoint
//! (`ALIBABA_CLOUD_STS_REGION`'s, else the profiles'). A credentials-file section of type
//! `oidc_role_arn` makes the same call ([`Oidc::new`]).

use std::collections::HashMap;
use std::path::PathBuf;

use super::env::var;
use super::error::SourceError;
use super::origin::Origin;
use super::value::Credentials;
use crate::sts::StsClient;
use crate::sts::names::{DurationSeconds, RoleArn, SessionName};
use crate::sts::request::AssumeRoleWithOidc;

const VARS: [&str; 3] = [
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
];
/// Base credentials are renewed well before this; an hour is what the SDKs ask for.
const DURATION_SECONDS: u32 = DurationSeconds::DEFAULT.get();
/// STS accepts OIDC tokens of 4 to 20000 characters.
const MAX_TOKEN_BYTES: u64 = 20_000;

#[derive(Debug)]
pub struct Oidc {
    /// What the credentials are counted, logged and reported under.
    origin: Origin,
    client: StsClient,
    fields: Fields,
}

/// `Ok(None)` when none of the three variables is set.
pub(super) fn detect(
    env: &HashMap<String, String>,
    client: &StsClient,
) -> Result<Option<Oidc>, SourceError> {
    let values: Vec<Option<&str>> = VARS.iter().map(|name| var(env, name)).collect();
    let (Some(role_arn), Some(provider_arn), Some(token_file)) = (values[0], values[1], values[2])
    else {
        if values.iter().any(Option::is_some) {
            let missing: Vec<&str> = VARS
                .iter()
                .zip(&values)
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| *name)
                .collect();
            return Err(SourceError::new(format!(
                "RRSA is partly configured: {} not set (all three of {} are needed)",
                missing.join(" and "),
                VARS.join(", ")
            )));
        }
        return Ok(None);
    };
    if RoleArn::parse(role_arn).is_none() {
        return Err(SourceError::new(format!(
            "ALIBABA_CLOUD_ROLE_ARN must be a RAM role ARN like acs:ram::1234567890123456:role/name, got {role_arn:?}"
        )));
    }
    let session_name = var(env, "ALIBABA_CLOUD_ROLE_SESSION_NAME").unwrap_or(SessionName::DEFAULT);
    if SessionName::parse(session_name).is_none() {
        return Err(SourceError::new(format!(
            "ALIBABA_CLOUD_ROLE_SESSION_NAME must be {}, got {session_name:?}",
            SessionName::RULE
        )));
    }
    let fields = Fields {
        role_arn: role_arn.to_owned(),
        provider_arn: provider_arn.to_owned(),
        token_file: token_file.into(),
        token_setting: "ALIBABA_CLOUD_OIDC_TOKEN_FILE".to_owned(),
        session_name: session_name.to_owned(),
    };
    Oidc::new(Origin::Oidc, client, fields).map(Some)
}

/// What an `AssumeRoleWithOIDC` source is configured with, already checked.
#[derive(Debug)]
pub(super) struct Fields {
    pub(super) role_arn: String,
    pub(super) provider_arn: String,
    pub(super) token_file: PathBuf,
    /// Where the token file's path was given, for the errors reading it.
    pub(super) token_setting: String,
    pub(super) session_name: String,
}

impl Oidc {
    /// Reads the token once: an unreadable token file is found now, not at the first call.
    pub(super) fn new(
        origin: Origin,
        client: &StsClient,
        fields: Fields,
    ) -> Result<Self, SourceError> {
        let oidc = Self {
            origin,
            client: client.clone(),
            fields,
        };
        oidc.read_token()?;
        Ok(oidc)
    }

    /// The name renewals are counted and logged under.
    pub(super) fn source(&self) -> &'static str {
        self.origin.as_str()
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "AssumeRoleWithOIDC for {} with the token in `{}`",
            self.fields.role_arn,
            self.fields.token_file.display()
        )
    }

    fn read_token(&self) -> Result<String, SourceError> {
        let path = self.fields.token_file.display();
        let by = &self.fields.token_setting;
        let metadata = std::fs::metadata(&self.fields.token_file).map_err(|e| {
            SourceError::new(format!("cannot read OIDC token file `{path}` ({by}): {e}"))
        })?;
        if metadata.len() > MAX_TOKEN_BYTES {
            return Err(SourceError::new(format!(
                "OIDC token file `{path}` is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let token = std::fs::read_to_string(&self.fields.token_file).map_err(|e| {
            SourceError::new(format!("cannot read OIDC token file `{path}` ({by}): {e}"))
        })?;
        let token = token.trim();
        if token.len() < 4 {
            return Err(SourceError::new(format!(
                "OIDC token file `{path}` is empty"
            )));
        }
        Ok(token.to_owned())
    }

    /// Reads the current token and exchanges it for credentials.
    pub(super) async fn fetch(&self) -> Result<Credentials, SourceError> {
        let call = AssumeRoleWithOidc {
            role_arn: self.fields.role_arn.clone(),
            oidc_provider_arn: self.fields.provider_arn.clone(),
            oidc_token: self.read_token()?,
            role_session_name: self.fields.session_name.clone(),
            duration_seconds: DURATION_SECONDS,
        };
        self.client
            .assume_role_with_oidc(&call)
            .await
            .map(|issued| issued.into_credentials(self.origin))
            .map_err(|e| SourceError::new(format!("AssumeRoleWithOIDC failed: {e}")))
    }
}
