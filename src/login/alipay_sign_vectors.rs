//! `alipay_sign` against the vectors Alipay's official Python SDK produced
//! (`scripts/gen_alipay_vectors.py` → `tests/fixtures/alipay_sign_vectors.json`, re-checked with
//! the npm SDK by `scripts/alipay-node/check_vectors.mjs`): byte equality of signing content,
//! signature and request layout, and the same accept/refuse decision on every answer.

use chrono::DateTime;
use serde::Deserialize;

use super::alipay_sign::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/alipay_sign_vectors.json");
const APP_PKCS1_PEM: &str = include_str!("../../tests/fixtures/alipay/app_private_pkcs1.pem");
const APP_PKCS8_PEM: &str = include_str!("../../tests/fixtures/alipay/app_private_pkcs8.pem");
const APP_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/alipay/app_public.pem");
const ALIPAY_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/alipay/alipay_public.pem");

#[derive(Deserialize)]
struct Fixture {
    sdk: String,
    keys: Keys,
    sign_cases: Vec<SignCase>,
    requests: Vec<RequestCase>,
    answers: Vec<AnswerCase>,
}

#[derive(Deserialize)]
struct Keys {
    app_private_pkcs1_bare: String,
    app_private_pkcs8_bare: String,
    alipay_public_bare: String,
}

#[derive(Deserialize)]
struct SignCase {
    id: String,
    params: Vec<(String, String)>,
    content: String,
    signature: String,
}

#[derive(Deserialize)]
struct RequestCase {
    id: String,
    app_id: String,
    code: String,
    timestamp_utc: String,
    timestamp: String,
    content: String,
    signature: String,
    query: String,
    body: String,
    content_type: String,
}

#[derive(Deserialize)]
struct AnswerCase {
    id: String,
    body: String,
    sdk_accepts: bool,
    sdk_content: Option<String>,
    expect: Expect,
    divergence: Option<String>,
}

#[derive(Deserialize)]
struct Expect {
    outcome: String,
    user_id: Option<String>,
    code: Option<String>,
    sub_code: Option<String>,
    msg: Option<String>,
    class: Option<String>,
}

fn fixture() -> Fixture {
    serde_json::from_str(FIXTURE).expect("fixture is valid JSON")
}

/// The app key in all four forms Alipay's tools and openssl hand out.
fn app_keys(fixture: &Fixture) -> Vec<AppPrivateKey> {
    [
        APP_PKCS1_PEM,
        APP_PKCS8_PEM,
        &fixture.keys.app_private_pkcs1_bare,
        &fixture.keys.app_private_pkcs8_bare,
    ]
    .into_iter()
    .map(|text| AppPrivateKey::from_text(text).expect("the test app key loads"))
    .collect()
}

fn alipay_key(fixture: &Fixture) -> AlipayPublicKey {
    AlipayPublicKey::from_text(&fixture.keys.alipay_public_bare).expect("Alipay's test key loads")
}

#[test]
fn signing_content_and_signature_equal_the_sdk() {
    let fixture = fixture();
    assert!(fixture.sdk.starts_with("alipay-sdk-python=="));
    assert!(fixture.sign_cases.len() >= 5);
    let keys = app_keys(&fixture);
    let app_public = AlipayPublicKey::from_text(APP_PUBLIC_PEM).expect("app public key loads");
    for case in &fixture.sign_cases {
        let params = case.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let content = signing_content(params.clone());
        assert_eq!(content, case.content, "{}: content", case.id);
        // `sign` never signs itself, wherever it sits.
        let with_sign = signing_content(params.chain([("sign", "AAAA")]));
        assert_eq!(with_sign, case.content, "{}: content with sign", case.id);
        for key in &keys {
            assert_eq!(key.sign(&content).unwrap(), case.signature, "{}", case.id);
        }
        assert!(app_public.verifies(content.as_bytes(), &case.signature));
    }
    let all: String = fixture
        .sign_cases
        .iter()
        .map(|c| c.content.as_str())
        .collect();
    for needle in ["=&", "支", "😀", "a=b&c=d", "\n"] {
        assert!(all.contains(needle), "no vector covers {needle:?}");
    }
}

#[test]
fn login_request_layout_equals_the_sdk() {
    let fixture = fixture();
    assert!(fixture.requests.len() >= 3);
    let keys = app_keys(&fixture);
    for case in &fixture.requests {
        let now = DateTime::parse_from_rfc3339(&case.timestamp_utc)
            .unwrap()
            .to_utc();
        assert!(
            case.content
                .contains(&format!("timestamp={}", case.timestamp))
        );
        assert_eq!(case.content_type, CONTENT_TYPE, "{}", case.id);
        for key in &keys {
            let request = oauth_token_request(&case.app_id, &case.code, now, key).unwrap();
            assert_eq!(request.query, case.query, "{}: query", case.id);
            assert_eq!(request.body, case.body, "{}: body", case.id);
        }
        let content = signing_content(
            form_pairs(&case.query)
                .iter()
                .chain(&form_pairs(&case.body))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(content, case.content, "{}: content", case.id);
        assert_eq!(keys[0].sign(&content).unwrap(), case.signature);
    }
}

fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded.as_bytes())
        .into_owned()
        .collect()
}

