//! STS response bodies: the success shape we need, the error shape, and what we make of them.
//!
//! Pure: bytes and a status in, typed values out. Nothing here logs, and nothing echoes a body,
//! because a body (even a malformed one) may carry an issued secret.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

/// The `Expiration` format STS uses and the SLS clients expect: `2026-11-26T12:00:00Z`.
pub const EXPIRATION_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Temporary credentials returned by `AssumeRole`. `Debug` hides the secret and the token.
#[derive(Clone)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    access_key_secret: SecretString,
    security_token: SecretString,
    pub expiration: DateTime<Utc>,
    /// STS's `RequestId`, for the operator's log.
    pub request_id: Option<String>,
}

impl IssuedCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: SecretString,
        expiration: DateTime<Utc>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            expiration,
            request_id,
        }
    }

    /// The JSON body `/get_sts_token` answers with: the STS `Credentials` object with PascalCase
    /// keys, as Alibaba's sample backend returns it. This is the one place issued secrets are
    /// exposed, on purpose.
    pub fn response_body(&self) -> Bytes {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            access_key_id: &'a str,
            access_key_secret: &'a str,
            security_token: &'a str,
            expiration: String,
        }
        let body = Body {
            access_key_id: &self.access_key_id,
            access_key_secret: self.access_key_secret.expose_secret(),
            security_token: self.security_token.expose_secret(),
            expiration: self.expiration.format(EXPIRATION_FORMAT).to_string(),
        };
        // Serialising plain strings into a Vec cannot fail. The Vec grew by doubling (a 1.1 KB
        // body sits in 2 KiB) and `Bytes` would keep all of it for the token's life, in every
        // cached token: a boxed slice is exactly the body.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        Bytes::from(json.into_boxed_slice())
    }

    /// These credentials as the service's own base credentials (role chaining, RRSA).
    pub fn into_credentials(
        self,
        origin: crate::credentials::Origin,
    ) -> crate::credentials::Credentials {
        crate::credentials::Credentials::new(
            self.access_key_id,
            self.access_key_secret,
            Some(self.security_token),
            origin,
        )
        .expiring(self.expiration)
    }

    /// The first eight characters of the key id: enough to correlate with ActionTrail, not
    /// enough to use.
    pub fn key_id_prefix(&self) -> &str {
        let end = self
            .access_key_id
            .char_indices()
            .nth(8)
            .map_or(self.access_key_id.len(), |(i, _)| i);
        &self.access_key_id[..end]
    }
}

impl fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("access_key_id", &self.key_id_prefix())
            .field("access_key_secret", &"** redacted **")
            .field("security_token", &"** redacted **")
            .field("expiration", &self.expiration)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// An error body from the POP gateway: `{"RequestId","HostId","Code","Message","Recommend"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

/// What a response turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Success(IssuedCredentials),
    Error(ApiErrorBody),
}

/// Why a response could not be understood. Never carries body text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedResponse {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body has no `Credentials` object with all four fields")]
    MissingCredentials,
    #[error("`Expiration` is not a UTC time like 2026-11-26T12:00:00Z")]
    BadExpiration,
    #[error("an error status came without an error `Code`")]
    ErrorWithoutCode,
}

// Bodies are read as loose JSON and picked apart field by field, not deserialised into typed
// structs: with typed structs one mistyped field (`"AccessKeyId": 123`, a numeric `RequestId`)
// failed the whole body as "not JSON", which sent the operator looking for an HTML proxy page.
// Now only bytes that are not JSON are `NotJson`; a field of the wrong type counts as missing.

