//! The credentials file's syntax, read exactly as the official Python SDK reads it: Python's
//! `configparser.ConfigParser()` with its defaults, then the SDK's own pass over every value
//! (`provider/profile.py` `_load_ini`: cut at the first `#`, strip).
//!
//! What that means, and what this module reproduces:
//! - `[name]` opens a section: the name is everything between the first `[` and the last `]`
//!   of the line, spaces included (`[ default ]` is the section ` default `). `[DEFAULT]`
//!   holds keys every section inherits, and is not a section itself.
//! - `key = value` or `key: value`, split at the first `=` or `:`; keys are lower-cased, both
//!   sides stripped. No quoting: quotes are part of the value.
//! - A line whose first non-blank character is `#` or `;` is a comment. `;` later in a line is
//!   text; `#` later in a line ends the value (the SDK's cut, after everything else).
//! - A line indented deeper than its key continues the value (joined with a newline); blank
//!   lines inside a value are kept, trailing ones dropped.
//! - `%%` is a `%`; `%(key)s` is another key's value (the section's, else `[DEFAULT]`'s); any
//!   other `%` is an error. Every section's values are expanded, so one bad `%` anywhere makes
//!   the whole file unusable, as in the SDK.
//! - A duplicate section or key, a line that is neither, text before the first section, an
//!   empty key: the whole file is unusable.
//!
//! Errors name a line number and what is wrong, never the line: it may hold a secret.
//!
//! `tests/fixtures/credentials_ini_vectors.json` holds 1200 files the SDK itself read (or
//! refused), made by `scripts/gen_ini_vectors.py`; a test expects the same of this module.

use std::collections::BTreeMap;

/// Python's `configparser.MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;
/// The section every other inherits from (`configparser`'s `default_section`).
const DEFAULT_SECTION: &str = "DEFAULT";

/// One section: key → value, as the SDK hands them to its providers.
pub(super) type Section = BTreeMap<String, String>;

/// Why a file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum IniError {
    #[error("line {0}: text before the first [section]")]
    MissingSectionHeader(usize),
    #[error("line {0}: neither a [section], a `key = value` nor a comment")]
    Parsing(usize),
    #[error("line {0}: section [{1}] appears twice")]
    DuplicateSection(usize, String),
    #[error("line {0}: key `{2}` appears twice in section [{1}]")]
    DuplicateOption(usize, String, String),
    #[error("section [{0}], key `{1}`: a `%` must be followed by `%` or `(name)s`")]
    InterpolationSyntax(String, String),
    #[error("section [{0}], key `{1}`: `%({2})s` names no key of the section or [DEFAULT]")]
    InterpolationMissing(String, String, String),
    #[error("section [{0}], key `{1}`: `%(…)s` references nest more than 10 deep")]
    InterpolationDepth(String, String),
}

/// Whitespace as Python's `str.isspace` sees it: Unicode's, plus the four ASCII separators.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// A section's keys, in order, each with its value's lines as read.
type Options = Vec<(String, Vec<String>)>;

/// Raw values as read, before the joins and expansion.
#[derive(Default)]
struct Raw {
    defaults: Options,
    sections: Vec<(String, Options)>,
}

impl Raw {
    fn options(&mut self, section: Option<usize>) -> &mut Options {
        match section {
            Some(i) => &mut self.sections[i].1,
            None => &mut self.defaults,
        }
    }
}

/// Where the reader is: the current section (`None` inside `[DEFAULT]`) and option.
struct Cursor {
    section: Option<Option<usize>>,
    option: Option<usize>,
    indent: usize,
}

/// Parses the file into the SDK's map of section → key → value.
pub(super) fn parse(text: &str) -> Result<BTreeMap<String, Section>, IniError> {
    let raw = read(text)?;
    let join = |options: &[(String, Vec<String>)]| -> Vec<(String, String)> {
        options
            .iter()
            .map(|(k, lines)| {
                (
                    k.clone(),
                    lines.join("\n").trim_end_matches(is_space).to_owned(),
                )
            })
            .collect()
    };
    let defaults = join(&raw.defaults);
    let mut out = BTreeMap::new();
    for (name, options) in &raw.sections {
        // The section's keys over the defaults', in `configparser`'s order.
        let mut map: Vec<(String, String)> = defaults.clone();
        for (key, value) in join(options) {
            match map.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => map.push((key, value)),
            }
        }
        let mut section = Section::new();
        for (key, value) in &map {
            let expanded = interpolate(name, key, value, &map, 1)?;
            // The SDK's own pass: a `#` anywhere ends the value.
            let cut = expanded.split('#').next().unwrap_or_default();
            section.insert(key.clone(), strip(cut).to_owned());
        }
        out.insert(name.clone(), section);
    }
    Ok(out)
}

