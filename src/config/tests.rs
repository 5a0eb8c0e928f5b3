use super::*;
use std::time::Duration;

use crate::sts::policy;

/// A table row: what is tested, the environment changes, the text a problem must contain.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

const ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTestKeyId"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret-value"),
        ("STSVEND_ROLE_ARN", ARN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in pairs {
        if v.is_empty() {
            map.remove(*k);
        } else {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    map
}

fn file(text: &str) -> ConfigFile {
    ConfigFile {
        path: "stsvend.toml".into(),
        text: text.into(),
    }
}

fn problems(file_text: Option<&str>, pairs: &[(&str, &str)]) -> Vec<String> {
    let file = file_text.map(file);
    match load(file.as_ref(), &env(pairs), Mode::Serve) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_are_applied_when_only_the_required_settings_are_given() {
    let config = load(None, &env(&[]), Mode::Serve).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        config.sts_endpoint.as_str(),
        "https://sts.cn-shanghai.aliyuncs.com/"
    );
    assert_eq!(config.min_remaining, Duration::from_secs(600));
    assert_eq!(config.profiles.len(), 1);
    let profile = &config.profiles[0];
    assert_eq!(profile.name, "default");
    assert_eq!(profile.call.role_arn, ARN);
    assert_eq!(profile.call.role_session_name, "stsvend");
    assert_eq!(profile.call.duration_seconds, 3600);
    assert_eq!(profile.call.policy, None);
    assert_eq!(profile.scope, Scope::Unrestricted);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("every permission"))
    );
    assert_eq!(config.credentials.unwrap().source(), "environment");
}

