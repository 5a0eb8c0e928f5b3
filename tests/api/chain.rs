//! The credential chain (issue #3) against in-process mocks: each source alone, the order when
//! several are configured, a configured-but-broken source stopping the chain, the metadata
//! service's hardened mode with its fallback and switches, the report when nothing is
//! configured, and temporary base credentials renewing themselves while the service keeps
//! vending. Environments are maps; HOME is a fresh temp dir per test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Url;
use stsvend::clock::Clock;
use stsvend::config::{self, Mode};
use stsvend::credentials::chain::{self, Chain, ChainError, ChainInputs, ORDER, Verdict};

use crate::helpers::{
    ClosedPort, METADATA_CREDENTIALS_PATH, METADATA_TOKEN, MetadataCredentials, MetadataToken,
    MockCredentialsUri, MockMetadata, MockSts, ROLE_ARN, Reply, TempDir, TestApp, UriReply,
    eventually,
};

const ECS_ROLE: &str = "EcsChainRole";
const ECS_KEY_ID: &str = "STS.FromEcsMock";
const OIDC_ROLE_ARN: &str = "acs:ram::1234567890123456:role/rrsa-role";
const OIDC_PROVIDER_ARN: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";
const PROFILE_ROLE_ARN: &str = "acs:ram::1234567890123456:role/stsvend-base";
/// A projected service-account token as the kubelet writes it (the signature is not checked).
const JWT_ONE: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpzdHN2ZW5kIn0.c2lnbmF0dXJlLW9uZQ";
const JWT_TWO: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpyb3RhdGVkIn0.c2lnbmF0dXJlLXR3bw";

/// Everything a chain can reach: a fake HOME, a mock STS (success by default), a mock metadata
/// service with role [`ECS_ROLE`], a mock credentials URI, and a port that refuses connections.
struct World {
    home: TempDir,
    sts: MockSts,
    metadata: MockMetadata,
    uri: MockCredentialsUri,
    closed: ClosedPort,
}

impl World {
    async fn new() -> Self {
        Self {
            home: TempDir::new(),
            sts: MockSts::start(vec![]).await,
            metadata: MockMetadata::start(ECS_ROLE, ECS_KEY_ID).await,
            uri: MockCredentialsUri::start(vec![]).await,
            closed: ClosedPort::new(),
        }
    }

    /// `pairs` (with `{HOME}` and `{URI}` replaced) plus `HOME`.
    fn env(&self, pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), self.expand(v)))
            .collect();
        env.insert("HOME".to_owned(), self.home.path_str().to_owned());
        env
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{HOME}", self.home.path_str())
            .replace("{URI}", &self.uri.url())
    }

    /// Writes files into HOME (`{HOME}` and `{URI}` replaced in their contents).
    fn files(&self, files: &[(&str, &str)]) {
        for (path, contents) in files {
            self.home.write(path, &self.expand(contents));
        }
    }

    /// Loads the chain with the environment source parsed as stsvend parses it, STS at the
    /// mock, and the metadata service at the mock when `ecs` (else at a refusing port).
    async fn load(&self, env: &HashMap<String, String>, ecs: bool) -> Result<Chain, ChainError> {
        let metadata = if ecs {
            self.metadata.url()
        } else {
            self.closed.url()
        };
        load_chain(env, Url::parse(&self.sts.endpoint()).unwrap(), metadata).await
    }
}

/// `chain::load` with `configured` taken from `config::load` over the same environment (plus
/// the role every config needs).
async fn load_chain(
    env: &HashMap<String, String>,
    sts_endpoint: Url,
    metadata_endpoint: Url,
) -> Result<Chain, ChainError> {
    let mut settings = env.clone();
    settings.insert("STSVEND_ROLE_ARN".to_owned(), ROLE_ARN.to_owned());
    let config = config::load(None, &settings, Mode::Serve).expect("the settings are valid");
    chain::load(ChainInputs {
        env,
        configured: config.credentials,
        sts_endpoint,
        metadata_endpoint,
        clock: Clock::System,
        budget: None,
    })
    .await
}

fn chosen(result: Result<Chain, ChainError>, case: &str) -> Chain {
    match result {
        Ok(chain) => chain,
        Err(error) => panic!(
            "{case}: expected a chosen source, got: {error}\n{}",
            report(error.decisions())
        ),
    }
}

fn report(decisions: &[chain::Decision]) -> String {
    decisions
        .iter()
        .map(|d| format!("  {d}\n"))
        .collect::<String>()
}

/// A CLI `config.json` whose `current` profile is `profile` (a JSON object).
fn cli_config(current: &str, profiles: &[serde_json::Value]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "current": current,
        "profiles": profiles,
        "meta_path": "",
    }))
    .unwrap()
}

fn cli_ak(name: &str, id: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "mode": "AK", "access_key_id": id,
        "access_key_secret": "cli-secret", "region_id": "cn-hangzhou"})
}

fn oidc_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ALIBABA_CLOUD_ROLE_ARN", OIDC_ROLE_ARN),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER_ARN),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "{HOME}/oidc/token"),
    ]
}

