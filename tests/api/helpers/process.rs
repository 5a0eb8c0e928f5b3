//! The real `stsvend` binary as a child process: for the tests that need its exit code, its
//! signal handling, its open-files limit and everything it prints.

use std::net::SocketAddr;
use std::time::Duration;

use super::http::http_client;
use super::ports::ReservedPort;

/// How to launch the binary besides its arguments and environment.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Launch {
    /// The admin routes on the public listener (`STSVEND_ADMIN_LISTEN` = `STSVEND_LISTEN`).
    pub(crate) shared_admin_port: bool,
    /// The soft and hard open-files limits (`ulimit -n`), set by a shell that then becomes
    /// stsvend.
    pub(crate) open_files: Option<(u64, u64)>,
}

/// The `stsvend` binary, started with exactly the given environment (nothing inherited) and
/// both listeners on loopback ports reserved for it, its stdout and stderr captured in full.
/// Killed if dropped while running.
#[derive(Debug)]
pub(crate) struct ServiceProcess {
    child: tokio::process::Child,
    /// The public listener.
    pub(crate) addr: SocketAddr,
    /// The admin listener (plain HTTP: health, metrics, kill switch); `addr` when shared.
    pub(crate) admin_addr: SocketAddr,
    stdout: Option<tokio::task::JoinHandle<Vec<u8>>>,
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
    /// Held until the process is gone, so no other test takes the ports.
    _ports: Vec<ReservedPort>,
}

/// Reads a pipe to its end on a task, so that a chatty child never blocks on a full pipe.
fn drain<R>(pipe: Option<R>) -> Option<tokio::task::JoinHandle<Vec<u8>>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    pipe.map(|mut pipe| {
        tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut out).await;
            out
        })
    })
}

impl ServiceProcess {
    /// Starts `stsvend ARGS` and waits, bounded, until `/healthz` answers 200.
    pub(crate) async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut process = Self::spawn(args, env);
        if !process.wait_healthy(Duration::from_secs(10)).await {
            let exited = process.child.try_wait().ok().flatten();
            process.kill().await;
            let (stdout, stderr) = process.output().await;
            panic!(
                "stsvend did not become healthy (exit: {exited:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        process
    }

    /// Spawns without waiting for anything.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_with(args, env, Launch::default())
    }

    /// As [`Self::spawn`], launched as `launch` says.
    pub(crate) fn spawn_with(args: &[&str], env: &[(&str, &str)], launch: Launch) -> Self {
        let mut command = match launch.open_files {
            None => tokio::process::Command::new(env!("CARGO_BIN_EXE_stsvend")),
            Some((soft, hard)) => {
                let mut shell = tokio::process::Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!(
                        "ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(env!("CARGO_BIN_EXE_stsvend"));
                shell
            }
        };
        let public = ReservedPort::new();
        let admin = (!launch.shared_admin_port).then(ReservedPort::new);
        let addr = public.addr;
        let admin_addr = admin.as_ref().map_or(addr, |admin| admin.addr);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("STSVEND_LISTEN", addr.to_string())
            .env("STSVEND_ADMIN_LISTEN", admin_addr.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("can start the stsvend binary");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            child,
            addr,
            admin_addr,
            stdout,
            stderr,
            _ports: std::iter::once(public).chain(admin).collect(),
        }
    }

    /// `http://ADDR{path}` on the public listener.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Polls `GET /healthz` on the admin listener (plain HTTP even when the public one serves
    /// TLS) until it answers 200, the process exits, or `limit` passes.
    pub(crate) async fn wait_healthy(&mut self, limit: Duration) -> bool {
        let client = http_client(Duration::from_secs(2));
        let url = format!("http://{}/healthz", self.admin_addr);
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Sends a signal (`TERM`, `INT`, …) with `kill(1)`.
    pub(crate) fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("can run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits up to `limit` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    pub(crate) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Everything the process wrote to stdout and stderr; call after it has exited.
    pub(crate) async fn output(&mut self) -> (String, String) {
        async fn collect(handle: Option<tokio::task::JoinHandle<Vec<u8>>>) -> String {
            let Some(handle) = handle else {
                return String::new();
            };
            match tokio::time::timeout(Duration::from_secs(5), handle).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            }
        }
        (
            collect(self.stdout.take()).await,
            collect(self.stderr.take()).await,
        )
    }
}
