//! The shared credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//! `~/.alibabacloud/credentials.ini` (the Python SDK's default name).
//!
//! Read with [`super::configparser`], exactly as the Python SDK reads it. The section is
//! `ALIBABA_CLOUD_PROFILE` or `default`; `type` is `access_key`, `ram_role_arn`, `oidc_role_arn`
//! or `ecs_ram_role`. Like the SDK, stsvend does not look at an `enable` key.

use std::path::PathBuf;

use super::configparser::{self, Section};
use super::env::var;
use super::error::SourceError;
use super::found::Found;
use super::origin::Origin;
use super::profile_kind::{ProfileKind, shown as shown_value};
use super::source::{Context, Detect};

/// Larger than any credentials file; a bigger one is a mistake, not read into memory.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub(super) fn detect(ctx: &Context<'_>) -> Result<Detect<(Found, String)>, SourceError> {
    let (path, explicit) = match var(ctx.env, "ALIBABA_CLOUD_CREDENTIALS_FILE") {
        Some(path) => (PathBuf::from(path), true),
        None => match ctx.home {
            Some(home) => (home.join(".alibabacloud").join("credentials.ini"), false),
            None => return Ok(Detect::Skip("HOME is not set".to_owned())),
        },
    };
    let shown = path.display();
    let by = if explicit {
        " (ALIBABA_CLOUD_CREDENTIALS_FILE)"
    } else {
        ""
    };
    let text = match read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Detect::Skip(format!("`{shown}` does not exist")));
        }
        Err(e) => return Err(SourceError::new(format!("cannot read `{shown}`{by}: {e}"))),
    };
    let mut sections = configparser::parse(&text)
        .map_err(|e| SourceError::new(format!("`{shown}` cannot be used: {e}")))?;
    let name = var(ctx.env, "ALIBABA_CLOUD_PROFILE").unwrap_or("default");
    let Some(section) = sections.remove(name) else {
        return Err(SourceError::new(format!(
            "`{shown}` has no section [{name}]"
        )));
    };
    let what = format!("section [{name}] of `{shown}`");
    let kind_name = section.get("type").cloned().unwrap_or_default();
    let kind = kind(&kind_name, section).ok_or_else(|| {
        SourceError::new(format!(
            "{what} has type {}; stsvend supports access_key, ram_role_arn, oidc_role_arn and ecs_ram_role",
            shown_value(&kind_name)
        ))
    })?;
    let description = format!("{what} (type {kind_name})");
    Ok(Detect::Use((
        kind.build(Origin::CredentialsFile, &what, ctx)?,
        description,
    )))
}

/// Reads the file, at most [`MAX_FILE_BYTES`]; not UTF-8 is an error, as in the SDK.
fn read(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// What a section of `type` asks for, with the keys the SDK's provider reads; `None` for a
/// type stsvend does not support.
fn kind(type_name: &str, mut section: Section) -> Option<ProfileKind> {
    let mut get = |key: &str| section.remove(key).unwrap_or_default();
    Some(match type_name {
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
        "oidc_role_arn" => ProfileKind::OidcRoleArn {
            role_arn: get("role_arn"),
            provider_arn: get("oidc_provider_arn"),
            token_file: get("oidc_token_file_path"),
            session_name: get("role_session_name"),
        },
        "ecs_ram_role" => ProfileKind::EcsRamRole {
            role: get("role_name"),
        },
        _ => return None,
    })
}
