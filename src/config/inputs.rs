//! What each setting was given as, kept as digests: a reload compares them with the running
//! configuration's to tell what changed (a profile, a setting that needs a restart) without
//! comparing validated values field by field, secrets included, and without keeping any
//! secret. A file setting's digest covers the file's content, so a rotated `_FILE` secret or
//! JWKS file counts as a change; those files are also the ones the watcher stats.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::raw::Raw;
use super::setting::Setting;
use super::settings::{Key, Kind};

/// Past this, a file's content is not digested further: every secret and key file is far
/// smaller (their own limits refuse bigger ones), so only a wrong file is cut, and it still
/// counts as changed when its start or its length does.
const MAX_DIGESTED_FILE_BYTES: u64 = 1024 * 1024;

/// The digests of the settings as given, global ones by key and each profile's as one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub(super) global: BTreeMap<Key, [u8; 32]>,
    pub(super) profiles: BTreeMap<String, [u8; 32]>,
    files: Vec<PathBuf>,
}

impl fmt::Debug for Inputs {
    // Digests of short secrets could be guessed offline: show only what was given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("global", &self.global.keys().collect::<Vec<_>>())
            .field("profiles", &self.profiles.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .finish()
    }
}

impl Inputs {
    /// The files the settings name whose content a reload re-reads (`_FILE` secrets, JWKS
    /// files, Alipay keys and the like); not the TLS files, which reload themselves.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Digests everything `raw` holds, reading the files it names.
pub(super) fn digest(raw: &Raw) -> Inputs {
    let mut files = Vec::new();
    let mut one = |key: Key, setting: &Setting| {
        let (digest, file) = setting_digest(key, setting);
        files.extend(file);
        digest
    };
    let global = raw
        .global
        .iter()
        .map(|(key, setting)| (*key, one(*key, setting)))
        .collect();
    let profiles = raw
        .profiles
        .iter()
        .map(|(name, profile)| {
            let mut hasher = Sha256::new();
            for (key, setting) in &profile.0 {
                hasher.update(key.spec().env.as_bytes());
                hasher.update(one(*key, setting));
            }
            (name.clone(), hasher.finalize().into())
        })
        .collect();
    files.sort();
    files.dedup();
    Inputs {
        global,
        profiles,
        files,
    }
}

/// One setting's digest, and the file it names when its content counts.
fn setting_digest(key: Key, setting: &Setting) -> ([u8; 32], Option<PathBuf>) {
    let mut hasher = Sha256::new();
    hasher.update(setting.value.as_bytes());
    // The TLS files are watched and reloaded by the listener's own watcher.
    let content_counts =
        key.spec().kind == Kind::Path && !matches!(key, Key::TlsCert | Key::TlsKey | Key::Config);
    let file = content_counts.then(|| PathBuf::from(setting.value.trim()));
    if let Some(path) = &file {
        hasher.update([0]);
        file_digest(path, &mut hasher);
    }
    (hasher.finalize().into(), file)
}

fn file_digest(path: &Path, hasher: &mut Sha256) {
    let mut content = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DIGESTED_FILE_BYTES).read_to_end(&mut content));
    match read {
        Ok(_) => {
            hasher.update([1]);
            hasher.update(&content);
        }
        // Unreadable now: validation reports it; the kind tells one failure from another.
        Err(error) => hasher.update(format!("{:?}", error.kind()).as_bytes()),
    }
}
