//! Reloads what files hold when they change or on SIGHUP: the TLS certificate and the
//! configuration (its file and the `_FILE` secrets) share this poller.
//!
//! Polling, not inotify: a Kubernetes ConfigMap or Secret volume replaces its files by
//! swapping the `..data` symlink to a new directory, which a watch on the file itself never
//! sees, while `std::fs::metadata` follows the link and reports the new file's modification
//! time, length and inode. A subPath mount is a copy that kubelet never updates: no poller can
//! help there.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// Something that reloads from files.
pub trait Watched: Send + 'static {
    /// The files whose versions it serves; read again after each reload (they may change).
    fn files(&self) -> Vec<PathBuf>;
    /// How often to look at them; `None`: only SIGHUP reloads. Asked before each wait.
    fn every(&self) -> Option<Duration>;
    /// The files changed (`sighup` false) or a SIGHUP arrived (true): reload, and log or count
    /// the outcome.
    fn reload(&mut self, sighup: bool) -> impl Future<Output = ()> + Send;
}

/// What identifies a version of a file as `metadata` sees it through symlinks: modification
/// time, length and inode (a swapped-in copy with the same time and length has another
/// inode). `None`: it cannot be read now.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|path| stamp(path)).collect()
}

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// Watches `watched`'s files (and SIGHUP) until `cancel` fires, reloading on change.
pub async fn watch(mut watched: impl Watched, cancel: CancellationToken) {
    let mut files = watched.files();
    let mut seen = stamps(&files);
    let mut hangup = hangup_signal();
    loop {
        let every = watched.every();
        let tick = async move {
            match every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            () = tick => false,
            () = next_hangup(&mut hangup) => true,
            () = cancel.cancelled() => return,
        };
        let now = stamps(&files);
        if !asked && now == seen {
            continue;
        }
        // Stamped before the reload reads them: a change made during it is seen next time.
        seen = now;
        watched.reload(asked).await;
        let after = watched.files();
        if after != files {
            seen = stamps(&after);
            files = after;
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(signal: &mut Hangup) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_signal: &mut Hangup) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counted {
        files: Vec<PathBuf>,
        reloads: Arc<AtomicUsize>,
    }

    impl Watched for Counted {
        fn files(&self) -> Vec<PathBuf> {
            self.files.clone()
        }
        fn every(&self) -> Option<Duration> {
            Some(Duration::from_millis(20))
        }
        async fn reload(&mut self, _sighup: bool) {
            self.reloads.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn until(reloads: &AtomicUsize, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while reloads.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(waited.await.is_ok(), "no reload number {n}");
    }

    /// A ConfigMap volume: `file` → `..data/file`, `..data` → a timestamped directory that
    /// kubelet replaces by swapping the `..data` link.
    #[tokio::test]
    async fn a_configmap_style_symlink_swap_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("..2026_01");
        let second = dir.path().join("..2026_02");
        std::fs::create_dir(&first).unwrap();
        std::fs::create_dir(&second).unwrap();
        // Same length in both versions: only the inode tells them apart for sure.
        std::fs::write(first.join("stsvend.toml"), "a = 1\n").unwrap();
        std::fs::write(second.join("stsvend.toml"), "a = 2\n").unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("..2026_01", &data).unwrap();
        let file = dir.path().join("stsvend.toml");
        std::os::unix::fs::symlink("..data/stsvend.toml", &file).unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let watched = Counted {
            files: vec![file],
            reloads: reloads.clone(),
        };
        let task = tokio::spawn(watch(watched, cancel.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reloads.load(Ordering::SeqCst), 0, "nothing changed yet");
        // kubelet's swap: a new link renamed over `..data`.
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("..2026_02", &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        until(&reloads, 1).await;
        cancel.cancel();
        task.await.unwrap();
    }
}
