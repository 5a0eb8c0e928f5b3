//! The environment's edges, through [`load`]: the names Kubernetes and Docker inject beside
//! ours (issue 17 point 2), and the HS256 key from a file (point 7).

use std::collections::HashMap;

use secrecy::ExposeSecret as _;

use super::*;

const ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-hs256";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTestKeyId"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret-value"),
        ("STSVEND_ROLE_ARN", ARN),
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
    ]
    .iter()
    .chain(pairs)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Config, String> {
    load(None, &env(pairs), Mode::Serve).map_err(|e| e.to_string())
}

/// What a Service `stsvend` with ports `http` 8080/TCP and `metrics` 9090/TCP gives every pod of
/// its namespace (kubelet `pkg/kubelet/envvars`).
const SERVICE_STSVEND: &[(&str, &str)] = &[
    ("STSVEND_SERVICE_HOST", "10.96.12.34"),
    ("STSVEND_SERVICE_PORT", "8080"),
    ("STSVEND_SERVICE_PORT_HTTP", "8080"),
    ("STSVEND_SERVICE_PORT_METRICS", "9090"),
    ("STSVEND_PORT", "tcp://10.96.12.34:8080"),
    ("STSVEND_PORT_8080_TCP", "tcp://10.96.12.34:8080"),
    ("STSVEND_PORT_8080_TCP_PROTO", "tcp"),
    ("STSVEND_PORT_8080_TCP_PORT", "8080"),
    ("STSVEND_PORT_8080_TCP_ADDR", "10.96.12.34"),
    ("STSVEND_PORT_9090_TCP", "tcp://10.96.12.34:9090"),
    ("STSVEND_PORT_9090_TCP_PROTO", "tcp"),
    ("STSVEND_PORT_9090_TCP_PORT", "9090"),
    ("STSVEND_PORT_9090_TCP_ADDR", "10.96.12.34"),
];

/// A Service `stsvend-metrics` on an IPv6 cluster with a UDP and an SCTP port.
const SERVICE_STSVEND_METRICS: &[(&str, &str)] = &[
    ("STSVEND_METRICS_SERVICE_HOST", "fd00:10:96::7"),
    ("STSVEND_METRICS_SERVICE_PORT", "5353"),
    ("STSVEND_METRICS_SERVICE_PORT_DNS_UDP", "5353"),
    ("STSVEND_METRICS_PORT", "udp://[fd00:10:96::7]:5353"),
    (
        "STSVEND_METRICS_PORT_5353_UDP",
        "udp://[fd00:10:96::7]:5353",
    ),
    ("STSVEND_METRICS_PORT_5353_UDP_PROTO", "udp"),
    ("STSVEND_METRICS_PORT_5353_UDP_PORT", "5353"),
    ("STSVEND_METRICS_PORT_5353_UDP_ADDR", "fd00:10:96::7"),
    (
        "STSVEND_METRICS_PORT_3868_SCTP",
        "sctp://[fd00:10:96::7]:3868",
    ),
    ("STSVEND_METRICS_PORT_3868_SCTP_PROTO", "sctp"),
    ("STSVEND_METRICS_PORT_3868_SCTP_PORT", "3868"),
    ("STSVEND_METRICS_PORT_3868_SCTP_ADDR", "fd00:10:96::7"),
];

/// `docker run --link stsvend-1:stsvend` to a container exposing 8080/tcp and 9090-9091/tcp
/// (Docker `daemon/links`: the contiguous range also gets `_START`/`_END` forms).
const DOCKER_LINK: &[(&str, &str)] = &[
    ("STSVEND_NAME", "/web/stsvend"),
    ("STSVEND_PORT", "tcp://172.17.0.5:8080"),
    ("STSVEND_PORT_8080_TCP", "tcp://172.17.0.5:8080"),
    ("STSVEND_PORT_8080_TCP_ADDR", "172.17.0.5"),
    ("STSVEND_PORT_8080_TCP_PORT", "8080"),
    ("STSVEND_PORT_8080_TCP_PROTO", "tcp"),
    ("STSVEND_PORT_9090_TCP_START", "tcp://172.17.0.5:9090"),
    ("STSVEND_PORT_9090_TCP_PORT_START", "9090"),
    ("STSVEND_PORT_9090_TCP_END", "tcp://172.17.0.5:9091"),
    ("STSVEND_PORT_9090_TCP_PORT_END", "9091"),
    ("STSVEND_ENV_RUST_LOG", "info"),
    ("STSVEND_ENV_STSVEND_LISTEN", "0.0.0.0:8080"),
];

