//! stsvend's own session token: what a mini program holds after logging in with WeChat or
//! Alipay, and sends as `Authorization: Bearer <token>` to get its STS tokens. Pure: time is
//! passed in, nothing here does I/O.
//!
//! A token is `sv1.<payload>~<mac>`: the payload is base64url (no padding) of a small JSON object
//! (profile, platform, user ids, issued-at, expiry), the MAC is base64url of HMAC-SHA256 over
//! everything before the `~`. The MAC key is derived from `STSVEND_SESSION_SECRET` with a fixed
//! label ([`KEY_LABEL`]), so the same secret used anywhere else (say, as a JWT HS256 secret)
//! never yields a valid session MAC.
//!
//! Why this shape and not a JWT: a session must never pass as an external JWT, nor a JWT as a
//! session. A JWT is exactly three base64url parts separated by two dots; a session has one dot
//! (after the `sv1` prefix) and a `~`, which is outside the base64url alphabet, so a JWT verifier
//! splits it into two parts and refuses it, and [`SessionTokens::verify`] refuses anything that
//! does not start with `sv1.` or that holds a second dot (every JWT does). `~` is one of the
//! characters RFC 6750 allows in a bearer token, so the token rides in an `Authorization` header
//! as is.
//!
//! Rolling the secret: tokens are always issued under the current secret; verification also
//! accepts the previous one (`STSVEND_SESSION_PREVIOUS_SECRET`), so sessions issued before the
//! roll stay valid until they expire.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// What every session token starts with; a later format gets a new number.
pub const PREFIX: &str = "sv1.";
/// Separates the payload from the MAC: not base64url, not a dot, allowed in a bearer token.
const SEPARATOR: char = '~';
/// Tokens longer than this are refused before any decoding or MAC: a real one is a few hundred
/// bytes (the ids are bounded by [`MAX_ID_LEN`]), and an attacker's megabyte costs nothing.
pub const MAX_TOKEN_LEN: usize = 2048;
/// The shortest secret accepted: 256 bits, as much as the MAC key holds.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest platform user id (openid, unionid, Alipay user id) put in a token. Real ones are
/// 28 to 64 characters.
pub const MAX_ID_LEN: usize = 128;
/// The longest session lifetime accepted (30 days): a session is a login, not an identity.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Domain separation: the MAC key is HMAC-SHA256(secret, this label), never the secret itself.
const KEY_LABEL: &[u8] = b"stsvend session token v1 mac key";
const MAC_LEN: usize = 32;

/// The platform a user logged in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Wechat,
    Alipay,
}

impl Platform {
    /// The name used in settings (`STSVEND_AUTH=wechat`), the request body and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::Alipay => "alipay",
        }
    }

    /// The platform named `name`, as [`Self::as_str`] spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "wechat" => Some(Self::Wechat),
            "alipay" => Some(Self::Alipay),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who logged in: what a new session is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub profile: String,
    pub platform: Platform,
    /// The platform's user id: WeChat's `openid`, Alipay's `open_id` or `user_id`.
    pub user_id: String,
    /// WeChat's `unionid`, when WeChat sent one.
    pub union_id: Option<String>,
}

/// A session that verified: the login it was issued for and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub login: Login,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Signed with the previous secret: still valid, but the caller may issue a fresh one.
    pub with_previous_secret: bool,
}

/// A freshly issued session token, for the login response.
pub struct IssuedSession {
    /// The bearer token; exposed once, into the response body.
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSession")
            .field("token", &"** redacted **")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a session token was refused. None of these carries any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not a session token at all: too long, wrong prefix (a JWT, say), bad encoding.
    #[error("malformed session token")]
    Malformed,
    /// Well formed, but not signed with a secret this service holds, or changed since.
    #[error("session token signature does not verify")]
    BadSignature,
    /// Issued for another profile.
    #[error("session token was issued for another profile")]
    WrongProfile,
    /// Issued after a login with a platform this profile does not accept (any more).
    #[error("session token was issued for a platform this profile does not accept")]
    WrongPlatform,
    /// Genuine, but its lifetime is over: the client logs in again.
    #[error("session token expired at {at}")]
    Expired { at: DateTime<Utc> },
}

