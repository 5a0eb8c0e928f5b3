//! Who may use the admin listener (issue 13 point 4): the host names it answers to besides IP
//! addresses and `localhost` (`STSVEND_ADMIN_HOSTS`), and its optional bearer token
//! (`STSVEND_ADMIN_TOKEN`, or `STSVEND_ADMIN_TOKEN_FILE` read once at start-up).

use std::fmt;
use std::net::SocketAddr;

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

use super::problems::{Problems, shown};
use super::secret::value_or_file;
use super::setting::Setting;

/// A token shorter than this could be guessed by a patient scanner; 32 is what
/// `openssl rand -hex 16` prints.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;
/// Longer than any sensible token; a bigger file is most likely the wrong file.
const MAX_ADMIN_TOKEN_BYTES: usize = 1024;

/// The admin listener's access settings.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// Host names (lowercase, without a trailing dot) the admin routes answer to, besides IP
    /// literals and `localhost`: a `Host` naming anything else may be a DNS-rebinding page.
    pub hosts: Vec<String>,
    /// When set, `/metrics` and the kill switch need `Authorization: Bearer <token>`.
    pub token: Option<AdminToken>,
}

/// The admin bearer token. Never shown: `Debug` prints a placeholder, and it is compared in
/// constant time.
#[derive(Clone)]
pub struct AdminToken(SecretString);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(** redacted **)")
    }
}

impl AdminToken {
    /// Whether `presented` is the token. The time taken depends on the lengths only, never on
    /// where the first difference is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.expose_secret().as_bytes().ct_eq(presented).into()
    }
}

/// Reads the three settings; `token_file` is read here, once, bounded in size.
pub(super) fn parse(
    hosts: Option<&Setting>,
    token: Option<&Setting>,
    token_file: Option<&Setting>,
    problems: &mut Problems,
) -> AdminAccess {
    let mut access = AdminAccess::default();
    if let Some(setting) = hosts {
        for item in setting
            .value
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            let name = item.trim_end_matches('.').to_ascii_lowercase();
            let valid = (1..=253).contains(&name.len())
                && name.split('.').all(|label| (1..=63).contains(&label.len()))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                access.hosts.push(name);
            } else {
                problems.add(
                    &setting.origin,
                    format!(
                        "must list host names without port or wildcard, such as stsvend-admin.monitoring.svc, got {}",
                        shown(item)
                    ),
                );
            }
        }
    }
    let text = value_or_file(token, token_file, MAX_ADMIN_TOKEN_BYTES, problems);
    if let Some((text, origin)) = text {
        // Never echo the token, not even its length.
        let printable = text.bytes().all(|b| b.is_ascii_graphic());
        if text.len() < MIN_ADMIN_TOKEN_BYTES || text.len() > MAX_ADMIN_TOKEN_BYTES || !printable {
            problems.add(
                &origin,
                format!(
                    "must be {MIN_ADMIN_TOKEN_BYTES} to {MAX_ADMIN_TOKEN_BYTES} printable ASCII characters without spaces, such as the output of `openssl rand -hex 32`"
                ),
            );
        } else {
            access.token = Some(AdminToken(SecretString::from(text)));
        }
    }
    access
}

