//! The RPC V1 signer (`sts::signature`): its percent-encoding is RFC 3986 exactly and reversible,
//! and the canonical query and signature do not depend on the order parameters come in.

use proptest::prelude::*;
use stsvend::sts::signature::{canonical_query, percent_encode, sign};

use crate::check;

/// Decodes with `application/x-www-form-urlencoded` rules, as STS and `form_urlencoded` do.
/// The encoder never emits `+`, `=` or `&`, so a single value decodes as a lone key.
fn decode(encoded: &str) -> String {
    form_urlencoded::parse(encoded.as_bytes())
        .next()
        .map(|(key, _)| key.into_owned())
        .unwrap_or_default()
}

/// Only the unreserved characters `A-Z a-z 0-9 - _ . ~`, and `%` followed by two upper-case hex
/// digits.
fn only_unreserved_and_upper_hex(encoded: &str) -> bool {
    let bytes = encoded.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex =
                    |b: Option<&u8>| b.is_some_and(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
                if !(hex(bytes.get(i + 1)) && hex(bytes.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') => i += 1,
            _ => return false,
        }
    }
    true
}

#[test]
fn signature_percent_encoding_round_trips_any_unicode() {
    let text = prop_oneof![any::<String>(), "[ -~]{0,40}", "\\PC{0,20}"];
    check("signature_percent_encoding_round_trip", text, |text| {
        let encoded = percent_encode(&text);
        prop_assert!(
            only_unreserved_and_upper_hex(&encoded),
            "{encoded:?} has a character outside the unreserved set or lower-case hex"
        );
        prop_assert_eq!(&decode(&encoded), &text);
        // Every byte is one character or three: nothing is encoded twice or skipped.
        let expected_len: usize = text
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    1
                } else {
                    3
                }
            })
            .sum();
        prop_assert_eq!(encoded.len(), expected_len);
        Ok(())
    });
}

type Params = Vec<(String, String)>;

/// Parameters and the same parameters in another order.
fn params_and_permutation() -> impl Strategy<Value = (Params, Params)> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "Action",
            "Version",
            "Format",
            "AccessKeyId",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "Timestamp",
            "RoleArn",
            "RoleSessionName",
            "Policy",
            "DurationSeconds",
            "SecurityToken",
            "Signature",
            "a",
            "A",
            "",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ];
    prop::collection::vec((name, ".{0,24}"), 0..14)
        .prop_flat_map(|params| (Just(params.clone()), Just(params).prop_shuffle()))
}

#[test]
fn signature_is_independent_of_parameter_order() {
    let cases = (
        params_and_permutation(),
        prop::sample::select(vec!["GET", "POST"]),
        ".{0,40}",
    );
    check(
        "signature_parameter_order",
        cases,
        |((params, shuffled), method, secret)| {
            let canonical = canonical_query(&params);
            prop_assert_eq!(&canonical, &canonical_query(&shuffled));
            prop_assert_eq!(
                sign(method, &params, &secret),
                sign(method, &shuffled, &secret)
            );
            prop_assert!(
                canonical
                    .split(['&', '='])
                    .all(only_unreserved_and_upper_hex)
            );
            // The canonical query decodes to exactly the parameters minus `Signature`, sorted
            // by name.
            let mut expected: Params = params
                .into_iter()
                .filter(|(name, _)| name != "Signature")
                .collect();
            expected.sort_unstable();
            let decoded: Params = if canonical.is_empty() {
                Vec::new()
            } else {
                canonical
                    .split('&')
                    .map(|pair| {
                        let (name, value) = pair.split_once('=').expect("name=value");
                        (decode(name), decode(value))
                    })
                    .collect()
            };
            prop_assert_eq!(decoded, expected);
            Ok(())
        },
    );
}