#[test]
fn region_and_endpoint_choose_the_sts_url() {
    let config = load(
        None,
        &env(&[("STSVEND_REGION", "ap-southeast-1")]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(
        config.sts_endpoint.as_str(),
        "https://sts.ap-southeast-1.aliyuncs.com/"
    );
    let config = load(
        None,
        &env(&[(
            "STSVEND_STS_ENDPOINT",
            "https://sts-vpc.cn-shanghai.aliyuncs.com",
        )]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(
        config.sts_endpoint.as_str(),
        "https://sts-vpc.cn-shanghai.aliyuncs.com/"
    );
    for local in [
        "http://127.0.0.1:9000",
        "http://localhost:9000/",
        "http://[::1]:9000",
    ] {
        assert!(
            load(None, &env(&[("STSVEND_STS_ENDPOINT", local)]), Mode::Serve).is_ok(),
            "{local}"
        );
    }
}

#[test]
fn logstore_setting_produces_the_least_privilege_policy() {
    let config = load(
        None,
        &env(&[("STSVEND_LOGSTORE", "my-proj/web-log,my-proj/app-log")]),
        Mode::Serve,
    )
    .unwrap();
    let profile = &config.profiles[0];
    assert!(matches!(&profile.scope, Scope::Logstores(stores) if stores.len() == 2));
    let policy = profile.call.policy.as_deref().unwrap();
    assert!(policy.contains("acs:log:*:*:project/my-proj/logstore/web-log"));
    assert!(policy.contains("log:PostLogStoreLogs"));
    assert!(
        !config
            .warnings
            .iter()
            .any(|w| w.contains("every permission"))
    );
}

#[test]
fn every_bad_setting_is_reported_at_once_naming_the_setting() {
    let found = problems(
        None,
        &[
            ("STSVEND_ROLE_ARN", "acs:ram::123:user/alice"),
            ("STSVEND_DURATION_SECONDS", "60"),
            ("STSVEND_ROLE_SESSION_NAME", "has space"),
            ("STSVEND_LISTEN", "localhost"),
            ("STSVEND_STS_ENDPOINT", "http://sts.example.com"),
            ("STSVEND_POLICY", "{not json"),
        ],
    );
    let expect = [
        "`STSVEND_ROLE_ARN`: must be a RAM role ARN",
        "`STSVEND_DURATION_SECONDS`: must be a whole number of seconds from 900 to 43200",
        "`STSVEND_ROLE_SESSION_NAME`: must be 2-32 of",
        "`STSVEND_LISTEN`: must be IP:PORT",
        "`STSVEND_STS_ENDPOINT`: must use https://",
        "`STSVEND_POLICY`: the policy is not valid JSON",
    ];
    for prefix in expect {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn single_profile_problems_are_reported_clearly() {
    let long_policy = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"{}"}}]}}"#,
        "a".repeat(2100)
    );
    let long_name = "a".repeat(33);
    let cases: Vec<Case<'_>> = vec![
        (
            "missing role ARN",
            vec![("STSVEND_ROLE_ARN", "")],
            "`STSVEND_ROLE_ARN`: is required",
        ),
        (
            "duration too long",
            vec![("STSVEND_DURATION_SECONDS", "43201")],
            "from 900 to 43200",
        ),
        (
            "duration not a number",
            vec![("STSVEND_DURATION_SECONDS", "1h")],
            "got \"1h\"",
        ),
        (
            "policy too long",
            vec![("STSVEND_POLICY", &long_policy)],
            "STS accepts at most 2048",
        ),
        (
            "policy wrong version",
            vec![("STSVEND_POLICY", r#"{"Version":"2","Statement":[{}]}"#)],
            "\"Version\":\"1\"",
        ),
        (
            "policy and logstore",
            vec![
                ("STSVEND_POLICY", r#"{"Version":"1","Statement":[{}]}"#),
                ("STSVEND_LOGSTORE", "p1x/l"),
            ],
            "either a logstore list or a whole policy",
        ),
        (
            "bad logstore",
            vec![("STSVEND_LOGSTORE", "justaname")],
            "`STSVEND_LOGSTORE`: `justaname` is not of the form project/logstore",
        ),
        (
            "session name too short",
            vec![("STSVEND_ROLE_SESSION_NAME", "a")],
            "2-32",
        ),
        (
            "session name too long",
            vec![("STSVEND_ROLE_SESSION_NAME", &long_name)],
            "2-32",
        ),
    ];
    assert_each_reported(cases);
}

#[test]
fn single_global_problems_are_reported_clearly() {
    let cases: Vec<Case<'_>> = vec![
        (
            "min remaining leaves no room",
            vec![
                ("STSVEND_DURATION_SECONDS", "900"),
                ("STSVEND_MIN_REMAINING_SECONDS", "841"),
            ],
            "raise the duration or lower the minimum remaining validity to at most 840",
        ),
        (
            "min remaining not a number",
            vec![("STSVEND_MIN_REMAINING_SECONDS", "-1")],
            "`STSVEND_MIN_REMAINING_SECONDS`: must be a whole number",
        ),
        (
            "ftp endpoint",
            vec![("STSVEND_STS_ENDPOINT", "ftp://127.0.0.1")],
            "must be an https:// URL",
        ),
        (
            "endpoint with query",
            vec![("STSVEND_STS_ENDPOINT", "https://sts.aliyuncs.com/?x=1")],
            "without credentials, query or fragment",
        ),
        (
            "bad region",
            vec![("STSVEND_REGION", "CN Shanghai")],
            "region id",
        ),
        (
            "secret without id",
            vec![("ALIBABA_CLOUD_ACCESS_KEY_ID", "")],
            "`ALIBABA_CLOUD_ACCESS_KEY_SECRET`: is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not",
        ),
        (
            "typo in a variable",
            vec![("STSVEND_LOGSTORES", "p1x/l")],
            "`STSVEND_LOGSTORES`: is not a setting this version knows; did you mean `STSVEND_LOGSTORE`?",
        ),
    ];
    assert_each_reported(cases);
}

/// Each case alone reports its problem, and no problem line echoes the JWT secret.
fn assert_each_reported(cases: Vec<Case<'_>>) {
    for (what, pairs, expected) in cases {
        let found = problems(None, &pairs);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{what}: {expected:?} not in {found:#?}"
        );
        assert!(
            found.iter().all(|p| !p.contains(HS_SECRET)),
            "{what}: secret echoed"
        );
    }
}

#[test]
fn no_access_key_is_left_to_the_credential_chain() {
    let config = load(
        None,
        &env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
        ]),
        Mode::Serve,
    )
    .unwrap();
    assert!(config.credentials.is_none());
    assert_eq!(
        config.ecs_metadata_endpoint.as_str(),
        "http://100.100.100.200/"
    );
}

