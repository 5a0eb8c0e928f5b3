//! The official SDKs' settings read beside stsvend's own (issue 17): the STS region and VPC
//! switch, which STS endpoint wins where, and the warning for `ALIBABA_CLOUD_` names nothing
//! reads.

use std::collections::HashMap;

use super::*;

const ARN: &str = "acs:ram::1234567890123456:role/sls-web-tracking";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = [("STSVEND_ROLE_ARN", ARN)]
        .into_iter()
        .chain(pairs.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    map.retain(|_, v| !v.is_empty());
    map
}

fn loaded(file: Option<&str>, pairs: &[(&str, &str)]) -> Config {
    let file = file.map(|text| ConfigFile {
        path: "stsvend.toml".into(),
        text: text.into(),
    });
    match load(file.as_ref(), &env(pairs), Mode::Serve) {
        Ok(config) => config,
        Err(errors) => panic!("{pairs:?}: {errors}"),
    }
}

const SHANGHAI: &str = "https://sts.cn-shanghai.aliyuncs.com/";
const BEIJING: &str = "https://sts.cn-beijing.aliyuncs.com/";
const BEIJING_VPC: &str = "https://sts-vpc.cn-beijing.aliyuncs.com/";
const HANGZHOU: &str = "https://sts.cn-hangzhou.aliyuncs.com/";

/// One row: what is tested, the environment, the profiles' endpoint, the base credentials'
/// endpoint, and the text of the one warning about the VPC switch, if any.
struct Case {
    case: &'static str,
    pairs: Vec<(&'static str, &'static str)>,
    profiles: &'static str,
    base: &'static str,
    warning: Option<&'static str>,
}

fn case(
    case: &'static str,
    pairs: Vec<(&'static str, &'static str)>,
    (profiles, base): (&'static str, &'static str),
    warning: Option<&'static str>,
) -> Case {
    Case {
        case,
        pairs,
        profiles,
        base,
        warning,
    }
}

const REGION: (&str, &str) = ("ALIBABA_CLOUD_STS_REGION", "cn-beijing");

fn cases() -> Vec<Case> {
    let region = REGION;
    let vpc = |v| ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", v);
    let example = "https://sts.example.com/";
    vec![
        case("nothing set", vec![], (SHANGHAI, SHANGHAI), None),
        case("the SDKs' region", vec![region], (BEIJING, BEIJING), None),
        case(
            "region and VPC",
            vec![region, vpc("true")],
            (BEIJING_VPC, BEIJING_VPC),
            None,
        ),
        case(
            "VPC in any case",
            vec![region, vpc("TRUE")],
            (BEIJING_VPC, BEIJING_VPC),
            None,
        ),
        case(
            "VPC false",
            vec![region, vpc("False")],
            (BEIJING, BEIJING),
            None,
        ),
        case(
            "VPC 1 is not true",
            vec![region, vpc("1")],
            (BEIJING, BEIJING),
            Some("read as false"),
        ),
        case(
            "VPC is not trimmed",
            vec![region, vpc(" true")],
            (BEIJING, BEIJING),
            Some("read as false"),
        ),
        case(
            "VPC without a region",
            vec![vpc("true")],
            (SHANGHAI, SHANGHAI),
            Some("no effect"),
        ),
        case(
            "STSVEND_REGION wins for the profiles only",
            vec![region, vpc("true"), ("STSVEND_REGION", "cn-hangzhou")],
            (HANGZHOU, BEIJING_VPC),
            None,
        ),
        case(
            "STSVEND_STS_ENDPOINT wins for the profiles only",
            vec![region, ("STSVEND_STS_ENDPOINT", "https://sts.example.com")],
            (example, BEIJING),
            None,
        ),
        case(
            "STSVEND_STS_ENDPOINT alone serves both",
            vec![("STSVEND_STS_ENDPOINT", "https://sts.example.com")],
            (example, example),
            None,
        ),
    ]
}

