//! Mini program login settings (issue 16): which platforms a profile accepts (`STSVEND_AUTH` =
//! `wechat`, `alipay` or both), each platform's app settings per profile, and the session
//! settings shared by every profile (the secret that signs stsvend's own session tokens, their
//! lifetime, and the login rate limit).

use std::fmt;
use std::io::Read as _;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::problems::{Problems, shown};
use super::rate_limit::RateLimit;
use super::raw::{Raw, RawProfile, profile_origin};
use super::secret::value_or_file;
use super::settings::Key;
use super::values::{endpoint, whole_number};
pub use crate::login::alipay::AlipayApp;
use crate::login::alipay_sign::{AlipayPublicKey, AppPrivateKey, KeyError};
pub use crate::login::wechat::WechatApp;

/// Shorter than this, an HMAC key is guessable (RFC 2104 asks for at least the hash size).
pub const MIN_SESSION_SECRET_BYTES: usize = 32;
const MAX_SECRET_BYTES: usize = 1024;
/// An RSA key in PEM is under 4 KiB; a bigger file is the wrong file.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;
const SESSION_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=2_592_000;

/// The platforms whose login a profile accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Platforms {
    pub wechat: bool,
    pub alipay: bool,
}

impl Platforms {
    /// `wechat`, `alipay`, or both comma-separated in either order; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut platforms = Self::default();
        for item in text.split(',').map(str::trim) {
            let seen = match item {
                "wechat" => std::mem::replace(&mut platforms.wechat, true),
                "alipay" => std::mem::replace(&mut platforms.alipay, true),
                _ => return None,
            };
            if seen {
                return None;
            }
        }
        Some(platforms)
    }
}

/// A login profile's platforms and their apps.
#[derive(Debug, Clone)]
pub struct Login {
    pub platforms: Platforms,
    pub wechat: Option<WechatApp>,
    pub alipay: Option<AlipayApp>,
}

/// The session tokens' settings, shared by every login profile.
#[derive(Clone)]
pub struct Sessions {
    pub secret: SecretString,
    pub previous_secret: Option<SecretString>,
    pub ttl: Duration,
    /// `POST /session` attempts per client address prefix.
    pub login_limit: RateLimit,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("secret", &"** redacted **")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "** redacted **"),
            )
            .field("ttl", &self.ttl)
            .field("login_limit", &self.login_limit)
            .finish()
    }
}

const WECHAT_KEYS: [Key; 4] = [
    Key::WechatAppid,
    Key::WechatAppSecret,
    Key::WechatAppSecretFile,
    Key::WechatApiBase,
];
const ALIPAY_KEYS: [Key; 4] = [
    Key::AlipayAppid,
    Key::AlipayAppPrivateKeyFile,
    Key::AlipayPublicKeyFile,
    Key::AlipayGateway,
];

/// A profile's login settings; `platforms` empty refuses every platform setting given.
pub(super) fn parse(
    name: &str,
    raw: &RawProfile,
    platforms: Platforms,
    problems: &mut Problems,
) -> Option<Login> {
    refuse_unused(
        name,
        raw,
        platforms.wechat,
        &WECHAT_KEYS,
        "wechat",
        problems,
    );
    refuse_unused(
        name,
        raw,
        platforms.alipay,
        &ALIPAY_KEYS,
        "alipay",
        problems,
    );
    if platforms == Platforms::default() {
        return None;
    }
    Some(Login {
        platforms,
        wechat: platforms
            .wechat
            .then(|| wechat(name, raw, problems))
            .flatten(),
        alipay: platforms
            .alipay
            .then(|| alipay(name, raw, problems))
            .flatten(),
    })
}

fn refuse_unused(
    name: &str,
    raw: &RawProfile,
    used: bool,
    keys: &[Key],
    platform: &str,
    problems: &mut Problems,
) {
    if used {
        return;
    }
    for key in keys {
        if let Some(s) = raw.get(*key) {
            problems.add(
                &s.origin,
                format!(
                    "is set but profile `{name}` does not accept {platform} logins; add {platform} to its auth"
                ),
            );
        }
    }
}

fn wechat(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<WechatApp> {
    let appid = appid(
        name,
        raw,
        Key::WechatAppid,
        "such as wx1234567890abcdef",
        problems,
    );
    let secret = value_or_file(
        raw.get(Key::WechatAppSecret),
        raw.get(Key::WechatAppSecretFile),
        MAX_SECRET_BYTES,
        problems,
    );
    let app_secret = match secret {
        None if !problems_about(raw, &[Key::WechatAppSecret, Key::WechatAppSecretFile]) => {
            problems.add(
                profile_origin(name, Key::WechatAppSecret),
                "is required for wechat logins: the mini program's AppSecret (or give it as a file)",
            );
            None
        }
        None => None,
        // Never echoed, not even its length.
        Some((text, origin)) if !(16..=128).contains(&text.len()) || !printable(&text) => {
            problems.add(
                origin,
                "must be the AppSecret from the WeChat console: 16 to 128 printable characters without spaces",
            );
            None
        }
        Some((text, _)) => Some(SecretString::from(text)),
    };
    let api_base = raw
        .or_default(name, Key::WechatApiBase)
        .and_then(|s| endpoint(&s, None, problems));
    Some(WechatApp {
        appid: appid?,
        app_secret: app_secret?,
        api_base: api_base?,
    })
}

fn alipay(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<AlipayApp> {
    let appid = appid(
        name,
        raw,
        Key::AlipayAppid,
        "such as 2021000000000000",
        problems,
    );
    let private_key = key_file(name, raw, Key::AlipayAppPrivateKeyFile, problems, |text| {
        AppPrivateKey::from_text(text).map(Arc::new)
    });
    let public_key = key_file(name, raw, Key::AlipayPublicKeyFile, problems, |text| {
        AlipayPublicKey::from_text(text)
    });
    let gateway = raw
        .or_default(name, Key::AlipayGateway)
        .and_then(|s| endpoint(&s, None, problems));
    Some(AlipayApp {
        appid: appid?,
        private_key: private_key?,
        public_key: public_key?,
        gateway: gateway?,
    })
}

/// Reads and parses a key file named by `key`; problems name the file, never its content.
fn key_file<T>(
    name: &str,
    raw: &RawProfile,
    key: Key,
    problems: &mut Problems,
    parse: impl FnOnce(&str) -> Result<T, KeyError>,
) -> Option<T> {
    let Some(setting) = raw.get(key) else {
        problems.add(
            profile_origin(name, key),
            format!("is required for alipay logins: {}", key.spec().doc),
        );
        return None;
    };
    let path = setting.value.trim();
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text));
    if let Err(error) = read {
        problems.add(
            &setting.origin,
            format!("cannot read the key file {}: {error}", shown(path)),
        );
        return None;
    }
    match parse(&text) {
        Ok(value) => Some(value),
        Err(error) => {
            problems.add(
                &setting.origin,
                format!("the key file {} is not usable: {error}", shown(path)),
            );
            None
        }
    }
}