/// The start-up warning for an admin listener reachable beyond loopback without a token.
pub(super) fn warning(admin_listen: SocketAddr, access: &AdminAccess) -> Option<String> {
    (!admin_listen.ip().is_loopback() && access.token.is_none()).then(|| {
        format!(
            "the admin listener ({admin_listen}) listens beyond loopback without a token: anyone who reaches it can read /metrics and switch vending off; set STSVEND_ADMIN_TOKEN_FILE (or STSVEND_ADMIN_TOKEN), or keep the port off every network but the probes'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(value: &str) -> Setting {
        Setting {
            origin: "`X`".to_owned(),
            place: crate::config::setting::Place::Environment,
            value: value.to_owned(),
        }
    }

    #[test]
    fn tokens_are_compared_whole_and_never_shown() {
        let mut problems = Problems::default();
        let secret = "0123456789abcdef0123456789abcdef";
        let access = parse(None, Some(&setting(secret)), None, &mut problems);
        assert!(problems.0.is_empty());
        let token = access.token.unwrap();
        assert!(token.matches(secret.as_bytes()));
        assert!(!token.matches(&secret.as_bytes()[..31]));
        assert!(!token.matches(b"0123456789abcdef0123456789abcdeF"));
        assert!(!format!("{token:?}").contains("0123"));
    }

    #[test]
    fn short_or_spaced_tokens_and_bad_host_names_are_refused_without_echoing_the_token() {
        for bad in ["short", "0123456789abcdef 0123456789abcdef0"] {
            let mut problems = Problems::default();
            let access = parse(None, Some(&setting(bad)), None, &mut problems);
            assert!(access.token.is_none());
            assert_eq!(problems.0.len(), 1, "{bad}");
            assert!(!problems.0[0].message.contains(bad));
        }
        let mut problems = Problems::default();
        let access = parse(
            Some(&setting("Admin.Example.COM., a:9090, *.svc")),
            None,
            None,
            &mut problems,
        );
        assert_eq!(access.hosts, ["admin.example.com"]);
        assert_eq!(problems.0.len(), 2);
    }

    fn load(
        pairs: &[(&str, &str)],
        mode: super::super::Mode,
    ) -> Result<super::super::Config, String> {
        let mut env: std::collections::HashMap<String, String> = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tTestKeyId"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret-value"),
            ("STSVEND_ROLE_ARN", "acs:ram::1234567890123456:role/r"),
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        super::super::load(None, &env, mode).map_err(|e| e.to_string())
    }

    const SERVE: super::super::Mode = super::super::Mode::Serve;
    const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn dev_mode_refuses_a_remote_admin_listener_unless_allowed() {
        let dev = |allow_remote| super::super::Mode::Dev { allow_remote };
        let refused = load(&[("STSVEND_ADMIN_LISTEN", "0.0.0.0:9090")], dev(false)).unwrap_err();
        assert!(refused.starts_with("`STSVEND_ADMIN_LISTEN`:"), "{refused}");
        assert!(refused.contains("--allow-remote"), "{refused}");
        assert!(load(&[("STSVEND_ADMIN_LISTEN", "[::1]:9090")], dev(false)).is_ok());
        let allowed = load(&[("STSVEND_ADMIN_LISTEN", "0.0.0.0:9090")], dev(true)).unwrap();
        assert!(
            allowed
                .warnings
                .iter()
                .any(|w| w.contains("without a token"))
        );
    }

    #[test]
    fn an_admin_listener_beyond_loopback_without_a_token_is_warned_about() {
        let open = load(&[("STSVEND_ADMIN_LISTEN", "0.0.0.0:9090")], SERVE).unwrap();
        assert!(open.warnings.iter().any(|w| w.contains("without a token")));
        let guarded = load(
            &[
                ("STSVEND_ADMIN_LISTEN", "0.0.0.0:9090"),
                ("STSVEND_ADMIN_TOKEN", HS_SECRET),
            ],
            SERVE,
        )
        .unwrap();
        assert!(guarded.warnings.is_empty(), "{:?}", guarded.warnings);
        let local = load(&[], SERVE).unwrap();
        assert!(local.warnings.is_empty(), "{:?}", local.warnings);
    }

    #[test]
    fn the_token_file_is_read_at_start_and_cannot_be_combined_with_the_token() {
        let dir = std::env::temp_dir().join(format!("stsvend-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, format!("{HS_SECRET}\n")).unwrap();
        let path = path.to_str().unwrap();
        let config = load(&[("STSVEND_ADMIN_TOKEN_FILE", path)], SERVE).unwrap();
        assert!(config.admin.token.unwrap().matches(HS_SECRET.as_bytes()));
        let both = load(
            &[
                ("STSVEND_ADMIN_TOKEN_FILE", path),
                ("STSVEND_ADMIN_TOKEN", HS_SECRET),
            ],
            SERVE,
        )
        .unwrap_err();
        assert!(both.contains("cannot be combined"), "{both}");
        let missing = dir.join("absent");
        let missing = load(
            &[("STSVEND_ADMIN_TOKEN_FILE", missing.to_str().unwrap())],
            SERVE,
        )
        .unwrap_err();
        assert!(
            missing.starts_with("`STSVEND_ADMIN_TOKEN_FILE`: cannot read"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jwt_profiles_need_issuer_and_audience_or_the_explicit_opt_out() {
        let jwt = [
            ("STSVEND_AUTH", "jwt"),
            ("STSVEND_JWT_HS256_SECRET", HS_SECRET),
        ];
        for (mode, extra, expected) in [
            ("jwt", vec![], "neither issuer nor audience"),
            ("report", vec![], "neither issuer nor audience"),
            (
                "jwt",
                vec![("STSVEND_JWT_ISSUER", "https://i")],
                "no audience",
            ),
            ("jwt", vec![("STSVEND_JWT_AUDIENCE", "a")], "no issuer"),
            (
                "jwt",
                vec![
                    ("STSVEND_JWT_AUDIENCE", "a"),
                    ("STSVEND_JWT_ACCEPT_ANY_AUDIENCE", "true"),
                ],
                "`STSVEND_JWT_ACCEPT_ANY_AUDIENCE`: is true but an audience is set",
            ),
        ] {
            let mut pairs = jwt.to_vec();
            pairs.push(("STSVEND_AUTH", mode));
            pairs.extend(extra);
            let refused = load(&pairs, SERVE).unwrap_err();
            assert!(refused.contains(expected), "{mode}: {refused}");
        }
        let both = [
            ("STSVEND_JWT_ISSUER", "https://i"),
            ("STSVEND_JWT_AUDIENCE", "a"),
        ];
        let config = load(&[&jwt[..], &both[..]].concat(), SERVE).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let opted_out = [("STSVEND_JWT_ACCEPT_ANY_AUDIENCE", "true")];
        let config = load(&[&jwt[..], &opted_out[..]].concat(), SERVE).unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("accepts JWTs for any audience")),
            "{:?}",
            config.warnings
        );
    }
}
