//! STS response bodies (`sts::response::parse`): whatever STS, a proxy or a broken network
//! answers, parsing returns a value or a named error, and never shows an issued secret.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use stsvend::sts::response::{EXPIRATION_FORMAT, MalformedResponse, Parsed, parse};

use crate::{check, json_value};

/// Marks the secrets the strategies plant, so a leak is unmistakable in any output.
const SECRET_MARK: &str = "SECRETmark";
const TOKEN_MARK: &str = "TOKENmark";

/// What a parse may show: the result's `Debug` and, for errors, `Display`.
fn shown(result: &Result<Parsed, MalformedResponse>) -> String {
    match result {
        Ok(parsed) => format!("{parsed:?}"),
        Err(error) => format!("{error:?} {error}"),
    }
}

fn assert_no_secret(result: &Result<Parsed, MalformedResponse>) -> Result<(), TestCaseError> {
    let shown = shown(result);
    prop_assert!(
        !shown.contains(SECRET_MARK) && !shown.contains(TOKEN_MARK),
        "a planted secret is shown: {shown}"
    );
    Ok(())
}

/// Expiration-like text: the documented form, RFC 3339 variants, and near misses.
fn expiration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}[Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|z|[+-][0-9]{2}:[0-9]{2})?",
        ".{0,30}",
    ]
}

/// A value for one of the fields STS sends: a plausible string or anything at all.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => ".{0,20}".prop_map(Value::String),
        2 => expiration_text().prop_map(Value::String),
        2 => json_value(),
    ]
}

/// A value for a `Credentials` field: sometimes a planted secret, so a leak shows.
fn credential_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => field_value(),
        1 => ".{0,8}".prop_map(|s| Value::String(format!("{SECRET_MARK}{s}"))),
        1 => ".{0,8}".prop_map(|s| Value::String(format!("{TOKEN_MARK}{s}"))),
    ]
}

fn insert_some(object: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value);
    }
}

/// Bodies shaped like a success or an error body, every field optional and of any type.
fn sts_shaped_body() -> impl Strategy<Value = Value> {
    let credentials = (
        prop::option::of(field_value()),
        prop::option::of(credential_value()),
        prop::option::of(credential_value()),
        prop::option::of(field_value()),
    )
        .prop_map(|(id, secret, token, expiration)| {
            let mut object = serde_json::Map::new();
            insert_some(&mut object, "AccessKeyId", id);
            insert_some(&mut object, "AccessKeySecret", secret);
            insert_some(&mut object, "SecurityToken", token);
            insert_some(&mut object, "Expiration", expiration);
            Value::Object(object)
        });
    let credentials = prop_oneof![3 => credentials, 1 => json_value()];
    (
        prop::option::of(credentials),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "RequestId",
                    "requestId",
                    "Code",
                    "code",
                    "Message",
                    "message",
                    "HostId",
                ]),
                field_value(),
            ),
            0..5,
        ),
    )
        .prop_map(|(credentials, fields)| {
            let mut object = serde_json::Map::new();
            insert_some(&mut object, "Credentials", credentials);
            for (key, value) in fields {
                object.insert(key.to_owned(), value);
            }
            Value::Object(object)
        })
}

#[test]
fn sts_response_arbitrary_bytes_never_panic() {
    check(
        "sts_response_arbitrary_bytes",
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..512)),
        |(status, body)| {
            let result = parse(status, &body);
            // Bytes that are not JSON are named as such, whatever the status.
            if serde_json::from_slice::<Value>(&body).is_err() {
                prop_assert_eq!(result.unwrap_err(), MalformedResponse::NotJson);
            }
            Ok(())
        },
    );
}

#[test]
fn sts_response_arbitrary_json_never_panics_or_shows_a_secret() {
    let body = prop_oneof![1 => json_value(), 3 => sts_shaped_body()];
    check(
        "sts_response_arbitrary_json",
        (any::<u16>(), body),
        |(status, body)| {
            let bytes = serde_json::to_vec(&body).expect("a JSON value serialises");
            let result = parse(status, &bytes);
            if let Ok(Parsed::Error(error)) = &result {
                prop_assert!(!error.code.is_empty());
                prop_assert!(!error.message.chars().any(char::is_control));
            }
            if let Ok(Parsed::Success(issued)) = &result {
                prop_assert!((200..300).contains(&status));
                prop_assert!(!issued.access_key_id.is_empty());
            }
            // Secrets are planted only in `AccessKeySecret` and `SecurityToken`; an error body
            // does not read those, and a success or a malformed body must not show them.
            assert_no_secret(&result)?;
            Ok(())
        },
    );
}

/// A well-formed success body and the values it was built from.
#[derive(Debug, Clone)]
struct Success {
    status: u16,
    id: String,
    secret: String,
    token: String,
    expiration: DateTime<Utc>,
    request_id: Option<String>,
    extra: Vec<(String, Value)>,
}

