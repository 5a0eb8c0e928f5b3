//! WeChat's `auth.code2Session`: exchanges the one-time code a mini program got from
//! `wx.login()` for the user's `openid` (and `unionid` when WeChat sends one). See
//! PROTOCOL.md §11.1.
//!
//! The request carries the app secret in its query, so its URL never reaches a log or an error:
//! reqwest errors are turned into text without the URL ([`crate::outbound::error_text`]) at
//! once, and nothing here formats the request. WeChat's answer also holds `session_key`, the
//! key to the user's encrypted data; it is never deserialized (the answer type has no such
//! field) and the body it came in is zeroed when dropped, right after parsing. `errmsg` is not
//! kept either: it is WeChat's free text, and the `errcode` says all we act on.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use super::session::MAX_ID_LEN;

/// Where WeChat's API lives unless `STSVEND_WECHAT_API_BASE` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
/// A connection to WeChat is up in well under a second; a login waits at most this for one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, connect to last byte: a user is waiting on a login screen.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// A real answer is under 300 bytes; anything past this is not WeChat's.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// `wx.login()` codes are 32 characters; longer ones are refused without asking WeChat, so a
/// flood of junk does not spend the app's quota.
const MAX_CODE_LEN: usize = 128;
/// What `Retry-After` says when WeChat's frequency limit (45011) is hit: the limit is per
/// minute.
pub const RATE_LIMITED_RETRY_AFTER: Duration = Duration::from_secs(60);
/// What `Retry-After` says when WeChat is busy, slow, unreachable or answers nonsense.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One mini program's WeChat credentials and where to reach WeChat.
#[derive(Clone)]
pub struct WechatApp {
    /// `STSVEND_WECHAT_APPID`.
    pub appid: String,
    /// `STSVEND_WECHAT_APP_SECRET`.
    pub app_secret: SecretString,
    /// `STSVEND_WECHAT_API_BASE`, [`DEFAULT_API_BASE`] by default.
    pub api_base: Url,
}

impl fmt::Debug for WechatApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatApp")
            .field("appid", &self.appid)
            .field("app_secret", &"** redacted **")
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

/// Who WeChat says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatUser {
    pub openid: String,
    pub unionid: Option<String>,
}

/// Why a login code could not be exchanged. Holds neither the app secret nor the code.
///
/// The HTTP answer each maps to is [`Self::status`], with [`Self::code`] and, when set,
/// [`Self::retry_after`] as `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// 40029 (invalid code), 40163 (code already used), or a code too odd to send: `401`.
    #[error(
        "WeChat refused the login code (invalid, expired or already used); the mini program must call wx.login() again"
    )]
    InvalidCode,
    /// 40226: WeChat flagged the user as high-risk and blocks the login: `403`.
    #[error("WeChat blocked this user's login as high-risk (errcode 40226)")]
    Blocked,
    /// 45011: WeChat's frequency limit (100 logins per user per minute): `429`.
    #[error("WeChat's login frequency limit was reached (errcode 45011); retry in a minute")]
    RateLimited,
    /// Anything else: WeChat busy, slow, unreachable, or answering nonsense: `503`.
    #[error("cannot exchange the login code with WeChat: {0}")]
    Unavailable(Unavailable),
}

/// Why WeChat could not be asked, or its answer not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("WeChat is busy (errcode -1); retry shortly")]
    Busy,
    #[error("WeChat answered errcode {0}{hint}", hint = errcode_hint(*.0))]
    Errcode(i64),
    #[error("WeChat did not answer within {}s", EXCHANGE_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot reach WeChat's API: {0}; check STSVEND_WECHAT_API_BASE and the network")]
    Unreachable(String),
    #[error("WeChat's API answered HTTP {0}")]
    Status(u16),
    #[error("WeChat's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("WeChat's answer is not usable: {0}")]
    Malformed(&'static str),
}

/// What to do about the errcodes that mean our configuration is wrong.
fn errcode_hint(errcode: i64) -> &'static str {
    match errcode {
        40013 | 41002 => "; check STSVEND_WECHAT_APPID",
        40001 | 40125 | 41004 => {
            "; check STSVEND_WECHAT_APP_SECRET (and that it belongs to STSVEND_WECHAT_APPID)"
        }
        _ => "",
    }
}

impl ExchangeError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidCode => 401,
            Self::Blocked => 403,
            Self::RateLimited => 429,
            Self::Unavailable(_) => 503,
        }
    }

    /// A stable machine-readable name for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCode => "invalid_login_code",
            Self::Blocked => "login_blocked",
            Self::RateLimited => "login_rate_limited",
            Self::Unavailable(_) => "login_unavailable",
        }
    }

    /// How long the client should wait before trying again, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::InvalidCode | Self::Blocked => None,
            Self::RateLimited => Some(RATE_LIMITED_RETRY_AFTER),
            Self::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER),
        }
    }

    /// The `outcome` label of `stsvend_login_exchanges_total`: a fixed word.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::InvalidCode => "invalid_code",
            Self::Blocked => "blocked",
            Self::RateLimited => "rate_limited",
            Self::Unavailable(reason) => match reason {
                Unavailable::Busy => "busy",
                Unavailable::Errcode(_) => "error",
                Unavailable::Timeout => "timeout",
                Unavailable::Unreachable(_) => "unreachable",
                Unavailable::Status(_) => "status",
                Unavailable::TooLarge => "too_large",
                Unavailable::Malformed(_) => "malformed",
            },
        }
    }
}

