//! Where a set of credentials came from. A leaf beside [`super::value`]: the settings, the
//! sources and the STS client name an origin without reaching the chain.

use std::fmt;

/// Where credentials came from. [`Origin::as_str`] is the name logs and metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` in the environment.
    Environment,
    /// `access_key_id` / `access_key_secret` in stsvend's own config file.
    ConfigFile,
    /// ACK RRSA: `AssumeRoleWithOIDC`.
    Oidc,
    /// The Alibaba Cloud CLI's `config.json`.
    CliProfile,
    /// The SDKs' `credentials.ini`.
    CredentialsFile,
    /// The ECS metadata service.
    EcsRamRole,
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    CredentialsUri,
    /// The RAM user of the local STS emulator (`stsvend dev`, tests).
    DevEmulator,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::ConfigFile => "config file",
            Self::Oidc => "oidc",
            Self::CliProfile => "cli_profile",
            Self::CredentialsFile => "credentials_file",
            Self::EcsRamRole => "ecs_ram_role",
            Self::CredentialsUri => "credentials_uri",
            Self::DevEmulator => "dev emulator",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