fn assert_metadata_hardened(requests: &[crate::helpers::MetadataRequest], case: &str) {
    assert!(
        !requests.is_empty(),
        "{case}: the metadata service was asked"
    );
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("PUT", "/latest/api/token"),
        "{case}: hardened mode starts with the token request"
    );
    for request in requests {
        if request.method == "PUT" {
            assert_eq!(
                request.ttl_header.as_deref(),
                Some("21600"),
                "{case}: the token PUT carries X-aliyun-ecs-metadata-token-ttl-seconds"
            );
        } else {
            assert_eq!(
                request.token_header.as_deref(),
                Some(METADATA_TOKEN),
                "{case}: {} {} carries X-aliyun-ecs-metadata-token",
                request.method,
                request.path
            );
        }
    }
}

fn lists_role(requests: &[crate::helpers::MetadataRequest]) -> bool {
    requests
        .iter()
        .any(|r| r.method == "GET" && r.path == METADATA_CREDENTIALS_PATH)
}

fn asked_for_role(requests: &[crate::helpers::MetadataRequest], role: &str) -> bool {
    let path = format!("{METADATA_CREDENTIALS_PATH}{role}");
    requests.iter().any(|r| r.method == "GET" && r.path == path)
}

// ------------------------------------------------------------------------------ each source alone

#[tokio::test]
async fn environment_credentials_are_chosen_and_used_as_given() {
    let world = World::new().await;
    for token in [None, Some("env-security-token")] {
        let mut pairs = vec![
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-env"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
        ];
        if let Some(token) = token {
            pairs.push(("ALIBABA_CLOUD_SECURITY_TOKEN", token));
        }
        let chain = chosen(world.load(&world.env(&pairs), true).await, "environment");
        assert_eq!(chain.chosen().0, "environment");
        let credentials = chain.provider.credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "LTAI-env");
        assert_eq!(credentials.access_key_secret(), "env-secret");
        assert_eq!(credentials.security_token(), token);
        assert_eq!(credentials.expiration(), None);
        assert_eq!(credentials.source(), "environment");
    }
    assert_eq!(world.sts.calls(), 0, "STS is not called for an AccessKey");
    assert_eq!(world.metadata.calls(), 0, "later sources are not asked");
}

#[tokio::test]
async fn oidc_exchanges_the_token_file_unsigned_at_the_sts_endpoint() {
    let world = World::new().await;
    world.files(&[("oidc/token", &format!("{JWT_ONE}\n"))]);
    let mut pairs = oidc_env();
    pairs.push(("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-session"));
    let chain = chosen(world.load(&world.env(&pairs), false).await, "oidc");
    let (source, why) = chain.chosen();
    assert_eq!(source, "oidc");
    assert!(why.contains(OIDC_ROLE_ARN), "{why}");

    let credentials = chain.provider.credentials().await.unwrap();
    let issued = world.sts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(credentials.access_key_id(), issued[0].access_key_id);
    assert_eq!(credentials.access_key_secret(), issued[0].secret);
    assert_eq!(credentials.security_token(), Some(issued[0].token.as_str()));
    assert!(credentials.expiration().is_some());
    assert_eq!(credentials.source(), "oidc");

    let request = &world.sts.requests()[0];
    assert_eq!(request["Action"], "AssumeRoleWithOIDC");
    assert_eq!(request["OIDCToken"], JWT_ONE, "the raw token, trimmed");
    assert_eq!(request["RoleArn"], OIDC_ROLE_ARN);
    assert_eq!(request["OIDCProviderArn"], OIDC_PROVIDER_ARN);
    assert_eq!(request["RoleSessionName"], "rrsa-session");
    assert_eq!(request["Version"], "2015-04-01");
    for absent in [
        "Signature",
        "AccessKeyId",
        "SecurityToken",
        "SignatureNonce",
    ] {
        assert!(
            !request.contains_key(absent),
            "AssumeRoleWithOIDC is anonymous but carried {absent}: {request:?}"
        );
    }
}

/// What a profile (CLI or INI) must yield.
enum Expect {
    /// These fixed credentials; nothing is called.
    Key {
        id: &'static str,
        token: Option<&'static str>,
    },
    /// AssumeRole at the mock STS, signed with this AccessKey.
    AssumedWith {
        base_id: &'static str,
        session: &'static str,
        duration: &'static str,
    },
    /// The role's credentials from the metadata service, no role discovery.
    FromMetadata,
}

