//! The connection to Redis: every command bounded by the command timeout, every failure typed,
//! and one log line each time the store goes down or comes back.
//!
//! The client is the `redis` crate (redis-rs): the most used and actively kept Rust client, with
//! tokio and rustls support (using the process's ring provider, like the rest of stsvend) and a
//! `ConnectionManager` that multiplexes one connection and reconnects with exponential backoff
//! and jitter. `fred` was the alternative; its pooling and cluster machinery are more than a
//! handful of short commands per request needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisError};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::seal::{Keyring, OVERHEAD, Opened, SealError};
use super::settings::FleetSettings;

/// The largest reply `INFO server` may give before it is refused.
const MAX_INFO_BYTES: usize = 16 * 1024;
const MAX_REPLICA_ID_LEN: usize = 64;
/// How long a probe value lives if the probe is cut short before it deletes it.
const PROBE_TTL_MS: u64 = 10_000;
/// Reconnection attempts by the connection manager before a command fails; the next command
/// (or the health task's ping) starts a new round.
const RECONNECT_ATTEMPTS: usize = 4;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Connecting (and a TLS handshake) may take longer than one command; commands still give up
/// after the command timeout while the connection is made in the background.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the store must have given no answer before a command that times out marks it down
/// (a refused or dropped connection marks it down at once). Longer than a burst's slow answer,
/// short enough that a frozen Redis is noticed within about a second of health pings.
const QUIET_BEFORE_DOWN: Duration = Duration::from_secs(1);

/// Why a store operation failed. None of these carries a stored value or a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("fleet store down ({0})")]
    Down(String),
    #[error("fleet store gave no answer within {0:?}")]
    TimedOut(Duration),
    #[error("fleet store refused the command ({0})")]
    Refused(String),
    #[error("fleet store reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("fleet store reply not understood: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("fleet store cannot be set up: {0}")]
    Setup(String),
}

impl StoreError {
    /// Whether the store was unreachable (as opposed to reachable but unhelpful).
    pub fn is_down(&self) -> bool {
        matches!(self, Self::Down(_) | Self::TimedOut(_))
    }
}

fn classify(error: &RedisError) -> StoreError {
    // The error's own text may quote the address; the kind says enough.
    if error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
    {
        StoreError::Down(format!("{:?}", error.kind()))
    } else if let Some(code) = error.code() {
        StoreError::Refused(code.chars().take(40).collect())
    } else if matches!(error.kind(), redis::ErrorKind::UnexpectedReturnType) {
        StoreError::Malformed("unexpected reply type")
    } else {
        StoreError::Down(format!("{:?}", error.kind()))
    }
}

/// The store: cheap to clone, shared by every fleet part of one replica.
#[derive(Clone, Debug)]
pub struct FleetStore(Arc<Inner>);

struct Inner {
    client: Client,
    conn: ConnectionManager,
    keyring: Keyring,
    prefix: String,
    timeout: Duration,
    replica: String,
    up: AtomicBool,
    up_tx: watch::Sender<bool>,
    seq: AtomicU64,
    /// When the store last answered, in ms since `started`; `u64::MAX`: never.
    last_answer: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("replica", &self.replica)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

/// What `stsvend check` reports of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `redis` or `valkey`.
    pub server: String,
    pub version: String,
}