impl SessionError {
    /// A stable machine-readable name for the `401` body: `session_expired` tells the client to
    /// log in again; `invalid_session` that the token is not one to use here at all.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "session_expired",
            Self::Malformed | Self::BadSignature | Self::WrongProfile | Self::WrongPlatform => {
                "invalid_session"
            }
        }
    }

    /// A sentence for the caller's developer. Fixed text: it never echoes the token.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed => {
                "The bearer token is not a session token from `POST /session`; log in to get one."
            }
            Self::BadSignature => {
                "The session token does not verify (altered, or issued under a secret this service no longer holds); log in again."
            }
            Self::WrongProfile => {
                "The session token was issued for another profile; log in at this profile's `/session` route."
            }
            Self::WrongPlatform => {
                "The session token comes from a login platform this profile does not accept; log in again."
            }
            Self::Expired { .. } => "The session has expired; log in again.",
        }
    }
}

/// Why a [`SessionTokens`] cannot be built, or a login cannot be issued a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionSetupError {
    #[error("the session secret is {len} bytes; it needs at least {MIN_SECRET_LEN}")]
    SecretTooShort { len: usize },
    #[error("the previous session secret is {len} bytes; it needs at least {MIN_SECRET_LEN}")]
    PreviousSecretTooShort { len: usize },
    #[error("the session lifetime must be 1 second to 30 days, not {seconds} seconds")]
    TtlOutOfRange { seconds: u64 },
    #[error("the profile name is not a valid profile name")]
    InvalidProfile,
    #[error("the {which} is empty, longer than {MAX_ID_LEN} bytes or not printable ASCII")]
    InvalidUserId { which: &'static str },
}

/// A MAC key derived from one secret; zeroed on drop, never shown.
struct MacKey(SecretBox<[u8; 32]>);

impl MacKey {
    fn derive(secret: &SecretString) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(KEY_LABEL);
        Self(SecretBox::new(Box::new(mac.finalize().into_bytes().into())))
    }

    fn mac(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(signed);
        mac
    }

    /// Constant time: `verify_slice` compares with `subtle`.
    fn verifies(&self, signed: &[u8], tag: &[u8]) -> bool {
        self.mac(signed).verify_slice(tag).is_ok()
    }
}

/// Issues and verifies session tokens: the current key, the previous one while rolling, and the
/// session lifetime.
pub struct SessionTokens {
    current: MacKey,
    previous: Option<MacKey>,
    ttl: Duration,
}

impl fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTokens")
            .field("current", &"** redacted **")
            .field(
                "previous",
                &self.previous.as_ref().map(|_| "** redacted **"),
            )
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The signed payload. Short keys: the token rides in every request's header.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    /// Profile.
    p: String,
    /// Platform, as [`Platform::as_str`].
    f: String,
    /// User id.
    u: String,
    /// Union id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    /// Issued at, Unix seconds.
    i: i64,
    /// Expires at, Unix seconds.
    e: i64,
}

