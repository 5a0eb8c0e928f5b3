//! A login profile's code exchange: the platform a `POST /session` names, asked through its
//! client, with every way it can fail as one [`LoginError`].

use chrono::{DateTime, Utc};

use super::alipay::AlipayClient;
use super::error::{LoginError, PlatformUser};
use super::session::Platform;
use super::wechat::WechatClient;

/// The platforms one profile accepts, each with its client.
#[derive(Debug, Clone, Default)]
pub struct PlatformClients {
    pub wechat: Option<WechatClient>,
    pub alipay: Option<AlipayClient>,
}

impl PlatformClients {
    /// Exchanges `code` with `platform`, when this profile accepts it.
    pub async fn exchange(
        &self,
        platform: Platform,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<PlatformUser, LoginError> {
        match platform {
            Platform::Wechat => {
                let client = self
                    .wechat
                    .as_ref()
                    .ok_or(LoginError::NotAccepted(platform))?;
                let user = client.exchange(code).await?;
                Ok(PlatformUser {
                    platform,
                    id: user.openid,
                    union_id: user.unionid,
                })
            }
            Platform::Alipay => {
                let client = self
                    .alipay
                    .as_ref()
                    .ok_or(LoginError::NotAccepted(platform))?;
                Ok(PlatformUser {
                    platform,
                    id: client.exchange(code, now).await?,
                    union_id: None,
                })
            }
        }
    }

    /// The platforms accepted, for verifying sessions.
    pub fn platforms(&self) -> Vec<Platform> {
        let mut platforms = Vec::with_capacity(2);
        if self.wechat.is_some() {
            platforms.push(Platform::Wechat);
        }
        if self.alipay.is_some() {
            platforms.push(Platform::Alipay);
        }
        platforms
    }
}
