//! Alipay OpenAPI "RSA2" for `alipay.system.oauth.token`: the signed request (app private key)
//! and the verified answer (Alipay's public key). Pure: no I/O, no clock (the caller passes the
//! time), no randomness.
//!
//! Proven against Alipay's official SDKs: `scripts/gen_alipay_vectors.py` (PyPI
//! `alipay-sdk-python`) writes `tests/fixtures/alipay_sign_vectors.json`, which
//! `scripts/alipay-node/check_vectors.mjs` (npm `alipay-sdk`) re-checks and the tests in
//! `alipay_sign_vectors.rs` replay byte for byte.
//!
//! Crypto is `ring` (already in the tree through rustls): its RSA private-key operation is
//! constant time, where RustCrypto's `rsa` carries the unfixed Marvin timing advisory
//! (RUSTSEC-2023-0071, ignored in deny.toml only because stsvend did no private-key operation
//! with it) and would bring a second digest generation (sha2 0.10) into our code. `ring` reads
//! PKCS#1 and PKCS#8 private keys but only PKCS#1 public keys, so `spki` unwraps Alipay's
//! SubjectPublicKeyInfo and `pkcs1` reads the modulus to check its size when the key is loaded.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, Utc};
use pkcs1::der::Decode as _;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use secrecy::zeroize::Zeroizing;
use serde::Deserialize;

/// The method stsvend calls: exchange a mini program's auth code for the user's id.
pub const METHOD: &str = "alipay.system.oauth.token";
/// The member holding a successful (or method-level failed) answer.
pub const RESPONSE_MEMBER: &str = "alipay_system_oauth_token_response";
/// The member holding a gateway-level failure.
pub const ERROR_MEMBER: &str = "error_response";
/// The `Content-Type` of the form body, as the official SDK sends it.
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";
/// Answers larger than this are refused unread: a token answer is well under 2 KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest user id believed (Alipay's are 16-digit `2088…` or ~60-character `open_id`s).
const MAX_USER_ID_CHARS: usize = 128;

/// Alipay wants `timestamp` as Beijing wall time; China has no daylight saving time.
const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Which configured key a [`KeyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    AppPrivateKey,
    AlipayPublicKey,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AppPrivateKey => "the app private key",
            Self::AlipayPublicKey => "Alipay's public key",
        })
    }
}

/// A key that cannot be used. Names the key and the problem, never any of the key's bytes.
#[derive(Debug, thiserror::Error)]
#[error("{role} {problem}")]
pub struct KeyError {
    pub role: KeyRole,
    pub problem: &'static str,
}

/// ring refused to sign: only possible with a buffer of the wrong size, which `sign` never makes.
#[derive(Debug, thiserror::Error)]
#[error("RSA2 signing failed")]
pub struct SigningFailed;

/// The app's RSA private key. Debug prints `[redacted]`; there is no Display and no accessor.
pub struct AppPrivateKey {
    pair: RsaKeyPair,
}

impl fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppPrivateKey([redacted])")
    }
}

impl AppPrivateKey {
    /// Reads a PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`) key, PEM or bare base64
    /// (the form Alipay's key tools hand out, possibly wrapped over several lines).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let role = KeyRole::AppPrivateKey;
        let (label, der) = decode_key_text(text, role)?;
        let pair = match label {
            Some(PemLabel::RsaPrivate) => RsaKeyPair::from_der(&der),
            Some(PemLabel::Private) => RsaKeyPair::from_pkcs8(&der),
            None => RsaKeyPair::from_pkcs8(&der).or_else(|_| RsaKeyPair::from_der(&der)),
            Some(_) => return Err(problem(role, "is not a private key (wrong PEM label)")),
        };
        let pair = pair.map_err(|_| {
            problem(
                role,
                "is not an unencrypted 2048-4096 bit RSA private key (PKCS#1 or PKCS#8)",
            )
        })?;
        Ok(Self { pair })
    }

    /// base64(SHA256withRSA(content)), PKCS#1 v1.5 padding: what Alipay calls RSA2.
    pub fn sign(&self, content: &str) -> Result<String, SigningFailed> {
        let mut out = vec![0; self.pair.public().modulus_len()];
        // PKCS#1 v1.5 padding is deterministic; ring only asks for a generator because PSS
        // uses one. It is never read here.
        let rng = ring::rand::SystemRandom::new();
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                content.as_bytes(),
                &mut out,
            )
            .map_err(|_| SigningFailed)?;
        Ok(BASE64.encode(out))
    }
}