#[test]
fn answers_are_believed_or_refused_as_the_sdk_does() {
    let fixture = fixture();
    let key = alipay_key(&fixture);
    for case in &fixture.answers {
        let got = verify_answer(case.body.as_bytes(), &key);
        check_expectation(case, &got);
        let accepted = got.is_ok();
        match &case.divergence {
            None => assert_eq!(accepted, case.sdk_accepts, "{}: the SDK decided", case.id),
            Some(why) => assert_ne!(accepted, case.sdk_accepts, "{}: {why}", case.id),
        }
        if accepted && case.divergence.is_none() {
            let member = signed_member(case.body.as_bytes()).unwrap();
            let sdk_content = case.sdk_content.as_deref().unwrap();
            assert_eq!(
                member.text,
                sdk_content.as_bytes(),
                "{}: signed text",
                case.id
            );
        }
    }
}

fn check_expectation(case: &AnswerCase, got: &Result<OauthAnswer, AnswerError>) {
    let id = &case.id;
    let want = &case.expect;
    match (want.outcome.as_str(), got) {
        ("ok", Ok(OauthAnswer::User(user))) => {
            assert_eq!(Some(&user.id), want.user_id.as_ref(), "{id}");
        }
        ("error", Ok(OauthAnswer::Refused(refusal))) => {
            assert_eq!(Some(&refusal.code), want.code.as_ref(), "{id}");
            assert_eq!(refusal.sub_code, want.sub_code, "{id}");
            assert_eq!(refusal.msg, want.msg, "{id}");
            assert_eq!(
                Some(refusal.failure().as_str()),
                want.class.as_deref(),
                "{id}"
            );
        }
        ("bad_signature", Err(AnswerError::BadSignature))
        | ("missing_signature", Err(AnswerError::MissingSignature))
        | ("no_member", Err(AnswerError::NoMember)) => {}
        (outcome, got) => panic!("{id}: expected {outcome}, got {got:?}"),
    }
}

#[test]
fn the_answers_cover_what_the_issue_lists() {
    let fixture = fixture();
    let outcomes: Vec<&str> = fixture
        .answers
        .iter()
        .map(|c| c.expect.class.as_deref().unwrap_or(&c.expect.outcome))
        .collect();
    for needed in ["ok", "invalid_code", "bad_signature", "missing_signature"] {
        assert!(outcomes.contains(&needed), "no answer vector for {needed}");
    }
    let refused_by_sdk = fixture.answers.iter().filter(|c| !c.sdk_accepts).count();
    assert!(refused_by_sdk >= 4, "tampered answers the SDK refuses");
}

#[test]
fn the_private_key_never_prints() {
    let fixture = fixture();
    for key in app_keys(&fixture) {
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        for chunk in fixture.keys.app_private_pkcs1_bare.as_bytes().chunks(12) {
            assert!(!shown.contains(std::str::from_utf8(chunk).unwrap()));
        }
    }
    // There is no Display: `format!("{key}")` does not compile.
}

#[test]
fn a_key_of_the_wrong_kind_is_refused_by_name() {
    let fixture = fixture();
    let err = AppPrivateKey::from_text(APP_PUBLIC_PEM).unwrap_err();
    assert_eq!(err.role, KeyRole::AppPrivateKey);
    let err = AlipayPublicKey::from_text(APP_PKCS1_PEM).unwrap_err();
    assert_eq!(err.role, KeyRole::AlipayPublicKey);
    let err = AlipayPublicKey::from_text(&fixture.keys.app_private_pkcs8_bare).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Alipay's public key is not an RSA public key"
    );
    assert!(AlipayPublicKey::from_text(ALIPAY_PUBLIC_PEM).is_ok());
}

/// No panic and no acceptance on truncations and byte flips of the real answers.
#[test]
fn mangled_answers_never_panic_or_pass() {
    let fixture = fixture();
    let key = alipay_key(&fixture);
    for case in fixture.answers.iter().filter(|c| c.sdk_accepts) {
        let body = case.body.as_bytes();
        for cut in 0..body.len() {
            let _ = verify_answer(&body[..cut], &key);
        }
        for at in (0..body.len()).step_by(7) {
            let mut mangled = body.to_vec();
            mangled[at] ^= 0x01;
            if let Ok(answer) = verify_answer(&mangled, &key) {
                // Only the bytes outside the signed member may change without a refusal.
                let member = signed_member(body).unwrap();
                let start = member.text.as_ptr() as usize - body.as_ptr() as usize;
                assert!(
                    at < start || at >= start + member.text.len(),
                    "{}: byte {at} flipped inside the member and still believed: {answer:?}",
                    case.id
                );
            }
        }
    }
}