impl FleetStore {
    /// A store for `settings`, as replica `replica_id` (a pod or host name: it is written beside
    /// kill-switch changes and as lock owner). Does not wait for Redis: a store that is down at
    /// start-up connects when Redis comes up. Call inside a tokio runtime.
    pub fn connect(settings: &FleetSettings, replica_id: &str) -> Result<Self, StoreError> {
        let valid_id = !replica_id.is_empty()
            && replica_id.len() <= MAX_REPLICA_ID_LEN
            && replica_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !valid_id {
            return Err(StoreError::Setup(format!(
                "the replica id must be 1 to {MAX_REPLICA_ID_LEN} letters, digits, `.`, `_`, `:` or `-`"
            )));
        }
        let client = client(settings)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.command_timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT.max(settings.command_timeout)))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_exponent_base(2.0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::Setup(format!("{:?}", e.kind())))?;
        let (up_tx, _) = watch::channel(true);
        Ok(Self(Arc::new(Inner {
            client,
            conn,
            keyring: Keyring::new(
                &settings.encryption_key,
                settings.previous_encryption_key.as_ref(),
            ),
            prefix: settings.key_prefix.clone(),
            timeout: settings.command_timeout,
            replica: replica_id.to_owned(),
            up: AtomicBool::new(true),
            up_tx,
            seq: AtomicU64::new(0),
            last_answer: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        })))
    }

    pub fn replica_id(&self) -> &str {
        &self.0.replica
    }

    pub fn command_timeout(&self) -> Duration {
        self.0.timeout
    }

    /// Whether the last command reached Redis.
    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::Relaxed)
    }

    /// Follows [`Self::is_up`], for the `stsvend_fleet_store_up` gauge and readiness details.
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.0.up_tx.subscribe()
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.0.keyring
    }

    pub(crate) fn client(&self) -> &Client {
        &self.0.client
    }

    /// `rest` under the key prefix.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.0.prefix)
    }

    /// `rest` under the key prefix, in the prefix's own hash slot (`{prefix}rest`), for keys that
    /// one script uses together.
    pub(crate) fn slotted_key(&self, group: &str, rest: &str) -> String {
        format!("{{{}{group}}}{rest}", self.0.prefix)
    }

    /// A value unique to this replica and call, for lock owners and budget entries.
    pub(crate) fn unique(&self) -> String {
        let n = self.0.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.0.replica)
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// How long since the store last answered; forever when it never has.
    fn quiet_for(&self) -> Duration {
        match self.0.last_answer.load(Ordering::Relaxed) {
            u64::MAX => Duration::MAX,
            last => Duration::from_millis(self.since_start_ms().saturating_sub(last)),
        }
    }

    fn mark(&self, up: bool, why: &StoreError) {
        if self.0.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(replica = %self.0.replica, "fleet store up: Redis answers again");
            } else {
                tracing::warn!(replica = %self.0.replica, error = %why, "fleet store down: falling back to local state");
            }
            self.0.up_tx.send_replace(up);
        }
    }

    /// Runs `op` on the connection within the command timeout, tracking up/down.
    async fn bounded<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, RedisError>>,
    {
        let result = match tokio::time::timeout(self.0.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            // The connection's own response timeout is the same bound as ours.
            Ok(Err(error)) if error.is_timeout() => Err(StoreError::TimedOut(self.0.timeout)),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => Err(StoreError::TimedOut(self.0.timeout)),
        };
        match &result {
            // One slow answer under a burst is not an outage: marking the store down would send
            // every replica's misses to STS until the next health ping. No answer for a while is.
            Err(error @ StoreError::TimedOut(_)) => {
                if self.quiet_for() >= QUIET_BEFORE_DOWN {
                    self.mark(false, error);
                }
            }
            Err(error) if error.is_down() => self.mark(false, error),
            _ => {
                self.0
                    .last_answer
                    .store(self.since_start_ms(), Ordering::Relaxed);
                self.mark(true, &StoreError::Down(String::new()));
            }
        }
        result
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.0.conn.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs a script: EVALSHA, and EVAL when the server does not know it yet.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.0.conn.clone();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    /// The string at `name`, refused when longer than `limit` bytes; `None` when missing (the
    /// values stored here are never empty). GETRANGE bounds what the server sends.
    pub(crate) async fn get_bounded(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let value: Vec<u8> = self
            .query(redis::cmd("GETRANGE").arg(name).arg(0).arg(limit))
            .await?;
        if value.len() > limit {
            return Err(StoreError::TooLarge(limit));
        }
        Ok((!value.is_empty()).then_some(value))
    }

    /// The sealed value at `name` opened, for plaintexts up to `limit` bytes.
    pub(crate) async fn get_sealed(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Opened>, StoreError> {
        match self.get_bounded(name, limit + OVERHEAD).await? {
            Some(sealed) => Ok(Some(self.0.keyring.open(name, &sealed)?)),
            None => Ok(None),
        }
    }

    /// Seals `plaintext` for `name` and stores it for `ttl`.
    pub(crate) async fn put_sealed(
        &self,
        name: &str,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let sealed = self.0.keyring.seal(name, plaintext)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.query::<()>(
            redis::cmd("SET")
                .arg(name)
                .arg(sealed)
                .arg("PX")
                .arg(ttl_ms),
        )
        .await
    }

    /// The server and its version, from `INFO server`.
    pub async fn version(&self) -> Result<ServerVersion, StoreError> {
        let info: Vec<u8> = self.query(redis::cmd("INFO").arg("server")).await?;
        if info.len() > MAX_INFO_BYTES {
            return Err(StoreError::TooLarge(MAX_INFO_BYTES));
        }
        parse_version(&String::from_utf8_lossy(&info))
            .ok_or(StoreError::Malformed("INFO server names no version"))
    }

    /// Writes a sealed random probe value, reads it back, opens it and compares: what
    /// `stsvend check` reports. Returns the time the round trip took.
    pub async fn probe(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let name = self.key(&format!("probe:{}", self.0.replica));
        let mut expected = [0u8; 32];
        getrandom::fill(&mut expected).map_err(|_| SealError::Random)?;
        let sealed = self.0.keyring.seal(&name, &expected)?;
        self.query::<()>(
            redis::cmd("SET")
                .arg(&name)
                .arg(sealed)
                .arg("PX")
                .arg(PROBE_TTL_MS),
        )
        .await?;
        let read = self.get_sealed(&name, expected.len()).await;
        let _ = self.query::<i64>(redis::cmd("DEL").arg(&name)).await;
        let opened = read?.ok_or(StoreError::Malformed("the probe value vanished"))?;
        if opened.plaintext.expose_secret() != expected {
            return Err(StoreError::Malformed("the probe value came back different"));
        }
        Ok(started.elapsed())
    }

    /// Pings every `interval` until `cancel`: keeps the up/down state (and its one log line per
    /// change) current while no caller needs the store, and drives reconnection.
    pub fn spawn_health(
        &self,
        interval: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticks.tick() => {
                        let _ = store.query::<String>(&redis::cmd("PING")).await;
                    }
                }
            }
        })
    }
}

