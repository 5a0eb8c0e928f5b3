//! The built-in STS emulator (`stsvend dev`, and the other tests' upstream) must behave like STS
//! for `AssumeRole`: verify the V1 signature, the timestamp window, nonce replay and every action
//! parameter, answer errors in STS's shape and codes (PROTOCOL.md §1.6), and mint well-formed
//! credentials that can themselves sign a chained call.
//!
//! Well-formed calls go through the real `StsClient`; requests the client would never send
//! (replayed nonce, stale or malformed timestamp, missing parameter, wrong content type) are
//! built, signed and posted by hand.

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde_json::Value;
use stsvend::clock::Clock;
use stsvend::credentials::{Credentials, Origin};
use stsvend::emulator::Emulator;
use stsvend::sts::request::{API_VERSION, SignedRequest, TIMESTAMP_FORMAT};
use stsvend::sts::signature;
use stsvend::sts::{AssumeRole, IssuedCredentials, StsClient, StsError};

use crate::helpers::{ROLE_ARN, http_client};

/// The action parameters; everything else is a common parameter and travels in the query.
const ACTION_PARAMS: &[&str] = &["RoleArn", "RoleSessionName", "DurationSeconds", "Policy"];

fn call() -> AssumeRole {
    AssumeRole {
        role_arn: ROLE_ARN.to_owned(),
        role_session_name: "stsvend-test".to_owned(),
        duration_seconds: 3600,
        policy: None,
    }
}

fn client(emulator: &Emulator) -> StsClient {
    StsClient::new(emulator.endpoint(), Clock::System).expect("STS client builds")
}

async fn start() -> Emulator {
    Emulator::start(Clock::System)
        .await
        .expect("emulator starts")
}

/// Calls `AssumeRole` through the real client and expects STS to refuse it; returns
/// `(status, code)`.
async fn refused(
    emulator: &Emulator,
    credentials: &Credentials,
    call: &AssumeRole,
) -> (u16, String) {
    match client(emulator).assume_role(credentials, call).await {
        Err(StsError::Api { status, body }) => (status, body.code),
        Err(other) => panic!("expected an STS error body, got {other}"),
        Ok(issued) => panic!("expected a refusal, got credentials {issued:?}"),
    }
}

/// The `/get_sts_token`-shaped JSON of issued credentials: `(key id, secret, token, expiration)`.
fn fields(issued: &IssuedCredentials) -> (String, String, String, String) {
    let body: Value = serde_json::from_slice(&issued.response_body()).expect("token body is JSON");
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("token body lacks {name}"))
            .to_owned()
    };
    (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
        field("Expiration"),
    )
}

/// A request built by hand: every parameter (common and action) and the secret to sign with.
#[derive(Clone)]
struct RawCall {
    params: Vec<(String, String)>,
    secret: String,
}

/// What the emulator answered to a hand-built request.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["Message"].as_str().unwrap_or("")
    }

    /// Asserts an STS error: this status and code, in STS's body shape.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.body
        );
        assert_sts_error_shape(&self.body);
    }
}

/// `{"RequestId","HostId","Code","Message","Recommend"}`, each a non-empty string.
fn assert_sts_error_shape(body: &Value) {
    for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(
            body[key].as_str().is_some_and(|v| !v.is_empty()),
            "error body lacks a non-empty `{key}`: {body}"
        );
    }
    assert!(
        body.get("Credentials").is_none(),
        "an error must not carry credentials: {body}"
    );
}

