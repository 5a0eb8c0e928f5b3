//! Session policies: the least-privilege document built from `project/logstore` pairs, and the
//! checks a hand-written policy must pass before it is ever sent to STS.
//!
//! A session policy can only narrow the role's permissions (PROTOCOL.md §9). STS rejects a
//! policy that is not JSON, lacks `"Version":"1"`, or is longer than 2048 bytes, so the
//! same checks run at start-up where the operator sees them, rather than as a 502 at run time.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde_json::{Value, json};

/// The largest `Policy` STS accepts. Documentation says 2048 characters, the error message says
/// bytes; counting bytes satisfies both (PROTOCOL.md §1.4, `InvalidParameter.PolicySize`).
pub const MAX_POLICY_LEN: usize = 2048;

/// The only action a vended token needs to upload logs with the SLS web tracking STS plugin.
pub const POST_LOGS_ACTION: &str = "log:PostLogStoreLogs";

/// Why a policy or a logstore reference was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("is not valid JSON ({0})")]
    NotJson(String),
    #[error("must be a JSON object")]
    NotObject,
    #[error("must contain \"Version\":\"1\"")]
    WrongVersion,
    #[error("must contain a non-empty \"Statement\" array")]
    NoStatements,
    #[error("is {len} bytes once minified; STS accepts at most {MAX_POLICY_LEN}")]
    TooLong { len: usize },
    #[error("`{0}` is not of the form project/logstore")]
    NotAPair(String),
    #[error(
        "`{0}` is not a valid project name (3-63 of a-z, 0-9, -, starting and ending with a letter or digit; * as a wildcard)"
    )]
    BadProject(String),
    #[error(
        "`{0}` is not a valid logstore name (2-63 of a-z, 0-9, -, _, starting and ending with a letter or digit; * as a wildcard)"
    )]
    BadLogstore(String),
    #[error("names no logstore")]
    Empty,
}

/// One `project/logstore` pair, validated against SLS naming rules so that it can be placed in a
/// resource ARN without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogstoreRef {
    project: String,
    logstore: String,
}

impl LogstoreRef {
    /// The SLS resource ARN for this logstore, in any region and account; the role's own policy
    /// pins the account.
    pub fn resource_arn(&self) -> String {
        format!(
            "acs:log:*:*:project/{}/logstore/{}",
            self.project, self.logstore
        )
    }
}

impl fmt::Display for LogstoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.logstore)
    }
}

impl FromStr for LogstoreRef {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((project, logstore)) = s.split_once('/') else {
            return Err(PolicyError::NotAPair(s.to_owned()));
        };
        if !valid_name(project, 3, false) {
            return Err(PolicyError::BadProject(project.to_owned()));
        }
        if !valid_name(logstore, 2, true) {
            return Err(PolicyError::BadLogstore(logstore.to_owned()));
        }
        Ok(Self {
            project: project.to_owned(),
            logstore: logstore.to_owned(),
        })
    }
}

/// SLS names: lower-case letters, digits, `-` (and `_` in logstores), starting and ending with a
/// letter or digit. `*` is accepted anywhere as a RAM wildcard; a lone `*` is allowed too.
fn valid_name(name: &str, min_len: usize, underscore: bool) -> bool {
    if name == "*" {
        return true;
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || c == '*'
            || (underscore && c == '_')
    };
    let edge_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '*';
    (min_len..=63).contains(&name.len())
        && name.chars().all(allowed)
        && name.chars().next().is_some_and(edge_ok)
        && name.chars().last().is_some_and(edge_ok)
}

/// Parses a comma-separated list of `project/logstore` pairs, dropping duplicates.
pub fn parse_logstores(list: &str) -> Result<Vec<LogstoreRef>, PolicyError> {
    let mut stores = list
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<LogstoreRef>, _>>()?;
    if stores.is_empty() {
        return Err(PolicyError::Empty);
    }
    stores.sort();
    stores.dedup();
    Ok(stores)
}

