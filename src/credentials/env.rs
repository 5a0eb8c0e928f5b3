//! Reading the SDKs' environment variables as they do.

use std::collections::HashMap;

/// Every `ALIBABA_CLOUD_` variable the chain's sources read (the AccessKey and STS endpoint
/// ones are in the settings table). A test holds it to the sources' code.
pub const CHAIN_VARIABLES: [&str; 11] = [
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    "ALIBABA_CLOUD_ROLE_SESSION_NAME",
    "ALIBABA_CLOUD_PROFILE",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "ALIBABA_CLOUD_ECS_METADATA",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
    "ALIBABA_CLOUD_IMDSV1_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_URI",
];

/// Whether an environment flag is set to true (`true`, case-insensitive, as the SDKs read it).
pub(super) fn flag(env: &HashMap<String, String>, name: &str) -> bool {
    env.get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A non-empty environment value.
pub(super) fn var<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"ALIBABA_CLOUD_…"` literal in the sources' code is in [`CHAIN_VARIABLES`] (or is
    /// one of the settings table's AccessKey names), so the unknown-name warning never fires for
    /// a variable the chain reads.
    #[test]
    fn every_variable_the_sources_read_is_listed() {
        let sources = [
            include_str!("chain.rs"),
            include_str!("ecs.rs"),
            include_str!("ini.rs"),
            include_str!("oidc.rs"),
            include_str!("profile.rs"),
            include_str!("profile_kind.rs"),
            include_str!("sources.rs"),
            include_str!("uri.rs"),
        ];
        let table = [
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
        ];
        let mut found = 0;
        for text in sources {
            for (at, _) in text.match_indices("\"ALIBABA_CLOUD_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                found += 1;
                assert!(
                    CHAIN_VARIABLES.contains(&name.as_str()) || table.contains(&name.as_str()),
                    "{name} is read by the chain but not in CHAIN_VARIABLES"
                );
            }
        }
        assert!(
            found >= CHAIN_VARIABLES.len(),
            "the scan found {found} names"
        );
        for name in CHAIN_VARIABLES {
            let read = sources
                .iter()
                .any(|text| text.contains(&format!("\"{name}\"")));
            assert!(read, "{name} is listed but no source reads it");
        }
    }
}