#[test]
fn which_sts_endpoint_wins() {
    let region = REGION;
    let cases = cases();
    for Case {
        case,
        pairs,
        profiles,
        base,
        warning,
    } in cases
    {
        let config = loaded(None, &pairs);
        assert_eq!(config.sts_endpoint.as_str(), profiles, "{case}: profiles");
        assert_eq!(config.base_sts_endpoint.as_str(), base, "{case}: base");
        let warned: Vec<&String> = config
            .warnings
            .iter()
            .filter(|w| w.contains("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"))
            .collect();
        match warning {
            Some(text) => assert!(
                warned.len() == 1 && warned[0].contains(text),
                "{case}: {warned:?}"
            ),
            None => assert!(warned.is_empty(), "{case}: {warned:?}"),
        }
    }
    // `region` in the file is stsvend's region too.
    let config = loaded(Some("region = \"cn-hangzhou\"\n"), &[region]);
    assert_eq!(config.sts_endpoint.as_str(), HANGZHOU);
    assert_eq!(config.base_sts_endpoint.as_str(), BEIJING);
}

#[test]
fn a_region_the_sdks_would_put_into_a_broken_host_name_is_refused() {
    for bad in [" cn-beijing", "CN-BEIJING", "cn_beijing", "evil.com/x", "a"] {
        let env = env(&[("ALIBABA_CLOUD_STS_REGION", bad)]);
        let errors = load(None, &env, Mode::Serve).unwrap_err().to_string();
        assert!(
            errors.contains("`ALIBABA_CLOUD_STS_REGION`") && errors.contains("region id"),
            "{bad:?}: {errors}"
        );
    }
}

#[test]
fn the_sdk_settings_are_shown_by_check_and_ignored_by_dev() {
    let pairs = [
        ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
        ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
    ];
    let config = loaded(None, &pairs);
    let given: Vec<String> = config
        .given
        .iter()
        .map(|g| format!("{} = {}", g.setting, g.value))
        .collect();
    assert!(
        given.contains(&"`ALIBABA_CLOUD_STS_REGION` = \"cn-beijing\"".to_owned()),
        "{given:?}"
    );
    assert!(
        given.contains(&"`ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED` = \"true\"".to_owned()),
        "{given:?}"
    );
    let dev = load(
        None,
        &env(&pairs),
        Mode::Dev {
            allow_remote: false,
        },
    )
    .unwrap();
    assert!(
        dev.warnings
            .iter()
            .any(|w| w.contains("`ALIBABA_CLOUD_STS_REGION` is ignored by `stsvend dev`")),
        "{:?}",
        dev.warnings
    );
}

#[test]
fn unknown_alibaba_cloud_names_are_warned_about_not_refused() {
    let config = loaded(
        None,
        &[
            ("ALIBABA_CLOUD_STS_REGON", "cn-beijing"),
            ("ALIBABA_CLOUD_REGION_ID", "hunter2-value"),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "known"),
            ("ALIBABA_CLOUD_CREDENTIALS_URI", "http://127.0.0.1:1/c"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "false"),
        ],
    );
    let unknown: Vec<&String> = config
        .warnings
        .iter()
        .filter(|w| w.contains("is not a variable stsvend reads"))
        .collect();
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(
        unknown[0].starts_with(
            "`ALIBABA_CLOUD_REGION_ID` is not a variable stsvend reads (the nearest it reads is `"
        ),
        "{}",
        unknown[0]
    );
    assert!(
        unknown[1].contains("`ALIBABA_CLOUD_STS_REGON`")
            && unknown[1].contains("did you mean `ALIBABA_CLOUD_STS_REGION`?"),
        "{}",
        unknown[1]
    );
    assert!(
        unknown.iter().all(|w| !w.contains("hunter2")),
        "values are never shown"
    );
    // Names of the chain's own variables are known, so nothing else was warned about.
    assert!(
        config
            .warnings
            .iter()
            .all(|w| !w.contains("SESSION_NAME") && !w.contains("_URI")),
        "{:?}",
        config.warnings
    );
}