async fn check_expectation(world: &World, chain: &Chain, expect: &Expect, case: &str) {
    let credentials = chain
        .provider
        .credentials()
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    match expect {
        Expect::Key { id, token } => {
            assert_eq!(credentials.access_key_id(), *id, "{case}");
            assert_eq!(credentials.security_token(), *token, "{case}");
            assert_eq!(world.sts.calls(), 0, "{case}: STS not called");
            assert_eq!(world.metadata.calls(), 0, "{case}: metadata not asked");
        }
        Expect::AssumedWith {
            base_id,
            session,
            duration,
        } => {
            let issued = world.sts.issued();
            assert_eq!(issued.len(), 1, "{case}: one AssumeRole");
            assert_eq!(
                credentials.access_key_id(),
                issued[0].access_key_id,
                "{case}"
            );
            assert_eq!(
                credentials.security_token(),
                Some(issued[0].token.as_str()),
                "{case}"
            );
            let request = &world.sts.requests()[0];
            assert_eq!(request["Action"], "AssumeRole", "{case}");
            assert_eq!(
                request["AccessKeyId"], *base_id,
                "{case}: signed with the profile's key"
            );
            assert!(
                request.get("Signature").is_some_and(|s| !s.is_empty()),
                "{case}: signed"
            );
            assert!(!request.contains_key("SecurityToken"), "{case}");
            assert_eq!(request["RoleArn"], PROFILE_ROLE_ARN, "{case}");
            assert_eq!(request["RoleSessionName"], *session, "{case}");
            assert_eq!(request["DurationSeconds"], *duration, "{case}");
            assert_eq!(world.metadata.calls(), 0, "{case}: metadata not asked");
        }
        Expect::FromMetadata => {
            assert_eq!(credentials.access_key_id(), ECS_KEY_ID, "{case}");
            assert!(credentials.security_token().is_some(), "{case}");
            let requests = world.metadata.requests();
            assert_metadata_hardened(&requests, case);
            assert!(asked_for_role(&requests, ECS_ROLE), "{case}: {requests:?}");
            assert!(
                !lists_role(&requests),
                "{case}: the role is named, not discovered: {requests:?}"
            );
            assert_eq!(world.sts.calls(), 0, "{case}: STS not called");
        }
    }
}

#[tokio::test]
async fn each_cli_profile_mode_is_chosen_and_delivers_credentials() {
    let cases = [
        (
            "AK",
            serde_json::json!({"name": "p", "mode": "AK", "access_key_id": "LTAI-cli",
                "access_key_secret": "cli-secret"}),
            Expect::Key {
                id: "LTAI-cli",
                token: None,
            },
        ),
        (
            "StsToken",
            serde_json::json!({"name": "p", "mode": "StsToken", "access_key_id": "STS.cli-sts",
                "access_key_secret": "cli-sts-secret", "sts_token": "cli-sts-token"}),
            Expect::Key {
                id: "STS.cli-sts",
                token: Some("cli-sts-token"),
            },
        ),
        (
            "RamRoleArn",
            serde_json::json!({"name": "p", "mode": "RamRoleArn", "access_key_id": "LTAI-cli-rra",
                "access_key_secret": "rra-base-secret", "ram_role_arn": PROFILE_ROLE_ARN,
                "ram_session_name": "cli-session", "expired_seconds": 1800}),
            Expect::AssumedWith {
                base_id: "LTAI-cli-rra",
                session: "cli-session",
                duration: "1800",
            },
        ),
        (
            "EcsRamRole",
            serde_json::json!({"name": "p", "mode": "EcsRamRole", "ram_role_name": ECS_ROLE}),
            Expect::FromMetadata,
        ),
    ];
    for (mode, profile, expect) in cases {
        let case = format!("CLI profile in mode {mode}");
        let world = World::new().await;
        world.files(&[(".aliyun/config.json", &cli_config("p", &[profile]))]);
        let chain = chosen(world.load(&world.env(&[]), true).await, &case);
        let (source, why) = chain.chosen();
        assert_eq!(source, "cli_profile", "{case}");
        assert!(why.contains(&format!("(mode {mode})")), "{case}: {why}");
        check_expectation(&world, &chain, &expect, &case).await;
    }
}

#[tokio::test]
async fn each_credentials_file_type_is_chosen_and_delivers_credentials() {
    let ini = |body: &str| format!("[default]\n{body}");
    let cases = [
        (
            "type access_key at ~/.alibabacloud/credentials.ini",
            vec![],
            vec![(
                ".alibabacloud/credentials.ini",
                ini(
                    "type = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = ini-secret\n",
                ),
            )],
            Expect::Key {
                id: "LTAI-ini",
                token: None,
            },
        ),
        (
            "type ram_role_arn",
            vec![],
            vec![(
                ".alibabacloud/credentials.ini",
                ini(&format!(
                    "type = ram_role_arn\naccess_key_id = LTAI-ini-rra\naccess_key_secret = s\nrole_arn = {PROFILE_ROLE_ARN}\nrole_session_name = ini-session\n"
                )),
            )],
            Expect::AssumedWith {
                base_id: "LTAI-ini-rra",
                session: "ini-session",
                duration: "3600",
            },
        ),
        (
            "type ecs_ram_role",
            vec![],
            vec![(
                ".alibabacloud/credentials.ini",
                ini(&format!("type = ecs_ram_role\nrole_name = {ECS_ROLE}\n")),
            )],
            Expect::FromMetadata,
        ),
        (
            "ALIBABA_CLOUD_CREDENTIALS_FILE overrides the default path",
            vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", "{HOME}/custom/creds.ini")],
            vec![
                (
                    "custom/creds.ini",
                    ini(
                        "type = access_key\naccess_key_id = LTAI-ini-custom\naccess_key_secret = s\n",
                    ),
                ),
                (
                    ".alibabacloud/credentials.ini",
                    ini(
                        "type = access_key\naccess_key_id = LTAI-ini-default\naccess_key_secret = s\n",
                    ),
                ),
            ],
            Expect::Key {
                id: "LTAI-ini-custom",
                token: None,
            },
        ),
    ];
    for (case, env, files, expect) in cases {
        let world = World::new().await;
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        world.files(&files);
        let chain = chosen(world.load(&world.env(&env), true).await, case);
        assert_eq!(chain.chosen().0, "credentials_file", "{case}");
        check_expectation(&world, &chain, &expect, case).await;
    }
}

