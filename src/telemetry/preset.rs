//! Audit fields known when compiling, checked when compiling and written as they are.

/// String fields known when compiling, as a line writes them (`,"name":"value"`): one copy
/// instead of a name, a scan for what to escape and a value each (a cached request's line has
/// three: its message, outcome and source). Made by [`crate::audit_preset!`], which refuses at
/// compile time a name or value JSON would escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset(&'static str);

impl Preset {
    /// `json`, which is `parts` (names and values in turn) written as fields; panics (in a
    /// `const`, fails to compile) if a part needs escaping. Use [`crate::audit_preset!`].
    #[doc(hidden)]
    pub const fn checked(json: &'static str, parts: &[&str]) -> Self {
        let mut part = 0;
        while part < parts.len() {
            let bytes = parts[part].as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let byte = bytes[i];
                assert!(
                    byte >= 0x20 && byte != b'"' && byte != b'\\',
                    "an audit preset's name or value needs escaping"
                );
                i += 1;
            }
            part += 1;
        }
        Self(json)
    }

    /// The fields as written.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// A [`Preset`] of `"name" => "value"` string fields, checked when compiling.
#[macro_export]
macro_rules! audit_preset {
    ($($name:literal => $value:literal),+ $(,)?) => {{
        const PRESET: $crate::telemetry::preset::Preset = $crate::telemetry::preset::Preset::checked(
            concat!($(",\"", $name, "\":\"", $value, "\""),+),
            &[$($name, $value),+],
        );
        PRESET
    }};
}