/// The compact session policy that allows only `log:PostLogStoreLogs` on exactly `stores`.
pub fn logstore_policy(stores: &[LogstoreRef]) -> Result<String, PolicyError> {
    if stores.is_empty() {
        return Err(PolicyError::Empty);
    }
    let resources: Vec<String> = stores.iter().map(LogstoreRef::resource_arn).collect();
    let doc = json!({
        "Version": "1",
        "Statement": [{
            "Effect": "Allow",
            "Action": POST_LOGS_ACTION,
            "Resource": resources,
        }],
    });
    let text = doc.to_string();
    check_len(&text)?;
    Ok(text)
}

/// Checks an operator-supplied policy document and returns it minified (whitespace costs
/// characters against the 2048 limit and adds nothing).
pub fn check_policy_document(text: &str) -> Result<String, PolicyError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let obj = doc.as_object().ok_or(PolicyError::NotObject)?;
    if obj.get("Version").and_then(Value::as_str) != Some("1") {
        return Err(PolicyError::WrongVersion);
    }
    match obj.get("Statement") {
        Some(Value::Array(statements)) if !statements.is_empty() => {}
        _ => return Err(PolicyError::NoStatements),
    }
    let minified = doc.to_string();
    check_len(&minified)?;
    Ok(minified)
}

/// `policy` (or, with none, every permission of the role) narrowed to requests from `ip`.
pub fn bound_to_source_ip(
    policy: Option<&str>,
    ip: std::net::IpAddr,
) -> Result<String, PolicyError> {
    bound_to_source_network(policy, IpNet::from(ip))
}

/// `policy` narrowed to requests from `network`: one address (`/32`, `/128`, written as the bare
/// address) or a whole prefix (`2001:db8:1:2::/64`), for a token cached for every address of an
/// IPv6 prefix. `acs:SourceIp` accepts CIDRs of both families (PROTOCOL.md §9).
///
/// The condition is a separate `Deny` statement for any other address rather than a change to the
/// existing statements: a `Deny` can only narrow, whatever conditions those statements carry.
pub fn bound_to_source_network(
    policy: Option<&str>,
    network: IpNet,
) -> Result<String, PolicyError> {
    let text = with_source_deny(policy, &source_text(network))?;
    check_len(&text)?;
    Ok(text)
}

/// How `acs:SourceIp` names `network`. Only hex digits, `.`, `:` and `/`: nothing JSON escapes.
fn source_text(network: IpNet) -> String {
    if network.prefix_len() == network.max_prefix_len() {
        network.addr().to_string()
    } else {
        network.trunc().to_string()
    }
}

/// `policy` (or every permission) with the `Deny` statement for any source but `source`, minified.
fn with_source_deny(policy: Option<&str>, source: &str) -> Result<String, PolicyError> {
    let mut doc: Value = match policy {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| PolicyError::NotJson(e.to_string()))?
        }
        None => json!({
            "Version": "1",
            "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }],
        }),
    };
    let statements = doc
        .get_mut("Statement")
        .and_then(Value::as_array_mut)
        .ok_or(PolicyError::NoStatements)?;
    statements.push(json!({
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": { "NotIpAddress": { "acs:SourceIp": source } },
    }));
    Ok(doc.to_string())
}

/// [`bound_to_source_network`] for one policy and many networks: the document is parsed and
/// serialised once, here, and each network's text is spliced into the place its address goes.
/// Per-caller tokens bound to their caller's address use it, one per profile.
#[derive(Debug, Clone)]
pub struct SourceBoundPolicy {
    /// The minified document up to the address in the `Deny` statement, and after it.
    head: String,
    tail: String,
}

impl SourceBoundPolicy {
    pub fn new(policy: Option<&str>) -> Result<Self, PolicyError> {
        // Two renderings that differ only in the address: they part where the address starts.
        // (A marker searched for in one rendering could also occur in the operator's policy.)
        let a = with_source_deny(policy, "a")?;
        let b = with_source_deny(policy, "b")?;
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len());
        Ok(Self {
            head: a[..at].to_owned(),
            tail: a.get(at + 1..).unwrap_or_default().to_owned(),
        })
    }

    /// The policy narrowed to requests from `network`, byte for byte as
    /// [`bound_to_source_network`] writes it.
    pub fn for_network(&self, network: IpNet) -> Result<String, PolicyError> {
        let source = source_text(network);
        let mut text = String::with_capacity(self.head.len() + source.len() + self.tail.len());
        text.push_str(&self.head);
        text.push_str(&source);
        text.push_str(&self.tail);
        check_len(&text)?;
        Ok(text)
    }
}

