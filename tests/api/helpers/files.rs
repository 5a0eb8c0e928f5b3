//! Files and directories a test hands to the service, from the `tempfile` crate: unique names
//! under the system temp directory, removed when dropped.

use std::io::Write;
use std::path::PathBuf;

/// A file with `contents`, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    _file: tempfile::TempPath,
}

impl TempFile {
    /// `name` ends the file name, so an extension (`.toml`, `.pem`) is kept.
    pub(crate) fn new(name: &str, contents: &str) -> Self {
        let mut file = tempfile::Builder::new()
            .prefix("stsvend-test-")
            .suffix(&format!("-{name}"))
            .tempfile()
            .expect("can create a temp file");
        file.write_all(contents.as_bytes())
            .expect("can write a temp file");
        let file = file.into_temp_path();
        Self {
            path: file.to_path_buf(),
            _file: file,
        }
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

/// A fresh directory (a fake HOME, a TMPDIR), removed with its contents when dropped.
#[derive(Debug)]
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempDir {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stsvend-test-home-")
            .tempdir()
            .expect("can create a temp dir");
        Self {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// Writes `contents` to `relative` (parent directories created); returns the full path.
    pub(crate) fn write(&self, relative: &str, contents: &str) -> String {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("can create a directory in the temp dir");
        }
        std::fs::write(&path, contents).expect("can write a file in the temp dir");
        path.to_str().expect("temp paths are UTF-8").to_owned()
    }
}