/// The string at `key` (or its `alias`) of a JSON object; `None` if absent or not a string.
fn text_field(object: &Value, key: &str, alias: Option<&str>) -> Option<String> {
    object
        .get(key)
        .or_else(|| alias.and_then(|a| object.get(a)))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Longest STS error message we keep; the rest is noise in a log line.
const MAX_MESSAGE_CHARS: usize = 300;

/// Interprets an STS response given its HTTP status and body.
pub fn parse(status: u16, body: &[u8]) -> Result<Parsed, MalformedResponse> {
    let wire: Value = serde_json::from_slice(body).map_err(|_| MalformedResponse::NotJson)?;
    if (200..300).contains(&status) {
        let creds = wire
            .get("Credentials")
            .filter(|c| c.is_object())
            .ok_or(MalformedResponse::MissingCredentials)?;
        let (Some(id), Some(secret), Some(token)) = (
            non_empty(text_field(creds, "AccessKeyId", None)),
            non_empty(text_field(creds, "AccessKeySecret", None)),
            non_empty(text_field(creds, "SecurityToken", None)),
        ) else {
            return Err(MalformedResponse::MissingCredentials);
        };
        // Present but not a string (a number of seconds, say) is a bad `Expiration`, not a
        // missing one.
        let expiration = match creds.get("Expiration") {
            None | Some(Value::Null) => return Err(MalformedResponse::MissingCredentials),
            Some(value) => value
                .as_str()
                .and_then(parse_expiration)
                .ok_or(MalformedResponse::BadExpiration)?,
        };
        return Ok(Parsed::Success(IssuedCredentials::new(
            id,
            SecretString::from(secret),
            SecretString::from(token),
            expiration,
            text_field(&wire, "RequestId", None),
        )));
    }
    let code = non_empty(text_field(&wire, "Code", Some("code")))
        .ok_or(MalformedResponse::ErrorWithoutCode)?;
    Ok(Parsed::Error(ApiErrorBody {
        code: truncate(&code, 80),
        message: sanitize_message(
            text_field(&wire, "Message", Some("message"))
                .as_deref()
                .unwrap_or_default(),
        ),
        request_id: text_field(&wire, "RequestId", Some("requestId")).map(|id| truncate(&id, 80)),
    }))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Parses STS's `Expiration`. The documented form has no fractional seconds; RFC 3339 with an
/// offset is accepted too so that a future change of format does not stop the service.
pub fn parse_expiration(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, EXPIRATION_FORMAT)
        .map(|naive| naive.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// Keeps an STS message fit for a log line: `SignatureDoesNotMatch` messages end with the server's
/// string-to-sign, which contains the request's `SecurityToken`, so everything from that phrase
/// on is cut; control characters go, and the length is capped.
fn sanitize_message(message: &str) -> String {
    let cut = message
        .find("string to sign")
        .map_or(message, |at| message[..at].trim_end());
    let cleaned: String = cut
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&cleaned, MAX_MESSAGE_CHARS)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{
      "RequestId": "6894B13B-6D71-4EF5-88FA-F32781734A7F",
      "AssumedRoleUser": {"AssumedRoleId": "344584339364951186:alice", "Arn": "acs:ram::1234567890123456:role/r/alice"},
      "Credentials": {"SecurityToken": "CAIS-token", "Expiration": "2015-04-09T11:52:19Z",
                      "AccessKeySecret": "wyLTSmsy-secret", "AccessKeyId": "STS.L4aBSCSJVMuKg5U1"}
    }"#;

    #[test]
    fn success_body_becomes_the_pascal_case_client_body() {
        let Ok(Parsed::Success(issued)) = parse(200, SUCCESS.as_bytes()) else {
            panic!("expected success");
        };
        assert_eq!(
            issued.request_id.as_deref(),
            Some("6894B13B-6D71-4EF5-88FA-F32781734A7F")
        );
        assert_eq!(
            std::str::from_utf8(&issued.response_body()).unwrap(),
            r#"{"AccessKeyId":"STS.L4aBSCSJVMuKg5U1","AccessKeySecret":"wyLTSmsy-secret","SecurityToken":"CAIS-token","Expiration":"2015-04-09T11:52:19Z"}"#
        );
        assert_eq!(issued.key_id_prefix(), "STS.L4aB");
        let debug = format!("{issued:?}");
        assert!(!debug.contains("wyLTSmsy-secret") && !debug.contains("CAIS-token"));
    }

    #[test]
    fn error_body_is_read_in_either_case_convention() {
        let body = r#"{"RequestId":"R1","HostId":"sts.aliyuncs.com","Code":"NoPermission","Message":"You are not authorized","Recommend":"https://x"}"#;
        let Ok(Parsed::Error(err)) = parse(403, body.as_bytes()) else {
            panic!("expected error body");
        };
        assert_eq!(err.code, "NoPermission");
        assert_eq!(err.request_id.as_deref(), Some("R1"));
        let lower = r#"{"requestId":"R2","code":"Throttling.User","message":"Request was denied due to user flow control."}"#;
        let Ok(Parsed::Error(err)) = parse(400, lower.as_bytes()) else {
            panic!("expected error body");
        };
        assert_eq!(err.code, "Throttling.User");
    }

    #[test]
    fn signature_mismatch_message_loses_the_string_to_sign() {
        let body = r#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&SecurityToken%3DCAIS-secret-token"}"#;
        let Ok(Parsed::Error(err)) = parse(400, body.as_bytes()) else {
            panic!("expected error body");
        };
        assert!(!err.message.contains("CAIS"), "{}", err.message);
        assert!(
            err.message
                .starts_with("Specified signature is not matched")
        );
    }

    #[test]
    fn malformed_bodies_are_named_not_echoed() {
        let cases: [(u16, &str, MalformedResponse); 7] = [
            (200, "<html>", MalformedResponse::NotJson),
            (200, "", MalformedResponse::NotJson),
            (
                200,
                r#"{"RequestId":"x"}"#,
                MalformedResponse::MissingCredentials,
            ),
            (
                200,
                r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"","SecurityToken":"t","Expiration":"2026-01-01T00:00:00Z"}}"#,
                MalformedResponse::MissingCredentials,
            ),
            (
                200,
                r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"tomorrow"}}"#,
                MalformedResponse::BadExpiration,
            ),
            (500, "Internal Server Error", MalformedResponse::NotJson),
            (
                400,
                r#"{"Message":"no code"}"#,
                MalformedResponse::ErrorWithoutCode,
            ),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                parse(status, body.as_bytes()).unwrap_err(),
                expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn mistyped_fields_are_named_for_what_they_are_not_called_non_json() {
        let cases: [(u16, &str, MalformedResponse); 5] = [
            (
                200,
                r#"{"Credentials":{"AccessKeyId":123,"AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-01-01T00:00:00Z"}}"#,
                MalformedResponse::MissingCredentials,
            ),
            (
                200,
                r#"{"Credentials":"STS.a"}"#,
                MalformedResponse::MissingCredentials,
            ),
            (
                200,
                r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":1790000000}}"#,
                MalformedResponse::BadExpiration,
            ),
            (200, "[]", MalformedResponse::MissingCredentials),
            (400, r#"{"Code":5}"#, MalformedResponse::ErrorWithoutCode),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                parse(status, body.as_bytes()).unwrap_err(),
                expected,
                "{status} {body}"
            );
        }
        // A field we only log, of an unexpected type, does not cost a good token.
        let body = r#"{"RequestId":42,"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-01-01T00:00:00Z"}}"#;
        let Ok(Parsed::Success(issued)) = parse(200, body.as_bytes()) else {
            panic!("expected success");
        };
        assert_eq!(issued.request_id, None);
    }

    #[test]
    fn expiration_accepts_the_documented_form_and_rfc3339() {
        let a = parse_expiration("2026-11-26T12:00:00Z").unwrap();
        let b = parse_expiration("2026-11-26T20:00:00.000+08:00").unwrap();
        assert_eq!(a, b);
        assert!(parse_expiration("2026-11-26 12:00:00").is_none());
    }

    #[test]
    fn long_messages_are_capped() {
        let body = format!(r#"{{"Code":"X","Message":"{}"}}"#, "m".repeat(5000));
        let Ok(Parsed::Error(err)) = parse(400, body.as_bytes()) else {
            panic!("expected error body");
        };
        assert!(err.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