#[test]
fn the_metadata_endpoint_may_be_plain_http_only_locally_or_at_its_own_address() {
    for ok in [
        "http://127.0.0.1:9999",
        "http://100.100.100.200",
        "https://metadata.example",
    ] {
        assert!(
            load(
                None,
                &env(&[("STSVEND_ECS_METADATA_ENDPOINT", ok)]),
                Mode::Serve
            )
            .is_ok(),
            "{ok}"
        );
    }
    let found = problems(
        None,
        &[("STSVEND_ECS_METADATA_ENDPOINT", "http://10.0.0.1")],
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("`STSVEND_ECS_METADATA_ENDPOINT`: must use https://")),
        "{found:#?}"
    );
}

#[test]
fn min_remaining_just_inside_the_limit_is_accepted() {
    let ok = load(
        None,
        &env(&[
            ("STSVEND_DURATION_SECONDS", "900"),
            ("STSVEND_MIN_REMAINING_SECONDS", "840"),
        ]),
        Mode::Serve,
    );
    assert!(ok.is_ok());
}

#[test]
fn a_file_declares_profiles_and_the_environment_overrides_it() {
    let text = r#"
        listen = "127.0.0.1:9000"
        min_remaining_seconds = 900

        [profiles.default]
        role_arn = "acs:ram::1111111111111111:role/from-file"
        duration_seconds = 7200
        logstore = ["proj-a/web", "proj-a/app"]

        [profiles.partner]
        role_arn = "acs:ram::2222222222222222:role/partner"
        role_session_name = "partner-app"
        policy = '''
        {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "log:PostLogStoreLogs", "Resource": "acs:log:*:*:project/p/logstore/l"}]}
        '''
    "#;
    let config = load(
        Some(&file(text)),
        &env(&[("STSVEND_LISTEN", "127.0.0.1:9100")]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(
        config.listen.to_string(),
        "127.0.0.1:9100",
        "environment wins"
    );
    assert_eq!(config.min_remaining, Duration::from_secs(900));
    let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "partner"]);
    assert_eq!(
        config.profiles[0].call.role_arn, ARN,
        "STSVEND_ROLE_ARN overrides the file"
    );
    assert_eq!(config.profiles[0].call.duration_seconds, 7200);
    assert!(matches!(&config.profiles[0].scope, Scope::Logstores(s) if s.len() == 2));
    assert_eq!(config.profiles[1].call.role_session_name, "partner-app");
    assert_eq!(config.profiles[1].scope, Scope::Document);
    assert!(
        !config.profiles[1]
            .call
            .policy
            .as_deref()
            .unwrap()
            .contains(' ')
    );
}

#[test]
fn unknown_keys_and_bad_types_in_the_file_are_all_reported() {
    let text = r#"
        listen = true
        colour = "blue"
        [profiles.default]
        role_arn = "acs:ram::1111111111111111:role/x"
        durationseconds = 900
        logstore = [1, 2]
        [profiles."Bad Name"]
        role_arn = "acs:ram::1111111111111111:role/x"
    "#;
    let found = problems(Some(text), &[("STSVEND_ROLE_ARN", "")]);
    let expect = [
        "`listen` in `stsvend.toml`: must be IP:PORT",
        "`colour` in `stsvend.toml`: unknown key",
        "`profiles.default.durationseconds` in `stsvend.toml`: unknown key",
        "`profiles.default.logstore` in `stsvend.toml`: must be a list of",
        // Quoted as in the file: the name is not a bare TOML key.
        r#"`profiles."Bad Name"` in `stsvend.toml`: profile names are"#,
    ];
    for prefix in expect {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {found:#?}"
        );
    }
}

