//! The shipped example configuration is valid, and means what its comments say.

use std::collections::HashMap;

use stsvend::config::{self, ConfigFile, Mode, Scope};

#[test]
fn the_example_config_file_loads_with_four_profiles() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/stsvend.example.toml");
    let file = ConfigFile {
        path: path.into(),
        text: std::fs::read_to_string(path).unwrap(),
    };
    let env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tExample"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "example-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = config::load(Some(&file), &env, Mode::Serve).expect("example is valid");
    let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "mini", "partner", "users"]);
    assert!(matches!(&config.profiles[1].scope, Scope::Logstores(s) if s.len() == 2));
    assert_eq!(config.profiles[2].scope, Scope::Document);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