#[tokio::test]
async fn ecs_role_is_discovered_or_named_and_fetched_in_hardened_mode() {
    for (case, named) in [("role discovered", false), ("role named", true)] {
        let world = World::new().await;
        let pairs: &[(&str, &str)] = if named {
            &[("ALIBABA_CLOUD_ECS_METADATA", ECS_ROLE)]
        } else {
            &[]
        };
        let chain = chosen(world.load(&world.env(pairs), true).await, case);
        let (source, why) = chain.chosen();
        assert_eq!(source, "ecs_ram_role", "{case}");
        assert!(why.contains(ECS_ROLE), "{case}: {why}");
        let credentials = chain.provider.credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), ECS_KEY_ID, "{case}");
        assert!(credentials.expiration().is_some(), "{case}");
        let requests = world.metadata.requests();
        assert_metadata_hardened(&requests, case);
        assert!(asked_for_role(&requests, ECS_ROLE), "{case}: {requests:?}");
        assert_eq!(
            lists_role(&requests),
            !named,
            "{case}: the role list is read only when no role is named: {requests:?}"
        );
    }
}

#[tokio::test]
async fn credentials_uri_is_fetched_when_it_answers_success() {
    let world = World::new().await;
    // A query may carry a secret: it must not be shown in the chain report.
    let uri = format!("{}?auth=uri-query-secret", world.uri.url());
    let env = world.env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)]);
    let chain = chosen(world.load(&env, false).await, "credentials URI");
    let (source, why) = chain.chosen();
    assert_eq!(source, "credentials_uri");
    assert!(!why.contains("uri-query-secret"), "{why}");
    let credentials = chain.provider.credentials().await.unwrap();
    let issued = world.uri.issued();
    assert_eq!(credentials.access_key_id(), issued[0].access_key_id);
    assert_eq!(credentials.access_key_secret(), issued[0].secret);
    assert_eq!(credentials.security_token(), Some(issued[0].token.as_str()));
    assert!(credentials.expiration().is_some());
}

// ------------------------------------------------------------------ hardened mode and its switches

#[tokio::test]
async fn a_refused_metadata_token_falls_back_to_plain_gets() {
    for status in [403, 404] {
        let case = format!("token PUT answered {status}");
        let world = World::new().await;
        world.metadata.set_token(MetadataToken::Refuse(status));
        let chain = chosen(world.load(&world.env(&[]), true).await, &case);
        assert_eq!(chain.chosen().0, "ecs_ram_role", "{case}");
        let credentials = chain.provider.credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), ECS_KEY_ID, "{case}");
        let requests = world.metadata.requests();
        assert!(
            requests
                .iter()
                .any(|r| r.method == "PUT" && r.ttl_header.is_some()),
            "{case}: hardened mode was tried first: {requests:?}"
        );
        let gets: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
        assert!(!gets.is_empty(), "{case}");
        assert!(
            gets.iter().all(|r| r.token_header.is_none()),
            "{case}: plain GETs carry no token header: {requests:?}"
        );
    }
}

#[tokio::test]
async fn with_imdsv1_disabled_a_refused_metadata_token_is_a_broken_source() {
    let world = World::new().await;
    world.metadata.set_token(MetadataToken::Refuse(403));
    let env = world.env(&[
        ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
        ("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}"),
    ]);
    match world.load(&env, true).await {
        Err(ChainError::Broken {
            source_name,
            message,
            ..
        }) => {
            assert_eq!(source_name, "ecs_ram_role");
            assert!(message.contains("403"), "{message}");
            assert!(
                message.contains("ALIBABA_CLOUD_IMDSV1_DISABLED"),
                "{message}"
            );
        }
        other => panic!("expected the ECS source to be broken, got {other:?}"),
    }
    let requests = world.metadata.requests();
    assert!(
        requests.iter().all(|r| r.method == "PUT"),
        "no plain GET: {requests:?}"
    );
    assert_eq!(world.uri.calls(), 0, "the chain does not go on to the URI");
}

#[tokio::test]
async fn ecs_metadata_disabled_skips_the_metadata_service_entirely() {
    let world = World::new().await;
    let env = world.env(&[
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}"),
    ]);
    let chain = chosen(world.load(&env, true).await, "metadata disabled");
    assert_eq!(chain.chosen().0, "credentials_uri");
    let ecs = chain
        .decisions
        .iter()
        .find(|d| d.source == "ecs_ram_role")
        .unwrap();
    assert!(
        matches!(&ecs.verdict, Verdict::Skipped(why) if why.contains("ALIBABA_CLOUD_ECS_METADATA_DISABLED")),
        "{ecs}"
    );
    chain.provider.credentials().await.unwrap();
    assert_eq!(
        world.metadata.calls(),
        0,
        "the metadata mock was up but never asked"
    );
}