/// Alipay's RSA public key ("支付宝公钥"), used to verify the gateway's answers.
#[derive(Clone)]
pub struct AlipayPublicKey {
    /// PKCS#1 `RSAPublicKey` DER, the form ring verifies with.
    rsa_public_key: Vec<u8>,
}

impl fmt::Debug for AlipayPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayPublicKey")
            .field("der_bytes", &self.rsa_public_key.len())
            .finish()
    }
}

impl AlipayPublicKey {
    /// Reads a SubjectPublicKeyInfo (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) key, PEM or
    /// bare base64.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let role = KeyRole::AlipayPublicKey;
        let (label, der) = decode_key_text(text, role)?;
        let rsa_public_key = match label {
            Some(PemLabel::Public) => unwrap_spki(&der)?,
            Some(PemLabel::RsaPublic) => der.to_vec(),
            None => unwrap_spki(&der).unwrap_or_else(|_| der.to_vec()),
            Some(_) => return Err(problem(role, "is not a public key (wrong PEM label)")),
        };
        let parsed = pkcs1::RsaPublicKey::from_der(&rsa_public_key)
            .map_err(|_| problem(role, "is not an RSA public key"))?;
        let modulus = parsed.modulus.as_bytes();
        let leading_zeros = modulus.iter().take_while(|b| **b == 0).count();
        let bits = (modulus.len() - leading_zeros) * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(problem(role, "must be an RSA key of 2048 to 8192 bits"));
        }
        Ok(Self { rsa_public_key })
    }

    /// Whether `signature_b64` is a valid RSA2 (SHA256withRSA) signature of `signed`. SHA-1
    /// ("RSA") signatures are refused: stsvend asks for RSA2.
    pub fn verifies(&self, signed: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = BASE64.decode(signature_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(signed, &sig)
            .is_ok()
    }
}

fn problem(role: KeyRole, problem: &'static str) -> KeyError {
    KeyError { role, problem }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemLabel {
    RsaPrivate,
    Private,
    Public,
    RsaPublic,
    Other,
}

/// PEM (one block) or bare base64 → (label, DER). The DER is zeroized when dropped.
fn decode_key_text(
    text: &str,
    role: KeyRole,
) -> Result<(Option<PemLabel>, Zeroizing<Vec<u8>>), KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(problem(role, "is empty"));
    }
    let (label, body) = match text.strip_prefix("-----BEGIN ") {
        None => (None, text),
        Some(rest) => {
            let (label, rest) = rest
                .split_once("-----")
                .ok_or_else(|| problem(role, "has a malformed PEM header"))?;
            let end = format!("-----END {label}-----");
            let (body, after) = rest
                .split_once(end.as_str())
                .ok_or_else(|| problem(role, "has no matching PEM footer"))?;
            if !after.trim().is_empty() {
                return Err(problem(role, "has text after the PEM footer"));
            }
            if body.contains(':') || label.contains("ENCRYPTED") {
                return Err(problem(role, "is encrypted; give the unencrypted key"));
            }
            (Some(pem_label(label)), body)
        }
    };
    let compact: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    let der = BASE64
        .decode(compact.as_bytes())
        .map_err(|_| problem(role, "is neither PEM nor base64"))?;
    Ok((label, Zeroizing::new(der)))
}

fn pem_label(label: &str) -> PemLabel {
    match label {
        "RSA PRIVATE KEY" => PemLabel::RsaPrivate,
        "PRIVATE KEY" => PemLabel::Private,
        "PUBLIC KEY" => PemLabel::Public,
        "RSA PUBLIC KEY" => PemLabel::RsaPublic,
        _ => PemLabel::Other,
    }
}

/// SubjectPublicKeyInfo DER → the PKCS#1 `RSAPublicKey` inside, if the algorithm is RSA.
fn unwrap_spki(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    const RSA_ENCRYPTION: spki::ObjectIdentifier =
        spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let role = KeyRole::AlipayPublicKey;
    let info = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|_| problem(role, "is not a SubjectPublicKeyInfo public key"))?;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err(problem(role, "is not an RSA key"));
    }
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| problem(role, "has a malformed key bit string"))
}

