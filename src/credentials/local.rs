//! Local credential endpoints (the ECS metadata service, a credentials URI): the HTTP client they
//! are reached with, how much of an answer is read, and the JSON both answer with.

use secrecy::SecretString;

use super::error::SourceError;
use super::origin::Origin;
use super::value::Credentials;

/// Short HTTP timeouts for local endpoints (metadata service, credentials URI), never proxied:
/// the metadata service must be reached directly, and off-cloud it must fail fast.
pub(super) fn local_http_client(
    connect: std::time::Duration,
    total: std::time::Duration,
) -> Result<reqwest::Client, SourceError> {
    crate::outbound::client_builder(connect, total)
        .no_proxy()
        .build()
        .map_err(|e| SourceError::new(format!("cannot build an HTTP client: {e}")))
}

/// Reads a local endpoint's answer: at most 64 KiB, and an error text without the URL.
pub(super) async fn read_small_body(response: reqwest::Response) -> Result<Vec<u8>, String> {
    crate::outbound::read_capped(response, 64 * 1024)
        .await
        .map_err(|e| match e {
            crate::outbound::BodyError::TooLarge => "answered a body larger than 64 KiB".to_owned(),
            crate::outbound::BodyError::Transport(e) => crate::outbound::error_text(e),
        })
}

/// The JSON both the metadata service and a credentials URI answer with:
/// `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}`.
pub(super) fn credentials_from_json(bytes: &[u8], origin: Origin) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        code: Option<String>,
        access_key_id: Option<String>,
        access_key_secret: Option<String>,
        security_token: Option<String>,
        expiration: Option<String>,
    }
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|_| "answered something that is not a JSON object".to_owned())?;
    if body.code.as_deref() != Some("Success") {
        let code: String = body.code.unwrap_or_default().chars().take(60).collect();
        return Err(format!("answered Code {code:?}, not \"Success\""));
    }
    let (Some(id), Some(secret), Some(token), Some(expiration)) = (
        body.access_key_id.filter(|v| !v.is_empty()),
        body.access_key_secret.filter(|v| !v.is_empty()),
        body.security_token.filter(|v| !v.is_empty()),
        body.expiration,
    ) else {
        return Err(
            "the answer lacks AccessKeyId, AccessKeySecret, SecurityToken or Expiration".to_owned(),
        );
    };
    let expiration = crate::sts::response::parse_expiration(&expiration)
        .ok_or_else(|| "Expiration is not a UTC time like 2026-11-26T12:00:00Z".to_owned())?;
    Ok(Credentials::new(
        id,
        SecretString::from(secret),
        Some(SecretString::from(token)),
        origin,
    )
    .expiring(expiration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_uri_answers_are_checked() {
        let ok = br#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-11-26T12:00:00Z","LastUpdated":"x"}"#;
        let credentials = credentials_from_json(ok, Origin::CredentialsUri).unwrap();
        assert_eq!(credentials.access_key_id(), "STS.a");
        assert!(credentials.expiration().is_some());
        let cases: [(&[u8], &str); 4] = [
            (br#"{"Code":"Failed"}"#, "not \"Success\""),
            (br#"{"Code":"Success","AccessKeyId":"STS.a"}"#, "lacks"),
            (b"<html>", "not a JSON object"),
            (br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"later"}"#, "Expiration"),
        ];
        for (body, expected) in cases {
            let error = credentials_from_json(body, Origin::CredentialsUri).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