#[test]
fn every_variable_a_service_or_a_link_injects_is_ignored_and_listed() {
    for (platform, group) in [
        ("service stsvend", SERVICE_STSVEND),
        ("service stsvend-metrics", SERVICE_STSVEND_METRICS),
        ("docker link", DOCKER_LINK),
    ] {
        let config = load_env(group).unwrap_or_else(|e| panic!("{platform}: {e}"));
        let mut ignored: Vec<&str> = config.injected.iter().map(|i| i.name.as_str()).collect();
        let mut expected: Vec<&str> = group.iter().map(|(name, _)| *name).collect();
        ignored.sort_unstable();
        expected.sort_unstable();
        assert_eq!(ignored, expected, "{platform}");
    }
    let config = load_env(DOCKER_LINK).unwrap();
    assert!(
        config
            .injected
            .iter()
            .all(|i| i.by == "the Docker link `stsvend`"),
        "{:?}",
        config.injected
    );
    let config = load_env(SERVICE_STSVEND).unwrap();
    assert!(
        config
            .injected
            .iter()
            .all(|i| i.by == "the Kubernetes Service `stsvend`")
    );
    // Beside real settings, which still apply.
    let config =
        load_env(&[SERVICE_STSVEND, &[("STSVEND_LISTEN", "127.0.0.1:7000")]].concat()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
}

#[test]
fn near_misses_of_the_injected_names_are_still_refused() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        // No platform wrote these: the anchor is missing.
        (&[("STSVEND_PORTS", "8080")], "`STSVEND_PORTS`"),
        (
            &[("STSVEND_SERVICE_HOSTS", "10.0.0.1")],
            "`STSVEND_SERVICE_HOSTS`",
        ),
        (&[("STSVEND_PORT", "9000")], "`STSVEND_PORT`"),
        (
            &[("STSVEND_SERVICE_PORT", "9000")],
            "`STSVEND_SERVICE_PORT`",
        ),
        (&[("STSVEND_PORT", "tcp://10.0.0.1:9000")], "`STSVEND_PORT`"),
        (&[("STSVEND_ENV_LISTEN", "x")], "`STSVEND_ENV_LISTEN`"),
        // An anchor whose value no platform writes.
        (
            &[
                ("STSVEND_SERVICE_HOST", "stsvend.local"),
                ("STSVEND_SERVICE_PORT", "8080"),
            ],
            "`STSVEND_SERVICE_HOST`",
        ),
        // Beside a real anchor, a shape or value the platform never writes.
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_PORT", "9000"),
            ],
            "`STSVEND_PORT`",
        ),
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_PORT_8080_TCP_ADDRESS", "10.0.0.1"),
            ],
            "`STSVEND_PORT_8080_TCP_ADDRESS`",
        ),
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_PORT_8080_HTTP", "tcp://10.0.0.1:8080"),
            ],
            "`STSVEND_PORT_8080_HTTP`",
        ),
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_PORT_8080_TCP_PROTO", "udp"),
            ],
            "`STSVEND_PORT_8080_TCP_PROTO`",
        ),
        // Docker's `_ENV_` copies and port ranges are Docker's, not a Service's.
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_ENV_LISTEN", "x"),
            ],
            "`STSVEND_ENV_LISTEN`",
        ),
        (
            &[
                ("STSVEND_SERVICE_HOST", "10.0.0.1"),
                ("STSVEND_PORT_9090_TCP_START", "tcp://10.0.0.1:9090"),
            ],
            "`STSVEND_PORT_9090_TCP_START`",
        ),
    ];
    for (pairs, name) in cases {
        let refused = load_env(pairs).unwrap_err();
        assert!(
            refused
                .lines()
                .any(|l| l.starts_with(&format!("{name}: is not a setting this version knows"))),
            "{pairs:?}: {refused}"
        );
    }
    // The did-you-mean still comes when a real setting is close.
    let refused =
        load_env(&[SERVICE_STSVEND, &[("STSVEND_REGOIN", "cn-hangzhou")]].concat()).unwrap_err();
    assert_eq!(
        refused,
        "`STSVEND_REGOIN`: is not a setting this version knows; did you mean `STSVEND_REGION`? (see the README's settings table)"
    );
}

