//! `stsvend check [--live]` through the real binary (issue #3, point 5): which credential source
//! was chosen and why the others were not, one `AssumeRole` per profile with `--live`, hints for
//! the usual refusals, the exit codes, and never a secret in what it prints.

use std::time::Duration;

use stsvend::credentials::chain::ORDER;

use crate::helpers::{ClosedPort, MockSts, ROLE_ARN, Reply, TEST_KEY_ID, TempDir, TempFile};

const MINI_ROLE_ARN: &str = "acs:ram::1234567890123456:role/sls-mini-program";

/// Two profiles, each scoped to logstores.
const PROFILES: &str = r#"
[profiles.default]
role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
logstore = "my-proj/web-log"

[profiles.mini]
role_arn = "acs:ram::1234567890123456:role/sls-mini-program"
duration_seconds = 900
logstore = ["my-proj/mini-log", "my-proj/mini-errors"]
"#;

/// What one run printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Everything a check run needs: a fake HOME, a refusing metadata port, a settings file.
struct Setup {
    home: TempDir,
    closed: ClosedPort,
    file: TempFile,
    secret: String,
}

impl Setup {
    fn new() -> Self {
        assert!(PROFILES.contains(ROLE_ARN) && PROFILES.contains(MINI_ROLE_ARN));
        Self {
            home: TempDir::new(),
            closed: ClosedPort::new(),
            file: TempFile::new("check.toml", PROFILES),
            secret: format!("check-base-secret-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Runs `stsvend --config FILE ARGS` with exactly these variables (plus HOME and a metadata
    /// endpoint that refuses connections), bounded to 20 s.
    async fn run(&self, args: &[&str], sts: &MockSts, with_key: bool) -> Run {
        self.run_with(args, sts, with_key, &[]).await
    }

    /// [`Self::run`] with `extra` variables too.
    async fn run_with(
        &self,
        args: &[&str],
        sts: &MockSts,
        with_key: bool,
        extra: &[(&str, &str)],
    ) -> Run {
        let metadata = self.closed.url().to_string();
        let endpoint = sts.endpoint();
        let mut env = vec![
            ("HOME", self.home.path_str()),
            ("STSVEND_STS_ENDPOINT", endpoint.as_str()),
            ("STSVEND_ECS_METADATA_ENDPOINT", metadata.as_str()),
        ];
        env.extend_from_slice(extra);
        if with_key {
            env.push(("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_KEY_ID));
            env.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET", self.secret.as_str()));
        }
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stsvend"));
        command
            .arg("--config")
            .arg(&self.file.path)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("stsvend check finished within 20 s")
            .expect("can run stsvend");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        self.assert_no_secret(&run, sts);
        run
    }

    /// Neither the base secret nor anything STS issued appears in the output.
    fn assert_no_secret(&self, run: &Run, sts: &MockSts) {
        let all = run.all();
        assert!(
            !all.contains(&self.secret),
            "the base secret was printed:\n{all}"
        );
        for issued in sts.issued() {
            assert!(
                !all.contains(&issued.secret),
                "an issued secret was printed:\n{all}"
            );
            assert!(
                !all.contains(&issued.token),
                "an issued token was printed:\n{all}"
            );
            assert!(
                !all.contains(&issued.access_key_id),
                "a whole issued key id was printed:\n{all}"
            );
        }
    }
}

/// The stdout line for `source` in the chain report.
fn verdict_line<'a>(run: &'a Run, source: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{source} ")))
        .unwrap_or_else(|| panic!("no line for source {source}:\n{}", run.stdout))
}

#[tokio::test]
async fn check_without_live_names_the_chosen_source_and_every_other_verdict_and_calls_no_sts() {
    let setup = Setup::new();
    let sts = MockSts::start(vec![]).await;
    let run = setup.run(&["check"], &sts, true).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let chosen = verdict_line(&run, "environment");
    assert!(chosen.contains("chosen"), "{chosen}");
    assert!(
        chosen.contains(&format!("{}…", &TEST_KEY_ID[..8])) && !chosen.contains(TEST_KEY_ID),
        "the key id is named by its first characters, as everywhere else: {chosen}"
    );
    for source in &ORDER[1..] {
        let line = verdict_line(&run, source);
        assert!(line.contains("not tried"), "{line}");
    }
    assert!(run.stdout.contains("profile default"), "{}", run.stdout);
    assert!(run.stdout.contains("profile mini"), "{}", run.stdout);
    assert!(
        run.stdout.contains("--live"),
        "says how to go further:\n{}",
        run.stdout
    );
    assert_eq!(sts.calls(), 0, "check without --live never calls STS");
}

/// Issue 17: the SDKs' STS region moves the base credentials' own calls, not the profiles'
/// (`STSVEND_STS_ENDPOINT` is set), and check says so; a misspelt `ALIBABA_CLOUD_` variable is a
/// warning naming the right one, not an error.
#[tokio::test]
async fn check_shows_the_sdks_sts_endpoint_and_warns_about_an_unknown_sdk_variable() {
    let setup = Setup::new();
    let sts = MockSts::start(vec![]).await;
    let extra = [
        ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
        ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
        ("ALIBABA_CLOUD_STS_REGOIN", "cn-beijing"),
    ];
    let run = setup.run_with(&["check"], &sts, true, &extra).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("STS at {}", sts.endpoint().trim_end_matches('/'))),
        "the profiles keep STSVEND_STS_ENDPOINT:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "the base credentials' own STS calls go to https://sts-vpc.cn-beijing.aliyuncs.com/"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "warning: `ALIBABA_CLOUD_STS_REGOIN` is not a variable stsvend reads; did you mean `ALIBABA_CLOUD_STS_REGION`?"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(sts.calls(), 0);
}

#[tokio::test]
async fn check_live_with_working_profiles_prints_each_expiry_and_session_policy() {
    let setup = Setup::new();
    let sts = MockSts::start(vec![]).await;
    sts.for_role(ROLE_ARN, Reply::Success { lifetime: 3600 });
    sts.for_role(MINI_ROLE_ARN, Reply::Success { lifetime: 900 });
    let run = setup.run(&["check", "--live"], &sts, true).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(sts.calls(), 2, "one AssumeRole per profile");
    let requests = sts.requests();
    for (profile, role) in [("default", ROLE_ARN), ("mini", MINI_ROLE_ARN)] {
        let ok = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("profile {profile}: OK")))
            .unwrap_or_else(|| panic!("no OK line for {profile}:\n{}", run.stdout));
        assert!(ok.contains("valid until 20"), "the expiry is printed: {ok}");
        let request = requests
            .iter()
            .find(|r| r["RoleArn"] == role)
            .unwrap_or_else(|| panic!("no AssumeRole for {role}"));
        assert_eq!(request["AccessKeyId"], TEST_KEY_ID);
        let policy = &request["Policy"];
        assert!(policy.contains("log:PostLogStoreLogs"), "{policy}");
        let printed = format!("effective session policy: {policy}");
        assert!(
            run.stdout.contains(&printed),
            "the minified policy STS received is printed for {profile}:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("project/my-proj/logstore/web-log"));
    assert!(run.stdout.contains("project/my-proj/logstore/mini-errors"));
}

#[tokio::test]
async fn check_live_explains_the_usual_refusals_and_exits_1() {
    let cases = [
        (
            Reply::error(403, "NoPermission"),
            ["AliyunSTSAssumeRoleAccess", "sts:AssumeRole"],
        ),
        (
            Reply::error(404, "EntityNotExist.Role"),
            ["role ARN", "user ARN"],
        ),
    ];
    for (reply, hints) in cases {
        let setup = Setup::new();
        let sts = MockSts::start(vec![]).await;
        sts.for_role(ROLE_ARN, Reply::Success { lifetime: 3600 });
        sts.for_role(MINI_ROLE_ARN, reply.clone());
        let run = setup.run(&["check", "--live"], &sts, true).await;
        assert_eq!(run.code, Some(1), "{reply:?}: {run:?}");
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with("profile default: OK")),
            "{reply:?}: the working profile is still reported:\n{}",
            run.stdout
        );
        let failed = run
            .stdout
            .lines()
            .position(|l| l.starts_with("profile mini: FAILED"))
            .unwrap_or_else(|| panic!("{reply:?}: no FAILED line:\n{}", run.stdout));
        let hint = run
            .stdout
            .lines()
            .nth(failed + 1)
            .filter(|l| l.trim_start().starts_with("hint:"))
            .unwrap_or_else(|| panic!("{reply:?}: no hint after the failure:\n{}", run.stdout));
        for fragment in hints {
            assert!(hint.contains(fragment), "{reply:?}: {hint}");
        }
    }
}

#[tokio::test]
async fn check_with_nothing_configured_lists_each_source_and_exits_2() {
    let setup = Setup::new();
    let sts = MockSts::start(vec![]).await;
    let run = setup.run(&["check"], &sts, false).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    for source in ORDER {
        let line = verdict_line(&run, source);
        assert!(line.contains("skipped"), "{line}");
    }
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "says what to set:\n{}",
        run.stdout
    );
    assert_eq!(sts.calls(), 0);
}