impl RawCall {
    /// A well-formed `AssumeRole` for `credentials`, timestamped now, with a fresh nonce.
    fn new(credentials: &Credentials) -> Self {
        let now = Clock::System.now().format(TIMESTAMP_FORMAT).to_string();
        let nonce = uuid::Uuid::new_v4().to_string();
        let mut params: Vec<(String, String)> = [
            ("Action", "AssumeRole"),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", credentials.access_key_id()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
            ("Timestamp", now.as_str()),
            ("RoleArn", ROLE_ARN),
            ("RoleSessionName", "stsvend-raw"),
            ("DurationSeconds", "900"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(token) = credentials.security_token() {
            params.push(("SecurityToken".to_owned(), token.to_owned()));
        }
        Self {
            params,
            secret: credentials.access_key_secret().to_owned(),
        }
    }

    /// Sets (or adds) a parameter.
    fn set(mut self, name: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self
    }

    fn signed_with(mut self, secret: &str) -> Self {
        secret.clone_into(&mut self.secret);
        self
    }

    /// Every parameter plus `Signature`, signed for `method`.
    fn signed(&self, method: &str) -> Vec<(String, String)> {
        let mut all = self.params.clone();
        all.push((
            "Signature".to_owned(),
            signature::sign(method, &self.params, &self.secret),
        ));
        all
    }

    /// The string-to-sign the emulator should compute for this request sent with POST.
    fn string_to_sign(&self) -> String {
        signature::string_to_sign("POST", &signature::canonical_query(&self.params))
    }

    /// POSTs the way `credentials-go` does: common parameters and `Signature` in the query, the
    /// action parameters as a form body with `content_type`.
    async fn post_as(&self, emulator: &Emulator, content_type: &str) -> Answer {
        let (form, query): (Vec<_>, Vec<_>) = self
            .signed("POST")
            .into_iter()
            .partition(|(k, _)| ACTION_PARAMS.contains(&k.as_str()));
        send(
            emulator.endpoint(),
            reqwest::Method::POST,
            &query,
            Some((content_type, SignedRequest::encode(&form))),
        )
        .await
    }

    async fn post(&self, emulator: &Emulator) -> Answer {
        self.post_as(emulator, "application/x-www-form-urlencoded")
            .await
    }
}

/// Sends one request to the emulator and reads its JSON answer.
async fn send(
    endpoint: Url,
    method: reqwest::Method,
    query: &[(String, String)],
    body: Option<(&str, String)>,
) -> Answer {
    let http = http_client(Duration::from_secs(10));
    let mut url = endpoint;
    url.set_query(Some(&SignedRequest::encode(query)));
    let mut request = http.request(method, url);
    if let Some((content_type, body)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
    }
    let response = request.send().await.expect("emulator answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("emulator answers JSON");
    Answer { status, body }
}

#[tokio::test]
async fn assume_role_mints_sts_credentials_that_expire_after_the_requested_duration() {
    let emulator = start().await;
    assert_eq!(emulator.issued(), 0);
    for (round, duration) in [(1, 3600), (2, 900), (3, 43200)] {
        let call = AssumeRole {
            duration_seconds: duration,
            ..call()
        };
        let issued = client(&emulator)
            .assume_role(&emulator.credentials(), &call)
            .await
            .expect("a well-formed call succeeds");
        let now = Clock::System.now();
        let (id, secret, token, expiration) = fields(&issued);
        assert!(id.starts_with("STS.") && id.len() > 10, "key id {id}");
        assert!(secret.len() >= 30, "secret of {} chars", secret.len());
        assert!(
            token.starts_with("CAIS") && token.len() > 500,
            "token of {} chars",
            token.len()
        );
        let expected = now + chrono::Duration::seconds(i64::from(duration));
        let skew = (issued.expiration - expected).num_seconds().abs();
        assert!(
            skew <= 5,
            "Expiration {expiration} is {skew}s away from now + {duration}s"
        );
        assert_eq!(
            stsvend::sts::response::parse_expiration(&expiration),
            Some(issued.expiration),
            "Expiration is in STS's form"
        );
        assert!(
            issued
                .request_id
                .as_deref()
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(emulator.issued(), round);
    }
}

/// `stsvend dev --token-lifetime`: short tokens whatever was asked, so a soak run sees refreshes.
#[tokio::test]
async fn a_forced_token_lifetime_overrides_the_requested_duration() {
    let emulator = start().await;
    emulator.set_token_lifetime(120);
    let issued = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .expect("a well-formed call succeeds");
    let lifetime = (issued.expiration - Clock::System.now()).num_seconds();
    assert!((115..=120).contains(&lifetime), "lifetime {lifetime}s");
}

#[tokio::test]
async fn every_minted_credential_set_is_different() {
    let emulator = start().await;
    let first = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .unwrap();
    let second = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .unwrap();
    let (a, b) = (fields(&first), fields(&second));
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
    assert_ne!(a.2, b.2);
}

#[tokio::test]
async fn a_replayed_signature_nonce_is_refused() {
    let emulator = start().await;
    let request = RawCall::new(&emulator.credentials());
    let first = request.post(&emulator).await;
    assert_eq!(first.status, 200, "first use of the nonce: {}", first.body);
    let replay = request.post(&emulator).await;
    replay.assert_error(400, "SignatureNonceUsed");
    // Same nonce with other parameters and so another valid signature: still a replay.
    let later = request
        .clone()
        .set("RoleSessionName", "another-session")
        .post(&emulator)
        .await;
    later.assert_error(400, "SignatureNonceUsed");
    assert_eq!(emulator.issued(), 1);
    assert_eq!(emulator.calls(), 3);
}

#[tokio::test]
async fn a_timestamp_twenty_minutes_old_is_refused_as_expired() {
    let emulator = start().await;
    let stale = (Clock::System.now() - chrono::Duration::minutes(20))
        .format(TIMESTAMP_FORMAT)
        .to_string();
    let answer = RawCall::new(&emulator.credentials())
        .set("Timestamp", &stale)
        .post(&emulator)
        .await;
    answer.assert_error(400, "InvalidTimeStamp.Expired");
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn a_timestamp_twenty_minutes_ahead_is_refused_as_expired() {
    let emulator = start().await;
    let ahead = (Clock::System.now() + chrono::Duration::minutes(20))
        .format(TIMESTAMP_FORMAT)
        .to_string();
    let answer = RawCall::new(&emulator.credentials())
        .set("Timestamp", &ahead)
        .post(&emulator)
        .await;
    answer.assert_error(400, "InvalidTimeStamp.Expired");
}

#[tokio::test]
async fn a_timestamp_ten_minutes_off_is_still_inside_the_window() {
    let emulator = start().await;
    for minutes in [-10, 10] {
        let skewed = (Clock::System.now() + chrono::Duration::minutes(minutes))
            .format(TIMESTAMP_FORMAT)
            .to_string();
        let answer = RawCall::new(&emulator.credentials())
            .set("Timestamp", &skewed)
            .post(&emulator)
            .await;
        assert_eq!(answer.status, 200, "{minutes} min: {}", answer.body);
    }
}

#[tokio::test]
async fn a_client_whose_clock_is_twenty_minutes_behind_is_refused() {
    let emulator = start().await;
    let behind = Clock::following_tokio(Clock::System.now() - chrono::Duration::minutes(20));
    let client = StsClient::new(emulator.endpoint(), behind).unwrap();
    assert_refused(
        client.assume_role(&emulator.credentials(), &call()).await,
        400,
        "InvalidTimeStamp.Expired",
    )
}

#[tokio::test]
async fn a_malformed_timestamp_is_refused_as_badly_formatted() {
    let emulator = start().await;
    let now = Clock::System.now();
    let cases = [
        now.format("%Y-%m-%d %H:%M:%S").to_string(),
        now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        now.format("%Y-%m-%dT%H:%M:%S+08:00").to_string(),
        now.timestamp().to_string(),
        String::new(),
    ];
    for timestamp in cases {
        let answer = RawCall::new(&emulator.credentials())
            .set("Timestamp", &timestamp)
            .post(&emulator)
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "InvalidTimeStamp.Format"),
            "Timestamp {timestamp:?}: {}",
            answer.body
        );
        assert_sts_error_shape(&answer.body);
    }
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_secret_gets_the_server_string_to_sign() {
    let emulator = start().await;
    let request = RawCall::new(&emulator.credentials()).signed_with("not-the-secret");
    let answer = request.post(&emulator).await;
    answer.assert_error(400, "SignatureDoesNotMatch");
    // The legacy SDK compares this with its own string-to-sign to tell a wrong secret from a
    // signing bug (PROTOCOL.md §1.6): they must be identical.
    let (_, server) = answer
        .message()
        .split_once("server string to sign is:")
        .unwrap_or_else(|| panic!("message lacks the string to sign: {}", answer.message()));
    assert_eq!(server, request.string_to_sign());
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn the_client_reports_a_wrong_secret_as_signature_does_not_match() {
    let emulator = start().await;
    let wrong = Credentials::new(
        emulator.credentials().access_key_id(),
        SecretString::from("wrong-secret"),
        None,
        Origin::Environment,
    );
    assert_eq!(
        refused(&emulator, &wrong, &call()).await,
        (400, "SignatureDoesNotMatch".to_owned())
    );
}

#[tokio::test]
async fn a_signature_for_other_parameters_does_not_match() {
    let emulator = start().await;
    let request = RawCall::new(&emulator.credentials());
    let mut signed = request.signed("POST");
    // Change a signed value after signing, as a proxy rewriting the body would.
    for (k, v) in &mut signed {
        if k == "DurationSeconds" {
            "1800".clone_into(v);
        }
    }
    let answer = send(emulator.endpoint(), reqwest::Method::POST, &signed, None).await;
    answer.assert_error(400, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn an_unknown_access_key_id_is_not_found() {
    let emulator = start().await;
    let stranger = Credentials::new(
        "LTAI5tNobodyKnowsThisKey",
        SecretString::from("whatever"),
        None,
        Origin::Environment,
    );
    assert_eq!(
        refused(&emulator, &stranger, &call()).await,
        (404, "InvalidAccessKeyId.NotFound".to_owned())
    );
    RawCall::new(&stranger)
        .post(&emulator)
        .await
        .assert_error(404, "InvalidAccessKeyId.NotFound");
}

#[tokio::test]
async fn a_user_arn_is_refused_as_a_wrongly_formed_role_arn() {
    let emulator = start().await;
    for arn in [
        "acs:ram::123:user/x",
        "acs:ram::1234567890123456:role/",
        "arn:aws:iam::123456789012:role/x",
        "sls-web-tracking",
    ] {
        let call = AssumeRole {
            role_arn: arn.to_owned(),
            ..call()
        };
        assert_eq!(
            refused(&emulator, &emulator.credentials(), &call).await,
            (400, "InvalidParameter.RoleArn".to_owned()),
            "RoleArn {arn}"
        );
    }
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn session_names_with_a_space_or_of_one_character_are_refused() {
    let emulator = start().await;
    for name in ["a b", "a", "", "user/1", "名字"] {
        let call = AssumeRole {
            role_session_name: name.to_owned(),
            ..call()
        };
        assert_eq!(
            refused(&emulator, &emulator.credentials(), &call).await,
            (400, "InvalidParameter.RoleSessionName".to_owned()),
            "RoleSessionName {name:?}"
        );
    }
    for name in ["ab", "mini-user_01.a@b", "x".repeat(32).as_str()] {
        let call = AssumeRole {
            role_session_name: name.to_owned(),
            ..call()
        };
        client(&emulator)
            .assume_role(&emulator.credentials(), &call)
            .await
            .unwrap_or_else(|e| panic!("RoleSessionName {name:?} is valid: {e}"));
    }
}

#[tokio::test]
async fn durations_outside_15_minutes_to_12_hours_are_refused() {
    let emulator = start().await;
    for duration in [899, 43201, 0, 1] {
        let call = AssumeRole {
            duration_seconds: duration,
            ..call()
        };
        assert_eq!(
            refused(&emulator, &emulator.credentials(), &call).await,
            (400, "InvalidParameter.DurationSeconds".to_owned()),
            "DurationSeconds {duration}"
        );
    }
    let answer = RawCall::new(&emulator.credentials())
        .set("DurationSeconds", "an hour")
        .post(&emulator)
        .await;
    answer.assert_error(400, "InvalidParameter.DurationSeconds");
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn an_absent_duration_means_one_hour() {
    let emulator = start().await;
    let answer = RawCall::new(&emulator.credentials())
        .without("DurationSeconds")
        .post(&emulator)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expiration = answer.body["Credentials"]["Expiration"]
        .as_str()
        .and_then(stsvend::sts::response::parse_expiration)
        .expect("an Expiration");
    let lifetime = (expiration - Clock::System.now()).num_seconds();
    assert!((3595..=3605).contains(&lifetime), "lifetime {lifetime}s");
}

#[tokio::test]
async fn a_policy_that_is_not_json_fails_the_grammar_check() {
    let emulator = start().await;
    for policy in [
        "not json",
        r#"{"Version":"1","Statement":["#,
        r#"["Version","1"]"#,
    ] {
        let call = AssumeRole {
            policy: Some(policy.to_owned()),
            ..call()
        };
        assert_eq!(
            refused(&emulator, &emulator.credentials(), &call).await,
            (400, "InvalidParameter.PolicyGrammar".to_owned()),
            "Policy {policy}"
        );
    }
}

#[tokio::test]
async fn a_policy_over_2048_characters_is_too_large() {
    let emulator = start().await;
    let resources: Vec<String> = (0..60)
        .map(|i| format!("acs:log:*:*:project/project-{i:03}/logstore/logstore-{i:03}"))
        .collect();
    let policy = serde_json::json!({
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": ["log:PostLogStoreLogs"], "Resource": resources}],
    })
    .to_string();
    assert!(policy.len() > 2048, "the policy is {} chars", policy.len());
    let call = AssumeRole {
        policy: Some(policy),
        ..call()
    };
    assert_eq!(
        refused(&emulator, &emulator.credentials(), &call).await,
        (400, "InvalidParameter.PolicySize".to_owned())
    );
}

#[tokio::test]
async fn a_small_valid_policy_is_accepted() {
    let emulator = start().await;
    let call = AssumeRole {
        policy: Some(r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["log:PostLogStoreLogs"],"Resource":["acs:log:*:*:project/p/logstore/l"]}]}"#.to_owned()),
        ..call()
    };
    client(&emulator)
        .assume_role(&emulator.credentials(), &call)
        .await
        .expect("a valid policy is accepted");
}

#[tokio::test]
async fn a_missing_required_parameter_is_named() {
    let emulator = start().await;
    for name in [
        "RoleArn",
        "RoleSessionName",
        "Timestamp",
        "SignatureNonce",
        "AccessKeyId",
        "Action",
        "Version",
    ] {
        let answer = RawCall::new(&emulator.credentials())
            .without(name)
            .post(&emulator)
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "MissingParameter"),
            "without {name}: {}",
            answer.body
        );
        assert!(
            answer.message().contains(name),
            "the message names {name}: {}",
            answer.message()
        );
        assert_sts_error_shape(&answer.body);
    }
    // A request with no signature at all.
    let request = RawCall::new(&emulator.credentials());
    let answer = send(
        emulator.endpoint(),
        reqwest::Method::POST,
        &request.params,
        None,
    )
    .await;
    answer.assert_error(400, "MissingParameter");
    assert!(
        answer.message().contains("Signature"),
        "{}",
        answer.message()
    );
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn a_text_plain_body_is_refused_as_the_wrong_content_type() {
    let emulator = start().await;
    let answer = RawCall::new(&emulator.credentials())
        .post_as(&emulator, "text/plain")
        .await;
    answer.assert_error(400, "InvalidParameter.ContentType");
    assert_eq!(emulator.issued(), 0);
}

#[tokio::test]
async fn every_parameter_in_the_query_with_an_empty_body_is_accepted() {
    // `alibabacloud_tea_openapi` and the legacy SDK POST everything in the query (PROTOCOL.md §1.2).
    let emulator = start().await;
    let request = RawCall::new(&emulator.credentials()).set("Format", "json");
    let answer = send(
        emulator.endpoint(),
        reqwest::Method::POST,
        &request.signed("POST"),
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body["Credentials"]["AccessKeyId"]
            .as_str()
            .is_some_and(|id| id.starts_with("STS."))
    );
}

#[tokio::test]
async fn a_get_must_be_signed_for_get() {
    // The Python credentials SDK sends GET; the method is part of the string to sign.
    let emulator = start().await;
    let request = RawCall::new(&emulator.credentials());
    let answer = send(
        emulator.endpoint(),
        reqwest::Method::GET,
        &request.signed("GET"),
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let request = RawCall::new(&emulator.credentials());
    let answer = send(
        emulator.endpoint(),
        reqwest::Method::GET,
        &request.signed("POST"),
        None,
    )
    .await;
    answer.assert_error(400, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn minted_credentials_can_assume_a_role_again_with_their_security_token() {
    let emulator = start().await;
    let issued = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .unwrap();
    let (id, secret, token, _) = fields(&issued);
    let chained = Credentials::new(
        id.clone(),
        SecretString::from(secret.clone()),
        Some(SecretString::from(token.clone())),
        Origin::Environment,
    );
    let second = client(&emulator)
        .assume_role(
            &chained,
            &AssumeRole {
                duration_seconds: 900,
                ..call()
            },
        )
        .await
        .expect("STS credentials with their token can sign AssumeRole");
    assert_ne!(fields(&second).0, id);
    assert_eq!(emulator.issued(), 2);

    // The token also travels (and is signed) in a hand-built request.
    let answer = RawCall::new(&chained).post(&emulator).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(emulator.issued(), 3);
}

#[tokio::test]
async fn minted_credentials_without_their_security_token_are_refused() {
    let emulator = start().await;
    let issued = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .unwrap();
    let (id, secret, token, _) = fields(&issued);
    let tokenless = Credentials::new(
        id.clone(),
        SecretString::from(secret.clone()),
        None,
        Origin::Environment,
    );
    assert_eq!(
        refused(&emulator, &tokenless, &call()).await,
        (400, "MissingSecurityToken".to_owned())
    );
    RawCall::new(&tokenless)
        .post(&emulator)
        .await
        .assert_error(400, "MissingSecurityToken");

    // Someone else's token does not fit this key.
    let other = client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .unwrap();
    let (_, _, other_token, _) = fields(&other);
    assert_ne!(other_token, token);
    let mismatched = Credentials::new(
        id,
        SecretString::from(secret),
        Some(SecretString::from(other_token)),
        Origin::Environment,
    );
    let (status, code) = refused(&emulator, &mismatched, &call()).await;
    assert_eq!(status, 400);
    assert!(code.starts_with("InvalidSecurityToken"), "code {code}");
    assert_eq!(emulator.issued(), 2);
}

#[tokio::test]
async fn minted_credentials_stop_working_when_they_expire() {
    // Both clocks follow tokio's, so jumping tokio time forward ages the minted token.
    let emulator = Emulator::start(Clock::following_tokio(Clock::System.now()))
        .await
        .unwrap();
    let client = StsClient::new(
        emulator.endpoint(),
        Clock::following_tokio(Clock::System.now()),
    )
    .unwrap();
    let short = AssumeRole {
        duration_seconds: 900,
        ..call()
    };
    let issued = client
        .assume_role(&emulator.credentials(), &short)
        .await
        .unwrap();
    let (id, secret, token, _) = fields(&issued);
    let chained = Credentials::new(
        id,
        SecretString::from(secret),
        Some(SecretString::from(token)),
        Origin::Environment,
    );
    let jump = |seconds| async move {
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(seconds)).await;
        tokio::time::resume();
    };
    jump(800).await;
    client
        .assume_role(&chained, &short)
        .await
        .expect("still valid 800 s into a 900 s life");
    jump(110).await;
    assert_refused(
        client.assume_role(&chained, &short).await,
        400,
        "InvalidSecurityToken.Expired",
    )
}

#[tokio::test]
async fn throttle_next_refuses_exactly_the_next_call() {
    let emulator = start().await;
    emulator.throttle_next(1);
    let (status, code) = refused(&emulator, &emulator.credentials(), &call()).await;
    assert_eq!(code, "Throttling.User");
    assert_eq!(status, 400);
    client(&emulator)
        .assume_role(&emulator.credentials(), &call())
        .await
        .expect("only one call is throttled");
    assert_eq!(emulator.issued(), 1);

    emulator.throttle_next(2);
    for _ in 0..2 {
        RawCall::new(&emulator.credentials())
            .post(&emulator)
            .await
            .assert_error(400, "Throttling.User");
    }
    let answer = RawCall::new(&emulator.credentials()).post(&emulator).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn concurrent_calls_each_get_their_own_credentials() {
    let emulator = start().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client(&emulator);
        let credentials = emulator.credentials();
        calls.spawn(async move { client.assume_role(&credentials, &call()).await });
    }
    let mut ids = Vec::new();
    while let Some(result) = calls.join_next().await {
        ids.push(fields(&result.unwrap().expect("each call succeeds")).0);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(emulator.issued(), 20);
}

/// The call was refused by the emulator with exactly this HTTP status and STS error code.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, StsError>, status: u16, code: &str) {
    match result {
        Err(StsError::Api { status: got, body }) => {
            assert_eq!((got, body.code.as_str()), (status, code))
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}
