//! `stsvend dev`'s built-in stand-in for Alibaba Cloud: a local STS that behaves like the real
//! one for `AssumeRole`. It runs in the same process, on loopback, on a port the OS picks, and is
//! reused by the integration tests.
//!
//! What it checks, and the error codes it answers with, are in [`sts`]. The credentials it mints
//! are well-formed but worthless: nothing outside this process accepts them.

pub mod sls;
pub mod sts;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Url;
use secrecy::SecretString;

use crate::clock::Clock;
use crate::credentials::Credentials;

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<sts::EmulatorState>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with a freshly generated AccessKey pair.
    pub async fn start(clock: Clock) -> std::io::Result<Self> {
        let state = Arc::new(sts::EmulatorState::new(clock));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = sts::router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "STS emulator stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Base URL to use as `STSVEND_STS_ENDPOINT`.
    pub fn endpoint(&self) -> Url {
        // A socket address always forms a valid URL.
        Url::parse(&format!("http://{}/", self.addr)).expect("valid loopback URL")
    }

    /// The RAM-user AccessKey the emulator accepts.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.state.access_key_id.clone(),
            SecretString::from(self.state.access_key_secret().to_owned()),
            None,
            crate::credentials::Origin::DevEmulator,
        )
    }

    /// Requests received, accepted or not.
    pub fn calls(&self) -> u64 {
        self.state.calls()
    }

    /// When the latest requests (at most a few thousand) arrived, oldest first.
    pub fn arrivals(&self) -> Vec<tokio::time::Instant> {
        self.state.arrivals()
    }

    /// Credentials minted.
    pub fn issued(&self) -> u64 {
        self.state.issued_count()
    }

    /// A local SLS sink that accepts logs signed with the credentials this emulator minted,
    /// writing them to `file` when given.
    pub fn sls_sink(&self, file: Option<sls::DevLogFile>) -> Arc<sls::SlsSink> {
        Arc::new(sls::SlsSink::new(self.state.clone(), file))
    }

    /// Makes every credential minted from now on expire `seconds` after issue, whatever
    /// `DurationSeconds` asked (dev only: real STS never issues under 900 s).
    pub fn set_token_lifetime(&self, seconds: u32) {
        self.state.set_token_lifetime(seconds);
    }

    /// Refuses the next `n` well-formed requests with `Throttling.User`, as STS does when the
    /// account's AssumeRole quota is exhausted; for tests.
    pub fn throttle_next(&self, n: u64) {
        self.state.throttle_next(n);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