/// The text Alipay signs: every parameter but `sign`, sorted by name (code point order), as
/// `name=value` joined by `&`, values raw (not URL-encoded). Empty values stay in as `name=`:
/// the official SDKs skip nothing.
pub fn signing_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut params: Vec<(&str, &str)> = params.into_iter().filter(|(k, _)| *k != "sign").collect();
    params.sort_unstable();
    let mut content = String::new();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            content.push('&');
        }
        content.push_str(name);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// The `alipay.system.oauth.token` call as the official Python SDK lays it out: common
/// parameters and `sign` in the URL query, the method's parameters in the form body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthTokenRequest {
    /// Goes after `?` on the gateway URL.
    pub query: String,
    /// The `application/x-www-form-urlencoded` POST body ([`CONTENT_TYPE`]).
    pub body: String,
}

/// Builds and signs the request that exchanges `code` (from `my.getAuthCode`) for the user's id.
pub fn oauth_token_request(
    app_id: &str,
    code: &str,
    now: DateTime<Utc>,
    key: &AppPrivateKey,
) -> Result<OauthTokenRequest, SigningFailed> {
    let timestamp = now
        .with_timezone(&BEIJING)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    // The SDK's order: timestamp, app_id, method, charset, format, version, sign_type; then sign.
    let common = [
        ("timestamp", timestamp.as_str()),
        ("app_id", app_id),
        ("method", METHOD),
        ("charset", "utf-8"),
        ("format", "json"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
    ];
    let method_params = [("code", code), ("grant_type", "authorization_code")];
    let sign = key.sign(&signing_content(
        common.iter().chain(&method_params).copied(),
    ))?;
    let query = form_encode(common.iter().copied().chain([("sign", sign.as_str())]));
    Ok(OauthTokenRequest {
        query,
        body: form_encode(method_params),
    })
}

/// `k=v&…` with Python's `quote_plus` (what the SDK's `url_encode` uses): A-Z a-z 0-9 `_.-~`
/// stay, space is `+`, every other UTF-8 byte is `%XX`. (`form_urlencoded` differs on `*`, `~`.)
fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        for &b in value.as_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0x0f)]));
                }
            }
        }
    }
    out
}

/// Who Alipay says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayUser {
    /// `open_id` when the answer has one (newer apps), else `user_id` (`2088…`, older apps).
    pub id: String,
    pub kind: UserIdKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdKind {
    OpenId,
    UserId,
}

/// A verified answer in which Alipay refused the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayRefusal {
    pub code: String,
    pub sub_code: Option<String>,
    pub msg: Option<String>,
}

/// What a failed exchange means to the caller of `POST /session`. Suggested HTTP mapping:
/// `InvalidCode` → 401 `invalid_login_code`; `Misconfigured` → 503, logged as an operator
/// error (our app id, keys or permissions are wrong); `Unavailable` → 503 with `Retry-After`
/// (Alipay busy, an unknown failure, garbage); `Unverified` → 503, logged (a bad or missing
/// signature: the configured Alipay public key is wrong or the answer is forged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    InvalidCode,
    Misconfigured,
    Unavailable,
    Unverified,
}

impl Failure {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCode => "invalid_code",
            Self::Misconfigured => "misconfigured",
            Self::Unavailable => "unavailable",
            Self::Unverified => "unverified",
        }
    }
}

impl AlipayRefusal {
    /// `isv.code-invalid` is a bad, expired or reused code (the mini program logs in again).
    /// 40001 (missing parameter), 40002 (invalid parameter, e.g. `isv.invalid-signature`,
    /// `isv.invalid-app-id`), 40006 (insufficient permissions) and 20001 (invalid auth token)
    /// are ours to fix. 20000 (`isp.*`, service unavailable) and anything unknown: try later.
    pub fn failure(&self) -> Failure {
        if self.sub_code.as_deref() == Some("isv.code-invalid") {
            return Failure::InvalidCode;
        }
        match self.code.as_str() {
            "40001" | "40002" | "40006" | "20001" => Failure::Misconfigured,
            _ => Failure::Unavailable,
        }
    }
}

/// A verified answer: the user, or Alipay's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OauthAnswer {
    User(AlipayUser),
    Refused(AlipayRefusal),
}

