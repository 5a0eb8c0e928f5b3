//! The per-profile settings that protect the endpoint: caller authentication, rate limits,
//! CORS origins and source-IP binding (issue #4).

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;

use reqwest::Url;
use secrecy::SecretString;

use super::login::{self, Login, Platforms};
use super::problems::{Problems, shown};
pub use super::rate_limit::RateLimit;
use super::raw::{RawProfile, profile_origin};
use super::secret::value_or_file;
use super::settings::Key;
use super::values::{flag, items};

/// How a profile checks its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone gets the profile's shared (guest) token.
    None,
    /// A valid JWT is required; tokens are per subject.
    Jwt,
    /// JWTs are checked and failures logged and counted, but callers without a valid one still
    /// get the guest token: for switching a live app over.
    Report,
    /// Mini program login: `POST /session` exchanges a platform's one-time code for a session
    /// token, which then asks for the caller's own token as a JWT does in `jwt` mode.
    Login(Platforms),
}

/// JWT algorithms stsvend accepts; the list is pinned by configuration, never taken from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

impl JwtAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// Where JWT keys come from and what the claims must say.
#[derive(Clone)]
pub struct JwtSettings {
    pub hs256_secret: Option<SecretString>,
    pub jwks_url: Option<Url>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    /// The operator's explicit opt-out (`STSVEND_JWT_ACCEPT_ANY_AUDIENCE`) from requiring both
    /// issuer and audience: a token for any app of the identity provider is then accepted.
    pub accept_any_audience: bool,
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "** redacted **"),
            )
            // A JWKS URL may carry an access token in its query; show where it points only.
            .field(
                "jwks_url",
                &self.jwks_url.as_ref().map(|u| {
                    format!(
                        "{}://{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                }),
            )
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .field("accept_any_audience", &self.accept_any_audience)
            .finish()
    }
}

/// A profile's protections.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: AuthMode,
    /// Present in `jwt` and `report` mode.
    pub jwt: Option<JwtSettings>,
    /// Present in login mode (`wechat`, `alipay`).
    pub login: Option<Login>,
    pub rate_limit: RateLimit,
    /// Exact origins allowed to call from a browser; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Add the caller's IP as an `acs:SourceIp` condition and cache tokens per IP.
    pub bind_source_ip: bool,
}

/// HS256 keys shorter than this are guessable (RFC 7518 §3.2 asks for at least the hash size).
const MIN_HS256_SECRET_BYTES: usize = 32;
/// Longer than any sensible key (HMAC hashes a key past 64 bytes anyway); a bigger file is most
/// likely the wrong file, and the bound keeps it from being read whole.
const MAX_HS256_SECRET_BYTES: usize = 1024;

