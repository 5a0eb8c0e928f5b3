//! Replays the credential-chain scenarios recorded with the official Python SDK
//! (`scripts/gen_chain_decisions.py` → `tests/fixtures/credential_chain_decisions.json`) against
//! stsvend's chain: the same environment, the same files in a fresh HOME, the same mocks.
//!
//! Where the SDK chose a source, stsvend must choose the same one with the same AccessKeyId.
//! Where the SDK silently went past a configured-but-broken source (`fell_through`), stsvend
//! must stop with that source's error instead: the deliberate divergence of issue #3 (never fall
//! through to a different identity).

use std::collections::HashMap;

use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::config::{self, Mode};
use stsvend::credentials::chain::{self, ChainError, ChainInputs};

use crate::helpers::{
    ClosedPort, MockCredentialsUri, MockMetadata, MockSts, ROLE_ARN, Reply, TempDir, UriReply,
};

const FIXTURE: &str = include_str!("../fixtures/credential_chain_decisions.json");

/// What stsvend decided for one scenario, in the fixture's terms.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A source was chosen and delivered credentials with this AccessKeyId.
    Chosen {
        source: String,
        key_id: String,
    },
    /// A source was chosen but its credentials could not be had.
    ChosenWithoutCredentials {
        source: String,
        error: String,
    },
    /// The chain stopped at this configured-but-broken source (a configuration error for the
    /// environment source).
    Stopped {
        source: String,
        message: String,
    },
    NothingConfigured,
    /// The base credentials' STS endpoint is not where the SDK sent its call.
    StsElsewhere(String),
}

impl Outcome {
    fn line(&self) -> String {
        match self {
            Self::Chosen { source, key_id } => format!("chose {source} ({key_id})"),
            Self::ChosenWithoutCredentials { source, error } => {
                format!("chose {source} but got no credentials: {error}")
            }
            Self::Stopped { source, message } => format!("stopped at {source}: {message}"),
            Self::NothingConfigured => "nothing configured".to_owned(),
            Self::StsElsewhere(problem) => problem.clone(),
        }
    }
}

/// The fixture's mocks: an STS answering with a fixed AccessKeyId per action, a metadata service
/// with the fixture's role, a credentials URI; all fixed ids from the fixture's `mocks` section.
struct Mocks {
    sts: MockSts,
    metadata: MockMetadata,
    uri: MockCredentialsUri,
    closed: ClosedPort,
}

impl Mocks {
    async fn start(ids: &Value) -> Self {
        let id = |key: &str| {
            ids[key]
                .as_str()
                .unwrap_or_else(|| panic!("fixture mocks.{key}"))
        };
        let sts = MockSts::start(vec![]).await;
        for (action, key) in [
            ("AssumeRoleWithOIDC", "oidc_access_key_id"),
            ("AssumeRole", "ram_role_arn_access_key_id"),
        ] {
            let reply = Reply::Fixed {
                access_key_id: id(key).to_owned(),
                lifetime: 6 * 3600,
            };
            sts.for_action(action, reply);
        }
        // Any other action is a request the fixture did not record.
        sts.set_fallback(Reply::error(400, "MissingParameter"));
        let metadata = MockMetadata::start(id("ecs_role_name"), id("ecs_access_key_id")).await;
        let uri = MockCredentialsUri::start(vec![]).await;
        uri.set_fallback(UriReply::Fixed {
            access_key_id: id("uri_access_key_id").to_owned(),
            lifetime: 6 * 3600,
        });
        assert_eq!(
            ids["uri_path"], "/creds",
            "the URI mock serves the fixture's path"
        );
        Self {
            sts,
            metadata,
            uri,
            closed: ClosedPort::new(),
        }
    }
}

/// The SDK with `ALIBABA_CLOUD_STS_REGION` calls `sts[-vpc].<region>.aliyuncs.com`: stsvend's
/// base credentials must call the same host. Without it the SDK calls `sts.aliyuncs.com` and
/// stsvend its own STS endpoint (`STSVEND_STS_ENDPOINT` or `STSVEND_REGION`'s), as the README
/// says. `None` when they agree.
fn sts_host_differs(
    scenario: &Value,
    base_sts: &reqwest::Url,
    own: &reqwest::Url,
) -> Option<String> {
    let host = scenario["sts_host"].as_str()?;
    let region_given = scenario["env"]["ALIBABA_CLOUD_STS_REGION"].is_string();
    let agrees = if region_given {
        base_sts.host_str() == Some(host) && base_sts.scheme() == "https"
    } else {
        host == "sts.aliyuncs.com" && base_sts == own
    };
    (!agrees).then(|| {
        format!("the SDK called STS at {host}, stsvend's base credentials would call {base_sts}")
    })
}

