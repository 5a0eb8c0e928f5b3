//! Alipay's `alipay.system.oauth.token` over HTTP: the request [`super::alipay_sign`] builds and
//! signs, sent to the gateway within a bounded time and size, and the answer believed only once
//! its signature verifies with Alipay's public key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;

use super::alipay_sign::{
    self, AlipayPublicKey, AlipayUser, AppPrivateKey, CONTENT_TYPE, Failure, OauthAnswer,
};
use super::error::LoginError;
use super::session::Platform;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, connect to last byte: a user is waiting on a login screen.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// `my.getAuthCode` codes are 32 characters; longer ones are refused without asking Alipay.
const MAX_CODE_LEN: usize = 128;

/// One Alipay mini program's keys and where to reach Alipay.
#[derive(Debug, Clone)]
pub struct AlipayApp {
    pub appid: String,
    pub private_key: Arc<AppPrivateKey>,
    pub public_key: AlipayPublicKey,
    pub gateway: Url,
}

/// Calls the gateway for one mini program. Cheap to clone.
#[derive(Clone)]
pub struct AlipayClient {
    http: reqwest::Client,
    gateway: Url,
    appid: String,
    private_key: Arc<AppPrivateKey>,
    public_key: AlipayPublicKey,
}

impl fmt::Debug for AlipayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayClient")
            .field("gateway", &self.gateway.as_str())
            .field("appid", &self.appid)
            .field("private_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AlipaySetupError {
    #[error("STSVEND_ALIPAY_GATEWAY must be an http(s) URL without a query")]
    BadGateway,
    #[error("cannot build an HTTP client for Alipay's gateway: {0}")]
    HttpClient(String),
}

impl AlipayClient {
    pub fn new(app: AlipayApp) -> Result<Self, AlipaySetupError> {
        let gateway = app.gateway;
        let http_like = matches!(gateway.scheme(), "http" | "https");
        if !http_like || gateway.query().is_some() || gateway.cannot_be_a_base() {
            return Err(AlipaySetupError::BadGateway);
        }
        let http = crate::outbound::client_builder(CONNECT_TIMEOUT, EXCHANGE_TIMEOUT)
            .build()
            .map_err(|e| AlipaySetupError::HttpClient(crate::outbound::error_text(e)))?;
        Ok(Self {
            http,
            gateway,
            appid: app.appid,
            private_key: app.private_key,
            public_key: app.public_key,
        })
    }

    /// Exchanges `code` (from `my.getAuthCode`) for the user's id, and counts the outcome.
    #[tracing::instrument(name = "alipay_code_exchange", skip_all)]
    pub async fn exchange(&self, code: &str, now: DateTime<Utc>) -> Result<String, LoginError> {
        let plausible = !code.is_empty()
            && code.len() <= MAX_CODE_LEN
            && code.bytes().all(|b| b.is_ascii_graphic());
        if !plausible {
            return Err(LoginError::InvalidCode(Platform::Alipay));
        }
        let result = self.ask(code, now).await;
        crate::metrics::record_login_exchange(
            "alipay",
            match &result {
                Ok(_) => "success",
                Err(error) => error.outcome(),
            },
        );
        match &result {
            Err(error @ (LoginError::Unavailable { .. } | LoginError::Misconfigured { .. })) => {
                tracing::warn!(%error, "Alipay code exchange failed");
            }
            Err(error) => tracing::debug!(%error, "Alipay refused the login"),
            Ok(_) => tracing::debug!("Alipay code exchanged"),
        }
        result.map(|user| user.id)
    }

    async fn ask(&self, code: &str, now: DateTime<Utc>) -> Result<AlipayUser, LoginError> {
        let request =
            alipay_sign::oauth_token_request(&self.appid, code, now, &self.private_key)
                .map_err(|_| misconfigured("cannot sign the request with the app private key"))?;
        let mut url = self.gateway.clone();
        url.set_query(Some(&request.query));
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(request.body)
            .send()
            .await;
        let response = sent.map_err(|e| unavailable(crate::outbound::error_text(e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(unavailable(format!(
                "the gateway answered HTTP {}",
                status.as_u16()
            )));
        }
        let body = crate::outbound::read_capped(response, alipay_sign::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                unavailable(match e {
                    crate::outbound::BodyError::TooLarge => "the answer is too large".to_owned(),
                    crate::outbound::BodyError::Transport(e) => crate::outbound::error_text(e),
                })
            })?;
        match alipay_sign::verify_answer(&body, &self.public_key) {
            Ok(OauthAnswer::User(user)) => Ok(user),
            Ok(OauthAnswer::Refused(refusal)) => Err(match refusal.failure() {
                Failure::InvalidCode => LoginError::InvalidCode(Platform::Alipay),
                Failure::Misconfigured => misconfigured(&format!(
                    "Alipay refused the call ({} {}); check STSVEND_ALIPAY_APPID, the app private key and the app's permissions",
                    clip(&refusal.code),
                    clip(refusal.sub_code.as_deref().unwrap_or(""))
                )),
                Failure::Unavailable | Failure::Unverified => unavailable(format!(
                    "Alipay answered {} {}",
                    clip(&refusal.code),
                    clip(refusal.sub_code.as_deref().unwrap_or(""))
                )),
            }),
            Err(error) if error.failure() == Failure::Unverified => Err(misconfigured(&format!(
                "{error}: check STSVEND_ALIPAY_PUBLIC_KEY_FILE holds Alipay's public key (not the app's), or the answer was forged"
            ))),
            Err(error) => Err(unavailable(error.to_string())),
        }
    }
}

/// Alipay's codes are short identifiers; anything else is cut before it reaches a log.
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

fn unavailable(reason: String) -> LoginError {
    LoginError::Unavailable {
        platform: Platform::Alipay,
        reason,
    }
}

fn misconfigured(reason: &str) -> LoginError {
    LoginError::Misconfigured {
        platform: Platform::Alipay,
        reason: reason.to_owned(),
    }
}
