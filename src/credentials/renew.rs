//! Keeps temporary base credentials (OIDC, ECS RAM role, credentials URI, a RamRoleArn profile)
//! fresh with the token engine's keeper ([`crate::tokens::keeper`]): one background task per
//! provider renews them before they expire ([`crate::tokens::schedule::plan_base`]),
//! single-flight, with backoff on failure. Readers get the current credentials at once while
//! they are valid, and the last failure at once while there are none.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{CredentialsError, SourceError};
use super::value::Credentials;
use crate::clock::Clock;
use crate::tokens::keeper::{self, Decision, Fresh, Job, Kept};
use crate::tokens::schedule::{self, Plan};

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
            Self::Oidc(oidc) => oidc.source(),
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

/// What readers see: the current credentials, and the last failure's message.
type Snapshot = keeper::Snapshot<Credentials, String>;

/// The reading end: cheap to clone.
#[derive(Debug, Clone)]
pub struct Renewing {
    rx: watch::Receiver<Snapshot>,
    source: &'static str,
    clock: Clock,
}

impl Renewing {
    pub fn source(&self) -> &'static str {
        self.source
    }

    pub(super) async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let error = |reason: String| CredentialsError {
            source_name: self.source,
            reason,
        };
        keeper::read(
            &self.rx,
            MAX_WAIT,
            |snapshot| {
                let usable = snapshot
                    .value
                    .as_ref()
                    .filter(|c| schedule::base_usable(c.expiration(), self.clock.now()));
                match (usable, &snapshot.last_failure) {
                    (Some(current), _) => Decision::Ready(current.clone()),
                    // The last attempt failed and the next one waits for its backoff (or is in
                    // flight): say so now rather than holding the caller.
                    (None, Some(failure)) => Decision::Refuse(error(failure.clone())),
                    (None, None) => Decision::Wait,
                }
            },
            || error("still being fetched".to_owned()),
        )
        .await
    }
}

/// The keeper's job for one source: its log lines and its metric.
struct Renewer {
    temporary: Temporary,
    clock: Clock,
}

impl Job for Renewer {
    type Issued = Credentials;
    type Value = Credentials;
    type Error = SourceError;

    fn fetch(&self) -> impl Future<Output = Result<Credentials, SourceError>> + Send {
        self.temporary.fetch()
    }

    fn plan(&self, obtained: DateTime<Utc>, fresh: &Credentials) -> Result<Plan, SourceError> {
        Ok(schedule::plan_base(obtained, fresh.expiration()))
    }

    fn keep(&self, fresh: Credentials, _serve_until: Instant) -> Credentials {
        fresh
    }
}

impl Kept for Renewer {
    type Failure = String;

    fn renewed(&self, fresh: &Fresh<Credentials>) {
        let source = self.temporary.source();
        crate::metrics::record_base_credentials_refresh(source, true);
        tracing::info!(
            source,
            access_key_id_prefix = %fresh.value.access_key_id().chars().take(8).collect::<String>(),
            expiration = ?fresh.value.expiration(),
            "renewed base credentials"
        );
    }

    fn failed(
        &self,
        error: &SourceError,
        failures: u32,
        retry_in: Duration,
        published: &Snapshot,
    ) -> String {
        let source = self.temporary.source();
        crate::metrics::record_base_credentials_refresh(source, false);
        let still_valid = published
            .value
            .as_ref()
            .is_some_and(|c| schedule::base_usable(c.expiration(), self.clock.now()));
        tracing::warn!(
            source,
            %error,
            failures,
            retry_in_s = retry_in.as_secs_f32(),
            still_valid,
            "renewing base credentials failed"
        );
        error.message.clone()
    }
}

/// Starts renewing `temporary`, beginning with `first` if the chain already fetched a set.
/// The task ends when every reader is gone.
pub fn spawn(temporary: Temporary, first: Option<Credentials>, clock: Clock) -> Renewing {
    let source = temporary.source();
    // The chain fetched the first set just now: renew it when it is due.
    let first = first.map(|credentials| {
        let plan = schedule::plan_base(clock.now(), credentials.expiration());
        Fresh {
            serve_until: clock.deadline(plan.serve_until),
            // Permanent credentials from a temporary-style source are looked at again at once;
            // the hourly rhythm starts from that look.
            refresh_at: match credentials.expiration() {
                Some(_) => clock.deadline(plan.refresh_at),
                None => Instant::now(),
            },
            value: credentials,
        }
    });
    let job = Renewer {
        temporary,
        clock: clock.clone(),
    };
    // Nothing resets base credentials, and the task stops with its last reader.
    let (rx, _task) = keeper::spawn(
        job,
        clock.clone(),
        first,
        CancellationToken::new(),
        Arc::new(Notify::new()),
    );
    Renewing { rx, source, clock }
}