/// Writes `text` to `name` in `dir`; returns the path.
fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const JWT: &[(&str, &str)] = &[
    ("STSVEND_AUTH", "jwt"),
    ("STSVEND_JWT_ISSUER", "https://login.example.com"),
    ("STSVEND_JWT_AUDIENCE", "stsvend"),
];

fn hs256_secret(config: &Config) -> String {
    let jwt = config.profiles[0].access.jwt.as_ref().unwrap();
    assert_eq!(jwt.algorithms, [JwtAlgorithm::Hs256]);
    jwt.hs256_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[test]
fn the_hs256_key_is_read_from_its_file_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "key", &format!("{HS_SECRET}\n"));
    let config = load_env(&[JWT, &[("STSVEND_JWT_HS256_SECRET_FILE", &path)]].concat()).unwrap();
    assert_eq!(hs256_secret(&config), HS_SECRET);
    assert!(!format!("{config:?}").contains(HS_SECRET));
    // Given directly, it is still used byte for byte.
    let spaced = format!(" {HS_SECRET} ");
    let config = load_env(&[JWT, &[("STSVEND_JWT_HS256_SECRET", &spaced)]].concat()).unwrap();
    assert_eq!(hs256_secret(&config), spaced);
    // A profile of the file names it by its file key.
    let text = format!(
        "[profiles.users]\nrole_arn = \"{ARN}\"\nauth = \"jwt\"\njwt_hs256_secret_file = \"{path}\"\njwt_issuer = \"https://i\"\njwt_audience = \"a\"\n"
    );
    let file = ConfigFile {
        path: "stsvend.toml".into(),
        text,
    };
    let config = load(Some(&file), &env(&[]), Mode::Serve).unwrap();
    let users = config.profiles.iter().find(|p| p.name == "users").unwrap();
    let jwt = users.access.jwt.as_ref().unwrap();
    assert_eq!(
        jwt.hs256_secret.as_ref().unwrap().expose_secret(),
        HS_SECRET
    );
}

#[test]
fn a_bad_hs256_key_file_is_refused_naming_the_file_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "key", HS_SECRET);
    let short_key = "short-key-in-file";
    let short = write(&dir, "short", short_key);
    let huge_key = "k".repeat(2000);
    let huge = write(&dir, "huge", &huge_key);
    let missing = dir.path().join("absent").to_str().unwrap().to_owned();
    let file_var = "STSVEND_JWT_HS256_SECRET_FILE";
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (
            vec![(file_var, &good), ("STSVEND_JWT_HS256_SECRET", HS_SECRET)],
            format!("`{file_var}`: cannot be combined with `STSVEND_JWT_HS256_SECRET`; set one"),
        ),
        (
            vec![(file_var, &missing)],
            // The path as problems show any value: quoted, cut at 60 characters.
            format!(
                "`{file_var}`: cannot read the secret file \"{}",
                missing.chars().take(60).collect::<String>()
            ),
        ),
        (
            vec![(file_var, &short)],
            format!("`{file_var}`: must be at least 32 bytes"),
        ),
        (
            vec![(file_var, &huge)],
            format!("`{file_var}`: must be at most 1024 bytes"),
        ),
    ];
    for (pairs, expected) in cases {
        let refused = load_env(&[JWT, &pairs].concat()).unwrap_err();
        assert!(refused.starts_with(&expected), "{expected}\n{refused}");
        for secret in [HS_SECRET, short_key, &huge_key[..64]] {
            assert!(!refused.contains(secret), "{refused}");
        }
    }
    // On a profile that checks no JWT it is a mistake, as the key itself is.
    let refused = load_env(&[(file_var, &good)]).unwrap_err();
    assert!(
        refused.starts_with(&format!(
            "`{file_var}`: is set but profile `default` does not check JWTs"
        )),
        "{refused}"
    );
}