/// `configparser`'s `_read`: lines into sections and options, or the first error.
fn read(text: &str) -> Result<Raw, IniError> {
    let mut raw = Raw::default();
    let mut at = Cursor {
        section: None,
        option: None,
        indent: 0,
    };
    let mut error: Option<IniError> = None;
    // Python reads text files with universal newlines.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    for (n, line) in text.split('\n').enumerate() {
        let lineno = n + 1;
        let value = strip(line);
        let comment = value.starts_with('#') || value.starts_with(';');
        if value.is_empty() || comment {
            // A blank line (not a comment) inside a value is kept as part of it.
            if let (false, Some(section), Some(option)) = (comment, at.section, at.option) {
                raw.options(section)[option].1.push(String::new());
            }
            continue;
        }
        let indent = line.chars().take_while(|c| is_space(*c)).count();
        if let (Some(section), Some(option)) = (at.section, at.option)
            && indent > at.indent
        {
            raw.options(section)[option].1.push(value.to_owned());
            continue;
        }
        at.indent = indent;
        if let Some(name) = section_header(value) {
            at.section = Some(open_section(&mut raw, name, lineno)?);
            at.option = None;
            continue;
        }
        let Some(section) = at.section else {
            return Err(IniError::MissingSectionHeader(lineno));
        };
        let Some((key, val)) = option_line(value) else {
            error.get_or_insert(IniError::Parsing(lineno));
            continue;
        };
        if key.is_empty() {
            error.get_or_insert(IniError::Parsing(lineno));
        }
        let key = key.to_lowercase();
        let options = raw.options(section);
        if options.iter().any(|(k, _)| *k == key) {
            let name = section.map_or(DEFAULT_SECTION.to_owned(), |i| raw.sections[i].0.clone());
            return Err(IniError::DuplicateOption(lineno, name, key));
        }
        options.push((key, vec![val.to_owned()]));
        at.option = Some(options.len() - 1);
    }
    match error {
        Some(error) => Err(error),
        None => Ok(raw),
    }
}

/// `\[(?P<header>.+)\]` matched at the start of the stripped line: up to its last `]`.
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// Opens (or, for `[DEFAULT]`, reopens) a section; `None` is `[DEFAULT]`.
fn open_section(raw: &mut Raw, name: &str, lineno: usize) -> Result<Option<usize>, IniError> {
    if raw.sections.iter().any(|(n, _)| n == name) {
        return Err(IniError::DuplicateSection(lineno, name.to_owned()));
    }
    if name == DEFAULT_SECTION {
        return Ok(None);
    }
    raw.sections.push((name.to_owned(), Vec::new()));
    Ok(Some(raw.sections.len() - 1))
}

/// `(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$`: split at the first `=` or `:`.
fn option_line(value: &str) -> Option<(&str, &str)> {
    let at = value.find(['=', ':'])?;
    let key = value[..at].trim_end_matches(is_space);
    let val = strip(&value[at + 1..]);
    Some((key, val))
}