/// Runs one scenario through `config::load` (the environment source) and `chain::load`.
async fn replay(scenario: &Value, mocks: &Mocks) -> Outcome {
    let home = TempDir::new();
    let expand = |text: &str| {
        text.replace("{HOME}", home.path_str())
            .replace("{URI}", &mocks.uri.url())
    };
    let files = scenario["files"].as_object().expect("files is an object");
    for (path, contents) in files {
        home.write(path, &expand(contents.as_str().expect("file contents")));
    }
    let mut env: HashMap<String, String> = scenario["env"]
        .as_object()
        .expect("env is an object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                expand(v.as_str().expect("env values are strings")),
            )
        })
        .collect();
    env.insert("HOME".to_owned(), home.path_str().to_owned());

    let mut settings = env.clone();
    settings.insert("STSVEND_ROLE_ARN".to_owned(), ROLE_ARN.to_owned());
    let config = match config::load(None, &settings, Mode::Serve) {
        Ok(config) => config,
        Err(errors) => {
            let about_env_keys = errors
                .0
                .iter()
                .all(|p| p.setting.contains("ALIBABA_CLOUD_ACCESS_KEY_"));
            assert!(
                about_env_keys,
                "{}: configuration rejected for another reason: {errors}",
                scenario["name"]
            );
            return Outcome::Stopped {
                source: "environment".to_owned(),
                message: errors.to_string(),
            };
        }
    };
    // Where the base credentials' own STS calls would go; the calls themselves go to the mock,
    // as the generator redirects the SDK's.
    let base_sts = config.base_sts_endpoint.clone();
    if let Some(problem) = sts_host_differs(scenario, &base_sts, &config.sts_endpoint) {
        return Outcome::StsElsewhere(problem);
    }
    let metadata_endpoint = if scenario["ecs_metadata"] == true {
        mocks.metadata.url()
    } else {
        mocks.closed.url()
    };
    let result = chain::load(ChainInputs {
        env: &env,
        configured: config.credentials,
        sts_endpoint: mocks.sts.url(),
        metadata_endpoint,
        clock: Clock::System,
        budget: None,
    })
    .await;
    match result {
        Ok(chain) => {
            let source = chain.chosen().0.to_owned();
            match chain.provider.credentials().await {
                Ok(credentials) => Outcome::Chosen {
                    source,
                    key_id: credentials.access_key_id().to_owned(),
                },
                Err(error) => Outcome::ChosenWithoutCredentials {
                    source,
                    error: error.to_string(),
                },
            }
        }
        Err(ChainError::Broken {
            source_name,
            message,
            ..
        }) => Outcome::Stopped {
            source: source_name.to_owned(),
            message,
        },
        Err(ChainError::NothingConfigured { .. }) => Outcome::NothingConfigured,
    }
}

#[tokio::test]
async fn every_python_sdk_chain_decision_is_reproduced_or_deliberately_stopped() {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    let sdk = fixture["sdk"].as_str().unwrap_or_default();
    assert!(
        sdk.starts_with("alibabacloud_credentials=="),
        "the fixture names the SDK it was recorded with: {sdk:?}"
    );
    let scenarios = fixture["scenarios"].as_array().expect("scenarios");
    let with_sts_host = scenarios
        .iter()
        .filter(|s| s["env"]["ALIBABA_CLOUD_STS_REGION"].is_string() && s["sts_host"].is_string())
        .count();
    assert!(
        with_sts_host >= 5,
        "the fixture has {with_sts_host} scenarios with ALIBABA_CLOUD_STS_REGION and an STS call"
    );
    assert!(
        scenarios.len() >= 45,
        "the fixture has {} scenarios",
        scenarios.len()
    );
    let mocks = Mocks::start(&fixture["mocks"]).await;

    let mut lines = Vec::new();
    let mut failures = 0;
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("name");
        let source = scenario["source"].as_str().expect("source");
        let python_key_id = scenario["python"]["access_key_id"].as_str();
        let fell_through = scenario["fell_through"].as_str();
        let got = replay(scenario, &mocks).await;
        let (ok, expected) = match fell_through {
            None if source == "none" => (
                got == Outcome::NothingConfigured,
                "nothing configured".to_owned(),
            ),
            None => {
                let key_id = python_key_id.expect("a chosen source has a key id");
                (
                    got == Outcome::Chosen {
                        source: source.to_owned(),
                        key_id: key_id.to_owned(),
                    },
                    format!("chose {source} ({key_id})"),
                )
            }
            Some(broken) => (
                matches!(&got, Outcome::Stopped { source, .. } if source == broken),
                if source == "none" {
                    format!("stopped at {broken} (the SDK went past it and found nothing)")
                } else {
                    format!("stopped at {broken} (the SDK went past it to {source})")
                },
            ),
        };
        if !ok {
            failures += 1;
        }
        lines.push(format!(
            "{} {name}\n      expected: {expected}\n      stsvend:  {}",
            if ok { "ok  " } else { "FAIL" },
            got.line()
        ));
    }
    let report = lines.join("\n");
    println!("{report}");
    assert_eq!(
        failures,
        0,
        "{failures} of {} scenarios differ:\n{report}",
        scenarios.len()
    );
}
