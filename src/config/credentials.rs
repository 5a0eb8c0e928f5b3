//! The service's own AccessKey, when the environment (the official SDKs' variable names) or the
//! file gives one; otherwise the credential chain looks at its other sources.

use secrecy::SecretString;

use super::problems::Problems;
use super::raw::Raw;
use super::setting::Place;
use super::settings::Key;
use crate::credentials::{Credentials, Origin};

pub(super) fn parse(
    raw: &Raw,
    dev: bool,
    warnings: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<Credentials> {
    let id = raw.get(Key::AccessKeyId);
    let secret = raw.get(Key::AccessKeySecret);
    if dev {
        if id.is_some() || secret.is_some() {
            warnings.push(
                "AccessKey settings are ignored by `stsvend dev`; the emulator issues its own"
                    .to_owned(),
            );
        }
        return None;
    }
    let token = raw.get(Key::SecurityToken);
    match (id, secret) {
        (Some(id), Some(secret)) => {
            let id_ok = id.value.len() <= 128 && id.value.chars().all(|c| c.is_ascii_graphic());
            if !id_ok {
                problems.add(
                    &id.origin,
                    "must be an AccessKey id (printable ASCII, no spaces)",
                );
                return None;
            }
            Some(Credentials::new(
                id.value.clone(),
                SecretString::from(secret.value.clone()),
                token.map(|t| SecretString::from(t.value.clone())),
                match id.place {
                    Place::Environment => Origin::Environment,
                    Place::ConfigFile | Place::Default => Origin::ConfigFile,
                },
            ))
        }
        (Some(id), None) => {
            problems.add(
                &id.origin,
                "is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not; set both",
            );
            None
        }
        (None, Some(secret)) => {
            problems.add(
                &secret.origin,
                "is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not; set both",
            );
            None
        }
        (None, None) => {
            // Not an error: the credential chain looks at the other sources.
            if let Some(token) = token {
                problems.add(
                    &token.origin,
                    "is set without ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                );
            }
            None
        }
    }
}