/// An answer that cannot be believed or understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the answer is not a JSON object")]
    NotJson,
    #[error("the answer has no {RESPONSE_MEMBER} or {ERROR_MEMBER} member (or more than one)")]
    NoMember,
    #[error("the answer has no sign")]
    MissingSignature,
    #[error("the answer's signature does not verify with Alipay's public key")]
    BadSignature,
    #[error("the signed answer has an unexpected shape: {0}")]
    Unexpected(&'static str),
}

impl AnswerError {
    pub fn failure(&self) -> Failure {
        match self {
            Self::MissingSignature | Self::BadSignature => Failure::Unverified,
            Self::TooLarge | Self::NotJson | Self::NoMember | Self::Unexpected(_) => {
                Failure::Unavailable
            }
        }
    }
}

/// The signed part of an answer: the member's exact bytes in the body, and the `sign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedMember<'a> {
    pub name: &'a str,
    pub text: &'a [u8],
    pub sign: Option<&'a [u8]>,
}

/// Verifies the gateway's answer with Alipay's public key, then (only then) reads it.
pub fn verify_answer(body: &[u8], key: &AlipayPublicKey) -> Result<OauthAnswer, AnswerError> {
    let member = signed_member(body)?;
    let sign_token = member.sign.ok_or(AnswerError::MissingSignature)?;
    let sign: String =
        serde_json::from_slice(sign_token).map_err(|_| AnswerError::MissingSignature)?;
    if !key.verifies(member.text, &sign) {
        return Err(AnswerError::BadSignature);
    }
    read_member(member.name == ERROR_MEMBER, member.text)
}

#[derive(Deserialize)]
struct MemberFields {
    code: Option<String>,
    sub_code: Option<String>,
    msg: Option<String>,
    open_id: Option<String>,
    user_id: Option<String>,
}

fn read_member(is_error_member: bool, text: &[u8]) -> Result<OauthAnswer, AnswerError> {
    let fields: MemberFields = serde_json::from_slice(text)
        .map_err(|_| AnswerError::Unexpected("member fields are not strings"))?;
    let failed = is_error_member || fields.code.as_deref().is_some_and(|c| c != "10000");
    if failed {
        return Ok(OauthAnswer::Refused(AlipayRefusal {
            code: fields.code.unwrap_or_default(),
            sub_code: fields.sub_code,
            msg: fields.msg,
        }));
    }
    let present = |id: &Option<String>| id.as_ref().is_some_and(|s| !s.is_empty());
    let (id, kind) = if present(&fields.open_id) {
        (fields.open_id, UserIdKind::OpenId)
    } else if present(&fields.user_id) {
        (fields.user_id, UserIdKind::UserId)
    } else {
        return Err(AnswerError::Unexpected("neither open_id nor user_id"));
    };
    let id = id.unwrap_or_default();
    if id.chars().count() > MAX_USER_ID_CHARS || id.chars().any(char::is_control) {
        return Err(AnswerError::Unexpected(
            "user id too long or with control characters",
        ));
    }
    Ok(OauthAnswer::User(AlipayUser { id, kind }))
}

/// Finds the one `alipay_system_oauth_token_response` or `error_response` member of the
/// top-level object and the `sign` member, as byte ranges of `body`: Alipay signs the member's
/// JSON value exactly as it appears in the body, spacing and escapes included.
pub fn signed_member(body: &[u8]) -> Result<SignedMember<'_>, AnswerError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLarge);
    }
    // Well-formed JSON first (serde_json bounds nesting), so the scan below only meets valid
    // JSON and can stay simple.
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|_| AnswerError::NotJson)?;
    let mut scan = Scanner { body, at: 0 };
    scan.skip_ws();
    if !scan.eat(b'{') {
        return Err(AnswerError::NotJson);
    }
    let mut found: Option<(&str, &[u8])> = None;
    let mut sign = None;
    let mut duplicate = false;
    loop {
        scan.skip_ws();
        if scan.eat(b'}') {
            break;
        }
        let name = scan.string_token().ok_or(AnswerError::NotJson)?;
        scan.skip_ws();
        scan.eat(b':');
        scan.skip_ws();
        let value = scan.value().ok_or(AnswerError::NotJson)?;
        match name {
            b"\"alipay_system_oauth_token_response\"" | b"\"error_response\"" => {
                let name = if name.len() == ERROR_MEMBER.len() + 2 {
                    ERROR_MEMBER
                } else {
                    RESPONSE_MEMBER
                };
                duplicate |= found.replace((name, value)).is_some();
            }
            b"\"sign\"" => duplicate |= sign.replace(value).is_some(),
            _ => {}
        }
        scan.skip_ws();
        scan.eat(b',');
    }
    let (name, text) = found.ok_or(AnswerError::NoMember)?;
    if duplicate {
        return Err(AnswerError::NoMember);
    }
    if text.first() != Some(&b'{') {
        return Err(AnswerError::Unexpected("the member is not an object"));
    }
    Ok(SignedMember { name, text, sign })
}

