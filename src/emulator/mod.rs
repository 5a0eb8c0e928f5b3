//! `stsvend dev`'s built-in stand-ins for the platforms stsvend talks to: a local STS that
//! behaves like the real one for `AssumeRole`, and WeChat's mini program login
//! exchange. They share one server, in the same process, on loopback, on a port the OS picks,
//! and are reused by the integration tests.
//!
//! What each checks, and the error codes it answers with, are in [`sts`] and [`wechat`]. The credentials and users they hand out are well-formed but worthless: nothing
//! outside this process accepts them. The dev app's secret is public.

mod dev_login;
pub mod sls;
pub mod sts;
pub mod wechat;

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
    wechat: Arc<wechat::WechatState>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with a freshly generated AccessKey pair.
    pub async fn start(clock: Clock) -> std::io::Result<Self> {
        let state = Arc::new(sts::EmulatorState::new(clock.clone()));
        let wechat = Arc::new(wechat::WechatState::new(clock));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = sts::router(state.clone()).merge(wechat::router(wechat.clone()));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "emulator stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            wechat,
            task,
        })
    }

    /// Base URL to use as `STSVEND_STS_ENDPOINT`.
    pub fn endpoint(&self) -> Url {
        self.url("/")
    }

    /// Base URL to use as `STSVEND_WECHAT_API_BASE` (`…/sns/jscode2session` is under it).
    pub fn wechat_api_base(&self) -> Url {
        self.url("/")
    }

    fn url(&self, path: &str) -> Url {
        // A socket address and an absolute path always form a valid URL.
        Url::parse(&format!("http://{}{path}", self.addr)).expect("valid loopback URL")
    }

    /// The dev WeChat mini program the emulator knows: `(appid, app secret)`. Fixed and public.
    pub fn dev_wechat_app() -> (&'static str, &'static str) {
        (wechat::DEV_APPID, wechat::DEV_APP_SECRET)
    }

    /// `jscode2session` requests received, answered well or not.
    pub fn wechat_exchanges(&self) -> u64 {
        self.wechat.calls()
    }

    /// Answers the next `n` `jscode2session` requests that name the dev app rightly with
    /// `errcode` (e.g. -1 busy, 45011 frequency limit, 40226 high-risk user); for tests.
    pub fn wechat_fail_next(&self, n: u64, errcode: i32) {
        self.wechat.fail_next(n, errcode);
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

    /// STS requests received, accepted or not.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn client() -> reqwest::Client {
        crate::outbound::client_builder(Duration::from_secs(5), Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn one_server_answers_sts_and_wechat() {
        let emulator = Emulator::start(Clock::System).await.unwrap();
        let http = client();

        let (appid, secret) = Emulator::dev_wechat_app();
        let mut url = emulator
            .wechat_api_base()
            .join("sns/jscode2session")
            .unwrap();
        url.query_pairs_mut()
            .append_pair("appid", appid)
            .append_pair("secret", secret)
            .append_pair("js_code", "dev:alice:1")
            .append_pair("grant_type", "authorization_code");
        let answer: serde_json::Value =
            serde_json::from_str(&http.get(url).send().await.unwrap().text().await.unwrap())
                .unwrap();
        assert_eq!(answer["openid"], "dev-alice", "{answer}");
        assert_eq!(emulator.wechat_exchanges(), 1);

        // STS still answers at the root (an unsigned request is refused as STS refuses it).
        let sts = http.get(emulator.endpoint()).send().await.unwrap();
        assert_eq!(sts.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(emulator.calls(), 1);
    }
}
