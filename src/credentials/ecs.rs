//! The ECS instance RAM role, from the metadata service (PROTOCOL.md §5).
//!
//! Hardened mode first: `PUT /latest/api/token` with a TTL header, then every `GET` carries the
//! token. If the token cannot be had, plain mode is used unless `ALIBABA_CLOUD_IMDSV1_DISABLED=true`.
//! The role name comes from `ALIBABA_CLOUD_ECS_METADATA` or is discovered.
//! `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true` turns the source off. Off ECS the metadata address
//! does not answer; short timeouts keep that from delaying start-up, and it counts as
//! "not configured" unless a role name was given explicitly.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::env::{flag, var};
use super::error::SourceError;
use super::local::{credentials_from_json, local_http_client, read_small_body};
use super::origin::Origin;
use super::source::Detect;
use super::value::Credentials;
use crate::outbound::error_text as http_error;

/// The name renewals are counted and logged under.
pub(super) const SOURCE: &str = Origin::EcsRamRole.as_str();
const TOKEN_TTL_SECONDS: &str = "21600";
const CREDENTIALS_PATH: &str = "latest/meta-data/ram/security-credentials/";

#[derive(Debug)]
pub struct Ecs {
    http: reqwest::Client,
    endpoint: Url,
    role: String,
    imdsv1_disabled: bool,
}

/// What one metadata GET ran into.
enum Get {
    Body(String),
    NotFound,
}

/// Connection-level failure (nothing answers) versus an answer we cannot use.
enum Failure {
    Unreachable(String),
    Broken(String),
}

/// Skips when the source is turned off, nothing answers at the metadata address, or no role is
/// attached to the instance. On success also returns the first credentials.
pub(super) async fn detect(
    env: &HashMap<String, String>,
    endpoint: &Url,
) -> Result<Detect<(Ecs, Credentials)>, SourceError> {
    if flag(env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
        return Ok(Detect::Skip(
            "turned off by ALIBABA_CLOUD_ECS_METADATA_DISABLED=true".to_owned(),
        ));
    }
    let explicit = var(env, "ALIBABA_CLOUD_ECS_METADATA").map(str::to_owned);
    let imdsv1_disabled = flag(env, "ALIBABA_CLOUD_IMDSV1_DISABLED");
    // The SDKs' timeouts: off ECS this costs at most a second at start-up.
    let http = local_http_client(Duration::from_secs(1), Duration::from_secs(2))?;
    let unreachable = |why: String| match &explicit {
        Some(role) => Err(SourceError::new(format!(
            "ALIBABA_CLOUD_ECS_METADATA names role `{role}` but the metadata service at {endpoint} does not answer: {why}"
        ))),
        None => Ok(Detect::Skip(format!(
            "no metadata service answers at {endpoint} ({why}): not an ECS instance"
        ))),
    };
    let token = match session_token(&http, endpoint, imdsv1_disabled).await {
        Ok(token) => token,
        Err(Failure::Unreachable(why)) => return unreachable(why),
        Err(Failure::Broken(why)) => {
            return Err(SourceError::new(format!("metadata service: {why}")));
        }
    };
    let role = match explicit.clone() {
        Some(role) => role,
        None => match get(&http, endpoint, CREDENTIALS_PATH, token.as_deref()).await {
            Ok(Get::Body(body)) => match body.lines().map(str::trim).find(|l| !l.is_empty()) {
                Some(role) => role.to_owned(),
                None => {
                    return Ok(Detect::Skip(
                        "the metadata service lists no RAM role for this instance".to_owned(),
                    ));
                }
            },
            Ok(Get::NotFound) => {
                return Ok(Detect::Skip(
                    "the metadata service reports no RAM role attached to this instance".to_owned(),
                ));
            }
            Err(Failure::Unreachable(why)) => return unreachable(why),
            Err(Failure::Broken(why)) => {
                return Err(SourceError::new(format!("metadata service: {why}")));
            }
        },
    };
    let role_ok = (1..=64).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !role_ok {
        return Err(SourceError::new(format!(
            "the RAM role name {:?} is not a valid role name",
            role.chars().take(64).collect::<String>()
        )));
    }
    let ecs = Ecs {
        http,
        endpoint: endpoint.clone(),
        role,
        imdsv1_disabled,
    };
    let first = ecs.fetch().await?;
    Ok(Detect::Use((ecs, first)))
}