pub(super) fn parse(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<Access> {
    // Any problem added while parsing this profile's access settings means no `Access`.
    let problems_before = problems.count();
    let auth = auth_mode(name, raw, problems);
    let jwt = if matches!(auth, AuthMode::Jwt | AuthMode::Report) {
        parse_jwt(name, raw, problems)
    } else {
        refuse_jwt_settings(name, raw, problems);
        None
    };
    let platforms = match auth {
        AuthMode::Login(platforms) => platforms,
        _ => Platforms::default(),
    };
    let login = login::parse(name, raw, platforms, problems);
    let rate_limit = rate_limit(name, raw, problems);
    let cors_origins = cors_origins(raw, problems);
    let bind_source_ip = flag(raw.or_default(name, Key::BindSourceIp).as_ref(), problems);
    if problems.count() > problems_before {
        return None;
    }
    Some(Access {
        auth,
        jwt,
        login,
        rate_limit: rate_limit?,
        cors_origins,
        bind_source_ip,
    })
}

fn auth_mode(name: &str, raw: &RawProfile, problems: &mut Problems) -> AuthMode {
    let Some(s) = raw.or_default(name, Key::Auth) else {
        return AuthMode::None;
    };
    match s.value.trim() {
        "none" => AuthMode::None,
        "jwt" => AuthMode::Jwt,
        "report" => AuthMode::Report,
        other => match Platforms::parse(other) {
            Some(platforms) => AuthMode::Login(platforms),
            None => {
                problems.add(
                    &s.origin,
                    format!(
                        "must be none, jwt, report, wechat, alipay or wechat,alipay, got {}",
                        shown(other)
                    ),
                );
                AuthMode::None
            }
        },
    }
}

/// JWT settings on a profile that checks no JWT are a mistake worth stopping for.
fn refuse_jwt_settings(name: &str, raw: &RawProfile, problems: &mut Problems) {
    const JWT_KEYS: [Key; 8] = [
        Key::JwtHs256Secret,
        Key::JwtHs256SecretFile,
        Key::JwtJwksUrl,
        Key::JwtJwksFile,
        Key::JwtIssuer,
        Key::JwtAudience,
        Key::JwtAlgorithms,
        Key::JwtAcceptAnyAudience,
    ];
    for key in JWT_KEYS {
        if let Some(s) = raw.get(key) {
            problems.add(
                &s.origin,
                format!(
                    "is set but profile `{name}` does not check JWTs; set its auth to jwt (or report)"
                ),
            );
        }
    }
}

fn rate_limit(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<RateLimit> {
    let mut number = |key: Key, max: u32| -> Option<NonZeroU32> {
        let s = raw.or_default(name, key)?;
        let n = s
            .value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .and_then(NonZeroU32::new);
        if n.is_none() {
            problems.add(
                &s.origin,
                format!(
                    "must be a whole number from 1 to {max}, got {}",
                    shown(&s.value)
                ),
            );
        }
        n
    };
    let per_minute = number(Key::RateLimitPerMinute, 6_000_000);
    let burst = number(Key::RateLimitBurst, 1_000_000);
    Some(RateLimit {
        per_minute: per_minute?,
        burst: burst?,
    })
}

fn cors_origins(raw: &RawProfile, problems: &mut Problems) -> Vec<String> {
    let mut origins = Vec::new();
    if let Some(s) = raw.get(Key::CorsOrigins) {
        for origin in items(s) {
            match parse_origin(origin) {
                Ok(origin) => origins.push(origin),
                Err(why) => problems.add(&s.origin, why),
            }
        }
    }
    origins
}

fn parse_jwt(name: &str, raw: &RawProfile, problems: &mut Problems) -> Option<JwtSettings> {
    let problems_before = problems.count();
    let hs256_secret = hs256_secret(raw, problems);
    let jwks_url = jwks_url(raw, problems);
    let jwks_file = raw
        .get(Key::JwtJwksFile)
        .map(|s| PathBuf::from(s.value.trim()));
    let text = |key: Key| {
        raw.get(key)
            .map(|s| s.value.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let issuer = text(Key::JwtIssuer);
    let audience = text(Key::JwtAudience);
    let has_hs256 =
        raw.get(Key::JwtHs256Secret).is_some() || raw.get(Key::JwtHs256SecretFile).is_some();
    let has_jwks = jwks_url.is_some() || jwks_file.is_some();
    let algorithms = algorithms(raw, has_hs256, has_jwks, problems);
    if !has_hs256 && !has_jwks {
        problems.add(
            profile_origin(name, Key::JwtHs256Secret),
            format!("profile `{name}` checks JWTs but has no key: set STSVEND_JWT_HS256_SECRET (or its _FILE), STSVEND_JWT_JWKS_URL or STSVEND_JWT_JWKS_FILE"),
        );
        return None;
    }
    check_algorithms_have_keys(name, &algorithms, has_hs256, has_jwks, problems);
    let accept_any_audience = flag(raw.get(Key::JwtAcceptAnyAudience), problems);
    check_issuer_and_audience(name, &issuer, &audience, accept_any_audience, problems);
    (problems.count() == problems_before).then_some(JwtSettings {
        hs256_secret,
        jwks_url,
        jwks_file,
        issuer,
        audience,
        algorithms,
        accept_any_audience,
    })
}

/// The HS256 key, given directly or as a file (the Docker and Kubernetes secrets convention),
/// never both.
fn hs256_secret(raw: &RawProfile, problems: &mut Problems) -> Option<SecretString> {
    let value = raw.get(Key::JwtHs256Secret);
    let file = raw.get(Key::JwtHs256SecretFile);
    let (text, origin) = match (value, file) {
        // Given directly, the key is used byte for byte, as it always was; from a file it is
        // trimmed, since files end in a newline the issuer's key does not have.
        (Some(value), None) => (value.value.clone(), value.origin.clone()),
        _ => value_or_file(value, file, MAX_HS256_SECRET_BYTES, problems)?,
    };
    // Never echo the secret, not even its length.
    if text.len() < MIN_HS256_SECRET_BYTES {
        problems.add(
            origin,
            format!("must be at least {MIN_HS256_SECRET_BYTES} bytes of random data"),
        );
        None
    } else if text.len() > MAX_HS256_SECRET_BYTES {
        problems.add(
            origin,
            format!("must be at most {MAX_HS256_SECRET_BYTES} bytes; is it the right key?"),
        );
        None
    } else {
        Some(SecretString::from(text))
    }
}

fn jwks_url(raw: &RawProfile, problems: &mut Problems) -> Option<Url> {
    let s = raw.get(Key::JwtJwksUrl)?;
    let url = Url::parse(s.value.trim()).ok().filter(|u| {
        let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        u.scheme() == "https" || (u.scheme() == "http" && loopback)
    });
    if url.is_none() {
        problems.add(
            &s.origin,
            format!(
                "must be an https:// URL (http:// only for loopback), got {}",
                shown(&s.value)
            ),
        );
    }
    url
}

/// The algorithms listed, or by default whatever the configured keys can verify.
fn algorithms(
    raw: &RawProfile,
    has_hs256: bool,
    has_jwks: bool,
    problems: &mut Problems,
) -> Vec<JwtAlgorithm> {
    let mut algorithms = Vec::new();
    let Some(s) = raw.get(Key::JwtAlgorithms) else {
        if has_hs256 {
            algorithms.push(JwtAlgorithm::Hs256);
        }
        if has_jwks {
            algorithms.extend([JwtAlgorithm::Rs256, JwtAlgorithm::Es256]);
        }
        return algorithms;
    };
    for item in items(s) {
        match item.to_ascii_uppercase().as_str() {
            "HS256" => algorithms.push(JwtAlgorithm::Hs256),
            "RS256" => algorithms.push(JwtAlgorithm::Rs256),
            "ES256" => algorithms.push(JwtAlgorithm::Es256),
            _ => {
                problems.add(
                    &s.origin,
                    format!("supports HS256, RS256 and ES256, got {}", shown(item)),
                );
            }
        }
    }
    algorithms.dedup();
    algorithms
}

fn check_algorithms_have_keys(
    name: &str,
    algorithms: &[JwtAlgorithm],
    has_hs256: bool,
    has_jwks: bool,
    problems: &mut Problems,
) {
    let origin = profile_origin(name, Key::JwtAlgorithms);
    if algorithms.contains(&JwtAlgorithm::Hs256) && !has_hs256 {
        problems.add(&origin, "includes HS256 but no HS256 secret is set");
    }
    if algorithms.iter().any(|a| *a != JwtAlgorithm::Hs256) && !has_jwks {
        problems.add(
            &origin,
            "includes RS256/ES256 but no JWKS URL or file is set",
        );
    }
    if algorithms.is_empty() {
        problems.add(&origin, "names no algorithm");
    }
}

/// A shared identity provider signs tokens for many apps with the same keys; only the issuer
/// and audience tell ours apart, so both are required unless the operator says not.
fn check_issuer_and_audience(
    name: &str,
    issuer: &Option<String>,
    audience: &Option<String>,
    accept_any_audience: bool,
    problems: &mut Problems,
) {
    match (issuer, audience, accept_any_audience) {
        (Some(_), Some(_), false) | (_, None, true) => {}
        (_, Some(_), true) => problems.add(
            profile_origin(name, Key::JwtAcceptAnyAudience),
            "is true but an audience is set (STSVEND_JWT_AUDIENCE); unset one of them",
        ),
        (issuer, audience, false) => {
            let missing = match (issuer, audience) {
                (None, None) => "neither issuer nor audience is set",
                (None, _) => "no issuer is set",
                _ => "no audience is set",
            };
            problems.add(
                profile_origin(name, Key::JwtAudience),
                format!(
                    "profile `{name}` checks JWTs but {missing}: any token its keys verify would do, including one your identity provider issued for another app. Set STSVEND_JWT_ISSUER and STSVEND_JWT_AUDIENCE (the `iss` and `aud` of your tokens), or STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true to accept that"
                ),
            );
        }
    }
}

/// An exact browser origin: `scheme://host[:port]`, nothing else.
fn parse_origin(origin: &str) -> Result<String, String> {
    if origin == "*" || origin.contains('*') {
        return Err(
            "lists `*`; CORS origins must be exact (a wildcard would let any site fetch tokens)"
                .to_owned(),
        );
    }
    let url = Url::parse(origin).map_err(|_| {
        format!(
            "{} is not an origin like https://app.example.com",
            shown(origin)
        )
    })?;
    let exact = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && !origin.ends_with('/');
    if !exact {
        return Err(format!(
            "{} is not an origin like https://app.example.com (no path, no trailing slash)",
            shown(origin)
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_exact() {
        assert_eq!(
            parse_origin("https://app.example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        assert_eq!(
            parse_origin("https://APP.example.com:443").unwrap(),
            "https://app.example.com"
        );
        for bad in [
            "*",
            "https://*.example.com",
            "https://app.example.com/",
            "https://a.com/path",
            "app.example.com",
            "ftp://a.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