/// A cursor over a body already known to be valid JSON: no method panics on any input.
struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string token, quotes included; a backslash always escapes the next byte.
    fn string_token(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return self.body.get(start..self.at);
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// Any JSON value's exact bytes: strings, and objects and arrays with braces and brackets
    /// counted outside strings (so `"}"` or `"\"{"` inside a value do not end it early).
    fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string_token()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string_token()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
            }
        }
        self.body.get(start..self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_content_sorts_skips_sign_and_keeps_empty_values() {
        let content = signing_content([
            ("sign", "x"),
            ("b", ""),
            ("a", "1&c=2"),
            ("sign_type", "RSA2"),
        ]);
        assert_eq!(content, "a=1&c=2&b=&sign_type=RSA2");
        assert_eq!(signing_content([]), "");
    }

    #[test]
    fn form_encode_is_python_quote_plus() {
        assert_eq!(
            form_encode([("k", "a b+c/~*é"), ("e", "")]),
            "k=a+b%2Bc%2F~%2A%C3%A9&e="
        );
    }

    #[test]
    fn member_extraction_takes_exact_bytes() {
        let body = br#" { "x": [1, {"}": "]"}], "error_response" :{"a":"\"}{\\","b":{}} , "sign":"c2ln" } "#;
        let member = signed_member(body).unwrap();
        assert_eq!(member.name, ERROR_MEMBER);
        assert_eq!(member.text, br#"{"a":"\"}{\\","b":{}}"#);
        assert_eq!(member.sign, Some(&br#""c2ln""#[..]));
    }

    #[test]
    fn member_extraction_refuses_ambiguous_and_odd_bodies() {
        let cases: [(&[u8], AnswerError); 7] = [
            (b"", AnswerError::NotJson),
            (b"[1]", AnswerError::NotJson),
            (br#"{"error_response":{}"#, AnswerError::NotJson),
            (br#"{"sign":"x"}"#, AnswerError::NoMember),
            (
                br#"{"error_response":{},"error_response":{},"sign":"x"}"#,
                AnswerError::NoMember,
            ),
            (
                br#"{"error_response":{},"alipay_system_oauth_token_response":{}}"#,
                AnswerError::NoMember,
            ),
            (
                br#"{"alipay_system_oauth_token_response":"ZW5j","sign":"x"}"#,
                AnswerError::Unexpected("the member is not an object"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(signed_member(body).unwrap_err(), want, "{body:?}");
        }
        let big = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(signed_member(&big).unwrap_err(), AnswerError::TooLarge);
    }

    #[test]
    fn refusals_map_to_failures() {
        let refusal = |code: &str, sub: &str| AlipayRefusal {
            code: code.into(),
            sub_code: Some(sub.into()),
            msg: None,
        };
        assert_eq!(
            refusal("40002", "isv.code-invalid").failure(),
            Failure::InvalidCode
        );
        assert_eq!(
            refusal("40002", "isv.invalid-app-id").failure(),
            Failure::Misconfigured
        );
        assert_eq!(
            refusal("20000", "isp.unknow-error").failure(),
            Failure::Unavailable
        );
        assert_eq!(refusal("40004", "whatever").failure(), Failure::Unavailable);
        assert_eq!(AnswerError::BadSignature.failure(), Failure::Unverified);
    }

    #[test]
    fn key_errors_name_the_key_and_the_problem_only() {
        let err = AppPrivateKey::from_text("  ").unwrap_err();
        assert_eq!(err.to_string(), "the app private key is empty");
        let err = AppPrivateKey::from_text("not base64 at all!").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the app private key is neither PEM nor base64"
        );
        let err = AppPrivateKey::from_text("TUlJQg==").unwrap_err();
        assert!(!err.to_string().contains("TUlJQg"), "{err}");
        let err = AlipayPublicKey::from_text("-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Alipay's public key has no matching PEM footer"
        );
        let err = AlipayPublicKey::from_text(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }
}
