//! The claims a token carries, their checks, and what a valid token says ([`Claims`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::JwtError;
use super::limits::LEEWAY_SECONDS;
use crate::auth::subject::{self, CallerId};
use crate::telemetry::JsonFields;

/// What a valid token says about its bearer, with what the token path derives from it (the
/// caller's key and session name) worked out once, when it is made: a verification remembered
/// hands the same `Arc<Claims>` to every request, which then derives nothing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    subject: String,
    issuer: Option<String>,
    caller_id: CallerId,
    session_name: Arc<str>,
    /// `,"subject":"…"` as every audit line for this caller writes it ([`subject::Logged`]),
    /// serialised once here rather than escaped on every request the claims serve.
    audit_fields: JsonFields,
}

impl Claims {
    pub fn new(subject: String, issuer: Option<String>) -> Self {
        Self {
            caller_id: subject::caller_id(issuer.as_deref(), &subject),
            session_name: subject::session_name(&subject).into(),
            audit_fields: JsonFields::new(&[("subject", &subject::Logged(&subject).to_string())]),
            subject,
            issuer,
        }
    }

    /// `sub`: who the caller is, as the login service names them. Not empty, otherwise
    /// unchecked: it can hold anything a JSON string can.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `iss`, if the token has one: caches and rate limits key callers by (issuer, subject).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The key per-caller caches and rate limits use: [`subject::caller_id`].
    pub fn caller_id(&self) -> CallerId {
        self.caller_id
    }

    /// The caller's `RoleSessionName`: [`subject::session_name`].
    pub fn session_name(&self) -> &Arc<str> {
        &self.session_name
    }

    /// The subject's audit field, serialised: [`AuditLine::fields`](crate::telemetry::AuditLine::fields).
    pub fn audit_fields(&self) -> &JsonFields {
        &self.audit_fields
    }

    /// The bytes the strings take, for the verified cache's bound.
    pub(super) fn text_len(&self) -> usize {
        self.subject.len()
            + self.issuer.as_ref().map_or(0, String::len)
            + self.session_name.len()
            + self.audit_fields.len()
    }
}

/// A verified token's time window: `exp` and `nbf` as it carries them. The one place the
/// leeway is applied, so a verification remembered by the cache (`verified.rs`) keeps standing
/// exactly as long as verifying the token again would succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Validity {
    pub(super) exp: i64,
    pub(super) nbf: Option<i64>,
}

impl Validity {
    /// Whether the token is within its window at `now` (seconds since the epoch), with
    /// [`LEEWAY_SECONDS`] either side for clock skew between the issuer and us.
    pub(super) fn check(self, now: i64) -> Result<(), JwtError> {
        // RFC 7519 §4.1.4: valid only *before* `exp`.
        if now >= self.expires_at() {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = self.nbf
            && now.saturating_add(LEEWAY_SECONDS) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    /// The first second at which [`Validity::check`] says `Expired`.
    pub(super) fn expires_at(self) -> i64 {
        self.exp.saturating_add(LEEWAY_SECONDS)
    }
}

/// The registered claims we check. A claim of the wrong JSON type makes the token malformed.
#[derive(Deserialize)]
pub(super) struct RawClaims {
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    /// Not checked, but must be a number if present.
    #[serde(default)]
    #[allow(dead_code)] // read only to reject a non-numeric `iat`
    iat: Option<NumericDate>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    sub: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Seconds since the epoch. RFC 7519 allows fractions; they are rounded down.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(seconds) = number.as_i64() {
            return Ok(Self(seconds));
        }
        match number.as_f64() {
            // `as` saturates, which is what we want for absurdly distant dates.
            Some(seconds) if seconds.is_finite() => Ok(Self(seconds.floor() as i64)),
            _ => Err(serde::de::Error::custom("not a NumericDate")),
        }
    }
}

impl RawClaims {
    /// The claims checks in order; on success, what the token says and its time window.
    pub(super) fn check(
        self,
        now: DateTime<Utc>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<(Claims, Validity), JwtError> {
        // A token without `exp` would be valid forever; we treat it as not a token for us.
        let Some(NumericDate(exp)) = self.exp else {
            return Err(JwtError::Malformed);
        };
        let validity = Validity {
            exp,
            nbf: self.nbf.map(|NumericDate(nbf)| nbf),
        };
        validity.check(now.timestamp())?;
        if let Some(issuer) = issuer
            && self.iss.as_deref() != Some(issuer)
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = audience {
            let matches = match &self.aud {
                Some(Audience::One(aud)) => aud == audience,
                Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
                None => false,
            };
            if !matches {
                return Err(JwtError::WrongAudience);
            }
        }
        match self.sub {
            Some(subject) if !subject.is_empty() => Ok((Claims::new(subject, self.iss), validity)),
            _ => Err(JwtError::MissingSubject),
        }
    }
}