#[test]
fn a_file_that_is_not_toml_is_one_clear_line() {
    let found = problems(Some("listen = \n[profiles"), &[]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("config file `stsvend.toml`: is not valid TOML (line "),
        "{}",
        found[0]
    );
    assert!(!found[0].contains('\n'));
}

#[test]
fn a_profile_in_the_file_without_a_role_is_named() {
    let found = problems(
        Some("[profiles.web]\nduration_seconds = 900\n"),
        &[("STSVEND_ROLE_ARN", "")],
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("`profiles.web.role_arn`: is required")),
        "{found:#?}"
    );
}

#[test]
fn dev_mode_needs_nothing_and_stays_on_loopback() {
    let empty = HashMap::new();
    let config = load(
        None,
        &empty,
        Mode::Dev {
            allow_remote: false,
        },
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.profiles[0].call.role_arn, DEV_ROLE_ARN);
    assert!(matches!(&config.profiles[0].scope, Scope::Logstores(_)));
    assert!(config.credentials.is_none());

    let remote: HashMap<String, String> =
        [("STSVEND_LISTEN".to_owned(), "0.0.0.0:8080".to_owned())].into();
    let err = load(
        None,
        &remote,
        Mode::Dev {
            allow_remote: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    assert!(load(None, &remote, Mode::Dev { allow_remote: true }).is_ok());
}

#[test]
fn secrets_never_appear_in_debug_output_or_problems() {
    let config = load(
        None,
        &env(&[("ALIBABA_CLOUD_SECURITY_TOKEN", "token-value-xyz")]),
        Mode::Serve,
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("test-secret-value") && !shown.contains("token-value-xyz"),
        "{shown}"
    );
    let found = problems(
        None,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "token-value-xyz"),
        ],
    );
    assert!(
        found
            .iter()
            .all(|p| !p.contains("test-secret-value") && !p.contains("token-value-xyz")),
        "{found:#?}"
    );
}

#[test]
fn typos_get_the_nearest_known_name() {
    let found = problems(None, &[("STSVEND_REGOIN", "cn-hangzhou")]);
    assert!(
        found
            .iter()
            .any(|p| p.contains("did you mean `STSVEND_REGION`?")),
        "{found:#?}"
    );
    let found = problems(None, &[("STSVEND_SOMETHING_ELSE", "x")]);
    assert!(
        found
            .iter()
            .any(|p| p.contains("is not a setting") && !p.contains("did you mean")),
        "{found:#?}"
    );
}

#[test]
fn an_endpoint_with_a_password_is_refused_without_echoing_it() {
    let found = problems(
        None,
        &[(
            "STSVEND_STS_ENDPOINT",
            "https://admin:Pa55w0rdSecret@sts.example.com/",
        )],
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("without credentials") && !found[0].contains("Pa55w0rd"),
        "{}",
        found[0]
    );
}

#[test]
fn a_config_file_debug_shows_its_path_not_its_text() {
    let shown = format!("{:?}", file("access_key_secret = \"file-secret\""));
    assert!(
        shown.contains("stsvend.toml") && !shown.contains("file-secret"),
        "{shown}"
    );
}

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-hs256";

#[test]
fn access_defaults_are_open_and_generous() {
    let config = load(None, &env(&[]), Mode::Serve).unwrap();
    let access = &config.profiles[0].access;
    assert_eq!(access.auth, AuthMode::None);
    assert!(access.jwt.is_none());
    assert_eq!(access.rate_limit.per_minute.get(), 1200);
    assert_eq!(access.rate_limit.burst.get(), 300);
    assert!(access.cors_origins.is_empty());
    assert!(!access.bind_source_ip);
    assert!(config.trusted_proxies.is_empty());
    assert_eq!(config.sts_budget_per_second.get(), 20);
    assert_eq!(config.max_connections, 10_000);
}

