//! The variables a platform puts into the container unasked, which look like ours but are not
//! settings: Kubernetes service links (every Service of the namespace, unless the pod says
//! `enableServiceLinks: false`) and Docker's legacy `--link`s. A Service or link named
//! `stsvend`, or `stsvend-metrics` and the like, yields `STSVEND_SERVICE_HOST`,
//! `STSVEND_PORT_8080_TCP_ADDR`, `STSVEND_METRICS_SERVICE_PORT`, …
//!
//! They are ignored instead of refused, but only in the exact shapes and with the exact values
//! the platform writes (kubelet's `pkg/kubelet/envvars`, Docker's `daemon/links`), and only
//! beside the variable that shows the platform wrote the group: `<P>_SERVICE_HOST` holding an
//! IP address for a Service, `<P>_NAME` holding the link's `/container/alias` for a link. So a
//! hand-written `STSVEND_PORT=9000` or `STSVEND_SERVICE_PORT=9000` is still refused as the
//! mistake it is, and so is every near-miss such as `STSVEND_PORTS`.

use std::net::IpAddr;

/// A variable the platform injected, ignored (and logged at debug level at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The variable's name (its value is never kept: a link's `_ENV_` copies may be secrets).
    pub name: String,
    /// What injected it, such as "the Kubernetes Service `stsvend-metrics`".
    pub by: String,
}

/// Who wrote a group of variables sharing a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Kubernetes,
    Docker,
}

/// A group's prefix (`STSVEND`, `STSVEND_METRICS`) and who wrote it.
struct Group<'a> {
    prefix: &'a str,
    platform: Platform,
    /// The Service or link name, for the debug line.
    name: String,
}

/// Splits the unknown `STSVEND_` variables (name and value) into those a platform injected and
/// the others, which stay unknown.
pub(super) fn split<'a>(unknown: &[(&'a str, &'a str)]) -> (Vec<Injected>, Vec<&'a str>) {
    let groups: Vec<Group<'a>> = unknown.iter().filter_map(|&(n, v)| group(n, v)).collect();
    let mut injected = Vec::new();
    let mut others = Vec::new();
    for &(name, value) in unknown {
        let by = groups.iter().find(|g| {
            name.strip_prefix(g.prefix)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| member(rest, value, g.platform))
        });
        match by {
            Some(group) => injected.push(Injected {
                name: name.to_owned(),
                by: match group.platform {
                    Platform::Kubernetes => format!("the Kubernetes Service `{}`", group.name),
                    Platform::Docker => format!("the Docker link `{}`", group.name),
                },
            }),
            None => others.push(name),
        }
    }
    (injected, others)
}

/// The group `name` proves the platform wrote, if it is one's anchor: `<P>_SERVICE_HOST` set
/// to the Service's cluster IP, or `<P>_NAME` set to the link's `/container/alias` whose alias
/// gives `<P>` (upper case, `-` as `_`, as Docker derives it).
fn group<'a>(name: &'a str, value: &str) -> Option<Group<'a>> {
    if let Some(prefix) = name.strip_suffix("_SERVICE_HOST") {
        return (ours(prefix) && value.parse::<IpAddr>().is_ok()).then(|| Group {
            prefix,
            platform: Platform::Kubernetes,
            name: prefix.to_ascii_lowercase().replace('_', "-"),
        });
    }
    let prefix = name.strip_suffix("_NAME")?;
    let alias = value.strip_prefix('/')?.rsplit('/').next()?;
    let matches = !alias.is_empty() && alias.to_ascii_uppercase().replace('-', "_") == prefix;
    (ours(prefix) && matches).then(|| Group {
        prefix,
        platform: Platform::Docker,
        name: alias.to_owned(),
    })
}

/// A prefix from a Service or link named `stsvend` or `stsvend-…`.
fn ours(prefix: &str) -> bool {
    prefix == "STSVEND"
        || prefix
            .strip_prefix("STSVEND_")
            .is_some_and(|s| !s.is_empty())
}

