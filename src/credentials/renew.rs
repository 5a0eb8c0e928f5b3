//! Keeps temporary base credentials (OIDC, ECS RAM role, credentials URI, a RamRoleArn profile)
//! fresh: one background task per provider renews them before they expire, single-flight, with
//! backoff on failure. Readers get the current credentials at once while they are valid.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::error::{CredentialsError, SourceError};
use super::value::Credentials;
use crate::clock::Clock;

/// Credentials this close to expiry are not used any more: a request signed with them might
/// arrive after they lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Renew at the latest this long before expiry (the official SDKs use 3 to 15 minutes).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// How long a reader waits for the first (or a replacement) set of credentials.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// A source of temporary credentials.
#[derive(Debug)]
pub enum Temporary {
    Oidc(super::oidc::Oidc),
    Ecs(super::ecs::Ecs),
    Uri(super::uri::Uri),
    /// A `RamRoleArn` profile: `AssumeRole` with the profile's AccessKey.
    RamRoleArn {
        client: crate::sts::StsClient,
        base: Credentials,
        call: crate::sts::AssumeRole,
        source: super::origin::Origin,
    },
}

impl Temporary {
    pub fn source(&self) -> &'static str {
        match self {
            Self::Oidc(_) => super::oidc::SOURCE,
            Self::Ecs(_) => super::ecs::SOURCE,
            Self::Uri(_) => super::uri::SOURCE,
            Self::RamRoleArn { source, .. } => source.as_str(),
        }
    }

    pub(super) async fn fetch(&self) -> Result<Credentials, SourceError> {
        match self {
            Self::Oidc(oidc) => oidc.fetch().await,
            Self::Ecs(ecs) => ecs.fetch().await,
            Self::Uri(uri) => uri.fetch().await,
            Self::RamRoleArn {
                client,
                base,
                call,
                source,
            } => client
                .assume_role(base, call)
                .await
                .map(|issued| issued.into_credentials(*source))
                .map_err(|e| {
                    SourceError::new(format!("AssumeRole for the profile's role failed: {e}"))
                }),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    current: Option<Credentials>,
    last_error: Option<String>,
}

/// The reading end: cheap to clone.
#[derive(Debug, Clone)]
pub struct Renewing {
    rx: watch::Receiver<State>,
    source: &'static str,
    clock: Clock,
}

impl Renewing {
    pub fn source(&self) -> &'static str {
        self.source
    }

    pub(super) async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut rx = self.rx.clone();
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            {
                let state = rx.borrow_and_update();
                if let Some(current) = state
                    .current
                    .as_ref()
                    .filter(|c| usable(c, self.clock.now()))
                {
                    return Ok(current.clone());
                }
                // The last attempt failed and the next one waits for its backoff: say so now
                // rather than holding the caller.
                if let Some(error) = &state.last_error {
                    return Err(CredentialsError {
                        source_name: self.source,
                        reason: error.clone(),
                    });
                }
            }
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                return Err(CredentialsError {
                    source_name: self.source,
                    reason: "still being fetched".to_owned(),
                });
            }
        }
    }
}

fn usable(credentials: &Credentials, now: DateTime<Utc>) -> bool {
    let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
    credentials
        .expiration()
        .is_none_or(|expiration| now + margin < expiration)
}

/// When to renew credentials obtained at `obtained` that expire at `expiration`: at half their
/// life, but at least [`RENEW_BEFORE`] before expiry, and not sooner than ten seconds from now.
pub fn renew_at(obtained: DateTime<Utc>, expiration: DateTime<Utc>) -> DateTime<Utc> {
    let before = chrono::Duration::from_std(RENEW_BEFORE).unwrap_or_default();
    let half = obtained + (expiration - obtained) / 2;
    half.min(expiration - before)
        .max(obtained + chrono::Duration::seconds(10))
}

/// Starts renewing `temporary`, beginning with `first` if the chain already fetched a set.
/// The task ends when every reader is gone.
pub fn spawn(temporary: Temporary, first: Option<Credentials>, clock: Clock) -> Renewing {
    let source = temporary.source();
    let (tx, rx) = watch::channel(State {
        current: first,
        last_error: None,
    });
    let task_clock = clock.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run(temporary, task_clock, &tx) => {}
            () = tx.closed() => {}
        }
    });
    Renewing { rx, source, clock }
}

async fn run(temporary: Temporary, clock: Clock, tx: &watch::Sender<State>) {
    let source = temporary.source();
    // The chain may have fetched the first set already: renew it when it is due.
    let first_expiration = tx
        .borrow()
        .current
        .as_ref()
        .and_then(Credentials::expiration);
    if let Some(expiration) = first_expiration {
        tokio::time::sleep_until(clock.deadline(renew_at(clock.now(), expiration))).await;
    }
    let mut failures = 0u32;
    loop {
        let obtained = clock.now();
        let next = match temporary.fetch().await {
            Ok(fresh) => {
                failures = 0;
                crate::metrics::record_base_credentials_refresh(source, true);
                tracing::info!(
                    source,
                    access_key_id_prefix = %fresh.access_key_id().chars().take(8).collect::<String>(),
                    expiration = ?fresh.expiration(),
                    "renewed base credentials"
                );
                let next = fresh.expiration().map_or_else(
                    // Permanent credentials from a temporary-style source: look again hourly.
                    || tokio::time::Instant::now() + Duration::from_secs(3600),
                    |expiration| clock.deadline(renew_at(obtained, expiration)),
                );
                tx.send_modify(|s| {
                    s.current = Some(fresh);
                    s.last_error = None;
                });
                next
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                crate::metrics::record_base_credentials_refresh(source, false);
                let delay = crate::backoff::backoff(failures, rand::random::<f64>());
                let still_valid = tx
                    .borrow()
                    .current
                    .as_ref()
                    .is_some_and(|c| usable(c, clock.now()));
                tracing::warn!(
                    source,
                    %error,
                    failures,
                    retry_in_s = delay.as_secs_f32(),
                    still_valid,
                    "renewing base credentials failed"
                );
                tx.send_modify(|s| s.last_error = Some(error.message.clone()));
                tokio::time::Instant::now() + delay
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn renewal_is_at_half_life_but_five_minutes_before_expiry_at_the_latest() {
        assert_eq!(renew_at(t(0), t(3600)), t(1800));
        assert_eq!(renew_at(t(0), t(21600)), t(10800));
        assert_eq!(renew_at(t(0), t(900)), t(450));
        assert_eq!(renew_at(t(0), t(480)), t(180));
        assert_eq!(renew_at(t(0), t(5)), t(10), "never a busy loop");
    }

    #[test]
    fn credentials_close_to_expiry_are_not_used() {
        let origin = super::super::origin::Origin::Environment;
        let c =
            Credentials::new("id", secrecy::SecretString::from("s"), None, origin).expiring(t(100));
        assert!(usable(&c, t(0)));
        assert!(!usable(&c, t(40)));
        let permanent = Credentials::new("id", secrecy::SecretString::from("s"), None, origin);
        assert!(usable(&permanent, t(1_000_000)));
    }
}