#[test]
fn max_connections_comes_from_the_environment_or_the_file() {
    let config = load(
        None,
        &env(&[("STSVEND_MAX_CONNECTIONS", " 250 ")]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(config.max_connections, 250);
    let config = load(
        Some(&file("max_connections = 1000000\n")),
        &env(&[]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(config.max_connections, 1_000_000);
}

#[test]
fn jwt_settings_pick_algorithms_from_the_keys_given() {
    let config = load(
        None,
        &env(&[
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", HS_SECRET),
            ("STSVEND_JWT_ISSUER", "https://login.example.com"),
            ("STSVEND_JWT_AUDIENCE", "stsvend"),
            ("STSVEND_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
            (
                "STSVEND_CORS_ORIGINS",
                "https://app.example.com,http://localhost:5173",
            ),
            ("STSVEND_BIND_SOURCE_IP", "true"),
        ]),
        Mode::Serve,
    )
    .unwrap();
    let access = &config.profiles[0].access;
    assert_eq!(access.auth, AuthMode::Jwt);
    let jwt = access.jwt.as_ref().unwrap();
    assert_eq!(jwt.algorithms, [JwtAlgorithm::Hs256]);
    assert_eq!(jwt.issuer.as_deref(), Some("https://login.example.com"));
    assert!(
        !format!("{config:?}").contains(HS_SECRET),
        "secret redacted in Debug"
    );
    assert_eq!(
        access.cors_origins,
        ["https://app.example.com", "http://localhost:5173"]
    );
    assert!(access.bind_source_ip);
    let proxies: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32"]);

    let config = load(
        None,
        &env(&[
            ("STSVEND_AUTH", "report"),
            (
                "STSVEND_JWT_JWKS_URL",
                "https://login.example.com/jwks.json",
            ),
            ("STSVEND_JWT_ACCEPT_ANY_AUDIENCE", "true"),
        ]),
        Mode::Serve,
    )
    .unwrap();
    let jwt = config.profiles[0].access.jwt.as_ref().unwrap();
    assert_eq!(jwt.algorithms, [JwtAlgorithm::Rs256, JwtAlgorithm::Es256]);
}

#[test]
fn bad_access_settings_are_reported() {
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown auth",
            vec![("STSVEND_AUTH", "oauth")],
            "`STSVEND_AUTH`: must be none, jwt, report, wechat, alipay or wechat,alipay",
        ),
        (
            "jwt without keys",
            vec![("STSVEND_AUTH", "jwt")],
            "checks JWTs but has no key",
        ),
        (
            "short secret",
            vec![
                ("STSVEND_AUTH", "jwt"),
                ("STSVEND_JWT_HS256_SECRET", "short"),
            ],
            "at least 32 bytes",
        ),
        (
            "jwt setting without jwt",
            vec![("STSVEND_JWT_ISSUER", "x")],
            "does not check JWTs",
        ),
        (
            "RS256 without JWKS",
            vec![
                ("STSVEND_AUTH", "jwt"),
                ("STSVEND_JWT_HS256_SECRET", HS_SECRET),
                ("STSVEND_JWT_ALGORITHMS", "HS256,RS256"),
            ],
            "no JWKS URL or file",
        ),
        (
            "unsupported alg",
            vec![
                ("STSVEND_AUTH", "jwt"),
                ("STSVEND_JWT_HS256_SECRET", HS_SECRET),
                ("STSVEND_JWT_ALGORITHMS", "none"),
            ],
            "supports HS256, RS256 and ES256",
        ),
        (
            "http JWKS",
            vec![
                ("STSVEND_AUTH", "jwt"),
                ("STSVEND_JWT_JWKS_URL", "http://login.example.com/jwks"),
            ],
            "https://",
        ),
    ];
    assert_each_reported(cases);
}

#[test]
fn bad_limit_and_network_settings_are_reported() {
    let cases: Vec<Case<'_>> = vec![
        (
            "zero rate",
            vec![("STSVEND_RATE_LIMIT_PER_MINUTE", "0")],
            "`STSVEND_RATE_LIMIT_PER_MINUTE`: must be a whole number from 1",
        ),
        (
            "wildcard origin",
            vec![("STSVEND_CORS_ORIGINS", "*")],
            "must be exact",
        ),
        (
            "bad bool",
            vec![("STSVEND_BIND_SOURCE_IP", "yes")],
            "must be true or false",
        ),
        (
            "bad proxy",
            vec![("STSVEND_TRUSTED_PROXIES", "10.0.0.0/33")],
            "CIDRs",
        ),
        (
            "budget too high",
            vec![("STSVEND_STS_BUDGET_PER_SECOND", "500")],
            "from 1 to 100",
        ),
        (
            "no connections",
            vec![("STSVEND_MAX_CONNECTIONS", "0")],
            "`STSVEND_MAX_CONNECTIONS`: must be a whole number of connections from 1 to 1000000, got \"0\"",
        ),
        (
            "connections not a number",
            vec![("STSVEND_MAX_CONNECTIONS", "10k")],
            "`STSVEND_MAX_CONNECTIONS`: must be a whole number of connections",
        ),
    ];
    assert_each_reported(cases);
}

#[test]
fn profiles_in_the_file_take_access_settings_too() {
    let text = r#"
        [profiles.app]
        role_arn = "acs:ram::1111111111111111:role/app"
        auth = "jwt"
        jwt_jwks_file = "/etc/stsvend/jwks.json"
        jwt_algorithms = ["RS256"]
        jwt_issuer = "https://login.example.com"
        jwt_audience = "app"
        rate_limit_per_minute = 60
        rate_limit_burst = 10
        cors_origins = ["https://app.example.com"]
        bind_source_ip = true
    "#;
    let config = load(Some(&file(text)), &env(&[]), Mode::Serve).unwrap();
    let app = config.profiles.iter().find(|p| p.name == "app").unwrap();
    assert_eq!(app.access.auth, AuthMode::Jwt);
    assert_eq!(
        app.access.jwt.as_ref().unwrap().algorithms,
        [JwtAlgorithm::Rs256]
    );
    assert_eq!(app.access.rate_limit.per_minute.get(), 60);
    assert!(app.access.bind_source_ip);
}

#[test]
fn production_settings_come_from_the_environment() {
    let config = load(
        None,
        &env(&[
            ("STSVEND_ADMIN_LISTEN", "0.0.0.0:9191"),
            ("STSVEND_TLS_CERT", "/etc/stsvend/tls/cert.pem"),
            ("STSVEND_TLS_KEY", "/etc/stsvend/tls/key.pem"),
            ("STSVEND_LOG_FORMAT", "pretty"),
        ]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9191");
    let tls = config.tls.unwrap();
    assert_eq!(tls.cert.to_str(), Some("/etc/stsvend/tls/cert.pem"));
    assert_eq!(tls.key.to_str(), Some("/etc/stsvend/tls/key.pem"));
    assert_eq!(config.log_format, LogFormat::Pretty);
    let defaults = load(None, &env(&[]), Mode::Serve).unwrap();
    assert_eq!(defaults.admin_listen.to_string(), "127.0.0.1:9090");
    assert!(defaults.tls.is_none());
}

#[test]
fn bad_production_settings_are_reported() {
    let found = problems(
        None,
        &[
            ("STSVEND_TLS_CERT", "/x.pem"),
            ("STSVEND_LOG_FORMAT", "xml"),
            ("STSVEND_ADMIN_LISTEN", "nine"),
        ],
    );
    for expected in [
        "`STSVEND_TLS_CERT`: is set but STSVEND_TLS_KEY is not",
        "`STSVEND_LOG_FORMAT`: must be json or pretty",
        "`STSVEND_ADMIN_LISTEN`: must be IP:PORT",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {found:#?}"
        );
    }
}

/// A valid policy document exactly `len` bytes long once minified.
fn policy_of_len(len: usize) -> String {
    let head = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"acs:log:*:*:project/p/logstore/"#;
    let tail = r#""}]}"#;
    let policy = format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()));
    assert_eq!(policy.len(), len);
    policy
}

#[test]
fn a_policy_too_long_once_bound_to_the_longest_address_is_refused_at_start_up() {
    // Fits alone (the per-request failure the issue reports: ready, then 502 for everyone).
    let policy = policy_of_len(2000);
    assert!(problems(None, &[("STSVEND_POLICY", &policy)]).is_empty());
    let found = problems(
        None,
        &[
            ("STSVEND_POLICY", &policy),
            ("STSVEND_BIND_SOURCE_IP", "true"),
        ],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let line = &found[0];
    assert!(line.starts_with("`STSVEND_POLICY`"), "{line}");
    assert!(line.contains("STSVEND_BIND_SOURCE_IP=true"), "{line}");
    assert!(
        line.contains("ffff:ffff:ffff:ffff::/64"),
        "the default /64 prefix is the longest source: {line}"
    );
    assert!(line.contains("bytes") && line.contains("2048"), "{line}");
    // Callers grouped by whole addresses: the worst case is the longest IPv6 address.
    let found = problems(
        None,
        &[
            ("STSVEND_POLICY", &policy),
            ("STSVEND_BIND_SOURCE_IP", "true"),
            ("STSVEND_IPV6_PREFIX_LENGTH", "128"),
        ],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        "{}",
        found[0]
    );
}

#[test]
fn the_check_uses_the_worst_case_address_not_a_typical_one() {
    // The longest policy that still fits bound to an IPv4 address, but not to the longest
    // IPv6 one: a check with a typical address would let it through.
    let v4: std::net::IpAddr = "255.255.255.255".parse().unwrap();
    let fits_v4 = (1800..2048)
        .rev()
        .find(|&len| policy::bound_to_source_ip(Some(&policy_of_len(len)), v4).is_ok())
        .unwrap();
    let pairs = |policy: &str| {
        problems(
            None,
            &[
                ("STSVEND_POLICY", policy),
                ("STSVEND_BIND_SOURCE_IP", "true"),
            ],
        )
    };
    assert_eq!(pairs(&policy_of_len(fits_v4)).len(), 1);
    // Well under the limit even bound to the longest address: accepted.
    assert!(pairs(&policy_of_len(1800)).is_empty());
    let bound = policy::bound_to_source_network(
        Some(&policy_of_len(1800)),
        policy::longest_source_network(64),
    );
    assert!(bound.is_ok_and(|text| text.len() <= policy::MAX_POLICY_LEN));
}

#[test]
fn a_long_logstore_list_with_source_ip_binding_is_refused_naming_the_profile_setting() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("project-{i:03}/logstore-{i:03}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The most logstores whose policy fits alone but not once bound.
    let n = (1..60)
        .find(|&n| {
            let stores = policy::parse_logstores(&list(n)).unwrap();
            let text = policy::logstore_policy(&stores).unwrap();
            policy::bound_to_source_network(Some(&text), policy::longest_source_network(64))
                .is_err()
        })
        .unwrap();
    assert!(policy::logstore_policy(&policy::parse_logstores(&list(n)).unwrap()).is_ok());
    let toml = format!(
        "[profiles.partner]\nrole_arn = \"{ARN}\"\nlogstore = \"{}\"\nbind_source_ip = true\n",
        list(n)
    );
    let found = problems(Some(&toml), &[("STSVEND_ROLE_ARN", "")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("profiles.partner.logstore"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("profiles.partner.bind_source_ip=true"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("fewer logstores"), "{}", found[0]);
    // Without binding the same list is fine.
    let unbound = toml.replace("bind_source_ip = true\n", "");
    assert!(problems(Some(&unbound), &[("STSVEND_ROLE_ARN", "")]).is_empty());
}

/// 32 bytes, base64: a valid fleet encryption key.
const FLEET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[test]
fn fleet_mode_is_off_without_a_redis_url_and_on_with_one() {
    let config = load(None, &env(&[]), Mode::Serve).unwrap();
    assert!(config.fleet.is_none());
    let config = load(
        None,
        &env(&[
            (
                "STSVEND_REDIS_URL",
                "redis://:hunter2hunter2@10.0.0.5:6379/2",
            ),
            ("STSVEND_REDIS_ENCRYPTION_KEY", FLEET_KEY),
            ("STSVEND_REPLICA_ID", "pod-a"),
            ("STSVEND_FLEET_SIZE_HINT", "3"),
        ]),
        Mode::Serve,
    )
    .unwrap();
    let fleet = config.fleet.as_ref().expect("fleet mode");
    assert_eq!(fleet.key_prefix, "stsvend:");
    assert_eq!(fleet.command_timeout, Duration::from_millis(50));
    assert_eq!(
        fleet.fleet_size_hint.map(std::num::NonZeroU32::get),
        Some(3)
    );
    assert_eq!(config.replica_id.as_deref(), Some("pod-a"));
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains(FLEET_KEY),
        "{shown}"
    );
}

#[test]
fn fleet_settings_read_from_the_file_too() {
    let text = format!(
        "redis_url = \"redis://127.0.0.1:6379\"\nredis_encryption_key = \"{FLEET_KEY}\"\nredis_key_prefix = \"app1:\"\n"
    );
    let config = load(Some(&file(&text)), &env(&[]), Mode::Serve).unwrap();
    assert_eq!(config.fleet.expect("fleet mode").key_prefix, "app1:");
}

#[test]
fn bad_fleet_settings_are_reported_naming_the_setting_and_no_secret() {
    let url = ("STSVEND_REDIS_URL", "redis://127.0.0.1:6379");
    let key = ("STSVEND_REDIS_ENCRYPTION_KEY", FLEET_KEY);
    let cases: Vec<Case<'_>> = vec![
        (
            "no key",
            vec![url],
            "fleet mode needs `STSVEND_REDIS_ENCRYPTION_KEY`",
        ),
        (
            "short key",
            vec![url, ("STSVEND_REDIS_ENCRYPTION_KEY", "c2hvcnQtc2VjcmV0")],
            "`STSVEND_REDIS_ENCRYPTION_KEY`:",
        ),
        (
            "not redis",
            vec![("STSVEND_REDIS_URL", "http://u:hunter2@x:6379"), key],
            "`STSVEND_REDIS_URL`: must start with redis:// or rediss://",
        ),
        (
            "key without url",
            vec![key],
            "`STSVEND_REDIS_ENCRYPTION_KEY`: is set but `STSVEND_REDIS_URL` is not",
        ),
        (
            "replica without url",
            vec![("STSVEND_REPLICA_ID", "a")],
            "`STSVEND_REPLICA_ID`: is set but `STSVEND_REDIS_URL` is not",
        ),
        (
            "bad replica id",
            vec![url, key, ("STSVEND_REPLICA_ID", "two words")],
            "`STSVEND_REPLICA_ID`: must be 1 to 64 letters",
        ),
        (
            "timeout",
            vec![url, key, ("STSVEND_REDIS_COMMAND_TIMEOUT_MS", "0")],
            "`STSVEND_REDIS_COMMAND_TIMEOUT_MS`: must be milliseconds from 1 to 10000",
        ),
        (
            "typo",
            vec![url, key, ("STSVEND_REDIS_ENCRYPTON_KEY", "x")],
            "did you mean `STSVEND_REDIS_ENCRYPTION_KEY`?",
        ),
    ];
    for (what, pairs, expected) in cases {
        let found = problems(None, &pairs);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{what}: {expected:?} not in {found:#?}"
        );
        assert!(
            found
                .iter()
                .all(|p| !p.contains("hunter2") && !p.contains(FLEET_KEY)),
            "{what}: a secret echoed: {found:#?}"
        );
    }
}

#[test]
fn dev_mode_ignores_fleet_settings_with_a_warning() {
    let config = load(
        None,
        &env(&[("STSVEND_REDIS_URL", "redis://127.0.0.1:6379")]),
        Mode::Dev {
            allow_remote: false,
        },
    )
    .unwrap();
    assert!(config.fleet.is_none());
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("fleet settings are ignored")),
        "{:?}",
        config.warnings
    );
}
