//! A JWKS URL: fetched on first use, cached, refetched when a `kid` is unknown or the keys are
//! old, at most once per interval, one fetch shared by concurrent callers.

use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Url;

use super::error::JwtSetupError;
use super::keys::KeySet;
use super::limits::{
    JWKS_CONNECT_TIMEOUT, JWKS_MAX_AGE_SECONDS, JWKS_REFETCH_INTERVAL_SECONDS,
    JWKS_RETRY_WITHOUT_KEYS_SECONDS, JWKS_TIMEOUT, MAX_JWKS_BYTES,
};

/// A JWKS URL and what we last fetched from it.
pub(super) struct RemoteJwks {
    pub(super) url: Url,
    http: reqwest::Client,
    cache: RwLock<Cached>,
    /// Held for the whole fetch, so concurrent callers wait for one fetch instead of starting
    /// their own. Holds when the last attempt (successful or not) started.
    fetching: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

#[derive(Clone, Default)]
pub(super) struct Cached {
    /// The keys and when they were fetched; `None` until the first successful fetch.
    pub(super) keys: Option<(Arc<KeySet>, DateTime<Utc>)>,
    /// Bumped on every successful fetch, so a waiter can tell that someone fetched for it.
    pub(super) generation: u64,
}

impl RemoteJwks {
    pub(super) fn new(url: Url) -> Result<Self, JwtSetupError> {
        // No redirects: a redirect could silently move trust to another host.
        let http = crate::outbound::client_builder(JWKS_CONNECT_TIMEOUT, JWKS_TIMEOUT)
            .build()
            .map_err(|e| JwtSetupError::HttpClient(transport_error(e)))?;
        Ok(Self {
            url,
            http,
            cache: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) fn cached(&self) -> Cached {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key set's generation and when it was fetched (`None` before the first fetch):
    /// what a remembered verification is checked against, without cloning the keys.
    pub(super) fn generation(&self) -> (u64, Option<DateTime<Utc>>) {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        (
            cache.generation,
            cache.keys.as_ref().map(|(_, fetched_at)| *fetched_at),
        )
    }

    /// Fetches the JWKS, unless a fetch finished since the caller saw `seen_generation` or the
    /// last attempt was too recent. With `wait` false, returns at once if a fetch is running.
    /// A failure is logged and keeps the old keys.
    pub(super) async fn refresh(&self, seen_generation: u64, now: DateTime<Utc>, wait: bool) {
        let mut last_attempt = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        let cached = self.cached();
        if cached.generation != seen_generation {
            return;
        }
        let interval = if cached.keys.is_some() {
            JWKS_REFETCH_INTERVAL_SECONDS
        } else {
            JWKS_RETRY_WITHOUT_KEYS_SECONDS
        };
        if last_attempt.is_some_and(|last| within(last, now, interval)) {
            return;
        }
        *last_attempt = Some(now);
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(jwks_url = %redacted_url(&self.url), keys = keys.keys.len(), "fetched the JWKS");
                let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                cache.keys = Some((Arc::new(keys), now));
                cache.generation += 1;
            }
            Err(error) => {
                tracing::warn!(
                    jwks_url = %redacted_url(&self.url),
                    %error,
                    have_keys = cached.keys.is_some(),
                    "cannot fetch the JWKS; keeping the keys we have"
                );
            }
        }
    }

    pub(super) async fn fetch(&self) -> Result<KeySet, FetchError> {
        let response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Transport(transport_error(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let body = read_capped(response).await?;
        KeySet::from_json(&body).map_err(FetchError::Invalid)
    }
}

/// Why a JWKS fetch failed; logged, never shown to callers. Holds no URL.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("the key server answered HTTP {0}")]
    Status(u16),
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Invalid(String),
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    crate::outbound::read_capped(response, MAX_JWKS_BYTES)
        .await
        .map_err(|e| match e {
            crate::outbound::BodyError::TooLarge => FetchError::TooLarge,
            crate::outbound::BodyError::Transport(e) => FetchError::Transport(transport_error(e)),
        })
}

/// A reqwest error as one line, without the URL: its query may carry an access token.
fn transport_error(error: reqwest::Error) -> String {
    crate::outbound::error_text(error)
}

/// The URL for logs: scheme, host, port and path, without credentials, query or fragment.
pub(super) fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Whether `then` and `now` are less than `seconds` apart. Either way round: requests carry
/// their own `now`, so a later fetch may see a slightly earlier time; a jump of the wall clock
/// by more than `seconds` just allows one early fetch.
fn within(then: DateTime<Utc>, now: DateTime<Utc>, seconds: i64) -> bool {
    (now - then).abs() < TimeDelta::seconds(seconds)
}

pub(super) fn too_old(fetched_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    !within(fetched_at, now, JWKS_MAX_AGE_SECONDS)
}
