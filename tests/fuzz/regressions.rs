//! Inputs the properties once failed on, kept as plain tests with the literal input.

use std::collections::HashMap;

use stsvend::config::{ConfigFile, Mode, load};

fn file_problems(text: &str) -> Vec<String> {
    let file = ConfigFile {
        path: "fuzz.toml".to_owned(),
        text: text.to_owned(),
    };
    load(Some(&file), &HashMap::new(), Mode::Serve)
        .expect_err("refused")
        .0
        .into_iter()
        .map(|problem| problem.to_string())
        .collect()
}

/// `config_env_and_file` found that an empty key was reported as `` `` in `fuzz.toml` ``,
/// naming no setting at all.
#[test]
fn config_empty_file_key_is_named_as_toml_spells_it() {
    let problems = file_problems("\"\" = \"\"\n");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(r#"`""` in `fuzz.toml`: unknown key"#)),
        "{problems:?}"
    );
}

/// Keys that need quoting are shown quoted and escaped, so each problem stays on one line.
#[test]
fn config_file_key_with_a_newline_stays_on_one_line() {
    let problems = file_problems("\"a\\nb\" = 1\n[profiles.\"x\\ny\"]\n\"c\\nd\" = 2\n");
    assert!(problems.iter().all(|p| !p.contains('\n')), "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(r#"`"a\nb"` in `fuzz.toml`"#)),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(r#"`profiles."x\ny"."c\nd"` in `fuzz.toml`"#)),
        "{problems:?}"
    );
}

/// An unknown `STSVEND_` variable whose name needs quoting is shown quoted, on one line.
#[test]
fn config_unknown_variable_with_a_newline_stays_on_one_line() {
    let env = HashMap::from([("STSVEND_A\nB".to_owned(), "1".to_owned())]);
    let problems = load(None, &env, Mode::Serve).expect_err("refused").0;
    assert!(
        problems.iter().any(|p| p.setting == r#"`"STSVEND_A\nB"`"#),
        "{problems:?}"
    );
    assert!(
        problems.iter().all(|p| !p.to_string().contains('\n')),
        "{problems:?}"
    );
}
