use super::*;

use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::auth::jwt::{JwtConfig, JwtError, JwtVerifier};

const SECRET: &str = "0123456789abcdef0123456789abcdef-current";
const OLD_SECRET: &str = "0123456789abcdef0123456789abcdef-previous";
const OTHER_SECRET: &str = "0123456789abcdef0123456789abcdef-someone-else";
const DAY: Duration = Duration::from_secs(86_400);
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
const UNIONID: &str = "o6_bmasdasdsad6_2sgVt7hMZOPfL";
const BOTH: &[Platform] = &[Platform::Wechat, Platform::Alipay];

fn secret(text: &str) -> SecretString {
    SecretString::from(text)
}

fn tokens(current: &str, previous: Option<&str>, ttl: Duration) -> SessionTokens {
    SessionTokens::new(&secret(current), previous.map(secret).as_ref(), ttl).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

fn login(profile: &str, platform: Platform) -> Login {
    Login {
        profile: profile.to_owned(),
        platform,
        user_id: OPENID.to_owned(),
        union_id: None,
    }
}

fn issue(tokens: &SessionTokens, login: &Login, at: DateTime<Utc>) -> String {
    tokens
        .issue(login, at)
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

/// Verifies, and checks that a refusal does not echo the token or the user id.
fn verify(
    tokens: &SessionTokens,
    token: &str,
    profile: &str,
    platforms: &[Platform],
    at: DateTime<Utc>,
) -> Result<Session, SessionError> {
    let result = tokens.verify(token, profile, platforms, at);
    if let Err(error) = &result {
        let shown = format!("{error} {error:?} {} {}", error.code(), error.description());
        assert!(!shown.contains(OPENID), "{shown:?} shows the user id");
        for piece in token.split(['.', '~']).filter(|piece| piece.len() >= 8) {
            assert!(!shown.contains(piece), "{shown:?} echoes the token");
        }
    }
    result
}

#[test]
fn a_session_round_trips_with_everything_it_was_issued_for() {
    let tokens = tokens(SECRET, None, DAY);
    for union_id in [None, Some(UNIONID.to_owned())] {
        let login = Login {
            union_id,
            ..login("shop", Platform::Wechat)
        };
        let issued = tokens.issue(&login, now()).unwrap();
        assert_eq!(issued.expires_at, now() + TimeDelta::days(1));
        let session = verify(
            &tokens,
            issued.token.expose_secret(),
            "shop",
            &[Platform::Wechat],
            now() + TimeDelta::hours(23),
        )
        .unwrap();
        assert_eq!(
            session,
            Session {
                login,
                issued_at: now(),
                expires_at: now() + TimeDelta::days(1),
                with_previous_secret: false,
            }
        );
    }
}

#[test]
fn a_token_is_compact_and_shaped_unlike_a_jwt() {
    let tokens = tokens(SECRET, None, DAY);
    let login = Login {
        union_id: Some(UNIONID.to_owned()),
        ..login("default", Platform::Wechat)
    };
    let token = issue(&tokens, &login, now());
    assert!(token.starts_with("sv1."), "{token}");
    assert_eq!(token.matches('.').count(), 1, "{token}");
    assert_eq!(token.matches('~').count(), 1, "{token}");
    assert!(token.len() < 300, "{} bytes", token.len());
    // Only characters RFC 6750 allows in a bearer token.
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
        "{token}"
    );
    // The longest ids and profile name still fit well within the size bound.
    let longest = Login {
        profile: "p".repeat(64),
        platform: Platform::Alipay,
        user_id: "u".repeat(MAX_ID_LEN),
        union_id: Some("n".repeat(MAX_ID_LEN)),
    };
    let token = issue(&tokens, &longest, now());
    assert!(token.len() < MAX_TOKEN_LEN / 2, "{} bytes", token.len());
    assert!(verify(&tokens, &token, &"p".repeat(64), BOTH, now()).is_ok());
}

#[test]
fn a_session_for_one_profile_is_refused_by_another() {
    let tokens = tokens(SECRET, None, DAY);
    let token = issue(&tokens, &login("shop-a", Platform::Wechat), now());
    assert_eq!(
        verify(&tokens, &token, "shop-b", BOTH, now()),
        Err(SessionError::WrongProfile)
    );
    assert_eq!(
        verify(&tokens, &token, "shop-a-", BOTH, now()),
        Err(SessionError::WrongProfile)
    );
    assert!(verify(&tokens, &token, "shop-a", BOTH, now()).is_ok());
}

#[test]
fn a_session_from_a_platform_the_profile_does_not_accept_is_refused() {
    let tokens = tokens(SECRET, None, DAY);
    let wechat = issue(&tokens, &login("shop", Platform::Wechat), now());
    let alipay = issue(&tokens, &login("shop", Platform::Alipay), now());
    let cases = [
        (
            &wechat,
            &[Platform::Alipay][..],
            Err(SessionError::WrongPlatform),
        ),
        (
            &alipay,
            &[Platform::Wechat],
            Err(SessionError::WrongPlatform),
        ),
        (&wechat, &[], Err(SessionError::WrongPlatform)),
        (&wechat, &[Platform::Wechat], Ok(Platform::Wechat)),
        (&alipay, BOTH, Ok(Platform::Alipay)),
    ];
    for (token, platforms, expected) in cases {
        let got = verify(&tokens, token, "shop", platforms, now()).map(|s| s.login.platform);
        assert_eq!(got, expected, "accepting {platforms:?}");
    }
}

#[test]
fn a_session_expires_after_its_ttl_and_says_so() {
    let tokens = tokens(SECRET, None, Duration::from_secs(3600));
    let token = issue(&tokens, &login("shop", Platform::Wechat), now());
    let last_second = now() + TimeDelta::seconds(3599);
    assert!(verify(&tokens, &token, "shop", BOTH, last_second).is_ok());
    let at = now() + TimeDelta::hours(1);
    for later in [at, at + TimeDelta::days(400)] {
        let error = verify(&tokens, &token, "shop", BOTH, later).unwrap_err();
        assert_eq!(error, SessionError::Expired { at });
        assert_eq!(error.code(), "session_expired");
    }
}

#[test]
fn lowering_the_ttl_shortens_sessions_already_issued() {
    let long = tokens(SECRET, None, DAY);
    let token = issue(&long, &login("shop", Platform::Wechat), now());
    let short = tokens(SECRET, None, Duration::from_secs(3600));
    let later = now() + TimeDelta::hours(2);
    assert!(verify(&long, &token, "shop", BOTH, later).is_ok());
    assert_eq!(
        verify(&short, &token, "shop", BOTH, later),
        Err(SessionError::Expired {
            at: now() + TimeDelta::hours(1)
        })
    );
}

#[test]
fn sessions_signed_with_the_previous_secret_stay_valid_while_rolling() {
    let before = tokens(OLD_SECRET, None, DAY);
    let old_token = issue(&before, &login("shop", Platform::Wechat), now());
    let rolling = tokens(SECRET, Some(OLD_SECRET), DAY);
    let session = verify(&rolling, &old_token, "shop", BOTH, now()).unwrap();
    assert!(session.with_previous_secret);
    // New sessions are issued with the current secret only.
    let new_token = issue(&rolling, &login("shop", Platform::Wechat), now());
    let session = verify(&rolling, &new_token, "shop", BOTH, now()).unwrap();
    assert!(!session.with_previous_secret);
    let after = tokens(SECRET, None, DAY);
    assert!(verify(&after, &new_token, "shop", BOTH, now()).is_ok());
    assert_eq!(
        verify(&before, &new_token, "shop", BOTH, now()),
        Err(SessionError::BadSignature)
    );
    // Once the previous secret is dropped, its sessions end.
    assert_eq!(
        verify(&after, &old_token, "shop", BOTH, now()),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn a_session_signed_with_an_unknown_secret_is_refused() {
    let theirs = tokens(OTHER_SECRET, None, DAY);
    let token = issue(&theirs, &login("shop", Platform::Wechat), now());
    let ours = tokens(SECRET, Some(OLD_SECRET), DAY);
    let error = verify(&ours, &token, "shop", BOTH, now()).unwrap_err();
    assert_eq!(error, SessionError::BadSignature);
    assert_eq!(error.code(), "invalid_session");
}

#[test]
fn a_mac_keyed_with_the_raw_secret_does_not_verify() {
    // Domain separation: whoever holds the secret for another use (an HS256 JWT secret, say)
    // and MACs our format with it directly does not produce a session.
    let tokens = tokens(SECRET, None, DAY);
    let genuine = issue(&tokens, &login("shop", Platform::Wechat), now());
    let (signed, _) = genuine.split_once('~').unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let forged = format!(
        "{signed}~{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(
        verify(&tokens, &forged, "shop", BOTH, now()),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn a_tampered_payload_or_mac_is_refused() {
    let tokens = tokens(SECRET, None, DAY);
    let token = issue(&tokens, &login("shop", Platform::Wechat), now());
    let (_, tag) = token.split_once('~').unwrap();
    // Another user, another profile, a later expiry: the old MAC does not cover them.
    let claims = [
        r#"{"p":"shop","f":"wechat","u":"someone-else","i":1777622400,"e":1777708800}"#,
        r#"{"p":"admin","f":"wechat","u":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","i":1777622400,"e":1777708800}"#,
        r#"{"p":"shop","f":"wechat","u":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","i":1777622400,"e":9999999999}"#,
    ];
    for claims in claims {
        let forged = format!("sv1.{}~{tag}", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(
            verify(&tokens, &forged, "shop", BOTH, now()),
            Err(SessionError::BadSignature),
            "{claims}"
        );
    }
    // Every single-character change anywhere is refused.
    let bytes = token.as_bytes();
    for index in 0..bytes.len() {
        for replacement in [b'A', b'_', b'~', b'.', b'z'] {
            if bytes[index] == replacement {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[index] = replacement;
            let changed = String::from_utf8(changed).unwrap();
            let error = verify(&tokens, &changed, "shop", BOTH, now()).unwrap_err();
            assert!(
                matches!(error, SessionError::Malformed | SessionError::BadSignature),
                "byte {index} -> {replacement}: {error:?}"
            );
        }
    }
}

fn hs256_jwt(secret: &str) -> String {
    let claims = serde_json::json!({
        "sub": OPENID, "iss": "https://login.example", "aud": "stsvend",
        "exp": (now() + TimeDelta::hours(1)).timestamp(),
        "p": "shop", "f": "wechat", "u": OPENID, "i": now().timestamp(), "e": 9_999_999_999_i64,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn a_real_jwt_is_never_accepted_as_a_session() {
    let tokens = tokens(SECRET, None, DAY);
    // Signed with the session secret itself, carrying session-shaped claims.
    let jwt = hs256_jwt(SECRET);
    assert_eq!(
        verify(&tokens, &jwt, "shop", BOTH, now()),
        Err(SessionError::Malformed)
    );
    // Given our prefix, it is still not one.
    for disguised in [
        format!("sv1.{jwt}"),
        format!("sv1.{}", jwt.replacen('.', "~", 2)),
    ] {
        assert_eq!(
            verify(&tokens, &disguised, "shop", BOTH, now()),
            Err(SessionError::Malformed),
            "{disguised}"
        );
    }
}

#[tokio::test]
async fn a_session_is_never_accepted_as_an_external_jwt() {
    // A JWT verifier holding the same secret as its HS256 key.
    let verifier = JwtVerifier::new(JwtConfig {
        hs256_secret: Some(secret(SECRET)),
        jwks_url: None,
        jwks_file: None,
        issuer: None,
        audience: None,
        algorithms: vec![Algorithm::HS256],
    })
    .unwrap();
    // The verifier works: a JWT under that secret passes.
    assert!(verifier.verify(&hs256_jwt(SECRET), now()).await.is_ok());
    let tokens = tokens(SECRET, None, DAY);
    let session = issue(&tokens, &login("shop", Platform::Wechat), now());
    assert_eq!(
        verifier.verify(&session, now()).await.unwrap_err(),
        JwtError::Malformed
    );
    // jsonwebtoken alone refuses it too, with the raw or the derived key.
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let keys = [
        jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::DecodingKey::from_secret(MacKey::derive(&secret(SECRET)).0.expose_secret()),
    ];
    for key in keys {
        assert!(jsonwebtoken::decode::<serde_json::Value>(&session, &key, &validation).is_err());
    }
}

#[test]
fn an_oversized_token_is_refused_before_any_work() {
    let tokens = tokens(SECRET, None, DAY);
    let token = issue(&tokens, &login("shop", Platform::Wechat), now());
    // A genuine token padded past the bound is refused as malformed, not checked.
    let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
    assert_eq!(
        verify(&tokens, &padded, "shop", BOTH, now()),
        Err(SessionError::Malformed)
    );
    let huge = format!("sv1.{}~{}", "A".repeat(1 << 20), "A".repeat(43));
    assert_eq!(
        verify(&tokens, &huge, "shop", BOTH, now()),
        Err(SessionError::Malformed)
    );
}

#[test]
fn garbage_is_malformed() {
    let tokens = tokens(SECRET, None, DAY);
    let tag = URL_SAFE_NO_PAD.encode([0_u8; 32]);
    let cases = [
        String::new(),
        "sv1.".to_owned(),
        "sv1.~".to_owned(),
        format!("sv1.~{tag}"),
        "sv1.abc~".to_owned(),
        "sv1.abc".to_owned(),
        format!("sv2.abc~{tag}"),
        format!("SV1.abc~{tag}"),
        format!(" sv1.abc~{tag}"),
        format!("sv1.abc~{tag}~{tag}"),
        format!("sv1.ab=~{tag}"),
        format!("sv1.abc~{tag}="),
        format!("sv1.abc~{}", URL_SAFE_NO_PAD.encode([0_u8; 31])),
        format!("sv1.abc~{}", URL_SAFE_NO_PAD.encode([0_u8; 33])),
        format!("sv1.a b~{tag}"),
        format!("sv1.é~{tag}"),
        "Bearer sv1.abc".to_owned(),
    ];
    for case in cases {
        assert_eq!(
            verify(&tokens, &case, "shop", BOTH, now()),
            Err(SessionError::Malformed),
            "{case:?}"
        );
    }
}

#[test]
fn a_genuine_mac_over_a_payload_we_never_write_is_malformed_not_a_panic() {
    // Only we can MAC, but the parser must not trust that: odd JSON under a valid MAC.
    let tokens = tokens(SECRET, None, DAY);
    let payloads: [&[u8]; 6] = [
        b"[]",
        b"not json",
        br#"{"p":"shop","f":"myspace","u":"x","i":0,"e":1}"#,
        br#"{"p":"shop","f":"wechat","u":"x","i":0,"e":1,"admin":true}"#,
        br#"{"p":"shop","f":"wechat","u":"x","i":"0","e":1}"#,
        &[0xff, 0xfe],
    ];
    for payload in payloads {
        let signed = format!("sv1.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = tokens
            .current
            .mac(signed.as_bytes())
            .finalize()
            .into_bytes();
        let token = format!("{signed}~{}", URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(
            verify(&tokens, &token, "shop", BOTH, now()),
            Err(SessionError::Malformed),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    // Extreme times under a valid MAC do not overflow.
    for (issued, expires) in [(i64::MIN, i64::MAX), (i64::MAX, i64::MAX), (0, i64::MIN)] {
        let claims = format!(r#"{{"p":"shop","f":"wechat","u":"x","i":{issued},"e":{expires}}}"#);
        let signed = format!("sv1.{}", URL_SAFE_NO_PAD.encode(claims));
        let tag = tokens
            .current
            .mac(signed.as_bytes())
            .finalize()
            .into_bytes();
        let token = format!("{signed}~{}", URL_SAFE_NO_PAD.encode(tag));
        let _ = verify(&tokens, &token, "shop", BOTH, now());
    }
}

/// splitmix64: a fixed-seed generator, so the random inputs are the same on every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn random_input_never_panics_and_never_verifies() {
    let tokens = tokens(SECRET, Some(OLD_SECRET), DAY);
    let genuine = issue(&tokens, &login("shop", Platform::Wechat), now());
    let alphabet = b"sv1.~-_ABCxyz0189=+/ \x00\xff";
    let mut state = 0x5eed_u64;
    for round in 0..5_000 {
        let len = (next(&mut state) % 400) as usize;
        let bytes: Vec<u8> = match round % 3 {
            // Raw random bytes.
            0 => (0..len).map(|_| next(&mut state) as u8).collect(),
            // Random picks from the characters a token is made of.
            1 => (0..len)
                .map(|_| alphabet[(next(&mut state) % alphabet.len() as u64) as usize])
                .collect(),
            // The genuine token with a random stretch overwritten.
            _ => {
                let mut bytes = genuine.as_bytes().to_vec();
                let at = (next(&mut state) as usize) % bytes.len();
                let end = (at + 1 + len % 8).min(bytes.len());
                for byte in &mut bytes[at..end] {
                    *byte = next(&mut state) as u8;
                }
                bytes
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        if text == genuine {
            continue;
        }
        let result = tokens.verify(&text, "shop", BOTH, now());
        assert!(
            matches!(
                result,
                Err(SessionError::Malformed | SessionError::BadSignature)
            ),
            "{text:?}: {result:?}"
        );
    }
}

#[test]
fn setup_refuses_short_secrets_and_odd_ttls_without_showing_them() {
    let short = "too-short-secret";
    let cases = [
        (
            SessionTokens::new(&secret(short), None, DAY),
            SessionSetupError::SecretTooShort { len: 16 },
        ),
        (
            SessionTokens::new(&secret(SECRET), Some(&secret(short)), DAY),
            SessionSetupError::PreviousSecretTooShort { len: 16 },
        ),
        (
            SessionTokens::new(&secret(SECRET), None, Duration::ZERO),
            SessionSetupError::TtlOutOfRange { seconds: 0 },
        ),
        (
            SessionTokens::new(&secret(SECRET), None, MAX_TTL + Duration::from_secs(1)),
            SessionSetupError::TtlOutOfRange {
                seconds: MAX_TTL.as_secs() + 1,
            },
        ),
    ];
    for (result, expected) in cases {
        let error = result.unwrap_err();
        assert_eq!(error, expected);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(short) && !shown.contains(SECRET), "{shown}");
    }
    // The keys never show, whatever holds them.
    let tokens = tokens(SECRET, Some(OLD_SECRET), DAY);
    let shown = format!("{tokens:?}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    let issued = tokens
        .issue(&login("shop", Platform::Wechat), now())
        .unwrap();
    let shown = format!("{issued:?}");
    assert!(!shown.contains(issued.token.expose_secret()), "{shown}");
}

#[test]
fn logins_with_unusable_ids_or_profiles_get_no_session() {
    let tokens = tokens(SECRET, None, DAY);
    let base = login("shop", Platform::Wechat);
    let cases = [
        Login {
            user_id: String::new(),
            ..base.clone()
        },
        Login {
            user_id: "a b".to_owned(),
            ..base.clone()
        },
        Login {
            user_id: "x".repeat(MAX_ID_LEN + 1),
            ..base.clone()
        },
        Login {
            union_id: Some("\u{7f}".to_owned()),
            ..base.clone()
        },
        Login {
            profile: "Shop!".to_owned(),
            ..base
        },
    ];
    for login in cases {
        let error = tokens.issue(&login, now()).unwrap_err();
        assert!(
            matches!(
                error,
                SessionSetupError::InvalidUserId { .. } | SessionSetupError::InvalidProfile
            ),
            "{login:?}: {error:?}"
        );
    }
}

#[test]
fn platform_names_round_trip() {
    for platform in [Platform::Wechat, Platform::Alipay] {
        assert_eq!(Platform::from_name(platform.as_str()), Some(platform));
        assert_eq!(platform.to_string(), platform.as_str());
    }
    assert_eq!(Platform::from_name("WeChat"), None);
}
