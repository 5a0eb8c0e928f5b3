//! Parsers of the kinds of value several settings share: addresses, base URLs, bounded whole
//! numbers, flags. Each reports its own problem, naming the setting and what would be valid.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use reqwest::Url;

use super::problems::{Problems, shown};
use super::setting::Setting;

/// An `IP:PORT` setting.
pub(super) fn listen(setting: &Setting, problems: &mut Problems) -> Option<SocketAddr> {
    let text = setting.value.as_str();
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                &setting.origin,
                format!(
                    "must be IP:PORT such as 0.0.0.0:8080 or [::]:8080, got {}",
                    shown(text)
                ),
            );
            None
        }
    }
}

/// A base URL: https, or plain http for loopback hosts and `http_host` (the metadata service is
/// plain HTTP on a link-local address by design).
pub(super) fn endpoint(
    setting: &Setting,
    http_host: Option<&str>,
    problems: &mut Problems,
) -> Option<Url> {
    // A URL with `user:password@` must not have its password echoed to the terminal.
    let value = if setting.value.contains('@') {
        "a URL with user information (not shown)".to_owned()
    } else {
        shown(&setting.value)
    };
    let fail = |problems: &mut Problems, why: &str| {
        problems.add(&setting.origin, format!("{why}, got {value}"));
        None
    };
    let Ok(url) = Url::parse(setting.value.trim()) else {
        return fail(
            problems,
            "must be a URL such as https://sts-vpc.cn-shanghai.aliyuncs.com",
        );
    };
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return fail(
            problems,
            "must be a plain base URL without credentials, query or fragment",
        );
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return fail(problems, "must name a host"),
    };
    let plain_ok = loopback || http_host.is_some_and(|h| url.host_str() == Some(h));
    match url.scheme() {
        "https" => Some(url),
        "http" if plain_ok => Some(url),
        "http" => fail(
            problems,
            "must use https:// (plain http:// is allowed only for loopback hosts such as a local emulator, because the request carries credentials)",
        ),
        _ => fail(problems, "must be an https:// URL"),
    }
}

/// A whole number within `range`, or a problem saying it must be a whole number `what` (the
/// range in words). `None` without a problem when there is no setting (nor default).
pub(super) fn whole_number<T>(
    setting: Option<&Setting>,
    range: RangeInclusive<T>,
    what: &str,
    problems: &mut Problems,
) -> Option<T>
where
    T: std::str::FromStr + PartialOrd,
{
    let setting = setting?;
    let parsed = setting
        .value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n));
    if parsed.is_none() {
        problems.add(
            &setting.origin,
            format!(
                "must be a whole number {what}, got {}",
                shown(&setting.value)
            ),
        );
    }
    parsed
}

/// A `true`/`false` setting; false when unset or invalid (then with a problem).
pub(super) fn flag(setting: Option<&Setting>, problems: &mut Problems) -> bool {
    let Some(s) = setting else {
        return false;
    };
    match s.value.trim().to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            problems.add(
                &s.origin,
                format!("must be true or false, got {}", shown(&s.value)),
            );
            false
        }
    }
}

/// A list setting's items: comma-separated, trimmed, empty ones skipped.
pub(super) fn items(setting: &Setting) -> impl Iterator<Item = &str> {
    setting
        .value
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
}
