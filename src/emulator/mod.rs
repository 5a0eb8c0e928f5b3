//! `stsvend dev`'s built-in stand-ins for the platforms stsvend talks to: a local STS that
//! behaves like the real one for `AssumeRole`, and WeChat's and Alipay's mini program login
//! exchanges. They share one server, in the same process, on loopback, on a port the OS picks,
//! and are reused by the integration tests.
//!
//! What each checks, and the error codes it answers with, are in [`sts`], [`wechat`] and
//! [`alipay`]. The credentials and users they hand out are well-formed but worthless: nothing
//! outside this process accepts them. The dev apps' secrets and keys (`dev_keys/`) are public.

pub mod alipay;
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
    alipay: Arc<alipay::AlipayState>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with a freshly generated AccessKey pair.
    pub async fn start(clock: Clock) -> std::io::Result<Self> {
        let state = Arc::new(sts::EmulatorState::new(clock.clone()));
        let wechat = Arc::new(wechat::WechatState::new(clock.clone()));
        // The dev keys are compiled in and checked by the tests; an error here is a broken build.
        let alipay = Arc::new(alipay::AlipayState::new(clock).map_err(std::io::Error::other)?);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = sts::router(state.clone())
            .merge(wechat::router(wechat.clone()))
            .merge(alipay::router(alipay.clone()));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "emulator stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            wechat,
            alipay,
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

    /// URL to use as `STSVEND_ALIPAY_GATEWAY` (`…/gateway.do`).
    pub fn alipay_gateway(&self) -> Url {
        self.url(alipay::PATH)
    }

    fn url(&self, path: &str) -> Url {
        // A socket address and an absolute path always form a valid URL.
        Url::parse(&format!("http://{}{path}", self.addr)).expect("valid loopback URL")
    }

    /// The dev WeChat mini program the emulator knows: `(appid, app secret)`. Fixed and public.
    pub fn dev_wechat_app() -> (&'static str, &'static str) {
        (wechat::DEV_APPID, wechat::DEV_APP_SECRET)
    }

    /// The dev Alipay mini program the emulator knows: `(app_id, the app's private key PEM,
    /// Alipay's public key PEM)`, what `STSVEND_ALIPAY_APPID`,
    /// `STSVEND_ALIPAY_APP_PRIVATE_KEY_FILE` and `STSVEND_ALIPAY_PUBLIC_KEY_FILE` give in
    /// production. Fixed and public.
    pub fn dev_alipay_app() -> (&'static str, &'static str, &'static str) {
        (
            alipay::DEV_APP_ID,
            alipay::DEV_APP_PRIVATE_KEY_PEM,
            alipay::DEV_ALIPAY_PUBLIC_KEY_PEM,
        )
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

    /// Gateway requests received, answered well or not.
    pub fn alipay_exchanges(&self) -> u64 {
        self.alipay.calls()
    }

    /// Answers the next `n` correctly signed gateway requests with an `error_response` of
    /// `code` and `sub_code` (e.g. `"20000"`, `"aop.ACQ.SYSTEM_ERROR"`); for tests.
    pub fn alipay_fail_next(&self, n: u64, code: &str, sub_code: &str) {
        self.alipay.fail_next(n, code, sub_code);
    }

    /// While `on`, the gateway signs its answers with the app's key instead of Alipay's, so they
    /// fail verification as a forged answer would; for tests.
    pub fn alipay_sign_with_wrong_key(&self, on: bool) {
        self.alipay.sign_with_wrong_key(on);
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
    use crate::login::alipay_sign::{self, AlipayPublicKey, AppPrivateKey, OauthAnswer};
    use std::time::Duration;

    fn client() -> reqwest::Client {
        crate::outbound::client_builder(Duration::from_secs(5), Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn one_server_answers_sts_wechat_and_alipay() {
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

        let (app_id, app_key, alipay_key) = Emulator::dev_alipay_app();
        let app_key = AppPrivateKey::from_text(app_key).unwrap();
        let alipay_key = AlipayPublicKey::from_text(alipay_key).unwrap();
        let request =
            alipay_sign::oauth_token_request(app_id, "dev:bob:1", Clock::System.now(), &app_key)
                .unwrap();
        let mut url = emulator.alipay_gateway();
        assert_eq!(url.path(), "/gateway.do");
        url.set_query(Some(&request.query));
        let body = http
            .post(url)
            .header("content-type", alipay_sign::CONTENT_TYPE)
            .body(request.body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        match alipay_sign::verify_answer(&body, &alipay_key).unwrap() {
            OauthAnswer::User(user) => assert_eq!(user.id, "dev-bob"),
            OauthAnswer::Refused(refusal) => panic!("{refusal:?}"),
        }
        assert_eq!(emulator.alipay_exchanges(), 1);

        // STS still answers at the root (an unsigned request is refused as STS refuses it).
        let sts = http.get(emulator.endpoint()).send().await.unwrap();
        assert_eq!(sts.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(emulator.calls(), 1);
    }
}

/// The emulated platforms against stsvend's own login clients, so dev mode and the clients
/// agree on every answer the lead's wiring maps.
#[cfg(test)]
mod client_tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::login::alipay::{AlipayApp, AlipayClient};
    use crate::login::alipay_sign::{AlipayPublicKey, AppPrivateKey};
    use crate::login::error::LoginError;
    use crate::login::wechat::{ExchangeError, Unavailable, WechatApp, WechatClient, WechatUser};

    #[tokio::test]
    async fn the_wechat_client_meets_every_emulated_answer() {
        let emulator = Emulator::start(Clock::System).await.unwrap();
        let (appid, secret) = Emulator::dev_wechat_app();
        let app = |secret: &str| WechatApp {
            appid: appid.to_owned(),
            app_secret: SecretString::from(secret.to_owned()),
            api_base: emulator.wechat_api_base(),
        };
        let client = WechatClient::new(app(secret)).unwrap();
        let alice = WechatUser {
            openid: "dev-alice".to_owned(),
            unionid: Some("dev-union-alice".to_owned()),
        };
        assert_eq!(client.exchange("dev:alice:1").await, Ok(alice.clone()));
        assert_eq!(
            client.exchange("dev:alice:1").await,
            Err(ExchangeError::InvalidCode)
        );
        assert_eq!(
            client.exchange("0a1b2c3d").await,
            Err(ExchangeError::InvalidCode)
        );
        for (errcode, want) in [
            (45011, ExchangeError::RateLimited),
            (40226, ExchangeError::Blocked),
            (-1, ExchangeError::Unavailable(Unavailable::Busy)),
        ] {
            emulator.wechat_fail_next(1, errcode);
            assert_eq!(client.exchange("dev:alice:2").await, Err(want), "{errcode}");
        }
        assert_eq!(client.exchange("dev:alice:2").await, Ok(alice));
        let wrong = WechatClient::new(app("0123456789abcdef0123456789abcdef")).unwrap();
        assert_eq!(
            wrong.exchange("dev:alice:3").await,
            Err(ExchangeError::Unavailable(Unavailable::Errcode(40125)))
        );
        assert_eq!(emulator.wechat_exchanges(), 8);
    }

    #[tokio::test]
    async fn the_alipay_client_meets_every_emulated_answer() {
        let emulator = Emulator::start(Clock::System).await.unwrap();
        let (appid, private_key, public_key) = Emulator::dev_alipay_app();
        let client = AlipayClient::new(AlipayApp {
            appid: appid.to_owned(),
            private_key: Arc::new(AppPrivateKey::from_text(private_key).unwrap()),
            public_key: AlipayPublicKey::from_text(public_key).unwrap(),
            gateway: emulator.alipay_gateway(),
        })
        .unwrap();
        let now = || Clock::System.now();
        let invalid = Err(LoginError::InvalidCode(
            crate::login::session::Platform::Alipay,
        ));
        assert_eq!(
            client.exchange("dev:bob:1", now()).await,
            Ok("dev-bob".to_owned())
        );
        assert_eq!(client.exchange("dev:bob:1", now()).await, invalid);
        assert_eq!(client.exchange("0a1b2c3d", now()).await, invalid);
        emulator.alipay_fail_next(1, "20000", "aop.ACQ.SYSTEM_ERROR");
        let got = client.exchange("dev:bob:2", now()).await;
        assert!(
            matches!(got, Err(LoginError::Unavailable { .. })),
            "{got:?}"
        );
        emulator.alipay_sign_with_wrong_key(true);
        let got = client.exchange("dev:bob:2", now()).await;
        assert!(
            matches!(got, Err(LoginError::Misconfigured { .. })),
            "{got:?}"
        );
        emulator.alipay_sign_with_wrong_key(false);
        // The forged answer's exchange did use dev:bob:2 up; only the answer was wrong.
        assert_eq!(client.exchange("dev:bob:2", now()).await, invalid);
        assert_eq!(
            client.exchange("dev:bob:3", now()).await,
            Ok("dev-bob".to_owned())
        );
        assert_eq!(emulator.alipay_exchanges(), 7);
    }
}