// ------------------------------------------------------------------------------------ precedence

#[tokio::test]
async fn the_first_configured_source_wins_in_the_sdk_order() {
    // Row i configures source i and every later one; source i must be chosen.
    for (first, expected) in ORDER.iter().copied().enumerate() {
        let world = World::new().await;
        let mut pairs: Vec<(&str, &str)> = vec![];
        if first == 0 {
            pairs.push(("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-env"));
            pairs.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"));
        }
        if first <= 1 {
            pairs.extend(oidc_env());
            world.files(&[("oidc/token", JWT_ONE)]);
        }
        if first <= 2 {
            world.files(&[(
                ".aliyun/config.json",
                &cli_config("default", &[cli_ak("default", "LTAI-cli")]),
            )]);
        }
        if first <= 3 {
            world.files(&[(
                ".alibabacloud/credentials.ini",
                "[default]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n",
            )]);
        }
        pairs.push(("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}"));
        let ecs = first <= 4;
        let case = format!("{expected} and every later source configured");
        let chain = chosen(world.load(&world.env(&pairs), ecs).await, &case);
        assert_eq!(
            chain.chosen().0,
            expected,
            "{case}\n{}",
            report(&chain.decisions)
        );
        for (i, decision) in chain.decisions.iter().enumerate() {
            assert_eq!(decision.source, ORDER[i], "{case}");
            let ok = match i.cmp(&first) {
                std::cmp::Ordering::Less => matches!(decision.verdict, Verdict::Skipped(_)),
                std::cmp::Ordering::Equal => matches!(decision.verdict, Verdict::Chosen(_)),
                std::cmp::Ordering::Greater => decision.verdict == Verdict::NotTried,
            };
            assert!(ok, "{case}: {decision}");
        }
        let credentials = chain.provider.credentials().await.unwrap();
        let expected_id = match expected {
            "environment" => "LTAI-env".to_owned(),
            "oidc" => world.sts.issued()[0].access_key_id.clone(),
            "cli_profile" => "LTAI-cli".to_owned(),
            "credentials_file" => "LTAI-ini".to_owned(),
            "ecs_ram_role" => ECS_KEY_ID.to_owned(),
            _ => world.uri.issued()[0].access_key_id.clone(),
        };
        assert_eq!(credentials.access_key_id(), expected_id, "{case}");
        assert_eq!(credentials.source(), expected, "{case}");
        assert_eq!(
            world.sts.calls(),
            usize::from(first == 1),
            "{case}: STS calls"
        );
        if first < 4 {
            assert_eq!(
                world.metadata.calls(),
                0,
                "{case}: metadata service not asked"
            );
        }
        if first < 5 {
            assert_eq!(world.uri.calls(), 0, "{case}: credentials URI not called");
        }
    }
}

// ----------------------------------------------------------------- configured but broken: stop

