//! Alipay gateway answers (`login::alipay_sign::verify_answer`): whatever bytes arrive, the
//! verifier returns an answer or a named error without panicking, finds a member's exact bytes
//! however the JSON is spaced, and believes nothing it cannot verify.

use proptest::prelude::*;
use serde_json::Value;
use stsvend::login::alipay_sign::{
    AlipayPublicKey, AnswerError, AppPrivateKey, OauthAnswer, RESPONSE_MEMBER, signed_member,
    verify_answer,
};

use crate::{check, json_value};

// The test-only "Alipay" key pair of the vectors (tests/fixtures/alipay/README.md).
const SIGNER_PEM: &str = include_str!("../fixtures/alipay/alipay_private_pkcs1.pem");
const VERIFIER_PEM: &str = include_str!("../fixtures/alipay/alipay_public.pem");

fn verifier() -> AlipayPublicKey {
    AlipayPublicKey::from_text(VERIFIER_PEM).expect("test key loads")
}

#[test]
fn alipay_answer_arbitrary_bytes() {
    let key = verifier();
    check(
        "alipay_answer_arbitrary_bytes",
        prop::collection::vec(any::<u8>(), 0..512),
        |body| {
            // No valid signature can come out of random bytes.
            prop_assert!(verify_answer(&body, &key).is_err());
            Ok(())
        },
    );
}

/// A member object, laid out compact or pretty, between other members of any shape.
fn answer_parts() -> impl Strategy<Value = (Value, bool, Value, Value)> {
    let member = prop::collection::vec((".{0,8}", json_value()), 0..5)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()));
    (member, any::<bool>(), json_value(), json_value())
}

#[test]
fn alipay_answer_member_bytes_are_exact() {
    let signer = AppPrivateKey::from_text(SIGNER_PEM).expect("test key loads");
    let key = verifier();
    check(
        "alipay_answer_member_bytes_are_exact",
        answer_parts(),
        |(member, pretty, before, after)| {
            let text = if pretty {
                serde_json::to_string_pretty(&member).unwrap()
            } else {
                serde_json::to_string(&member).unwrap()
            };
            let sign = signer.sign(&text).unwrap();
            let body_with = |member_text: &str| {
                format!(
                    "{{\"a\":{before},\n \"{RESPONSE_MEMBER}\" : {member_text} ,\"sign\":\"{sign}\",\"z\":{after}}}"
                )
            };
            let body = body_with(&text);
            let found = signed_member(body.as_bytes()).unwrap();
            prop_assert_eq!(found.text, text.as_bytes());
            match verify_answer(body.as_bytes(), &key) {
                Ok(OauthAnswer::User(_) | OauthAnswer::Refused(_))
                | Err(AnswerError::Unexpected(_)) => {}
                other => prop_assert!(false, "a validly signed answer gave {:?}", other),
            }
            // One space more inside the member: the same JSON, other bytes, so refused.
            let tampered = body_with(&text.replacen('{', "{ ", 1));
            prop_assert_eq!(
                verify_answer(tampered.as_bytes(), &key),
                Err(AnswerError::BadSignature)
            );
            Ok(())
        },
    );
}