fn success() -> impl Strategy<Value = Success> {
    (
        200_u16..300,
        ".{1,40}",
        ".{0,40}",
        ".{0,200}",
        // 1970 to 9999: what `EXPIRATION_FORMAT` can spell.
        0_i64..253_402_300_800,
        prop::option::of(".{0,40}"),
        prop::collection::vec(("[A-Z][a-zA-Z]{0,10}", crate::json_value()), 0..3),
    )
        .prop_map(
            |(status, id, secret, token, seconds, request_id, extra)| Success {
                status,
                id,
                secret: format!("{SECRET_MARK}{secret}"),
                token: format!("{TOKEN_MARK}{token}"),
                expiration: DateTime::from_timestamp(seconds, 0).expect("in range"),
                request_id,
                // The fields the parser reads are set below; anything else is ignored.
                extra: extra
                    .into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "Credentials" | "RequestId"))
                    .collect(),
            },
        )
}

#[test]
fn sts_response_well_formed_success_parses_to_exactly_its_fields() {
    check("sts_response_well_formed_success", success(), |case| {
        let mut body = json!({
            "Credentials": {
                "AccessKeyId": case.id,
                "AccessKeySecret": case.secret,
                "SecurityToken": case.token,
                "Expiration": case.expiration.format(EXPIRATION_FORMAT).to_string(),
            },
            "AssumedRoleUser": {"Arn": "acs:ram::1234567890123456:role/r/s", "AssumedRoleId": "1:s"},
        });
        if let Some(request_id) = &case.request_id {
            body["RequestId"] = Value::String(request_id.clone());
        }
        for (key, value) in &case.extra {
            body[key.as_str()] = value.clone();
        }
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let result = parse(case.status, &bytes);
        assert_no_secret(&result)?;
        let Ok(Parsed::Success(issued)) = result else {
            return Err(TestCaseError::fail(format!("not a success: {result:?}")));
        };
        prop_assert_eq!(&issued.access_key_id, &case.id);
        prop_assert_eq!(issued.expiration, case.expiration);
        prop_assert_eq!(&issued.request_id, &case.request_id);
        // The client body is the one place the secret and token appear, unchanged.
        let client: Value = serde_json::from_slice(&issued.response_body()).expect("JSON");
        prop_assert_eq!(&client["AccessKeyId"], &Value::String(case.id.clone()));
        prop_assert_eq!(
            &client["AccessKeySecret"],
            &Value::String(case.secret.clone())
        );
        prop_assert_eq!(&client["SecurityToken"], &Value::String(case.token.clone()));
        prop_assert_eq!(
            &client["Expiration"],
            &Value::String(case.expiration.format(EXPIRATION_FORMAT).to_string())
        );
        let debug = format!("{issued:?}");
        prop_assert!(!debug.contains(&case.secret) && !debug.contains(&case.token));
        Ok(())
    });
}

#[test]
fn sts_response_error_bodies_keep_their_code() {
    let status = prop_oneof![0_u16..200, 300_u16..=u16::MAX];
    let cases = (
        status,
        any::<bool>(),
        // Codes are capped at 80 characters; real ones are far shorter.
        "[A-Za-z0-9.]{1,40}|.{1,80}",
        ".{0,400}",
        prop::option::of(".{0,12}".prop_map(|s| format!("{TOKEN_MARK}{s}"))),
        prop::option::of(".{0,40}"),
    );
    check(
        "sts_response_error_keeps_code",
        cases,
        |(status, lower_case, code, message, leaked, request_id)| {
            // `SignatureDoesNotMatch` messages end with the server's string-to-sign, which
            // holds the request's SecurityToken.
            let message = match &leaked {
                Some(token) => format!("{message} server string to sign is:POST&%2F&{token}"),
                None => message,
            };
            let (code_key, message_key, id_key) = if lower_case {
                ("code", "message", "requestId")
            } else {
                ("Code", "Message", "RequestId")
            };
            let mut body =
                json!({code_key: code, message_key: message, "HostId": "sts.aliyuncs.com"});
            if let Some(id) = &request_id {
                body[id_key] = Value::String(id.clone());
            }
            let bytes = serde_json::to_vec(&body).expect("serialises");
            let Ok(Parsed::Error(error)) = parse(status, &bytes) else {
                return Err(TestCaseError::fail("not an error body"));
            };
            prop_assert_eq!(&error.code, &code);
            prop_assert_eq!(&error.request_id, &request_id);
            prop_assert!(error.message.chars().count() <= 301);
            prop_assert!(!error.message.chars().any(char::is_control));
            if leaked.is_some() {
                prop_assert!(!format!("{error:?}").contains(TOKEN_MARK), "{:?}", error);
            }
            Ok(())
        },
    );
}