/// Why a [`WechatClient`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WechatSetupError {
    #[error("STSVEND_WECHAT_API_BASE must be an http or https URL without a query")]
    BadApiBase,
    #[error("cannot build an HTTP client for WeChat's API: {0}")]
    HttpClient(String),
}

/// Calls `jscode2session` for one mini program. Cheap to clone.
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    /// `{api_base}/sns/jscode2session`, without the query.
    endpoint: Url,
    appid: String,
    app_secret: SecretString,
}

impl fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("appid", &self.appid)
            .field("app_secret", &"** redacted **")
            .finish()
    }
}

/// WeChat's answer; only what we use. `session_key` has no field on purpose: serde skips it
/// without copying it anywhere.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

impl WechatClient {
    pub fn new(app: WechatApp) -> Result<Self, WechatSetupError> {
        let mut endpoint = app.api_base;
        let http_like = matches!(endpoint.scheme(), "http" | "https");
        if !http_like || endpoint.query().is_some() || endpoint.cannot_be_a_base() {
            return Err(WechatSetupError::BadApiBase);
        }
        endpoint
            .path_segments_mut()
            .map_err(|()| WechatSetupError::BadApiBase)?
            .pop_if_empty()
            .extend(["sns", "jscode2session"]);
        endpoint.set_fragment(None);
        let http = crate::outbound::client_builder(CONNECT_TIMEOUT, EXCHANGE_TIMEOUT)
            .build()
            .map_err(|e| WechatSetupError::HttpClient(crate::outbound::error_text(e)))?;
        Ok(Self {
            http,
            endpoint,
            appid: app.appid,
            app_secret: app.app_secret,
        })
    }

    /// Exchanges `code` (from `wx.login()`) for the user's ids, and counts the outcome.
    #[tracing::instrument(name = "wechat_code_exchange", skip_all)]
    pub async fn exchange(&self, code: &str) -> Result<WechatUser, ExchangeError> {
        if !plausible_code(code) {
            // Not an exchange: WeChat is not asked, nothing is counted.
            return Err(ExchangeError::InvalidCode);
        }
        let result = self.ask(code).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(error) => error.outcome(),
        };
        crate::metrics::record_login_exchange("wechat", outcome);
        match &result {
            Err(error @ ExchangeError::Unavailable(_)) => {
                tracing::warn!(%error, "WeChat code exchange failed");
            }
            Err(error) => tracing::debug!(%error, "WeChat refused the login"),
            Ok(_) => tracing::debug!("WeChat code exchanged"),
        }
        result
    }

    async fn ask(&self, code: &str) -> Result<WechatUser, ExchangeError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("appid", &self.appid)
            .append_pair("secret", self.app_secret.expose_secret())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        let sent = self.http.get(url).send().await;
        let response = sent.map_err(|e| unavailable(transport(e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(unavailable(Unavailable::Status(status.as_u16())));
        }
        let body = crate::outbound::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                unavailable(match e {
                    crate::outbound::BodyError::TooLarge => Unavailable::TooLarge,
                    crate::outbound::BodyError::Transport(e) => transport(e),
                })
            })?;
        // Zeroed on drop: the body holds `session_key`.
        let body = SecretSlice::from(body);
        read_answer(body.expose_secret())
    }
}

/// A code worth sending: 1 to [`MAX_CODE_LEN`] printable ASCII characters, no spaces.
fn plausible_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_LEN && code.bytes().all(|b| b.is_ascii_graphic())
}

fn unavailable(reason: Unavailable) -> ExchangeError {
    ExchangeError::Unavailable(reason)
}

/// A transport failure as text; [`crate::outbound::error_text`] leaves out the URL (which holds
/// the app secret and the code).
fn transport(error: reqwest::Error) -> Unavailable {
    if error.is_timeout() {
        Unavailable::Timeout
    } else {
        Unavailable::Unreachable(crate::outbound::error_text(error))
    }
}

/// The user WeChat's 200 answer names, or the error its `errcode` means.
fn read_answer(body: &[u8]) -> Result<WechatUser, ExchangeError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(unavailable(Unavailable::Malformed("not a JSON object")));
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| unavailable(Unavailable::Malformed("not the JSON WeChat sends")))?;
    match answer.errcode.unwrap_or(0) {
        0 => {}
        40029 | 40163 => return Err(ExchangeError::InvalidCode),
        40226 => return Err(ExchangeError::Blocked),
        45011 => return Err(ExchangeError::RateLimited),
        -1 => return Err(unavailable(Unavailable::Busy)),
        other => return Err(unavailable(Unavailable::Errcode(other))),
    }
    let openid = answer
        .openid
        .ok_or(unavailable(Unavailable::Malformed("no openid")))?;
    if !plausible_id(&openid) {
        return Err(unavailable(Unavailable::Malformed(
            "the openid is empty, too long or not printable ASCII",
        )));
    }
    // An empty unionid is no unionid; a strange one means the answer is not WeChat's.
    let unionid = answer.unionid.filter(|id| !id.is_empty());
    if unionid.as_deref().is_some_and(|id| !plausible_id(id)) {
        return Err(unavailable(Unavailable::Malformed(
            "the unionid is too long or not printable ASCII",
        )));
    }
    Ok(WechatUser { openid, unionid })
}

/// An id fit for a session and a RoleSessionName source: 1 to [`MAX_ID_LEN`] printable ASCII
/// characters, no spaces. Real openids are 28 characters of base64url.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
