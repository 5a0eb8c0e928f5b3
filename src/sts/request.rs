//! The parameter sets of the STS calls we make, given a timestamp and a nonce.
//!
//! Pure. The layout follows `credentials-go` (PROTOCOL.md §1.2): common parameters and the
//! signature in the query string, the action's own parameters in an
//! `application/x-www-form-urlencoded` body, the signature covering both.

use chrono::{DateTime, Utc};

use super::signature;
use crate::credentials::Credentials;

pub const API_VERSION: &str = "2015-04-01";
/// The `Timestamp` format V1 requires: UTC, no fractional seconds.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// The HTTP method we sign and send with.
pub const METHOD: &str = "POST";

/// What one profile asks `AssumeRole` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub role_session_name: String,
    pub duration_seconds: u32,
    /// Minified session policy, when the profile has one.
    pub policy: Option<String>,
}

/// A signed request, split the way it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl std::fmt::Debug for SignedRequest {
    // The query carries the SecurityToken and the signature; show only the parameter names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(k, _)| k.clone()).collect()
        };
        f.debug_struct("SignedRequest")
            .field("query", &names(&self.query))
            .field("form", &names(&self.form))
            .finish()
    }
}

impl SignedRequest {
    /// `k=v&…` with the signer's percent-encoding, for the URL query or the form body.
    pub fn encode(pairs: &[(String, String)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    signature::percent_encode(k),
                    signature::percent_encode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

impl AssumeRole {
    /// The action parameters, in the order they go into the form body.
    fn action_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            ("RoleArn".to_owned(), self.role_arn.clone()),
            ("RoleSessionName".to_owned(), self.role_session_name.clone()),
            (
                "DurationSeconds".to_owned(),
                self.duration_seconds.to_string(),
            ),
        ];
        if let Some(policy) = &self.policy {
            params.push(("Policy".to_owned(), policy.clone()));
        }
        params
    }

    /// Builds and signs the request for `credentials` at `timestamp` with `nonce`.
    pub fn sign(
        &self,
        credentials: &Credentials,
        timestamp: DateTime<Utc>,
        nonce: &str,
    ) -> SignedRequest {
        let mut query = vec![
            ("Action".to_owned(), "AssumeRole".to_owned()),
            ("Version".to_owned(), API_VERSION.to_owned()),
            ("Format".to_owned(), "JSON".to_owned()),
            (
                "AccessKeyId".to_owned(),
                credentials.access_key_id().to_owned(),
            ),
            ("SignatureMethod".to_owned(), "HMAC-SHA1".to_owned()),
            ("SignatureVersion".to_owned(), "1.0".to_owned()),
            ("SignatureNonce".to_owned(), nonce.to_owned()),
            (
                "Timestamp".to_owned(),
                timestamp.format(TIMESTAMP_FORMAT).to_string(),
            ),
        ];
        if let Some(token) = credentials.security_token() {
            query.push(("SecurityToken".to_owned(), token.to_owned()));
        }
        let form = self.action_params();
        let all: Vec<&(String, String)> = query.iter().chain(form.iter()).collect();
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let signature = signature::sign(METHOD, &all, credentials.access_key_secret());
        query.push(("Signature".to_owned(), signature));
        SignedRequest { query, form }
    }
}

/// `AssumeRoleWithOIDC` (ACK RRSA): exchanges a Kubernetes service-account token for STS
/// credentials. Sent unsigned: the OIDC token is the proof of identity (PROTOCOL.md §4).
#[derive(Clone, PartialEq, Eq)]
pub struct AssumeRoleWithOidc {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// The raw JWT, read from the token file just before the call.
    pub oidc_token: String,
    pub role_session_name: String,
    pub duration_seconds: u32,
}

impl std::fmt::Debug for AssumeRoleWithOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleWithOidc")
            .field("role_arn", &self.role_arn)
            .field("oidc_provider_arn", &self.oidc_provider_arn)
            .field("oidc_token", &"** redacted **")
            .field("role_session_name", &self.role_session_name)
            .finish_non_exhaustive()
    }
}