impl SessionTokens {
    /// Keys from `STSVEND_SESSION_SECRET` (and `STSVEND_SESSION_PREVIOUS_SECRET` while rolling)
    /// and the lifetime from `STSVEND_SESSION_TTL_SECONDS`.
    pub fn new(
        secret: &SecretString,
        previous: Option<&SecretString>,
        ttl: Duration,
    ) -> Result<Self, SessionSetupError> {
        let len = secret.expose_secret().len();
        if len < MIN_SECRET_LEN {
            return Err(SessionSetupError::SecretTooShort { len });
        }
        if let Some(previous) = previous {
            let len = previous.expose_secret().len();
            if len < MIN_SECRET_LEN {
                return Err(SessionSetupError::PreviousSecretTooShort { len });
            }
        }
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(SessionSetupError::TtlOutOfRange {
                seconds: ttl.as_secs(),
            });
        }
        Ok(Self {
            current: MacKey::derive(secret),
            previous: previous.map(MacKey::derive),
            ttl,
        })
    }

    /// A session for `login`, issued `now` under the current secret, lasting the TTL.
    pub fn issue(
        &self,
        login: &Login,
        now: DateTime<Utc>,
    ) -> Result<IssuedSession, SessionSetupError> {
        if !crate::profile_name::valid_profile_name(&login.profile) {
            return Err(SessionSetupError::InvalidProfile);
        }
        check_id(&login.user_id, "user id")?;
        if let Some(union_id) = &login.union_id {
            check_id(union_id, "union id")?;
        }
        let issued_at = now.timestamp();
        let expires_at = issued_at.saturating_add(ttl_seconds(self.ttl));
        let claims = Claims {
            p: login.profile.clone(),
            f: login.platform.as_str().to_owned(),
            u: login.user_id.clone(),
            n: login.union_id.clone(),
            i: issued_at,
            e: expires_at,
        };
        let json = serde_json::to_vec(&claims).expect("the claims serialize");
        let mut token = String::with_capacity(MAX_TOKEN_LEN / 2);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(json, &mut token);
        let tag = self.current.mac(token.as_bytes()).finalize().into_bytes();
        token.push(SEPARATOR);
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        debug_assert!(
            token.len() <= MAX_TOKEN_LEN,
            "bounded ids keep tokens short"
        );
        Ok(IssuedSession {
            token: SecretString::from(token),
            expires_at: unix_time(expires_at),
        })
    }

    /// The session `token` carries, if it is genuine, for `profile`, from one of `platforms`,
    /// and not expired at `now`.
    ///
    /// Lowering the TTL takes effect at once: a token counts as expired at the earlier of its
    /// own expiry and its issue time plus today's TTL.
    pub fn verify(
        &self,
        token: &str,
        profile: &str,
        platforms: &[Platform],
        now: DateTime<Utc>,
    ) -> Result<Session, SessionError> {
        let (signed, tag) = split(token)?;
        let with_previous_secret = if self.current.verifies(signed.as_bytes(), &tag) {
            false
        } else if self
            .previous
            .as_ref()
            .is_some_and(|key| key.verifies(signed.as_bytes(), &tag))
        {
            true
        } else {
            return Err(SessionError::BadSignature);
        };
        // Only now, with the MAC checked, is the payload ours and worth parsing.
        let payload = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| SessionError::Malformed)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| SessionError::Malformed)?;
        let platform = Platform::from_name(&claims.f).ok_or(SessionError::Malformed)?;
        if claims.p != profile {
            return Err(SessionError::WrongProfile);
        }
        if !platforms.contains(&platform) {
            return Err(SessionError::WrongPlatform);
        }
        let expires = claims.e.min(claims.i.saturating_add(ttl_seconds(self.ttl)));
        if now.timestamp() >= expires {
            return Err(SessionError::Expired {
                at: unix_time(expires),
            });
        }
        Ok(Session {
            login: Login {
                profile: claims.p,
                platform,
                user_id: claims.u,
                union_id: claims.n,
            },
            issued_at: unix_time(claims.i),
            expires_at: unix_time(expires),
            with_previous_secret,
        })
    }
}

/// `token` as the signed part (`sv1.<payload>`) and the decoded MAC, checking only the shape:
/// bounded length, the prefix, one separator, base64url on both sides, a 32-byte MAC.
fn split(token: &str) -> Result<(&str, Vec<u8>), SessionError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(SessionError::Malformed);
    }
    let (signed, tag) = token.split_once(SEPARATOR).ok_or(SessionError::Malformed)?;
    let payload = signed.strip_prefix(PREFIX).ok_or(SessionError::Malformed)?;
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // This also refuses a second dot, which every JWT has.
    if !base64url(payload) || !base64url(tag) {
        return Err(SessionError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| SessionError::Malformed)?;
    if tag.len() != MAC_LEN {
        return Err(SessionError::Malformed);
    }
    Ok((signed, tag))
}

/// A platform id as a token may carry it: 1 to [`MAX_ID_LEN`] printable ASCII, no spaces.
fn check_id(id: &str, which: &'static str) -> Result<(), SessionSetupError> {
    let fits = !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    if fits {
        Ok(())
    } else {
        Err(SessionSetupError::InvalidUserId { which })
    }
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// Unix seconds as a time; out-of-range values (never issued by us) clamp to the earliest or
/// latest time chrono holds.
fn unix_time(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or(if seconds < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

#[cfg(test)]
mod tests;