/// Whether `<P>_<rest>=value` is one of the variables `platform` writes beside the anchor.
fn member(rest: &str, value: &str, platform: Platform) -> bool {
    use Platform::{Docker, Kubernetes};
    // Each named port of a Service (an IANA service name, upper case, `-` as `_`).
    if let Some(port_name) = rest.strip_prefix("SERVICE_PORT_") {
        return platform == Kubernetes && port_name_shaped(port_name) && port(value).is_some();
    }
    // A copy of each of the linked container's own variables: any name, any value.
    if let Some(variable) = rest.strip_prefix("ENV_") {
        return platform == Docker && !variable.is_empty();
    }
    // The Docker-link-style variables of each port, which both write.
    if let Some(per_port) = rest.strip_prefix("PORT_") {
        return link_port(per_port, value, platform);
    }
    match (rest, platform) {
        // The anchors themselves (their values were checked when the group was found).
        ("SERVICE_HOST", Kubernetes) | ("NAME", Docker) => true,
        // The Service's first port.
        ("SERVICE_PORT", Kubernetes) => port(value).is_some(),
        // The first port again, as a link writes it.
        ("PORT", _) => url(value, None),
        _ => false,
    }
}

/// `<n>_<PROTO>[_<field>]`, the per-port variables of a link or a Service.
fn link_port(rest: &str, value: &str, platform: Platform) -> bool {
    let mut parts = rest.splitn(3, '_');
    let (Some(number), Some(proto)) = (parts.next(), parts.next()) else {
        return false;
    };
    let field = parts.next();
    if port(number).is_none() || !matches!(proto, "TCP" | "UDP" | "SCTP") {
        return false;
    }
    let proto = proto.to_ascii_lowercase();
    let docker = platform == Platform::Docker;
    match field {
        None => url(value, Some(&proto)),
        Some("PROTO") => value == proto,
        Some("PORT") => port(value) == port(number),
        Some("ADDR") => value.parse::<IpAddr>().is_ok(),
        // A range of contiguous ports, which only Docker writes.
        Some("START" | "END") if docker => url(value, Some(&proto)),
        Some("PORT_START" | "PORT_END") if docker => port(value).is_some(),
        Some(_) => false,
    }
}

/// A port number as the platform writes it: 1 to 65535, decimal, nothing else.
fn port(text: &str) -> Option<u16> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    plain
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p != 0)
}

/// A port's name: an IANA service name (letters, digits, `-`) as kubelet writes it.
fn port_name_shaped(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// `proto://address:port` (the address in brackets or bare for IPv6, as kubelet and Docker
/// each write it), where `proto` is `expected` when given, else any of the three.
fn url(value: &str, expected: Option<&str>) -> bool {
    let Some((proto, rest)) = value.split_once("://") else {
        return false;
    };
    let proto_ok = match expected {
        Some(expected) => proto == expected,
        None => matches!(proto, "tcp" | "udp" | "sctp"),
    };
    let Some((host, number)) = rest.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    proto_ok && host.parse::<IpAddr>().is_ok() && port(number).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(pairs: &[(&str, &str)]) -> Vec<String> {
        split(pairs).0.into_iter().map(|i| i.name).collect()
    }

    #[test]
    fn port_urls_are_the_platforms_shapes_only() {
        assert!(url("tcp://10.0.0.11:8080", None));
        assert!(url("udp://[fd00::1]:53", Some("udp")));
        assert!(url("tcp://fd00::1:8080", Some("tcp")));
        for bad in [
            "tcp://10.0.0.11",
            "tcp://host.example:80",
            "http://10.0.0.11:80",
            "tcp://10.0.0.11:0",
            "tcp://10.0.0.11:+80",
            "10.0.0.11:80",
        ] {
            assert!(!url(bad, None), "{bad}");
        }
        assert!(!url("udp://10.0.0.11:53", Some("tcp")));
    }

    #[test]
    fn a_service_name_gives_the_group_its_prefix() {
        let found = split(&[
            ("STSVEND_METRICS_SERVICE_HOST", "10.0.0.12"),
            ("STSVEND_METRICS_PORT", "tcp://10.0.0.12:9090"),
        ])
        .0;
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].by, "the Kubernetes Service `stsvend-metrics`");
        // The value is not kept, only the name.
        assert_eq!(found[1].name, "STSVEND_METRICS_PORT");
    }

    #[test]
    fn without_the_anchor_nothing_is_ignored() {
        assert!(injected(&[("STSVEND_PORT", "tcp://10.0.0.11:8080")]).is_empty());
        assert!(injected(&[("STSVEND_ENV_X", "y")]).is_empty());
        // An anchor with a value the platform does not write is no anchor.
        assert!(
            injected(&[
                ("STSVEND_SERVICE_HOST", "stsvend.example.com"),
                ("STSVEND_SERVICE_PORT", "8080"),
            ])
            .is_empty()
        );
        // A link whose alias does not give the prefix.
        assert!(injected(&[("STSVEND_NAME", "/web/db")]).is_empty());
        // Another application's Service.
        assert!(injected(&[("STSVENDX_SERVICE_HOST", "10.0.0.1")]).is_empty());
    }
}
