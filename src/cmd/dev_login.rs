//! `stsvend dev`'s mini program logins (issue 16): every login profile talks to the emulated
//! WeChat and Alipay with their dev apps, a profile `mini` that takes both is added when none
//! is configured (the config made up a session secret for the run when none was given). In the
//! emulator a code `dev:<name>` (or `dev:<name>:<nonce>`) logs in the user `dev-<name>`, once.

use std::sync::Arc;

use secrecy::SecretString;

use crate::config::login::{AlipayApp, Login, Platforms, WechatApp};
use crate::config::{AuthMode, Config};
use crate::emulator::Emulator;
use crate::login::alipay_sign::{AlipayPublicKey, AppPrivateKey, KeyError};

/// The profile `stsvend dev` adds for trying the logins.
pub const DEV_LOGIN_PROFILE: &str = "mini";

/// Points `config`'s logins at `emulator`; see the module comment.
pub fn emulate_logins(config: &mut Config, emulator: &Emulator) -> Result<(), KeyError> {
    apply_login(config, &dev_login(emulator)?);
    Ok(())
}

/// [`emulate_logins`] with the emulator's login already made: also applied to every
/// configuration a reload reads.
pub fn apply_login(config: &mut Config, login: &Login) {
    if !config.profiles.iter().any(|p| p.name == DEV_LOGIN_PROFILE)
        && let Some(base) = config.profiles.first()
    {
        let mut mini = base.clone();
        mini.name = DEV_LOGIN_PROFILE.to_owned();
        mini.access.auth = AuthMode::Login(login.platforms);
        mini.access.jwt = None;
        mini.access.login = Some(login.clone());
        config.profiles.push(mini);
        config.profiles.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for profile in &mut config.profiles {
        if let Some(configured) = &mut profile.access.login {
            configured.wechat = configured.wechat.as_ref().and(login.wechat.clone());
            configured.alipay = configured.alipay.as_ref().and(login.alipay.clone());
        }
    }
}

/// The emulator's WeChat and Alipay dev apps, as a login.
pub fn dev_login(emulator: &Emulator) -> Result<Login, KeyError> {
    let (wechat_appid, wechat_secret) = Emulator::dev_wechat_app();
    let (alipay_appid, private_key, public_key) = Emulator::dev_alipay_app();
    Ok(Login {
        platforms: Platforms {
            wechat: true,
            alipay: true,
        },
        wechat: Some(WechatApp {
            appid: wechat_appid.to_owned(),
            app_secret: SecretString::from(wechat_secret),
            api_base: emulator.wechat_api_base(),
        }),
        alipay: Some(AlipayApp {
            appid: alipay_appid.to_owned(),
            private_key: Arc::new(AppPrivateKey::from_text(private_key)?),
            public_key: AlipayPublicKey::from_text(public_key)?,
            gateway: emulator.alipay_gateway(),
        }),
    })
}
