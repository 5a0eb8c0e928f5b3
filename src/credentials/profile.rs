//! The Alibaba Cloud CLI's profile file, `~/.aliyun/config.json`.
//!
//! The profile is `ALIBABA_CLOUD_PROFILE` or the file's `current`. Modes `AK`, `StsToken`,
//! `RamRoleArn` and `EcsRamRole` are supported; the rest (OIDC, ChainableRamRoleArn, …) are
//! refused by name. `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true` skips the file.

use serde::Deserialize;

use super::env::{flag, var};
use super::error::SourceError;
use super::found::Found;
use super::origin::Origin;
use super::profile_kind::ProfileKind;
use super::source::{Context, Detect};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    sts_token: String,
    #[serde(default)]
    ram_role_name: String,
    #[serde(default)]
    ram_role_arn: String,
    #[serde(default)]
    ram_session_name: String,
    #[serde(default)]
    expired_seconds: u32,
}

pub(super) fn detect(ctx: &Context<'_>) -> Result<Detect<(Found, String)>, SourceError> {
    if flag(ctx.env, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
        return Ok(Detect::Skip(
            "turned off by ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true".to_owned(),
        ));
    }
    let Some(home) = ctx.home else {
        return Ok(Detect::Skip("HOME is not set".to_owned()));
    };
    let path = home.join(".aliyun").join("config.json");
    let shown = path.display();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Detect::Skip(format!("`{shown}` does not exist")));
        }
        Err(e) => return Err(SourceError::new(format!("cannot read `{shown}`: {e}"))),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| {
        SourceError::new(format!("`{shown}` is not a valid CLI configuration: {e}"))
    })?;
    let name = var(ctx.env, "ALIBABA_CLOUD_PROFILE")
        .map(str::to_owned)
        .or_else(|| Some(file.current.clone()).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "default".to_owned());
    let Some(profile) = file.profiles.into_iter().find(|p| p.name == name) else {
        return Err(SourceError::new(format!(
            "`{shown}` has no profile named `{name}`"
        )));
    };
    let what = format!("profile `{name}` in `{shown}`");
    let kind = match profile.mode.as_str() {
        "AK" => ProfileKind::AccessKey {
            id: profile.access_key_id,
            secret: profile.access_key_secret,
        },
        "StsToken" => ProfileKind::StsToken {
            id: profile.access_key_id,
            secret: profile.access_key_secret,
            token: profile.sts_token,
        },
        "RamRoleArn" => ProfileKind::RamRoleArn {
            id: profile.access_key_id,
            secret: profile.access_key_secret,
            role_arn: profile.ram_role_arn,
            session_name: Some(profile.ram_session_name),
            duration_seconds: Some(profile.expired_seconds),
        },
        "EcsRamRole" => ProfileKind::EcsRamRole {
            role: profile.ram_role_name,
        },
        other => {
            return Err(SourceError::new(format!(
                "{what} has mode `{other}`; stsvend supports AK, StsToken, RamRoleArn and EcsRamRole"
            )));
        }
    };
    let mode = format!("{what} (mode {})", profile.mode);
    Ok(Detect::Use((
        kind.build(Origin::CliProfile, &what, ctx)?,
        mode,
    )))
}
