//! Audit fields known when compiling, checked when compiling and written as they are.

/// String fields known when compiling, as a line writes them (`,"name":"value"`): one copy
/// instead of a name, a scan for what to escape and a value each (a cached request's line has
/// three: its message, outcome and source). Made by [`crate::audit_preset!`], which refuses at
/// compile time a name or value JSON would escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset(&'static str);

impl Preset {
    /// `json` as a preset; panics (in a `const`, fails to compile) unless it is one or more
    /// `,"name":"value"` fields whose names and values hold nothing JSON escapes (a control
    /// character, `"` or `\\`). Use [`crate::audit_preset!`].
    #[doc(hidden)]
    pub const fn checked(json: &'static str) -> Self {
        let bytes = json.as_bytes();
        assert!(!bytes.is_empty(), "an audit preset holds no field");
        let mut i = 0;
        while i < bytes.len() {
            i = expect(bytes, i, b',');
            i = quoted(bytes, i);
            i = expect(bytes, i, b':');
            i = quoted(bytes, i);
        }
        Self(json)
    }

    /// The fields as written.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The index after `bytes[at]`, which must be `byte`.
const fn expect(bytes: &[u8], at: usize, byte: u8) -> usize {
    assert!(
        at < bytes.len() && bytes[at] == byte,
        "an audit preset is not `,\"name\":\"value\"` fields"
    );
    at + 1
}

/// The index after the string starting at `at`, which must need no escaping.
const fn quoted(bytes: &[u8], at: usize) -> usize {
    let mut i = expect(bytes, at, b'"');
    while i < bytes.len() && bytes[i] != b'"' {
        assert!(
            bytes[i] >= 0x20 && bytes[i] != b'\\',
            "an audit preset's name or value needs escaping"
        );
        i += 1;
    }
    expect(bytes, i, b'"')
}

/// A [`Preset`] of `"name" => "value"` string fields, checked when compiling (a name or value
/// with `"` in it ends its string early and fails the check too).
#[macro_export]
macro_rules! audit_preset {
    ($($name:literal => $value:literal),+ $(,)?) => {{
        const PRESET: $crate::telemetry::preset::Preset = $crate::telemetry::preset::Preset::checked(
            concat!($(",\"", $name, "\":\"", $value, "\""),+),
        );
        PRESET
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_needing_no_escaping_make_a_preset() {
        let preset = crate::audit_preset!("message" => "token issued", "source" => "cache");
        assert_eq!(
            preset.as_str(),
            ",\"message\":\"token issued\",\"source\":\"cache\""
        );
    }

    #[test]
    fn a_value_json_would_escape_is_refused() {
        // Outside a `const` the check runs when called; inside one it stops the build.
        for (json, why) in [
            (",\"a\":\"b\"c\"", "not `,"),
            (",\"a\":\"b\\c\"", "needs escaping"),
            (",\"a\":\"b\nc\"", "needs escaping"),
            (",\"a\":\"b", "not `,"),
            ("\"a\":\"b\"", "not `,"),
            ("", "no field"),
        ] {
            let refused = std::panic::catch_unwind(|| Preset::checked(json)).unwrap_err();
            let message = refused.downcast_ref::<&str>().copied().unwrap_or_default();
            assert!(message.contains(why), "{json:?}: {message}");
        }
    }
}
