//! Alibaba Cloud RPC signature V1 (HMAC-SHA1), as a pure function of its inputs.
//!
//! The algorithm (PROTOCOL.md §2.1): sort every parameter except `Signature` by name, percent-encode
//! names and values (RFC 3986 unreserved characters stay as they are, everything else becomes
//! `%XY` in upper case), join as `k=v&…`, then sign
//! `METHOD&%2F&percent_encode(canonical_query)` with HMAC-SHA1 keyed by `secret + "&"`.
//!
//! No clock, no randomness, no I/O: `Timestamp` and `SignatureNonce` are ordinary entries in the
//! parameter list. The test vectors in `tests/fixtures/rpc_signature_vectors.json` come from the
//! official `alibabacloud_openapi_util` SDK and are checked stage by stage.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Percent-encodes `input` the way the V1 signature requires: UTF-8 bytes, with only
/// `A–Z a–z 0–9 - _ . ~` left as they are, and upper-case hex everywhere else.
///
/// This differs from `application/x-www-form-urlencoded` (space is `%20`, not `+`; `*` is
/// `%2A`; `~` is never encoded), which is why it is not delegated to a form encoder.
pub fn percent_encode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() * 3);
    for &byte in input.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    out
}

/// The canonicalized query string: parameters sorted by name (byte order, case-sensitive), each
/// `encode(name)=encode(value)`, joined with `&`. A parameter named `Signature` is left out.
pub fn canonical_query<K, V>(params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "Signature")
        .collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// `METHOD&%2F&percent_encode(canonical_query)`; the canonical query is encoded a second time.
pub fn string_to_sign(method: &str, canonical_query: &str) -> String {
    format!("{method}&%2F&{}", percent_encode(canonical_query))
}

/// Base64 of HMAC-SHA1 over `string_to_sign`, keyed by `secret + "&"`.
pub fn signature_of(string_to_sign: &str, secret: &str) -> String {
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret.as_bytes());
    key.push(b'&');
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `params` for an RPC request sent with `method` (`GET` or `POST`, which must be the method
/// actually used). Returns the value of the `Signature` parameter, not yet URL-encoded.
pub fn sign<K, V>(method: &str, params: &[(K, V)], secret: &str) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    signature_of(&string_to_sign(method, &canonical_query(params)), secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alibaba's documented DescribeRegions example (PROTOCOL.md §2.3, V0).
    fn documented_params(timestamp_key: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("Version", "2014-05-26"),
            ("Action", "DescribeRegions"),
            ("AccessKeyId", "testid"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            (timestamp_key, "2016-02-23T12:46:24Z"),
        ]
    }

    #[test]
    fn documented_example_signs_to_the_documented_signature() {
        assert_eq!(
            sign("GET", &documented_params("Timestamp"), "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert_eq!(
            sign("GET", &documented_params("TimeStamp"), "testsecret"),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn percent_encoding_follows_rfc3986_not_form_encoding() {
        assert_eq!(
            percent_encode("a b*c~d+e/f=g&h%"),
            "a%20b%2Ac~d%2Be%2Ff%3Dg%26h%25"
        );
        assert_eq!(percent_encode("阿"), "%E9%98%BF");
        assert_eq!(percent_encode("😀"), "%F0%9F%98%80");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn canonical_query_sorts_by_raw_name_and_skips_signature() {
        let params = [("b", "2"), ("Signature", "x"), ("a", ""), ("B", "1")];
        assert_eq!(canonical_query(&params), "B=1&a=&b=2");
    }

    #[test]
    fn canonical_query_is_independent_of_parameter_order() {
        let mut params = documented_params("Timestamp");
        let forward = canonical_query(&params);
        params.reverse();
        assert_eq!(canonical_query(&params), forward);
        params.swap(1, 5);
        assert_eq!(canonical_query(&params), forward);
    }

    #[test]
    fn the_method_is_part_of_the_signature() {
        let params = documented_params("Timestamp");
        assert_ne!(
            sign("GET", &params, "testsecret"),
            sign("POST", &params, "testsecret")
        );
    }
}
