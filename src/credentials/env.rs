//! Reading the SDKs' environment variables as they do.

use std::collections::HashMap;

/// Whether an environment flag is set to true (`true`, case-insensitive, as the SDKs read it).
pub(super) fn flag(env: &HashMap<String, String>, name: &str) -> bool {
    env.get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A non-empty environment value.
pub(super) fn var<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}