impl AssumeRoleWithOidc {
    /// The request at `timestamp`: common parameters in the query, the rest in the form body,
    /// as `credentials-go` sends it; no `AccessKeyId`, no `Signature`.
    pub fn request(&self, timestamp: DateTime<Utc>) -> SignedRequest {
        let query = vec![
            ("Action".to_owned(), "AssumeRoleWithOIDC".to_owned()),
            ("Version".to_owned(), API_VERSION.to_owned()),
            ("Format".to_owned(), "JSON".to_owned()),
            (
                "Timestamp".to_owned(),
                timestamp.format(TIMESTAMP_FORMAT).to_string(),
            ),
        ];
        let form = vec![
            ("RoleArn".to_owned(), self.role_arn.clone()),
            ("OIDCProviderArn".to_owned(), self.oidc_provider_arn.clone()),
            ("OIDCToken".to_owned(), self.oidc_token.clone()),
            ("RoleSessionName".to_owned(), self.role_session_name.clone()),
            (
                "DurationSeconds".to_owned(),
                self.duration_seconds.to_string(),
            ),
        ];
        SignedRequest { query, form }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn call() -> AssumeRole {
        AssumeRole {
            role_arn: "acs:ram::1234567890123456:role/sls-web-tracking".into(),
            role_session_name: "mini-user_01.a@b".into(),
            duration_seconds: 900,
            policy: Some(r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["log:PostLogStoreLogs"],"Resource":["acs:log:cn-shanghai:1234567890123456:project/my-proj/logstore/web-*"]}]}"#.into()),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// PROTOCOL.md §2.3 V1: the same parameters signed by the official SDKs.
    #[test]
    fn assume_role_with_policy_matches_the_official_vector() {
        let credentials = Credentials::new(
            "testid",
            SecretString::from("testsecret"),
            None,
            crate::credentials::Origin::Environment,
        );
        let signed = call().sign(
            &credentials,
            at("2024-01-02T03:04:05Z"),
            "c1b3d0e2-7f44-4b0a-9a51-2d6c1f0e8a11",
        );
        let signature = &signed.query.last().unwrap().1;
        assert_eq!(signature, "GIjREnmmUraSTWPisiRWuHZ2zpc=");
        let names: Vec<&str> = signed.form.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["RoleArn", "RoleSessionName", "DurationSeconds", "Policy"]
        );
    }

    #[test]
    fn a_security_token_is_sent_and_signed() {
        let plain = Credentials::new(
            "testid",
            SecretString::from("testsecret"),
            None,
            crate::credentials::Origin::Environment,
        );
        let with_token = Credentials::new(
            "testid",
            SecretString::from("testsecret"),
            Some(SecretString::from("CAIS+tok/en==")),
            crate::credentials::Origin::Environment,
        );
        let t = at("2024-01-02T03:04:05Z");
        let a = call().sign(&plain, t, "n");
        let b = call().sign(&with_token, t, "n");
        assert!(
            b.query
                .iter()
                .any(|(k, v)| k == "SecurityToken" && v == "CAIS+tok/en==")
        );
        assert_ne!(a.query.last(), b.query.last());
        assert!(!format!("{b:?}").contains("CAIS"));
    }

    #[test]
    fn oidc_request_is_unsigned_and_carries_the_token_in_the_body() {
        let call = AssumeRoleWithOidc {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/ack".into(),
            oidc_token: "eyJ.jwt.sig".into(),
            role_session_name: "stsvend".into(),
            duration_seconds: 3600,
        };
        let request = call.request(at("2024-01-02T03:04:05Z"));
        let names: Vec<&str> = request.query.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["Action", "Version", "Format", "Timestamp"]);
        assert!(
            request
                .form
                .iter()
                .any(|(k, v)| k == "OIDCToken" && v == "eyJ.jwt.sig")
        );
        assert!(!format!("{call:?}").contains("eyJ"));
    }

    #[test]
    fn encoding_uses_the_signer_rules() {
        let pairs = vec![("Policy".to_owned(), "{\"a\":\"b c*\"}".to_owned())];
        assert_eq!(
            SignedRequest::encode(&pairs),
            "Policy=%7B%22a%22%3A%22b%20c%2A%22%7D"
        );
    }
}