impl Ecs {
    /// A named role, as an `EcsRamRole` profile gives it; nothing is fetched yet.
    pub(super) fn with_role(
        env: &HashMap<String, String>,
        endpoint: &Url,
        role: &str,
    ) -> Result<Self, SourceError> {
        Ok(Self {
            http: local_http_client(Duration::from_secs(1), Duration::from_secs(2))?,
            endpoint: endpoint.clone(),
            role: role.to_owned(),
            imdsv1_disabled: flag(env, "ALIBABA_CLOUD_IMDSV1_DISABLED"),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "role `{}` from the metadata service at {}",
            self.role, self.endpoint
        )
    }

    pub(super) async fn fetch(&self) -> Result<Credentials, SourceError> {
        let token = session_token(&self.http, &self.endpoint, self.imdsv1_disabled)
            .await
            .map_err(|f| SourceError::new(failure_text(f)))?;
        let path = format!("{CREDENTIALS_PATH}{}", self.role);
        match get(&self.http, &self.endpoint, &path, token.as_deref()).await {
            Ok(Get::Body(body)) => credentials_from_json(body.as_bytes(), Origin::EcsRamRole)
                .map_err(|why| {
                    SourceError::new(format!("metadata service {why} for role `{}`", self.role))
                }),
            Ok(Get::NotFound) => Err(SourceError::new(format!(
                "the metadata service has no credentials for role `{}` (is it attached to this instance?)",
                self.role
            ))),
            Err(f) => Err(SourceError::new(failure_text(f))),
        }
    }
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Unreachable(why) => format!("metadata service unreachable: {why}"),
        Failure::Broken(why) => format!("metadata service: {why}"),
    }
}

/// The hardened-mode token, or `None` to use plain mode.
async fn session_token(
    http: &reqwest::Client,
    endpoint: &Url,
    imdsv1_disabled: bool,
) -> Result<Option<String>, Failure> {
    let url = endpoint
        .join("latest/api/token")
        .map_err(|e| Failure::Broken(e.to_string()))?;
    let result = http
        .put(url)
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
        .send()
        .await;
    let outcome = match result {
        Ok(response) if response.status().is_success() => match text(response).await {
            Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().to_owned())),
            Ok(_) => Failure::Broken("the metadata token answer was empty".to_owned()),
            Err(why) => Failure::Broken(why),
        },
        Ok(response) => Failure::Broken(format!(
            "the metadata token request answered HTTP {}",
            response.status().as_u16()
        )),
        Err(e) if e.is_connect() || e.is_timeout() => Failure::Unreachable(http_error(e)),
        Err(e) => Failure::Broken(http_error(e)),
    };
    match outcome {
        // Nothing answers: not an ECS instance (or a broken network) either way.
        Failure::Unreachable(_) => Err(outcome),
        Failure::Broken(why) if imdsv1_disabled => Err(Failure::Broken(format!(
            "{why}; plain mode is off (ALIBABA_CLOUD_IMDSV1_DISABLED=true)"
        ))),
        Failure::Broken(why) => {
            tracing::debug!(reason = %why, "metadata token unavailable; using plain mode");
            Ok(None)
        }
    }
}

async fn get(
    http: &reqwest::Client,
    endpoint: &Url,
    path: &str,
    token: Option<&str>,
) -> Result<Get, Failure> {
    let url = endpoint
        .join(path)
        .map_err(|e| Failure::Broken(e.to_string()))?;
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.header("X-aliyun-ecs-metadata-token", token);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_connect() || e.is_timeout() {
            Failure::Unreachable(http_error(e))
        } else {
            Failure::Broken(http_error(e))
        }
    })?;
    match response.status() {
        StatusCode::OK => text(response).await.map(Get::Body).map_err(Failure::Broken),
        StatusCode::NOT_FOUND => Ok(Get::NotFound),
        status => Err(Failure::Broken(format!(
            "`/{path}` answered HTTP {}",
            status.as_u16()
        ))),
    }
}

/// A metadata answer as text (capped, like every answer we read).
async fn text(response: reqwest::Response) -> Result<String, String> {
    let bytes = read_small_body(response).await?;
    String::from_utf8(bytes).map_err(|_| "answered text that is not UTF-8".to_owned())
}
