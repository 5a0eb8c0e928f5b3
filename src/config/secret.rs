//! A secret given as a setting or as a file holding it (the Docker and Kubernetes secrets
//! convention), never both; the file is read at start-up and on each reload, bounded in size.

use std::io::Read as _;

use super::problems::{Problems, shown};
use super::setting::Setting;

/// The secret's text (trimmed) and the origin to name in problems about its value; `None` when
/// neither is given or it could not be read (a problem is then added).
pub(super) fn value_or_file(
    value: Option<&Setting>,
    file: Option<&Setting>,
    max_bytes: usize,
    problems: &mut Problems,
) -> Option<(String, String)> {
    match (value, file) {
        (Some(value), Some(file)) => {
            problems.add(
                &file.origin,
                format!("cannot be combined with {}; set one", value.origin),
            );
            None
        }
        (Some(value), None) => Some((value.value.trim().to_owned(), value.origin.clone())),
        (None, Some(file)) => read(file, max_bytes, problems)
            .map(|text| (text.trim().to_owned(), file.origin.clone())),
        (None, None) => None,
    }
}

fn read(file: &Setting, max_bytes: usize, problems: &mut Problems) -> Option<String> {
    let path = file.value.trim();
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| {
        // Past the limit (with room for a trailing newline) is reported by the caller's length
        // check, without reading a wrong, huge file whole.
        f.take(max_bytes as u64 + 64).read_to_string(&mut text)
    });
    match read {
        Ok(_) => Some(text),
        Err(error) => {
            problems.add(
                &file.origin,
                format!(
                    "cannot read the secret file {}: {error}; the file must hold the secret as text",
                    shown(path)
                ),
            );
            None
        }
    }
}
