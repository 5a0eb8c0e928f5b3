//! The problems found while reading settings, and how values and names are quoted in them: one
//! line per problem, naming the setting, never flooding the terminal.

use std::borrow::Cow;
use std::fmt;

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value came from: an environment variable or `key` in the file.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Collects problems while parsing.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, setting: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            setting: setting.into(),
            message: message.into(),
        });
    }

    /// How many so far: a parser compares before and after to know whether it found any.
    pub(super) fn count(&self) -> usize {
        self.0.len()
    }
}

/// A value quoted for an error line: escaped, and cut short so a pasted document does not flood
/// the terminal.
pub(super) fn shown(value: &str) -> String {
    let cut: String = value.chars().take(60).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A file key or variable name as the operator must type it: bare when it can be, quoted and
/// escaped otherwise. Printed raw, a key such as `""` named nothing (`` `` in `stsvend.toml` ``,
/// found by `tests/fuzz`) and one holding a newline broke the one-line-per-problem output.
pub(super) fn name_shown(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
