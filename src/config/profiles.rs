//! Every profile: `stsvend dev`'s defaults filled in, at least one required, each parsed, and
//! the start-up warnings they deserve.

use std::collections::BTreeMap;

use super::problems::Problems;
use super::profile;
use super::raw::RawProfile;
use super::setting::{Place, Setting};
use super::settings::Key;
use super::validated::{Profile, Scope};
use crate::profile_name::{DEFAULT_PROFILE, valid_profile_name};

/// What `stsvend dev` assumes when nothing is configured, so that one command works.
pub const DEV_ROLE_ARN: &str = "acs:ram::1234567890123456:role/stsvend-dev";
pub const DEV_LOGSTORE: &str = "dev-project/dev-logstore";

/// The profiles, sorted by name.
pub(super) fn parse(
    mut raw: BTreeMap<String, RawProfile>,
    dev: bool,
    min_remaining: Option<u64>,
    ipv6_prefix: u8,
    warnings: &mut Vec<String>,
    problems: &mut Problems,
) -> Vec<Profile> {
    if dev {
        fill_dev_defaults(raw.entry(DEFAULT_PROFILE.to_owned()).or_default());
    }
    if raw.is_empty() {
        problems.add(
            format!("`{}`", Key::RoleArn.spec().env),
            "is required: the ARN of the RAM role to assume, like acs:ram::1234567890123456:role/sls-web-tracking (or declare [profiles.NAME] tables in the config file)",
        );
    }
    let mut profiles = Vec::new();
    for (name, raw_profile) in raw {
        // A name the file got wrong is already reported; its settings' problems would only
        // repeat a name that may not even fit on a line (found by `tests/fuzz`).
        if !valid_profile_name(&name) {
            continue;
        }
        if let Some(profile) =
            profile::parse(&name, &raw_profile, min_remaining, ipv6_prefix, problems)
        {
            warnings.extend(profile_warnings(&profile));
            profiles.push(profile);
        }
    }
    profiles
}

/// `stsvend dev` works with nothing configured: a made-up role and a logstore of its sink.
fn fill_dev_defaults(default: &mut RawProfile) {
    let dev_default = |value: &str| Setting {
        origin: "dev default".to_owned(),
        place: Place::Default,
        value: value.to_owned(),
    };
    if default.get(Key::RoleArn).is_none() {
        default.0.insert(Key::RoleArn, dev_default(DEV_ROLE_ARN));
    }
    if default.get(Key::Logstore).is_none() && default.get(Key::Policy).is_none() {
        default.0.insert(Key::Logstore, dev_default(DEV_LOGSTORE));
    }
}

/// What is allowed but worth telling the operator about a profile.
fn profile_warnings(profile: &Profile) -> Vec<String> {
    let name = &profile.name;
    let mut warnings = Vec::new();
    if profile.scope == Scope::Unrestricted {
        warnings.push(format!(
            "profile `{name}` has neither a logstore nor a policy: its tokens carry every permission of role {}; set STSVEND_LOGSTORE=project/logstore to allow only log uploads",
            profile.call.role_arn
        ));
    }
    if let Some(jwt) = profile
        .access
        .jwt
        .as_ref()
        .filter(|j| j.accept_any_audience)
    {
        warnings.push(format!(
            "profile `{name}` accepts JWTs for any audience{} (jwt_accept_any_audience): a token your identity provider issued for another app works here too",
            if jwt.issuer.is_none() { " and from any issuer its keys verify" } else { "" }
        ));
    }
    warnings
}