/// The source network whose text is longest, for IPv6 callers grouped by `ipv6_prefix` bits:
/// checking `bound_to_source_network(policy, longest_source_network(p))` at start-up proves the
/// policy fits for every caller.
pub fn longest_source_network(ipv6_prefix: u8) -> IpNet {
    let all_ones = std::net::IpAddr::from([0xffff_u16; 8]);
    let v6 = IpNet::new(all_ones, ipv6_prefix.min(128))
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(all_ones));
    let v4 = IpNet::from(std::net::IpAddr::from([255_u8; 4]));
    let text = |net: IpNet| {
        if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string().len()
        } else {
            net.trunc().to_string().len()
        }
    };
    if text(v6) >= text(v4) { v6 } else { v4 }
}

fn check_len(text: &str) -> Result<(), PolicyError> {
    let len = text.len();
    if len > MAX_POLICY_LEN {
        return Err(PolicyError::TooLong { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_logstore_gives_the_compact_least_privilege_policy() {
        let stores = parse_logstores("my-proj/web-log").unwrap();
        assert_eq!(
            logstore_policy(&stores).unwrap(),
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":["acs:log:*:*:project/my-proj/logstore/web-log"]}]}"#
        );
    }

    #[test]
    fn several_logstores_are_trimmed_sorted_and_deduplicated() {
        let stores = parse_logstores(" pr2/bb , pr1/aa,pr2/bb,").unwrap();
        let names: Vec<String> = stores.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["pr1/aa", "pr2/bb"]);
        let policy = logstore_policy(&stores).unwrap();
        assert!(policy.contains(r#""Resource":["acs:log:*:*:project/pr1/logstore/aa","acs:log:*:*:project/pr2/logstore/bb"]"#));
    }

    #[test]
    fn bad_logstore_references_are_refused_with_the_reason() {
        let cases = [
            ("weblog", PolicyError::NotAPair("weblog".into())),
            ("My-Proj/l1", PolicyError::BadProject("My-Proj".into())),
            ("pp/l", PolicyError::BadProject("pp".into())),
            ("proj/a\"b", PolicyError::BadLogstore("a\"b".into())),
            ("proj/-x", PolicyError::BadLogstore("-x".into())),
            ("proj/a/b", PolicyError::BadLogstore("a/b".into())),
            (" , ", PolicyError::Empty),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_logstores(input).unwrap_err(),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn wildcards_and_underscores_are_accepted_where_sls_allows_them() {
        assert!(parse_logstores("proj/*,proj/web_*,p-1/a_b").is_ok());
    }

    #[test]
    fn too_many_logstores_exceed_the_policy_limit() {
        let list: Vec<String> = (0..60)
            .map(|i| format!("project-{i:03}/logstore-{i:03}"))
            .collect();
        let stores = parse_logstores(&list.join(",")).unwrap();
        assert!(matches!(
            logstore_policy(&stores),
            Err(PolicyError::TooLong { .. })
        ));
    }

    #[test]
    fn a_policy_document_is_checked_and_minified() {
        let doc = "{\n  \"Version\": \"1\",\n  \"Statement\": [ {\"Effect\": \"Allow\", \"Action\": \"log:PostLogStoreLogs\", \"Resource\": \"*\"} ]\n}";
        let minified = check_policy_document(doc).unwrap();
        assert!(!minified.contains(' '));
        assert!(minified.contains(r#""Version":"1""#));
    }

    #[test]
    fn binding_to_a_source_ip_adds_a_deny_for_every_other_address() {
        let stores = parse_logstores("my-proj/web-log").unwrap();
        let policy = logstore_policy(&stores).unwrap();
        let bound = bound_to_source_ip(Some(&policy), "198.51.100.7".parse().unwrap()).unwrap();
        assert!(
            bound.starts_with(&policy[..policy.len() - 2]),
            "original statements kept"
        );
        assert!(bound.ends_with(r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"acs:SourceIp":"198.51.100.7"}}}]}"#), "{bound}");
        let open = bound_to_source_ip(None, "2001:db8::1".parse().unwrap()).unwrap();
        assert!(open.contains(r#""Effect":"Allow","Action":"*","Resource":"*""#));
        assert!(open.contains(r#""acs:SourceIp":"2001:db8::1""#));
    }

    #[test]
    fn a_token_cached_per_ipv6_prefix_allows_the_whole_prefix() {
        let net: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        let bound = bound_to_source_network(None, net).unwrap();
        assert!(
            bound.ends_with(r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"acs:SourceIp":"2001:db8:1:2::/64"}}}]}"#),
            "{bound}"
        );
        let host: IpNet = "198.51.100.7/32".parse().unwrap();
        assert!(
            bound_to_source_network(None, host)
                .unwrap()
                .contains(r#""acs:SourceIp":"198.51.100.7""#)
        );
    }

    #[test]
    fn the_longest_source_network_is_the_worst_case() {
        assert_eq!(
            longest_source_network(64).to_string(),
            "ffff:ffff:ffff:ffff::/64"
        );
        assert_eq!(
            longest_source_network(128).to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
        );
        let p64 = bound_to_source_network(None, longest_source_network(64)).unwrap();
        for source in [
            "2001:db8:1:2::/64",
            "255.255.255.255",
            "ffff:ffff:ffff:fff0::/64",
        ] {
            let other = bound_to_source_network(
                None,
                source
                    .parse()
                    .unwrap_or_else(|_| IpNet::from(source.parse::<std::net::IpAddr>().unwrap())),
            )
            .unwrap();
            assert!(other.len() <= p64.len(), "{source}");
        }
    }

    #[test]
    fn a_policy_bound_once_gives_every_network_the_same_bytes_as_binding_it_anew() {
        let stores = parse_logstores("my-proj/web-log,other/ab").unwrap();
        let logstores = logstore_policy(&stores).unwrap();
        // Keys after "Statement", and the splice markers' letters everywhere.
        let tricky = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"a","Resource":"b"}],"Zeta":"ab"}"#;
        let networks: Vec<IpNet> = [
            "198.51.100.7/32",
            "198.51.100.0/24",
            "2001:db8:1:2::/64",
            "2001:db8::1/128",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        for policy in [None, Some(logstores.as_str()), Some(tricky)] {
            let bound = SourceBoundPolicy::new(policy).unwrap();
            for &network in &networks {
                assert_eq!(
                    bound.for_network(network).unwrap(),
                    bound_to_source_network(policy, network).unwrap(),
                    "{policy:?} {network}"
                );
            }
        }
        assert_eq!(
            SourceBoundPolicy::new(Some("{")).unwrap_err(),
            bound_to_source_network(Some("{"), networks[0]).unwrap_err()
        );
        assert_eq!(
            SourceBoundPolicy::new(Some(r#"{"Version":"1"}"#)).unwrap_err(),
            PolicyError::NoStatements
        );
        // The longest policy that still fits for the IPv4 address: too long for the IPv6 prefix.
        let policy_of = |n: usize| {
            format!(
                r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"*","Resource":"{}"}}]}}"#,
                "a".repeat(n)
            )
        };
        let long = (1800..MAX_POLICY_LEN)
            .map(policy_of)
            .take_while(|p| bound_to_source_network(Some(p), networks[0]).is_ok())
            .last()
            .unwrap();
        let bound = SourceBoundPolicy::new(Some(&long)).unwrap();
        assert!(bound.for_network(networks[0]).is_ok());
        assert_eq!(
            bound.for_network(networks[2]),
            bound_to_source_network(Some(&long), networks[2])
        );
        assert!(matches!(
            bound.for_network(networks[2]),
            Err(PolicyError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_policy_documents_are_refused() {
        assert!(matches!(
            check_policy_document("{"),
            Err(PolicyError::NotJson(_))
        ));
        assert_eq!(check_policy_document("[]"), Err(PolicyError::NotObject));
        assert_eq!(
            check_policy_document(r#"{"Version":1,"Statement":[{}]}"#),
            Err(PolicyError::WrongVersion)
        );
        assert_eq!(
            check_policy_document(r#"{"Version":"1","Statement":[]}"#),
            Err(PolicyError::NoStatements)
        );
        let long = format!(
            r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"{}"}}]}}"#,
            "a".repeat(2100)
        );
        assert!(matches!(
            check_policy_document(&long),
            Err(PolicyError::TooLong { .. })
        ));
    }
}
