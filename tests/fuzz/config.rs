//! Settings (`config::load`): any environment and any file text give a configuration or a list
//! of problems, each naming its setting, and no problem repeats the AccessKey secret.

use std::collections::HashMap;

use proptest::prelude::*;
use stsvend::config::{ConfigFile, Mode, load};

use crate::check;

const SECRET_MARK: &str = "SECRETmark";

/// The official SDK's variables, besides stsvend's own (`config::env_names`).
const SDK_ENV: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
];

/// Values near what each setting wants, and anything at all.
fn setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "0", "-1", "900", "3600", "43200", "43201", "4294967296",
            "99999999999999999999", "true", "false", "yes", "none", "jwt", "report", "HS256",
            "RS256,ES256", "none,HS256", "json", "pretty", "0.0.0.0:8080", "127.0.0.1:0", "[::1]:9090",
            "10.0.0.0/8,192.168.1.1/33", "cn-hangzhou", "https://sts.example.com",
            "http://127.0.0.1:1", "http://user:pw@example.com", "ftp://x", "acs:ram::1234567890123456:role/r",
            "acs:ram::x:role/", "proj/store", "p/*,q/r", "a/b/c", "/", ",,", r#"{"Version":"1","Statement":[]}"#,
            "{", "https://app.example.com", "*", "/etc/passwd",
        ])
        .prop_map(str::to_owned),
        2 => ".{0,40}",
        1 => "[0-9]{1,25}",
    ]
}

fn env_map() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        6 => prop::sample::select(
            SDK_ENV.iter().copied().chain(stsvend::config::env_names()).collect::<Vec<_>>()
        )
        .prop_map(str::to_owned),
        1 => "STSVEND_[A-Z_]{0,16}",
        1 => "STSVEND_.{0,10}",
        1 => "[A-Z_]{1,12}",
    ];
    prop::collection::hash_map(name, setting_value(), 0..12)
}

/// A TOML value: a setting-like string, a number, a boolean, an array or a table.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        4 => setting_value().prop_map(toml::Value::String),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A configuration file: real keys with odd values, profiles, unknown keys, serialised.
fn toml_table() -> impl Strategy<Value = toml::Table> {
    let global = (
        prop_oneof![
            5 => prop::sample::select(stsvend::config::file_keys().0).prop_map(str::to_owned),
            1 => ".{0,10}",
        ],
        toml_value(),
    );
    let profile = prop::collection::btree_map(
        prop_oneof![
            5 => prop::sample::select(stsvend::config::file_keys().1).prop_map(str::to_owned),
            1 => ".{0,10}",
        ],
        toml_value(),
        0..6,
    )
    .prop_map(|m| toml::Value::Table(m.into_iter().collect()));
    let profile_name = prop_oneof![
        3 => Just("default".to_owned()),
        2 => "[a-z0-9][a-z0-9_-]{0,8}",
        1 => ".{0,70}",
    ];
    let profiles = prop_oneof![
        5 => prop::collection::btree_map(profile_name, profile, 0..3)
            .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        1 => toml_value(),
    ];
    (
        prop::collection::btree_map(global.0, global.1, 0..8),
        prop::option::of(profiles),
    )
        .prop_map(|(globals, profiles)| {
            let mut table: toml::Table = globals.into_iter().collect();
            if let Some(profiles) = profiles {
                table.insert("profiles".to_owned(), profiles);
            }
            table
        })
}

/// File text: valid TOML, valid TOML with a damaged tail, or any text at all.
fn file_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => toml_table().prop_map(|t| toml::to_string(&t).unwrap_or_default()),
        1 => (toml_table(), ".{0,20}").prop_map(|(t, tail)| {
            format!("{}{tail}", toml::to_string(&t).unwrap_or_default())
        }),
        1 => ".{0,200}",
        1 => "(\\[[a-z.\"]{0,12}\\]\n|[a-z_]{1,10} = [^\n]{0,20}\n){0,8}",
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Serve),
        any::<bool>().prop_map(|allow_remote| Mode::Dev { allow_remote }),
    ]
}

/// True if `setting` names something between backticks, as every problem's setting does
/// (`` `STSVEND_LISTEN` ``, `` `listen` in `stsvend.toml` ``, `` profile `web` ``).
fn names_a_setting(setting: &str) -> bool {
    let mut parts = setting.split('`');
    parts.next();
    matches!((parts.next(), parts.next()), (Some(name), Some(_)) if !name.is_empty())
}

#[test]
fn config_any_env_and_file_is_a_config_or_named_problems() {
    let secret = ".{0,12}".prop_map(|s| format!("{SECRET_MARK}{s}"));
    let cases = (
        env_map(),
        prop::option::of(file_text()),
        mode(),
        prop::option::of(secret),
        any::<bool>(),
    );
    check(
        "config_env_and_file",
        cases,
        |(mut env, text, mode, secret, secret_in_file)| {
            let mut text = text;
            // A secret planted in the environment or the file, to check it is never repeated.
            if let Some(secret) = &secret {
                match (&mut text, secret_in_file) {
                    (Some(text), true) => {
                        let quoted = toml::Value::String(secret.clone());
                        *text = format!("access_key_secret = {quoted}\n{text}");
                    }
                    _ => {
                        env.insert("ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_owned(), secret.clone());
                    }
                }
            }
            let file = text.map(|text| ConfigFile {
                path: "fuzz.toml".to_owned(),
                text,
            });
            let Err(errors) = load(file.as_ref(), &env, mode) else {
                return Ok(());
            };
            prop_assert!(!errors.0.is_empty(), "an error without problems");
            for problem in &errors.0 {
                prop_assert!(
                    names_a_setting(&problem.setting),
                    "problem does not name a setting: {:?}",
                    problem
                );
                prop_assert!(!problem.message.is_empty(), "{:?}", problem);
            }
            // One line per problem, as the operator reads them at start-up.
            let text = errors.to_string();
            prop_assert_eq!(text.lines().count(), errors.0.len(), "{}", text);
            let shown = format!("{errors}\n{errors:?}");
            prop_assert!(
                !shown.contains(SECRET_MARK),
                "the secret is shown: {}",
                shown
            );
            Ok(())
        },
    );
}
