//! Bad configuration stops the real binary at start-up (issue #2, point 6): exit code 2, nothing
//! on stdout, one line per problem on stderr naming the setting, every problem at once, and no
//! panic, backtrace or secret in what it prints.

use std::io::Read as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{ROLE_ARN, TempDir, TempFile};

/// A settings set that is valid: each case spoils part of it. The endpoint is a loopback port
/// nobody serves, so a configuration wrongly accepted never reaches the real STS.
fn valid_env(secret: &str) -> Vec<(String, String)> {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tConfigErrorsTest"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
        ("STSVEND_ROLE_ARN", ROLE_ARN),
        ("STSVEND_STS_ENDPOINT", "http://127.0.0.1:9/"),
        ("STSVEND_LISTEN", "127.0.0.1:0"),
        // Asks for a backtrace, to prove none is printed.
        ("RUST_BACKTRACE", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// What one run printed.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The stderr line that names `setting`.
    fn line_naming(&self, setting: &str) -> &str {
        self.lines()
            .into_iter()
            .find(|line| line.contains(setting))
            .unwrap_or_else(|| panic!("no line names {setting}; stderr:\n{}", self.stderr))
    }
}

/// A fresh secret per test, to look for in the output.
fn unique_secret() -> String {
    format!("cfg-secret-{}", uuid::Uuid::new_v4().simple())
}

/// Runs `stsvend ARGS` with exactly `env` (after `valid_env(secret)`: an empty value removes a
/// variable), waits at most 10 s, and checks what every configuration failure must satisfy.
fn fails(args: &[&str], env: &[(&str, &str)]) -> Run {
    let secret = unique_secret();
    let mut vars = valid_env(&secret);
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        if !v.is_empty() {
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    let run = run(args, &vars);
    assert_eq!(
        run.status.code(),
        Some(2),
        "exit code for {env:?}; stderr:\n{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "nothing on stdout");
    assert!(!run.lines().is_empty(), "at least one line on stderr");
    for line in run.lines() {
        assert!(
            line.starts_with("stsvend: "),
            "each problem is one line starting `stsvend: `: {line:?}"
        );
    }
    for banned in ["panicked", "backtrace", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(
            !run.stderr.to_lowercase().contains(&banned.to_lowercase()),
            "stderr mentions {banned}:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains(&secret) && !run.stderr.contains(&secret["cfg-secret-".len()..]),
        "the AccessKey secret appears in stderr"
    );
    run
}

/// Runs the binary, bounded: polls `try_wait` for up to 10 s and kills it after that.
fn run(args: &[&str], env: &[(String, String)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stsvend"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("can start the stsvend binary");
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("can poll the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "stsvend {args:?} was still running after 10 s: the configuration was accepted; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

#[test]
fn a_duration_outside_900_to_43200_names_the_setting_and_the_range() {
    for value in ["899", "43201", "0", "an hour", "-900"] {
        let run = fails(&[], &[("STSVEND_DURATION_SECONDS", value)]);
        assert_eq!(run.lines().len(), 1, "{value}: {}", run.stderr);
        let line = run.line_naming("STSVEND_DURATION_SECONDS");
        assert!(line.contains("900") && line.contains("43200"), "{line}");
    }
}

#[test]
fn a_missing_role_arn_is_required() {
    let run = fails(&[], &[("STSVEND_ROLE_ARN", "")]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("STSVEND_ROLE_ARN");
    assert!(line.contains("required"), "{line}");
}

#[test]
fn a_user_arn_is_not_a_role_arn() {
    for value in [
        "acs:ram::123:user/x",
        "sls-web-tracking",
        "acs:ram::12ab:role/x",
    ] {
        let run = fails(&[], &[("STSVEND_ROLE_ARN", value)]);
        let line = run.line_naming("STSVEND_ROLE_ARN");
        assert!(line.contains("acs:ram::"), "shows a valid example: {line}");
    }
}

#[test]
fn a_session_name_outside_the_sts_alphabet_or_length_is_refused() {
    for value in ["a b", "x", &"y".repeat(33), "user/1"] {
        let run = fails(&[], &[("STSVEND_ROLE_SESSION_NAME", value)]);
        assert_eq!(run.lines().len(), 1, "{value}: {}", run.stderr);
        let line = run.line_naming("STSVEND_ROLE_SESSION_NAME");
        assert!(line.contains("2-32"), "{line}");
    }
}

#[test]
fn a_listen_value_that_is_not_an_address_is_refused() {
    for value in ["localhost:8080", "8080", "127.0.0.1", "127.0.0.1:99999"] {
        let run = fails(&[], &[("STSVEND_LISTEN", value)]);
        let line = run.line_naming("STSVEND_LISTEN");
        assert!(line.contains("IP:PORT"), "{line}");
    }
}

#[test]
fn a_plain_http_endpoint_is_refused_unless_it_is_loopback() {
    for value in [
        "http://sts.cn-shanghai.aliyuncs.com",
        "http://10.0.0.8:8080/",
        "ftp://127.0.0.1/",
        "not a url",
    ] {
        let run = fails(&[], &[("STSVEND_STS_ENDPOINT", value)]);
        assert_eq!(run.lines().len(), 1, "{value}: {}", run.stderr);
        let line = run.line_naming("STSVEND_STS_ENDPOINT");
        assert!(line.contains("https://"), "{line}");
    }
}

#[test]
fn a_policy_that_is_not_json_or_too_long_is_refused() {
    let run = fails(&[], &[("STSVEND_POLICY", "allow everything")]);
    let line = run.line_naming("STSVEND_POLICY");
    assert!(line.contains("JSON"), "{line}");

    let resources: Vec<String> = (0..60)
        .map(|i| format!("acs:log:*:*:project/project-{i:03}/logstore/logstore-{i:03}"))
        .collect();
    let long = serde_json::json!({
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": ["log:PostLogStoreLogs"], "Resource": resources}],
    })
    .to_string();
    let run = fails(&[], &[("STSVEND_POLICY", &long)]);
    let line = run.line_naming("STSVEND_POLICY");
    assert!(line.contains("2048"), "{line}");
    assert!(
        line.len() < 400,
        "the document is not echoed in full: {} chars",
        line.len()
    );

    let run = fails(
        &[],
        &[("STSVEND_POLICY", r#"{"Version":"2","Statement":[]}"#)],
    );
    run.line_naming("STSVEND_POLICY");
}

#[test]
fn a_logstore_and_a_policy_together_are_refused() {
    let run = fails(
        &[],
        &[
            ("STSVEND_LOGSTORE", "my-project/web-logs"),
            (
                "STSVEND_POLICY",
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"*"}]}"#,
            ),
        ],
    );
    let line = run.line_naming("STSVEND_POLICY");
    assert!(line.contains("STSVEND_LOGSTORE"), "{line}");
}

#[test]
fn a_malformed_logstore_is_refused() {
    let run = fails(&[], &[("STSVEND_LOGSTORE", "no-slash-here")]);
    run.line_naming("STSVEND_LOGSTORE");
}

#[test]
fn a_min_remaining_that_leaves_under_a_minute_of_use_is_refused() {
    // 900 s tokens must keep 841 s when served: 59 s to use each one.
    let run = fails(
        &[],
        &[
            ("STSVEND_DURATION_SECONDS", "900"),
            ("STSVEND_MIN_REMAINING_SECONDS", "841"),
        ],
    );
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("STSVEND_MIN_REMAINING_SECONDS");
    assert!(line.contains("840"), "says what would be valid: {line}");

    // With the default duration (3600 s).
    let run = fails(&[], &[("STSVEND_MIN_REMAINING_SECONDS", "3541")]);
    run.line_naming("STSVEND_MIN_REMAINING_SECONDS");
    let run = fails(&[], &[("STSVEND_MIN_REMAINING_SECONDS", "soon")]);
    run.line_naming("STSVEND_MIN_REMAINING_SECONDS");
}

#[test]
fn the_tightest_min_remaining_is_accepted() {
    // The boundary of the rule above, checked without starting a server.
    let env = |min: &str| {
        let mut env: std::collections::HashMap<String, String> =
            valid_env("s").into_iter().collect();
        env.insert("STSVEND_DURATION_SECONDS".into(), "900".into());
        env.insert("STSVEND_MIN_REMAINING_SECONDS".into(), min.into());
        env
    };
    let mode = stsvend::config::Mode::Serve;
    assert!(stsvend::config::load(None, &env("840"), mode).is_ok());
    assert!(stsvend::config::load(None, &env("841"), mode).is_err());
}

#[test]
fn an_unknown_stsvend_variable_is_refused_with_a_suggestion() {
    let run = fails(&[], &[("STSVEND_LOGSTORES", "my-project/web-logs")]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("STSVEND_LOGSTORES");
    assert!(
        line.contains("STSVEND_LOGSTORE`"),
        "suggests the right name: {line}"
    );
}

#[test]
fn missing_credentials_name_the_sdk_variables() {
    // No AccessKey anywhere: the credential chain reports what each source looked for.
    let run = fails(
        &[],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_ECS_METADATA_ENDPOINT", "http://127.0.0.1:9/"),
        ],
    );
    assert_eq!(
        run.lines().len(),
        7,
        "six sources and the verdict: {}",
        run.stderr
    );
    for source in [
        "environment",
        "oidc",
        "cli_profile",
        "credentials_file",
        "ecs_ram_role",
        "credentials_uri",
    ] {
        run.line_naming(source);
    }
    run.line_naming("no credentials found");

    let run = fails(&[], &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "")]);
    run.line_naming("ALIBABA_CLOUD_ACCESS_KEY_ID");
}

#[test]
fn every_problem_is_reported_at_once() {
    let run = fails(
        &[],
        &[
            ("STSVEND_DURATION_SECONDS", "10"),
            ("STSVEND_ROLE_SESSION_NAME", "x"),
            ("STSVEND_LISTEN", "everywhere"),
            ("STSVEND_STS_ENDPOINT", "http://sts.example.com/"),
            ("STSVEND_POLICY", "not json"),
            ("STSVEND_REGOIN", "cn-beijing"),
        ],
    );
    for setting in [
        "STSVEND_DURATION_SECONDS",
        "STSVEND_ROLE_SESSION_NAME",
        "STSVEND_LISTEN",
        "STSVEND_STS_ENDPOINT",
        "STSVEND_POLICY",
        "STSVEND_REGOIN",
    ] {
        run.line_naming(setting);
    }
    assert!(
        run.lines().len() >= 6,
        "one line per problem:\n{}",
        run.stderr
    );
}

#[test]
fn an_unknown_key_in_the_config_file_is_named_with_the_file() {
    let file = TempFile::new(
        "unknown-key.toml",
        &format!(
            "listne = \"127.0.0.1:8080\"\n\n[profiles.web]\nrole_arn = \"{ROLE_ARN}\"\nlogstores = [\"p/l\"]\n"
        ),
    );
    let run = fails(&["--config", file.path_str()], &[("STSVEND_ROLE_ARN", "")]);
    assert_eq!(run.lines().len(), 2, "{}", run.stderr);
    let line = run.line_naming("listne");
    assert!(line.contains(file.path_str()), "names the file: {line}");
    assert!(line.contains("listen"), "lists the known keys: {line}");
    let line = run.line_naming("profiles.web.logstores");
    assert!(line.contains("logstore"), "{line}");
}

#[test]
fn bad_values_in_the_config_file_are_named_by_key() {
    let file = TempFile::new(
        "bad-values.toml",
        "min_remaining_seconds = 10\n\n[profiles.web]\nrole_arn = \"acs:ram::1:user/x\"\nduration_seconds = 60\n\n[profiles.Bad-Name]\nrole_arn = \"acs:ram::1:role/r\"\n",
    );
    let run = fails(
        &["serve", "--config", file.path_str()],
        &[("STSVEND_ROLE_ARN", "")],
    );
    run.line_naming("profiles.web.role_arn");
    run.line_naming("profiles.web.duration_seconds");
    run.line_naming("profiles.Bad-Name");
    assert!(run.lines().len() >= 3, "{}", run.stderr);
}

#[test]
fn a_config_file_that_is_not_toml_does_not_echo_its_secret() {
    let secret = unique_secret();
    let file = TempFile::new(
        "broken.toml",
        &format!("access_key_secret = \"{secret}\" oops\naccess_key_id = \"LTAI5tX\"\n"),
    );
    let run = fails(&["--config", file.path_str()], &[]);
    let line = run.line_naming(file.path_str());
    assert!(line.contains("TOML"), "{line}");
    assert!(
        !run.stderr.contains(&secret),
        "the secret from the file appears in stderr"
    );
}

#[test]
fn an_unreadable_config_path_is_one_clear_line() {
    let dir = TempDir::new();
    let missing = dir.path.join("missing.toml");
    let missing = missing.to_str().unwrap();
    let run = fails(&["--config", missing], &[]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming(missing);
    assert!(line.contains("--config"), "{line}");

    // A directory is not a readable file either.
    let run = fails(&["--config", dir.path_str()], &[]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
}

#[test]
fn stsvend_config_names_the_file_too() {
    let file = TempFile::new(
        "via-env.toml",
        "[profiles.default]\nrole_arn = \"acs:ram::1:role/r\"\ncolour = \"blue\"\n",
    );
    let run = fails(
        &[],
        &[
            ("STSVEND_CONFIG", file.path_str()),
            ("STSVEND_ROLE_ARN", ""),
        ],
    );
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("profiles.default.colour");
    assert!(line.contains(file.path_str()), "{line}");

    let missing = format!("{}.gone", file.path_str());
    let run = fails(&[], &[("STSVEND_CONFIG", &missing)]);
    let line = run.line_naming(&missing);
    assert!(line.contains("STSVEND_CONFIG"), "{line}");
}

#[test]
fn help_shows_that_stsvend_config_names_the_file() {
    let run = run(&["--help"], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stdout.contains("--config <PATH>"), "{}", run.stdout);
    assert!(
        run.stdout.contains("[env: STSVEND_CONFIG"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_empty_stsvend_config_names_no_file() {
    // Empty is unset: no file is read, so the one problem is the environment's own.
    let mut vars = valid_env(&unique_secret());
    vars.push(("STSVEND_CONFIG".to_owned(), String::new()));
    vars.push((
        "STSVEND_ROLE_SESSION_NAME".to_owned(),
        "no spaces allowed".to_owned(),
    ));
    let run = run(&[], &vars);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    run.line_naming("STSVEND_ROLE_SESSION_NAME");
}

#[test]
fn the_environment_overrides_a_bad_file_value() {
    // The file's bad duration is replaced by a valid one from the environment, so the only
    // problem left is the environment's own bad session name.
    let file = TempFile::new(
        "overridden.toml",
        &format!("[profiles.default]\nrole_arn = \"{ROLE_ARN}\"\nduration_seconds = 5\n"),
    );
    let run = fails(
        &["--config", file.path_str()],
        &[
            ("STSVEND_DURATION_SECONDS", "1800"),
            ("STSVEND_ROLE_SESSION_NAME", "no spaces allowed"),
        ],
    );
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    run.line_naming("STSVEND_ROLE_SESSION_NAME");
}

#[test]
fn dev_refuses_a_non_loopback_listen_address_without_allow_remote() {
    let run = fails(&["dev"], &[("STSVEND_LISTEN", "0.0.0.0:8080")]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("STSVEND_LISTEN");
    assert!(line.contains("--allow-remote"), "{line}");
}

#[test]
fn dev_refuses_a_token_lifetime_that_leaves_no_time_to_serve() {
    // 600 s are kept back by default: a 300 s token could never be served.
    let run = fails(&["dev", "--token-lifetime", "300"], &[]);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    let line = run.line_naming("STSVEND_MIN_REMAINING_SECONDS");
    assert!(
        line.contains("--token-lifetime 300") && line.contains("at most 240"),
        "{line}"
    );
}

#[test]
fn an_unknown_command_line_flag_exits_2_without_a_panic() {
    // clap's usage errors also exit with 2; they are not one-line problems, so only the exit
    // code, the empty stdout and the absence of a panic are checked here.
    let secret = unique_secret();
    let run = run(&["--no-such-flag"], &valid_env(&secret));
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains(&secret));
}

/// What a Kubernetes Service `stsvend` with one port gives every pod of its namespace.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("STSVEND_SERVICE_HOST", "10.96.12.34"),
    ("STSVEND_SERVICE_PORT", "8080"),
    ("STSVEND_SERVICE_PORT_HTTP", "8080"),
    ("STSVEND_PORT", "tcp://10.96.12.34:8080"),
    ("STSVEND_PORT_8080_TCP", "tcp://10.96.12.34:8080"),
    ("STSVEND_PORT_8080_TCP_PROTO", "tcp"),
    ("STSVEND_PORT_8080_TCP_PORT", "8080"),
    ("STSVEND_PORT_8080_TCP_ADDR", "10.96.12.34"),
];

#[test]
fn the_variables_a_kubernetes_service_injects_do_not_stop_start_up() {
    let home = TempDir::new();
    let mut vars = valid_env(&unique_secret());
    vars.extend(
        [
            ("HOME", home.path_str()),
            ("STSVEND_ECS_METADATA_ENDPOINT", "http://127.0.0.1:9/"),
        ]
        .iter()
        .chain(SERVICE_LINKS)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let checked = run(&["check"], &vars);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    for (name, _) in SERVICE_LINKS {
        let line = format!("{name} ignored: set by the Kubernetes Service `stsvend`");
        assert!(checked.stdout.contains(&line), "{line}\n{}", checked.stdout);
    }
    // A near-miss beside them is still the typo it looks like.
    let mut near_miss = SERVICE_LINKS.to_vec();
    near_miss.push(("STSVEND_SERVICE_HOSTS", "10.96.12.34"));
    let refused = fails(&[], &near_miss);
    assert_eq!(refused.lines().len(), 1, "{}", refused.stderr);
    let line = refused.line_naming("`STSVEND_SERVICE_HOSTS`");
    assert!(line.contains("is not a setting"), "{line}");
}