#[tokio::test]
async fn a_configured_but_broken_source_stops_the_chain_with_its_error() {
    struct Case {
        name: &'static str,
        env: Vec<(&'static str, &'static str)>,
        files: Vec<(&'static str, String)>,
        metadata: Option<MetadataCredentials>,
        source: &'static str,
        message: &'static str,
    }
    let ak_ini = "[default]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n";
    let oidc_missing_file = {
        let mut env = oidc_env();
        env.retain(|(k, _)| *k != "ALIBABA_CLOUD_OIDC_TOKEN_FILE");
        env.push(("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "{HOME}/oidc/missing-token"));
        env
    };
    let oidc_two_of_three = {
        let mut env = oidc_env();
        env.retain(|(k, _)| *k != "ALIBABA_CLOUD_OIDC_PROVIDER_ARN");
        env
    };
    let cases = [
        Case {
            name: "OIDC token file missing",
            env: oidc_missing_file,
            files: vec![(".alibabacloud/credentials.ini", ak_ini.to_owned())],
            metadata: None,
            source: "oidc",
            message: "cannot read OIDC token file",
        },
        Case {
            name: "OIDC with 2 of its 3 variables",
            env: oidc_two_of_three,
            files: vec![("oidc/token", JWT_ONE.to_owned())],
            metadata: None,
            source: "oidc",
            message: "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        },
        Case {
            name: "malformed config.json",
            env: vec![],
            files: vec![
                (
                    ".aliyun/config.json",
                    "{\"current\": \"default\", \"profiles\": [\n".to_owned(),
                ),
                (".alibabacloud/credentials.ini", ak_ini.to_owned()),
            ],
            metadata: None,
            source: "cli_profile",
            message: "not a valid CLI configuration",
        },
        Case {
            name: "ALIBABA_CLOUD_PROFILE names a profile missing from config.json",
            env: vec![("ALIBABA_CLOUD_PROFILE", "missing")],
            files: vec![
                (
                    ".aliyun/config.json",
                    cli_config("default", &[cli_ak("default", "LTAI-cli")]),
                ),
                (
                    ".alibabacloud/credentials.ini",
                    "[missing]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n"
                        .to_owned(),
                ),
            ],
            metadata: None,
            source: "cli_profile",
            message: "no profile named `missing`",
        },
        Case {
            name: "CLI profile in an unsupported mode",
            env: vec![],
            files: vec![(
                ".aliyun/config.json",
                cli_config(
                    "default",
                    &[serde_json::json!({"name": "default", "mode": "ChainableRamRoleArn",
                        "source_profile": "other", "ram_role_arn": PROFILE_ROLE_ARN})],
                ),
            )],
            metadata: None,
            source: "cli_profile",
            message: "ChainableRamRoleArn",
        },
        Case {
            name: "ALIBABA_CLOUD_CREDENTIALS_FILE names a missing file",
            env: vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", "{HOME}/nowhere/creds.ini")],
            files: vec![(".alibabacloud/credentials.ini", ak_ini.to_owned())],
            metadata: None,
            source: "credentials_file",
            message: "ALIBABA_CLOUD_CREDENTIALS_FILE",
        },
        Case {
            name: "credentials file section of an unsupported type",
            env: vec![],
            files: vec![(
                ".alibabacloud/credentials.ini",
                "[default]\ntype = rsa_key_pair\npublic_key_id = x\nprivate_key_file = y\n"
                    .to_owned(),
            )],
            metadata: None,
            source: "credentials_file",
            message: "rsa_key_pair",
        },
        Case {
            name: "metadata service answering garbage",
            env: vec![],
            files: vec![],
            metadata: Some(MetadataCredentials::Raw {
                status: 200,
                body: "<html>captive portal</html>".to_owned(),
            }),
            source: "ecs_ram_role",
            message: "not a JSON object",
        },
        Case {
            name: "metadata service answering Code: Failed",
            env: vec![],
            files: vec![],
            metadata: Some(MetadataCredentials::Raw {
                status: 200,
                body: r#"{"Code":"Failed","Message":"role not ready"}"#.to_owned(),
            }),
            source: "ecs_ram_role",
            message: "\"Failed\"",
        },
        Case {
            name: "ALIBABA_CLOUD_ECS_METADATA names a role the instance does not have",
            env: vec![("ALIBABA_CLOUD_ECS_METADATA", "NoSuchRole")],
            files: vec![],
            metadata: None,
            source: "ecs_ram_role",
            message: "NoSuchRole",
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let world = World::new().await;
        let files: Vec<(&str, &str)> = case.files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        world.files(&files);
        if let Some(answer) = case.metadata.clone() {
            world.metadata.set_credentials(answer);
        }
        let mut pairs = case.env.clone();
        // A later source that works, and must not be reached.
        pairs.push(("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}"));
        let result = world.load(&world.env(&pairs), true).await;
        let line = match &result {
            Ok(chain) => format!("chose {} ({})", chain.chosen().0, chain.chosen().1),
            Err(error) => error.to_string(),
        };
        println!("{:<70} -> {line}", case.name);
        match result {
            Err(ChainError::Broken {
                source_name,
                message,
                decisions,
            }) if source_name == case.source => {
                if !message.contains(case.message) {
                    failures.push(format!(
                        "{}: message lacks {:?}: {message}",
                        case.name, case.message
                    ));
                }
                let position = ORDER.iter().position(|s| *s == case.source).unwrap();
                let verdicts_ok = decisions.len() == ORDER.len()
                    && decisions
                        .iter()
                        .enumerate()
                        .all(|(i, d)| match i.cmp(&position) {
                            std::cmp::Ordering::Less => matches!(d.verdict, Verdict::Skipped(_)),
                            std::cmp::Ordering::Equal => matches!(d.verdict, Verdict::Broken(_)),
                            std::cmp::Ordering::Greater => d.verdict == Verdict::NotTried,
                        });
                if !verdicts_ok {
                    failures.push(format!("{}: decisions\n{}", case.name, report(&decisions)));
                }
                if position < 4 && world.metadata.calls() != 0 {
                    failures.push(format!("{}: the metadata service was asked", case.name));
                }
            }
            _ => failures.push(format!(
                "{}: expected `{}` broken, got: {line}",
                case.name, case.source
            )),
        }
        if world.uri.calls() != 0 {
            failures.push(format!(
                "{}: fell through to the credentials URI",
                case.name
            ));
        }
        if world.sts.calls() != 0 {
            failures.push(format!("{}: STS was called", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_temporary_source_that_cannot_deliver_its_first_credentials_is_broken() {
    // Each case: what to configure and spoil, the source that must be named, a message fragment.
    enum Spoil {
        Uri,
        Sts(Reply),
        Metadata,
    }
    let rra_profile = serde_json::json!({"name": "default", "mode": "RamRoleArn",
        "access_key_id": "LTAI-cli-rra", "access_key_secret": "rra-base-secret",
        "ram_role_arn": PROFILE_ROLE_ARN});
    let ini = "[default]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n";
    let ecs_ini = format!("[default]\ntype = ecs_ram_role\nrole_name = {ECS_ROLE}\n");
    struct Case {
        name: &'static str,
        env: Vec<(&'static str, &'static str)>,
        files: Vec<(&'static str, String)>,
        spoil: Spoil,
        source: &'static str,
        fragment: &'static str,
    }
    let cases = [
        Case {
            name: "credentials URI answering Code: Failed",
            env: vec![],
            files: vec![],
            spoil: Spoil::Uri,
            source: "credentials_uri",
            fragment: "\"Failed\"",
        },
        Case {
            name: "OIDC token refused by STS",
            env: oidc_env(),
            files: vec![("oidc/token", JWT_ONE.to_owned())],
            spoil: Spoil::Sts(Reply::error(400, "AuthenticationFail.OIDCToken.Invalid")),
            source: "oidc",
            fragment: "AuthenticationFail.OIDCToken.Invalid",
        },
        Case {
            name: "RamRoleArn CLI profile refused by STS",
            env: vec![],
            files: vec![
                (".aliyun/config.json", cli_config("default", &[rra_profile])),
                (".alibabacloud/credentials.ini", ini.to_owned()),
            ],
            spoil: Spoil::Sts(Reply::error(403, "NoPermission")),
            source: "cli_profile",
            fragment: "NoPermission",
        },
        Case {
            name: "ecs_ram_role credentials-file section, metadata answering Code: Failed",
            env: vec![],
            files: vec![(".alibabacloud/credentials.ini", ecs_ini)],
            spoil: Spoil::Metadata,
            source: "credentials_file",
            fragment: "\"Failed\"",
        },
    ];
    let mut failures = Vec::new();
    for Case {
        name,
        env,
        files,
        spoil,
        source,
        fragment,
    } in cases
    {
        let world = World::new().await;
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        world.files(&files);
        let failed = r#"{"Code":"Failed","Message":"not ready"}"#;
        match spoil {
            Spoil::Uri => world.uri.set_fallback(UriReply::Raw {
                status: 200,
                body: failed,
            }),
            Spoil::Sts(reply) => world.sts.set_fallback(reply),
            Spoil::Metadata => world.metadata.set_credentials(MetadataCredentials::Raw {
                status: 200,
                body: failed.to_owned(),
            }),
        }
        let uri_is_later = source != "credentials_uri";
        let mut pairs = env;
        pairs.push(("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}"));
        // The metadata service is up except for the URI case, where ECS must not be configured.
        let result = world.load(&world.env(&pairs), uri_is_later).await;
        let line = match &result {
            Ok(chain) => {
                let later = chain.provider.credentials().await.map(|_| ());
                format!(
                    "chose {} ({}); provider.credentials() then gave {later:?}",
                    chain.chosen().0,
                    chain.chosen().1
                )
            }
            Err(error) => error.to_string(),
        };
        println!("{name:<75} -> {line}");
        match result {
            Err(ChainError::Broken {
                source_name,
                message,
                ..
            }) if source_name == source => {
                if !message.contains(fragment) {
                    failures.push(format!("{name}: message lacks {fragment:?}: {message}"));
                }
            }
            _ => failures.push(format!("{name}: expected `{source}` broken, got: {line}")),
        }
        if uri_is_later && world.uri.calls() != 0 {
            failures.push(format!("{name}: fell through to the credentials URI"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------ nothing at all

#[tokio::test]
async fn nothing_configured_lists_every_source_with_its_reason() {
    let world = World::new().await;
    let started = Instant::now();
    let result = world.load(&world.env(&[]), false).await;
    let elapsed = started.elapsed();
    let Err(ChainError::NothingConfigured { decisions }) = result else {
        panic!("expected NothingConfigured, got {result:?}");
    };
    let sources: Vec<&str> = decisions.iter().map(|d| d.source).collect();
    assert_eq!(sources, ORDER, "all six sources, in order");
    let looked_for = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        ".aliyun/config.json",
        ".alibabacloud/credentials.ini",
        "metadata",
        "ALIBABA_CLOUD_CREDENTIALS_URI",
    ];
    for (decision, what) in decisions.iter().zip(looked_for) {
        match &decision.verdict {
            Verdict::Skipped(why) => assert!(why.contains(what), "{decision}: mentions {what}"),
            other => panic!("{}: expected skipped, got {other:?}", decision.source),
        }
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "an off-cloud start is not delayed: {elapsed:?}"
    );
    assert_eq!(
        world.sts.calls() + world.uri.calls() + world.metadata.calls(),
        0
    );
}

// ------------------------------------------------------------------- renewal of base credentials

/// `renew_at` is never sooner than 10 s, and credentials within 60 s of expiry are not used, so
/// 75 s of life means a renewal about 10 s after each fetch.
const SHORT_BASE_LIFETIME: i64 = 75;

#[tokio::test]
async fn a_rotated_oidc_token_file_is_read_again_at_the_next_renewal() {
    let world = World::new().await;
    world.sts.set_fallback(Reply::Success {
        lifetime: SHORT_BASE_LIFETIME,
    });
    let token_file = world.home.write("oidc/token", JWT_ONE);
    let chain = chosen(world.load(&world.env(&oidc_env()), false).await, "oidc");
    let first = chain.provider.credentials().await.unwrap();
    assert_eq!(world.sts.requests()[0]["OIDCToken"], JWT_ONE);

    // The kubelet rotates the projected token.
    std::fs::write(&token_file, JWT_TWO).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async { world.sts.calls() >= 2 }).await,
        "the OIDC credentials were not renewed within 20 s"
    );
    let second = &world.sts.requests()[1];
    assert_eq!(second["Action"], "AssumeRoleWithOIDC");
    assert_eq!(
        second["OIDCToken"], JWT_TWO,
        "the renewal used the new token"
    );
    let renewed_id = world.sts.issued()[1].access_key_id.clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            chain
                .provider
                .credentials()
                .await
                .is_ok_and(|c| c.access_key_id() == renewed_id)
        })
        .await,
        "the renewed credentials replace {}",
        first.access_key_id()
    );
}

#[tokio::test]
async fn the_service_keeps_vending_while_its_base_credentials_rotate() {
    let world = World::new().await;
    world.uri.set_fallback(UriReply::Success {
        lifetime: SHORT_BASE_LIFETIME,
    });
    world.sts.set_fallback(Reply::Success { lifetime: 8 });
    let env = world.env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", "{URI}")]);
    let chain = chosen(world.load(&env, false).await, "credentials URI");
    chain.provider.credentials().await.unwrap();

    // No AccessKey in the settings: the service calls STS with what the chain found.
    let app = TestApp::builder(&world.sts.endpoint())
        .env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
            ("STSVEND_MIN_REMAINING_SECONDS", "3"),
        ])
        .credentials(chain.provider.clone())
        .start()
        .await;

    let base_ids = || {
        let mut ids: Vec<String> = world
            .sts
            .requests()
            .iter()
            .filter(|r| r.get("Action").map(String::as_str) == Some("AssumeRole"))
            .map(|r| r["AccessKeyId"].clone())
            .collect();
        ids.dedup();
        ids
    };
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut rotated_at = None;
    // Poll until two base keys have signed AssumeRole, then 3 s more; 25 s at most.
    while started.elapsed() < Duration::from_secs(25) {
        let response = app.get("/get_sts_token").await;
        statuses.push(response.status().as_u16());
        if rotated_at.is_none() && base_ids().len() >= 2 {
            rotated_at = Some(Instant::now());
        }
        if rotated_at.is_some_and(|at| at.elapsed() > Duration::from_secs(3)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "every request is answered 200 across the rotation; {} of {} were not: {failed:?}",
        failed.len(),
        statuses.len()
    );
    let ids = base_ids();
    assert!(
        ids.len() >= 2,
        "AssumeRole was signed with at least two base keys within 25 s: {ids:?}"
    );
    let issued = world.uri.issued();
    let assume_roles: Vec<_> = world
        .sts
        .requests()
        .into_iter()
        .filter(|r| r.get("Action").map(String::as_str) == Some("AssumeRole"))
        .collect();
    assert!(
        assume_roles.len() >= 3,
        "{} AssumeRole calls",
        assume_roles.len()
    );
    for request in &assume_roles {
        let base = issued
            .iter()
            .find(|i| i.access_key_id == request["AccessKeyId"])
            .unwrap_or_else(|| panic!("signed with an unknown key {}", request["AccessKeyId"]));
        assert_eq!(
            request.get("SecurityToken"),
            Some(&base.token),
            "AssumeRole with {} carries its SecurityToken",
            base.access_key_id
        );
        assert!(request.contains_key("Signature"));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_never_waits_on_a_base_renewal_while_the_current_credentials_are_valid() {
    let world = World::new().await;
    let slow = Duration::from_secs(3);
    let uri = MockCredentialsUri::start(vec![
        UriReply::Success {
            lifetime: SHORT_BASE_LIFETIME,
        },
        UriReply::Slow {
            delay: slow,
            reply: Box::new(UriReply::Success {
                lifetime: SHORT_BASE_LIFETIME,
            }),
        },
    ])
    .await;
    let env = world.env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", &uri.url())]);
    let chain = chosen(world.load(&env, false).await, "credentials URI");
    let first = chain.provider.credentials().await.unwrap();
    assert_eq!(first.access_key_id(), "STS.uri-0");

    assert!(
        eventually(Duration::from_secs(20), || async { uri.calls() >= 2 }).await,
        "the base credentials were not renewed within 20 s"
    );
    // The renewal is in flight now (the URI holds it for 3 s): readers get the current set.
    let window = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut reads = 0;
    while window.elapsed() < Duration::from_secs(1) {
        let started = Instant::now();
        let credentials = chain.provider.credentials().await.unwrap();
        slowest = slowest.max(started.elapsed());
        reads += 1;
        assert_eq!(credentials.access_key_id(), "STS.uri-0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slowest < Duration::from_millis(200),
        "the slowest of {reads} reads during the renewal took {slowest:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            chain
                .provider
                .credentials()
                .await
                .is_ok_and(|c| c.access_key_id() == "STS.uri-1")
        })
        .await,
        "the renewed credentials arrive once the slow answer does"
    );
}