fn appid(
    name: &str,
    raw: &RawProfile,
    key: Key,
    example: &str,
    problems: &mut Problems,
) -> Option<String> {
    let Some(s) = raw.get(key) else {
        problems.add(
            profile_origin(name, key),
            format!("is required: the mini program's app id, {example}"),
        );
        return None;
    };
    let id = s.value.trim();
    // It goes into a query string and a signed parameter list: letters and digits only.
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some(id.to_owned())
    } else {
        problems.add(
            &s.origin,
            format!(
                "must be the app id, letters and digits, {example}, got {}",
                shown(id)
            ),
        );
        None
    }
}

fn problems_about(raw: &RawProfile, keys: &[Key]) -> bool {
    keys.iter().any(|key| raw.get(*key).is_some())
}

fn printable(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_graphic())
}

/// The session settings, required when some profile accepts logins (`needed`), refused when
/// none does.
///
/// `stsvend dev` (`dev`) always has them, for the login profile it adds: without a secret
/// given, it makes one up for the run (sessions end with the process, as dev tokens do).
pub(super) fn sessions(
    raw: &Raw,
    needed: bool,
    dev: bool,
    problems: &mut Problems,
) -> Option<Sessions> {
    let given = [
        Key::SessionSecret,
        Key::SessionSecretFile,
        Key::SessionPreviousSecret,
        Key::SessionPreviousSecretFile,
    ];
    if !needed && !dev {
        for key in given {
            if let Some(s) = raw.get(key) {
                problems.add(
                    &s.origin,
                    "is set but no profile accepts mini program logins (auth wechat or alipay)",
                );
            }
        }
        return None;
    }
    let unset = raw.get(Key::SessionSecret).is_none() && raw.get(Key::SessionSecretFile).is_none();
    let secret = if dev && unset {
        let bytes: [u8; 32] = rand::random();
        Some(SecretString::from(
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ))
    } else {
        session_secret(raw, Key::SessionSecret, Key::SessionSecretFile, problems)
    };
    if secret.is_none() && unset {
        problems.add(
            format!("`{}`", Key::SessionSecret.spec().env),
            format!(
                "is required when a profile accepts mini program logins: at least {MIN_SESSION_SECRET_BYTES} random bytes, such as the output of `openssl rand -base64 48` (or give it as a file)"
            ),
        );
    }
    let previous_secret = session_secret(
        raw,
        Key::SessionPreviousSecret,
        Key::SessionPreviousSecretFile,
        problems,
    );
    let ttl = whole_number(
        raw.or_default(Key::SessionTtlSeconds).as_ref(),
        SESSION_TTL_SECONDS,
        "of seconds from 60 to 2592000 (30 days)",
        problems,
    );
    let number = |key: Key, problems: &mut Problems| {
        whole_number(
            raw.or_default(key).as_ref(),
            1..=1_000_000u32,
            "from 1 to 1000000",
            problems,
        )
        .and_then(NonZeroU32::new)
    };
    let per_minute = number(Key::LoginRateLimitPerMinute, problems);
    let burst = number(Key::LoginRateLimitBurst, problems);
    Some(Sessions {
        secret: secret?,
        previous_secret,
        ttl: Duration::from_secs(ttl?),
        login_limit: RateLimit {
            per_minute: per_minute?,
            burst: burst?,
        },
    })
}

fn session_secret(
    raw: &Raw,
    value: Key,
    file: Key,
    problems: &mut Problems,
) -> Option<SecretString> {
    let (text, origin) = value_or_file(raw.get(value), raw.get(file), MAX_SECRET_BYTES, problems)?;
    if text.len() < MIN_SESSION_SECRET_BYTES || text.len() > MAX_SECRET_BYTES {
        // Never echoed, not even its length.
        problems.add(
            origin,
            format!(
                "must be {MIN_SESSION_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, such as the output of `openssl rand -base64 48`"
            ),
        );
        return None;
    }
    Some(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_one_or_both_once() {
        let both = Platforms {
            wechat: true,
            alipay: true,
        };
        assert_eq!(Platforms::parse("wechat,alipay"), Some(both));
        assert_eq!(Platforms::parse(" alipay , wechat "), Some(both));
        assert_eq!(
            Platforms::parse("alipay"),
            Some(Platforms {
                wechat: false,
                alipay: true
            })
        );
        for bad in ["", "wechat,wechat", "jwt", "wechat,", "weixin"] {
            assert_eq!(Platforms::parse(bad), None, "{bad:?}");
        }
    }
}