/// `BasicInterpolation`: `%%` and `%(name)s`, looked up in `map` (the section over DEFAULT).
fn interpolate(
    section: &str,
    key: &str,
    value: &str,
    map: &[(String, String)],
    depth: usize,
) -> Result<String, IniError> {
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(IniError::InterpolationDepth(
            section.to_owned(),
            key.to_owned(),
        ));
    }
    let syntax = || IniError::InterpolationSyntax(section.to_owned(), key.to_owned());
    let mut out = String::new();
    let mut rest = value;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("%(") {
            // `%\(([^)]+)\)s`
            let close = after.find(')').filter(|c| *c > 0).ok_or_else(syntax)?;
            if !after[close + 1..].starts_with('s') {
                return Err(syntax());
            }
            let name = after[..close].to_lowercase();
            let referenced = map
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    IniError::InterpolationMissing(section.to_owned(), key.to_owned(), name.clone())
                })?;
            if referenced.contains('%') {
                out.push_str(&interpolate(section, key, referenced, map, depth + 1)?);
            } else {
                out.push_str(referenced);
            }
            rest = &after[close + 2..];
        } else {
            return Err(syntax());
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, section: &str, key: &str) -> Option<String> {
        parse(text).unwrap().get(section)?.get(key).cloned()
    }

    #[test]
    fn keys_values_and_whitespace() {
        // Each expectation is what Python 3.11's configparser and the SDK's pass make of it.
        let text = "  [default]\n  Type : access_key\naccess_key_id=  \"quoted\"  \nx =\n";
        let map = parse(text).unwrap();
        let s = &map["default"];
        assert_eq!(s["type"], "access_key");
        assert_eq!(s["access_key_id"], "\"quoted\"");
        assert_eq!(s["x"], "");
        // Indented deeper than the key before it: a continuation, even with a `=` in it.
        let map = parse("[s]\nk = v\n\tx =\n").unwrap();
        assert_eq!(map["s"]["k"], "v\nx =");
        assert_eq!(
            value("[a b]\nk b = v = w\n", "a b", "k b").as_deref(),
            Some("v = w")
        );
        assert_eq!(value("[ d ]\nk=v\n", " d ", "k").as_deref(), Some("v"));
        assert_eq!(value("[a]b]\nk=v\n", "a]b", "k").as_deref(), Some("v"));
        assert_eq!(value("[s] # c\nk=v\n", "s", "k").as_deref(), Some("v"));
        assert_eq!(value("[s]\r\nk = v\r\n", "s", "k").as_deref(), Some("v"));
        assert_eq!(value("[s]\rk = v\r", "s", "k").as_deref(), Some("v"));
    }

    #[test]
    fn comments_hash_cuts_and_semicolons_stay() {
        let text = "# top\n; top\n[s]\n   # indented comment\nk = v # note\nm = a ; b\nn = #x\n";
        let map = parse(text).unwrap();
        assert_eq!(map["s"]["k"], "v");
        assert_eq!(map["s"]["m"], "a ; b");
        assert_eq!(map["s"]["n"], "");
        assert_eq!(map["s"].len(), 3);
    }

    #[test]
    fn continuation_lines_and_blank_lines_inside_values() {
        let text = "[s]\nk = one\n  two\n\n  three\n\nnext = x\n  # comment\n  y\n";
        let map = parse(text).unwrap();
        assert_eq!(map["s"]["k"], "one\ntwo\n\nthree");
        assert_eq!(map["s"]["next"], "x\ny");
        // Keys indented alike are keys, not continuations.
        let map = parse("[s]\n  a = 1\n  b = 2\n").unwrap();
        assert_eq!((map["s"]["a"].as_str(), map["s"]["b"].as_str()), ("1", "2"));
    }

    #[test]
    fn percent_escapes_references_and_defaults() {
        let text = "[DEFAULT]\nbase = acs:ram::1:role\n[s]\npct = 50%%\nrole_arn = %(BASE)s/r\nk = %(pct)s!\n";
        let map = parse(text).unwrap();
        assert!(!map.contains_key("DEFAULT"));
        assert_eq!(map["s"]["pct"], "50%");
        assert_eq!(map["s"]["role_arn"], "acs:ram::1:role/r");
        assert_eq!(map["s"]["k"], "50%!");
        assert_eq!(map["s"]["base"], "acs:ram::1:role");
        // A section's own key shadows the default's.
        assert_eq!(
            value("[DEFAULT]\nk = d\n[s]\nk = s\n", "s", "k").as_deref(),
            Some("s")
        );
    }

    #[test]
    fn what_makes_the_whole_file_unusable() {
        use IniError as E;
        let cases: [(&str, IniError); 11] = [
            ("k = v\n[s]\n", E::MissingSectionHeader(1)),
            ("\u{feff}[s]\nk = v\n", E::MissingSectionHeader(1)),
            ("[s]\njust words\n", E::Parsing(2)),
            ("[s]\n= v\n", E::Parsing(2)),
            ("[s]\n[]\n", E::Parsing(2)),
            ("[s]\n[s]\n", E::DuplicateSection(2, "s".into())),
            (
                "[s]\nK = 1\nk = 2\n",
                E::DuplicateOption(3, "s".into(), "k".into()),
            ),
            (
                "[s]\nk = 5%\n",
                E::InterpolationSyntax("s".into(), "k".into()),
            ),
            (
                "[s]\nk = %(x)\n",
                E::InterpolationSyntax("s".into(), "k".into()),
            ),
            (
                "[s]\nk = %(x)s\n",
                E::InterpolationMissing("s".into(), "k".into(), "x".into()),
            ),
            (
                "[s]\nk = %(k)s\n",
                E::InterpolationDepth("s".into(), "k".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected), "{text:?}");
        }
        // A bad `%` in another section spoils the file too.
        assert!(parse("[a]\nk = v\n[b]\nsecret = 1%2\n").is_err());
    }

    /// `scripts/gen_ini_vectors.py` read each of these files with the SDK's own `_load_ini`:
    /// stsvend reads the same sections, keys and values, and refuses the files it refused.
    #[test]
    fn every_file_the_python_sdk_read_or_refused() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/credentials_ini_vectors.json"
        ))
        .expect("the fixture is JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert!(cases.len() >= 1000, "{} cases", cases.len());
        let mut read = 0;
        let mut differ = Vec::new();
        for case in cases {
            let text = case["text"].as_str().expect("text");
            let sdk: Option<BTreeMap<String, Section>> =
                serde_json::from_value(case["sections"].clone()).expect("a map or null");
            read += usize::from(sdk.is_some());
            let ours = parse(text).ok();
            if ours != sdk {
                differ.push(format!("{text:?}\n  stsvend {ours:?}\n  the SDK {sdk:?}"));
            }
        }
        assert!(read >= 300, "only {read} files were read by the SDK");
        assert!(
            differ.is_empty(),
            "{} differ:\n{}",
            differ.len(),
            differ.join("\n")
        );
    }

    #[test]
    fn errors_never_show_the_line() {
        let error = parse("[s]\nhunter2-secret\n").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        let error = parse("[s]\nk = hunter2%x\n").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
