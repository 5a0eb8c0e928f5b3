//! One profile: the role, session name and duration of its `AssumeRole`, the scope of its
//! session policy, and who may ask (`access`).

use super::access;
use super::problems::{Problems, shown};
use super::raw::{RawProfile, profile_origin};
use super::settings::Key;
use super::validated::{Profile, Scope};
use crate::profile_name::DEFAULT_PROFILE;
use crate::sts::AssumeRole;
use crate::sts::names::{DurationSeconds, RoleArn, SessionName};
use crate::sts::policy;

/// The refresher needs this much of a token's life between "fetched" and "too old to serve".
pub(super) const MIN_SERVE_WINDOW_SECONDS: u64 = 60;

pub(super) fn parse(
    name: &str,
    raw: &RawProfile,
    min_remaining: Option<u64>,
    ipv6_prefix: u8,
    problems: &mut Problems,
) -> Option<Profile> {
    let role_arn = role_arn(name, raw, problems);
    let session_name = session_name(name, raw, problems);
    let duration = duration(name, raw, problems);
    if let (Some(duration), Some(min_remaining)) = (duration, min_remaining) {
        check_serve_window(name, raw, duration, min_remaining, problems);
    }
    let (policy, scope) = scope(raw, problems);
    let access = access::parse(name, raw, problems);
    if let (Some(access), Some(scope)) = (&access, &scope)
        && access.bind_source_ip
    {
        check_bound_policy_fits(name, raw, policy.as_deref(), scope, ipv6_prefix, problems);
    }
    Some(Profile {
        name: name.to_owned(),
        call: AssumeRole {
            role_arn: role_arn?.into(),
            role_session_name: session_name?.into(),
            duration_seconds: duration?.get(),
            policy,
        },
        scope: scope?,
        access: access?,
    })
}

fn role_arn(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<RoleArn> {
    let Some(s) = raw.get(Key::RoleArn) else {
        problems.add(
            profile_origin(name, Key::RoleArn),
            "is required: the ARN of the RAM role this profile assumes",
        );
        return None;
    };
    let arn = RoleArn::parse(s.value.trim());
    if arn.is_none() {
        problems.add(
            &s.origin,
            format!(
                "must be a RAM role ARN like acs:ram::1234567890123456:role/sls-web-tracking, got {}",
                shown(&s.value)
            ),
        );
    }
    arn
}

fn session_name(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<SessionName> {
    let s = raw.or_default(name, Key::RoleSessionName)?;
    let session_name = SessionName::parse(&s.value);
    if session_name.is_none() {
        problems.add(
            &s.origin,
            format!("must be {}, got {}", SessionName::RULE, shown(&s.value)),
        );
    }
    session_name
}

fn duration(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<DurationSeconds> {
    let s = raw.or_default(name, Key::DurationSeconds)?;
    let duration = s
        .value
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(DurationSeconds::new);
    if duration.is_none() {
        problems.add(
            &s.origin,
            format!(
                "must be a whole number of seconds from {} to {} (and at most the role's MaxSessionDuration), got {}",
                DurationSeconds::RANGE.start(),
                DurationSeconds::RANGE.end(),
                shown(&s.value)
            ),
        );
    }
    duration
}

/// A token must stay servable for a while between being fetched and being too old to serve.
fn check_serve_window(
    name: &str,
    raw: &RawProfile,
    duration: DurationSeconds,
    min_remaining: u64,
    problems: &mut Problems,
) {
    let duration = u64::from(duration.get());
    if min_remaining + MIN_SERVE_WINDOW_SECONDS <= duration {
        return;
    }
    problems.add(
        raw.get(Key::DurationSeconds)
            .map_or_else(|| format!("profile `{name}`"), |s| s.origin.clone()),
        format!(
            "tokens last {duration}s but must keep {min_remaining}s of validity when served (STSVEND_MIN_REMAINING_SECONDS), leaving under {MIN_SERVE_WINDOW_SECONDS}s to use each one; raise the duration or lower the minimum remaining validity to at most {}",
            duration.saturating_sub(MIN_SERVE_WINDOW_SECONDS)
        ),
    );
}

/// The session policy text and what it allows: a logstore list, a whole document, or neither.
fn scope(raw: &RawProfile, problems: &mut Problems) -> (Option<String>, Option<Scope>) {
    match (raw.get(Key::Logstore), raw.get(Key::Policy)) {
        (Some(l), Some(p)) => {
            problems.add(
                &p.origin,
                format!("cannot be combined with {}: set either a logstore list or a whole policy document", l.origin),
            );
            (None, None)
        }
        (Some(l), None) => match policy::parse_logstores(&l.value).and_then(|stores| {
            let text = policy::logstore_policy(&stores)?;
            Ok((text, stores))
        }) {
            Ok((text, stores)) => (Some(text), Some(Scope::Logstores(stores))),
            Err(e) => {
                problems.add(
                    &l.origin,
                    format!("{e}; expected project/logstore[,project/logstore…]"),
                );
                (None, None)
            }
        },
        (None, Some(p)) => match policy::check_policy_document(&p.value) {
            Ok(text) => (Some(text), Some(Scope::Document)),
            Err(e) => {
                problems.add(&p.origin, format!("the policy {e}"));
                (None, None)
            }
        },
        (None, None) => (None, Some(Scope::Unrestricted)),
    }
}

/// `policy` bound as it would be for the caller whose source (an address, or an IPv6 prefix of
/// `ipv6_prefix` bits) is written longest: the one place that knows what the binder is given.
fn bound_for_the_longest_source(
    policy: Option<&str>,
    ipv6_prefix: u8,
) -> Result<String, policy::PolicyError> {
    policy::bound_to_source_network(policy, policy::longest_source_network(ipv6_prefix))
}

/// With source-IP binding, every caller's policy gets a condition on its address, and STS
/// refuses one over 2048 bytes: a policy that fits alone may not fit once bound, and every
/// caller would get a 502. Binds it, as a request would, to the longest address, through the
/// binder itself so that a change to what it adds is checked too.
fn check_bound_policy_fits(
    name: &str,
    raw: &RawProfile,
    policy: Option<&str>,
    scope: &Scope,
    ipv6_prefix: u8,
    problems: &mut Problems,
) {
    let Err(error) = bound_for_the_longest_source(policy, ipv6_prefix) else {
        return;
    };
    let source = policy::longest_source_network(ipv6_prefix);
    let setting = match scope {
        Scope::Logstores(_) => raw.get(Key::Logstore),
        Scope::Document => raw.get(Key::Policy),
        Scope::Unrestricted => raw.get(Key::BindSourceIp),
    };
    let origin = setting.map_or_else(|| format!("profile `{name}`"), |s| s.origin.clone());
    let hint = match scope {
        Scope::Logstores(_) => "list fewer logstores (or use wildcards)",
        _ => "shorten the policy",
    };
    let bind = if name == DEFAULT_PROFILE {
        "STSVEND_BIND_SOURCE_IP".to_owned()
    } else {
        format!("profiles.{name}.bind_source_ip")
    };
    problems.add(
        origin,
        format!(
            "gives a session policy that, with {bind}=true, is too long for some callers: bound to the source {source} it {error}; {hint} or turn off {bind}"
        ),
    );
}
