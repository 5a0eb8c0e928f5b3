//! One raw value and where it came from, as every settings parser receives it; and how a
//! given value is shown back to the operator by `stsvend check`.

use reqwest::Url;

use super::problems::shown;
use super::settings::{Fallback, Kind, Spec};

/// A raw value and where it came from.
#[derive(Clone)]
pub(super) struct Setting {
    /// An environment variable or `key` in the file, as problem lines name it.
    pub(super) origin: String,
    /// Where, for decisions that depend on it (whose credentials these are).
    pub(super) place: Place,
    pub(super) value: String,
}

/// Which kind of place a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Environment,
    ConfigFile,
    /// Not given: the table's default, or one `stsvend dev` fills in.
    Default,
}

impl Setting {
    /// The table's default for `spec`, as if the operator had given it at `origin`; `None`
    /// when the default is not a value (nothing, required, or worked out elsewhere).
    pub(super) fn default_of(spec: &Spec, origin: String) -> Option<Self> {
        match spec.default {
            Fallback::Value(value) => Some(Self {
                origin,
                place: Place::Default,
                value: value.to_owned(),
            }),
            Fallback::None | Fallback::Required | Fallback::Derived(_) => None,
        }
    }

    /// What `stsvend check` prints for this value: secrets never, an AccessKey id by its start,
    /// a URL without the parts that may carry a credential.
    pub(super) fn given(&self, kind: Kind) -> Given {
        let value = match kind {
            Kind::Secret => "set (not shown)".to_owned(),
            Kind::KeyId => {
                let start: String = self.value.chars().take(8).collect();
                format!("{start}…")
            }
            Kind::Url => Url::parse(self.value.trim()).map_or_else(
                |_| "not a URL (not shown)".to_owned(),
                |url| {
                    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                    let host = url.host_str().unwrap_or_default();
                    shown(&format!("{}://{host}{port}{}", url.scheme(), url.path()))
                },
            ),
            Kind::Text | Kind::List | Kind::Number | Kind::Flag | Kind::Path => shown(&self.value),
        };
        Given {
            setting: self.origin.clone(),
            value,
        }
    }
}

/// A setting the operator gave (not a default), as `stsvend check` lists it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The variable or file key it came from.
    pub setting: String,
    /// The value, quoted; or why it is not shown.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(value: &str, kind: Kind) -> String {
        let setting = Setting {
            origin: "`X`".to_owned(),
            place: Place::Environment,
            value: value.to_owned(),
        };
        setting.given(kind).value
    }

    #[test]
    fn check_shows_no_secret_and_no_credential_in_a_url() {
        assert_eq!(given("hunter2-hunter2", Kind::Secret), "set (not shown)");
        assert_eq!(given("LTAI5tSomeLongKeyId", Kind::KeyId), "LTAI5tSo…");
        assert_eq!(
            given(
                "https://u:pw@idp.example.com:8443/jwks?access_token=t#f",
                Kind::Url
            ),
            "\"https://idp.example.com:8443/jwks\""
        );
        assert_eq!(given("not a url pw", Kind::Url), "not a URL (not shown)");
        assert_eq!(given("0.0.0.0:8080", Kind::Text), "\"0.0.0.0:8080\"");
    }
}
