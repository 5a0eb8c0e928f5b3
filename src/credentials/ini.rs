//! The shared credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//! `~/.alibabacloud/credentials.ini` (the Python SDK's default name).
//!
//! The section is `ALIBABA_CLOUD_PROFILE` or `default`; `type` is `access_key`, `ram_role_arn` or
//! `ecs_ram_role`. A section with `enable = false` is skipped, as the SDKs do.

use std::path::PathBuf;

use super::env::var;
use super::error::SourceError;
use super::found::Found;
use super::origin::Origin;
use super::profile_kind::ProfileKind;
use super::source::{Context, Detect};

pub(super) fn detect(ctx: &Context<'_>) -> Result<Detect<(Found, String)>, SourceError> {
    let (path, explicit) = match var(ctx.env, "ALIBABA_CLOUD_CREDENTIALS_FILE") {
        Some(path) => (PathBuf::from(path), true),
        None => match ctx.home {
            Some(home) => (home.join(".alibabacloud").join("credentials.ini"), false),
            None => return Ok(Detect::Skip("HOME is not set".to_owned())),
        },
    };
    let shown = path.display();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Detect::Skip(format!("`{shown}` does not exist")));
        }
        Err(e) => {
            let by = if explicit {
                " (ALIBABA_CLOUD_CREDENTIALS_FILE)"
            } else {
                ""
            };
            return Err(SourceError::new(format!("cannot read `{shown}`{by}: {e}")));
        }
    };
    let ini = ini::Ini::load_from_str(&text)
        .map_err(|e| SourceError::new(format!("`{shown}` is not a valid INI file: {e}")))?;
    let name = var(ctx.env, "ALIBABA_CLOUD_PROFILE").unwrap_or("default");
    let Some(section) = ini.section(Some(name)) else {
        return Err(SourceError::new(format!(
            "`{shown}` has no section [{name}]"
        )));
    };
    if section
        .get("enable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        return Ok(Detect::Skip(format!(
            "section [{name}] of `{shown}` has enable = false"
        )));
    }
    let get = |key: &str| {
        section
            .get(key)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let what = format!("section [{name}] of `{shown}`");
    let kind_name = get("type");
    let kind = match kind_name.as_str() {
        "access_key" => ProfileKind::AccessKey {
            id: get("access_key_id"),
            secret: get("access_key_secret"),
        },
        "ram_role_arn" => ProfileKind::RamRoleArn {
            id: get("access_key_id"),
            secret: get("access_key_secret"),
            role_arn: get("role_arn"),
            session_name: Some(get("role_session_name")),
            duration_seconds: get("duration_seconds").parse().ok(),
        },
        "ecs_ram_role" => ProfileKind::EcsRamRole {
            role: get("role_name"),
        },
        other => {
            return Err(SourceError::new(format!(
                "{what} has type `{other}`; stsvend supports access_key, ram_role_arn and ecs_ram_role"
            )));
        }
    };
    let description = format!("{what} (type {kind_name})");
    Ok(Detect::Use((
        kind.build(Origin::CredentialsFile, &what, ctx)?,
        description,
    )))
}