fn client(settings: &FleetSettings) -> Result<Client, StoreError> {
    let setup = |e: RedisError| StoreError::Setup(format!("{:?}", e.kind()));
    let mut info = settings
        .url
        .expose()
        .into_connection_info()
        .map_err(setup)?;
    if let Some(password) = &settings.password {
        let redis = info
            .redis_settings()
            .clone()
            .set_password(password.expose_secret());
        info = info.set_redis_settings(redis);
    }
    if !settings.url.tls() {
        return Client::open(info).map_err(setup);
    }
    // rediss:// uses rustls with the provider stsvend uses everywhere else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match &settings.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            StoreError::Setup(format!(
                "cannot read the CA file {}: {}",
                path.display(),
                e.kind()
            ))
        })?),
        None => None,
    };
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls: None,
            root_cert,
        },
    )
    .map_err(setup)
}

/// The server name and version in an `INFO server` reply. Valkey also reports a
/// `redis_version` (the Redis version it is compatible with); its own wins.
fn parse_version(info: &str) -> Option<ServerVersion> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().chars().take(32).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    if let Some(version) = field("valkey_version") {
        return Some(ServerVersion {
            server: "valkey".to_owned(),
            version,
        });
    }
    field("redis_version").map(|version| ServerVersion {
        server: "redis".to_owned(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_info() {
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(
            parse_version(redis),
            Some(ServerVersion {
                server: "redis".into(),
                version: "7.0.15".into()
            })
        );
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.2\r\n";
        assert_eq!(parse_version(valkey).unwrap().server, "valkey");
        assert_eq!(parse_version(valkey).unwrap().version, "8.0.2");
        assert_eq!(parse_version("# Server\r\nredis_version:\r\n"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn errors_are_typed_without_the_address() {
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused 10.1.2.3:6379",
        ));
        let error = classify(&refused);
        assert!(error.is_down(), "{error:?}");
        assert!(!error.to_string().contains("10.1.2.3"));
    }
}
