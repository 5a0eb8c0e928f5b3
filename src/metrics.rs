//! Prometheus metrics: the one recorder, what it records, and the text the admin listener serves.
//!
//! Recording goes through the `metrics` facade (`counter!`, `histogram!`, `gauge!`) into one
//! process-global recorder that [`install`] sets up; until then every recording is a no-op, so
//! the binary installs it before anything else runs. The small `record_*` functions below are
//! the only places that name a metric, so the list of series lives in this file:
//!
//! | series | labels | recorded in |
//! | --- | --- | --- |
//! | `stsvend_http_requests_total` | `route`, `profile`, `status` | [`record_request`] (public router) |
//! | `stsvend_http_request_duration_seconds` | `route` | [`record_request`] |
//! | `stsvend_sts_calls_total` | `action`, `outcome`, `code` | `sts::client` (every call, and every call the budget refused) |
//! | `stsvend_sts_call_duration_seconds` | `action` | `sts::client` |
//! | `stsvend_token_cache_total` | `profile`, `result` | `tokens::shared` (`hit`), `tokens::callers` (`hit`/`miss`) |
//! | `stsvend_token_expiry_timestamp_seconds` | `profile` | [`record_token_expiry`] (`tokens::shared`, on publish and every [`EXPIRY_GAUGE_EVERY`]) |
//! | `stsvend_token_expiry_seconds` | `profile` | the same; deprecated countdown, removed in the release after 0.1 |
//! | `stsvend_rejections_total` | `profile`, `reason`, `check` | `http::token`, at each refusal |
//! | `stsvend_report_mode_would_deny_total` | `profile`, `check` | `http::token` |
//! | `stsvend_base_credentials_info` | `source` | `credentials::chain` (the chosen source) |
//! | `stsvend_base_credentials_refreshes_total` | `source`, `outcome` | `credentials::renew` |
//! | `stsvend_profile_enabled` | `profile` | [`record_profile_enabled`] (kill switch, start-up) |
//! | `stsvend_kill_switch_fleet_changes_total` | `profile`, `state` | [`record_kill_switch_fleet_change`] (fleet mode: a stored state applied) |
//! | `stsvend_kill_switch_changed_by` | `profile`, `replica` | [`record_kill_switch_origin`] (fleet mode: 1 for the replica behind the current state) |
//! | `stsvend_kill_switch_changed_at_seconds` | `profile` | [`record_kill_switch_origin`] |
//! | `stsvend_kill_switch_local_only` | `profile` | [`record_kill_switch_origin`] |
//! | `stsvend_fleet_store_up` | | [`record_fleet_store_up`] (fleet mode) |
//! | `stsvend_fleet_fallbacks_total` | `part` | [`record_fleet_fallback`] (fleet mode: `budget` or `rate_limit` decided locally) |
//! | `stsvend_log_lines_dropped_total` | | [`record_log_lines_dropped`], before each render, from the non-blocking log writer |
//! | `stsvend_tls_reloads_total` | `outcome` | `tls` (each reload of the certificate files: `ok` or `refused`) |
//! | `stsvend_connections_open` | `listener` | `server`, per connection opened and closed |
//! | `stsvend_connection_limit_reached_total` | `listener` | `server`, at the global cap |
//! | `stsvend_connections_evicted_total` | `listener` | `server`, closing the idlest at the cap |
//! | `stsvend_connections_refused_total` | `listener`, `reason` | `server` (`per_address`) |
//! | `stsvend_connections_closed_total` | `listener`, `reason` | `server` (`idle`, `max_age`, `write_stall`) |
//! | `stsvend_fleet_caller_tokens_total` | `profile`, `source` | `fleet::callers`, per local miss or renewal (`stored`, `fetched`, `local`) |
//! | `stsvend_fleet_shared_tokens_total` | `profile`, `source` | `fleet::shared`, per shared token published (`stored`, `fetched`, `local`) |
//! | `stsvend_login_exchanges_total` | `platform`, `outcome` | [`record_login_exchange`] (`login::wechat`, per call to the platform) |
//! | `stsvend_build_info` | `version`, `revision` | [`install`] (always 1) |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes`, `process_threads` | | [`Metrics::render`], read from `/proc` by `metrics-process` at each scrape |
//!
//! Labels are bounded: profile names come from the configuration, routes from the router's
//! patterns (never the raw path), STS error codes are checked against a charset and capped in
//! number. No user id, subject or address is ever a label.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the refresher brings the token expiry gauges up to date between publishes (the
/// countdown moves; the timestamp only when the token goes); well under a typical scrape
/// interval, so a scrape is never more than this stale.
pub const EXPIRY_GAUGE_EVERY: Duration = Duration::from_secs(5);

/// How often histogram samples are folded into their buckets when nobody scrapes. Without it,
/// an unscraped process would keep every sample in memory. The exporter keeps each request's
/// duration (8 bytes, in 512-byte blocks) until then: at 100,000 cached requests a second, 1 s
/// held about 0.8 MiB (and the allocator kept more), 0.1 s holds about 80 KiB, for ten short
/// wake-ups a second (peak RSS at 50 connections 11.4 → 9.3 MiB, README, "Round 4").
const UPKEEP_EVERY: Duration = Duration::from_millis(100);

/// Request latency buckets: a cached token takes well under a millisecond, a cold start waits
/// for STS (tens of milliseconds to seconds), the request deadline is 15 s.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];
/// STS latency buckets: STS answers in tens of milliseconds; the client gives up at 10 s.
const STS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many distinct STS error codes get their own label value; later ones are `other`. STS has
/// a few dozen codes, but the label must stay bounded whatever an endpoint answers.
const MAX_STS_CODES: usize = 64;
/// The longest STS error code or replica id kept as a label value (real codes are under 50
/// characters; replica ids are at most 64).
const MAX_LABEL_LEN: usize = 64;
/// How many distinct replicas get their own `stsvend_kill_switch_changed_by` series; later ones
/// are `other`. Kill-switch changes are rare, but pods get new names on every rollout.
const MAX_REPLICA_LABELS: usize = 32;

/// The git commit the binary was built from (build.rs), `unknown` outside a git checkout.
const REVISION: &str = match option_env!("STSVEND_GIT_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// A handle on the installed recorder; cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Metrics {
    /// The current values in the Prometheus text format (version 0.0.4). The process series
    /// are read just before, so they are as fresh as the scrape.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether [`install`] has run.
fn installed() -> bool {
    HANDLE.get().is_some()
}

/// Installs the global Prometheus recorder once and returns a handle to it. Idempotent: every
/// call returns a handle to the same recorder (tests in one process share it).
///
/// Call it before anything that records, in practice first thing in `main`: values recorded
/// before it are lost.
pub fn install() -> Metrics {
    let handle = HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("stsvend_http_request_duration_seconds".into()),
                HTTP_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("stsvend_sts_call_duration_seconds".into()),
                    STS_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only this function installs one; if something else did, our handle renders an
            // empty page rather than the process failing.
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        // A plain thread, so installing needs no async runtime and upkeep survives any runtime.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        describe();
        metrics_process::Collector::default().describe();
        record_build_info();
        handle
    });
    Metrics {
        handle: handle.clone(),
        process: metrics_process::Collector::default(),
    }
}

fn describe() {
    describe_fleet();
    describe_tokens();
    describe_counter!(
        "stsvend_http_requests_total",
        "HTTP requests answered by the public listener, by route pattern, profile and status"
    );
    describe_histogram!(
        "stsvend_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request on the public listener, by route pattern"
    );
    describe_counter!(
        "stsvend_sts_calls_total",
        "STS calls by action and outcome; code is STS's error code, or timeout, unreachable, malformed, too_large, or budget (stsvend's own budget refused the call, STS was not called)"
    );
    describe_histogram!(
        "stsvend_sts_call_duration_seconds",
        Unit::Seconds,
        "Time from sending an STS call to reading its answer, by action"
    );
    describe_counter!(
        "stsvend_rejections_total",
        "Token requests refused, by reason; check names the failed JWT check for reason=auth"
    );
    describe_counter!(
        "stsvend_report_mode_would_deny_total",
        "Requests report mode served that jwt mode would have refused, by failed check"
    );
    describe_gauge!(
        "stsvend_base_credentials_info",
        "1 for the source of the service's own credentials"
    );
    describe_counter!(
        "stsvend_base_credentials_refreshes_total",
        "Renewals of the service's own temporary credentials, by source and outcome"
    );
    describe_gauge!(
        "stsvend_profile_enabled",
        "1 while a profile vends tokens, 0 while the kill switch has it disabled"
    );
    describe_gauge!(
        "stsvend_connections_open",
        "Connections open on each listener (public, admin)"
    );
    describe_counter!(
        "stsvend_connection_limit_reached_total",
        "Times a listener reached its connection cap (STSVEND_MAX_CONNECTIONS for public) and had to close an idle connection or wait for one to close"
    );
    describe_counter!(
        "stsvend_connections_evicted_total",
        "Connections closed at the connection cap to make room, the one idle longest first"
    );
    describe_counter!(
        "stsvend_connections_refused_total",
        "Connections closed right after accept, by reason (per_address: the client address held STSVEND_MAX_CONNECTIONS_PER_ADDRESS)"
    );
    describe_counter!(
        "stsvend_connections_closed_total",
        "Connections closed by a connection timeout: idle (no request in flight), max_age, write_stall (the client stopped reading)"
    );
    describe_counter!(
        "stsvend_log_lines_dropped_total",
        "Log lines dropped because standard error could not keep up"
    );
    describe_counter!(
        "stsvend_login_exchanges_total",
        "Login codes sent to a platform (wechat, alipay) for exchange, by outcome: success, invalid_code, blocked, rate_limited, or why the platform could not be used (busy, error, timeout, unreachable, status, too_large, malformed)"
    );
    describe_counter!(
        "stsvend_tls_reloads_total",
        "Reloads of the TLS certificate files: ok (new handshakes get the new pair) or refused (unreadable, unparsable or a key that does not match the certificate; the previous pair stays)"
    );
}

/// The token caches' series.
fn describe_tokens() {
    describe_counter!(
        "stsvend_token_cache_total",
        "Tokens served from the cache (hit) or only after an STS call for this caller (miss)"
    );
    describe_gauge!(
        "stsvend_token_expiry_timestamp_seconds",
        Unit::Seconds,
        "Unix time at which the current shared token of each profile expires (0 when there is none)"
    );
    describe_gauge!(
        "stsvend_token_expiry_seconds",
        Unit::Seconds,
        "Deprecated (removed after 0.1; use stsvend_token_expiry_timestamp_seconds - time()): seconds until the current shared token of each profile expires (0 when there is none)"
    );
}

/// `stsvend_build_info`: which version and commit runs, as labels of a constant 1.
fn record_build_info() {
    describe_gauge!(
        "stsvend_build_info",
        "Always 1; the labels say which version and git revision (unknown: not built from a git checkout) is running"
    );
    gauge!("stsvend_build_info", "version" => env!("CARGO_PKG_VERSION"), "revision" => REVISION)
        .set(1.0);
}

/// The series only a fleet replica records.
fn describe_fleet() {
    describe_counter!(
        "stsvend_fleet_fallbacks_total",
        "Fleet mode only: decisions this replica took alone because the fleet store did not answer in time, by part (budget: an AssumeRole granted or refused by the local share of the budget; rate_limit: a request checked by the local rate limiter)"
    );
    describe_gauge!(
        "stsvend_fleet_store_up",
        "Fleet mode only: 1 while the fleet store (Redis) answers, 0 while this replica falls back to local behaviour"
    );
    describe_counter!(
        "stsvend_kill_switch_fleet_changes_total",
        "Fleet mode only: kill-switch changes this replica applied from the state stored in the fleet (at start-up, a change made on another replica, or the stored state replacing a change made only here while Redis was gone), by profile and new state (enabled, disabled)"
    );
    describe_gauge!(
        "stsvend_kill_switch_changed_by",
        "Fleet mode only: 1 for the replica whose change the profile's current kill-switch state comes from, 0 for replicas that changed it before"
    );
    describe_gauge!(
        "stsvend_kill_switch_changed_at_seconds",
        Unit::Seconds,
        "Fleet mode only: Unix time of the change the profile's current kill-switch state comes from (0: never switched)"
    );
    describe_gauge!(
        "stsvend_kill_switch_local_only",
        "Fleet mode only: 1 while the profile's kill-switch state is a change made on this replica that the fleet store did not take (the stored state replaces it when Redis answers again)"
    );
    describe_counter!(
        "stsvend_fleet_caller_tokens_total",
        "Fleet mode only: caller tokens this replica's local cache did not hold, by where they came from: stored (another replica's, from Redis), fetched (from STS under the fleet-wide lock) or local (from STS without the fleet: Redis down or slow, or the wait for another replica ran out)"
    );
    describe_counter!(
        "stsvend_fleet_shared_tokens_total",
        "Fleet mode only: shared (per-profile) tokens this replica published, by where they came from: stored (the lease holder's, from Redis), fetched (from STS as the lease holder, then stored) or local (from STS without the fleet: Redis down or slow, or no servable token from the holder)"
    );
}

/// Sets `stsvend_log_lines_dropped_total` to the log writer's running count. The binary calls it
/// just before each render: metrics sits below telemetry and does not ask it.
pub fn record_log_lines_dropped(total: u64) {
    counter!("stsvend_log_lines_dropped_total").absolute(total);
}

/// The per-thread caches of metric handles, by route or profile name. Those names come from the
/// configuration and the router, never from a client, so a fast hash will do (SipHash, the
/// default, was 200 instructions a lookup, two lookups a request).
type LabelMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Counts and times one request of the public router by its route pattern (`None`: no route
/// matched, `route="unmatched"`) and the profile the route serves (`""` for none), which is
/// asked for only when a route's handles are made; called by [`crate::http::edge`].
///
/// Handles are looked up once per thread, route and status, then reused: building the labelled
/// key and finding it in the registry on every request cost more than the rest of this function.
pub fn record_request<'p>(
    route: Option<&str>,
    profile: impl FnOnce() -> &'p str,
    status: u16,
    elapsed: Duration,
) {
    type Handles = (u16, Histogram, Counter);
    thread_local! {
        static HANDLES: RefCell<LabelMap<Vec<Handles>>> = RefCell::new(LabelMap::default());
    }
    let route = route.unwrap_or("unmatched");
    let record = |(_, histogram, counter): &Handles| {
        histogram.record(elapsed.as_secs_f64());
        counter.increment(1);
    };
    let make = || {
        let profile = profile();
        (
            status,
            histogram!("stsvend_http_request_duration_seconds", "route" => route.to_owned()),
            counter!(
                "stsvend_http_requests_total",
                "route" => route.to_owned(),
                "profile" => profile.to_owned(),
                "status" => status_label(status),
            ),
        )
    };
    // Handles made before the recorder exists would count nowhere forever: only cache real ones.
    if !installed() {
        record(&make());
        return;
    }
    HANDLES.with_borrow_mut(|cache| {
        if let Some(handles) = cache
            .get(route)
            .and_then(|by_status| by_status.iter().find(|h| h.0 == status))
        {
            record(handles);
            return;
        }
        // Route patterns and statuses are small fixed sets; the bound is only a safety net.
        if cache.len() > 256 {
            cache.clear();
        }
        let handles = make();
        record(&handles);
        cache.entry(route.into()).or_default().push(handles);
    });
}

/// The status as a label, without allocating for the statuses this service answers.
fn status_label(status: u16) -> metrics::SharedString {
    let fixed = match status {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return other.to_string().into(),
    };
    fixed.into()
}

/// How one STS call ended, for `stsvend_sts_calls_total`.
#[derive(Debug, Clone, Copy)]
pub enum StsOutcome<'a> {
    Success,
    /// STS answered with this error code.
    Api(&'a str),
    /// Anything else; a fixed word such as `timeout`.
    Other(&'static str),
}

/// One STS call: its outcome and, when it was sent, how long it took.
pub fn record_sts_call(action: &'static str, outcome: StsOutcome<'_>, took: Option<Duration>) {
    let (outcome, code): (&'static str, metrics::SharedString) = match outcome {
        StsOutcome::Success => ("success", "".into()),
        StsOutcome::Api(code) => ("error", sts_code_label(code)),
        StsOutcome::Other(word) => ("error", word.into()),
    };
    counter!("stsvend_sts_calls_total", "action" => action, "outcome" => outcome, "code" => code)
        .increment(1);
    if let Some(took) = took {
        histogram!("stsvend_sts_call_duration_seconds", "action" => action)
            .record(took.as_secs_f64());
    }
}

/// An STS error code as a label value: kept when it looks like one (`Throttling.User`,
/// `EntityNotExist.Role`) and fewer than [`MAX_STS_CODES`] distinct codes have been seen,
/// `invalid` when it does not look like a code, `other` past the cap.
fn sts_code_label(code: &str) -> metrics::SharedString {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    sts_code_label_among(seen.get_or_insert_with(HashSet::new), code)
}

/// [`sts_code_label`] given the codes seen so far.
fn sts_code_label_among(seen: &mut HashSet<String>, code: &str) -> metrics::SharedString {
    bounded_label(seen, code, MAX_STS_CODES, b"._-")
}

/// `value` as a label value when it is 1 to [`MAX_LABEL_LEN`] ASCII letters, digits or `extra`
/// and fewer than `max_values` distinct values have been seen; `invalid` when it does not look
/// like one, `other` past the cap.
fn bounded_label(
    seen: &mut HashSet<String>,
    value: &str,
    max_values: usize,
    extra: &[u8],
) -> metrics::SharedString {
    let fits = !value.is_empty()
        && value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if !fits {
        return "invalid".into();
    }
    if seen.contains(value) || seen.len() < max_values {
        seen.insert(value.to_owned());
        value.to_owned().into()
    } else {
        "other".into()
    }
}

/// Whether a token was served from a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
}

pub fn record_token_cache(profile: &str, result: CacheResult) {
    thread_local! {
        static HANDLES: RefCell<LabelMap<[Option<Counter>; 2]>> =
            RefCell::new(LabelMap::default());
    }
    let (index, label) = match result {
        CacheResult::Hit => (0, "hit"),
        CacheResult::Miss => (1, "miss"),
    };
    let make = || counter!("stsvend_token_cache_total", "profile" => profile.to_owned(), "result" => label);
    // As in `record_request`: one lookup per thread, profile and result.
    if !installed() {
        make().increment(1);
        return;
    }
    HANDLES.with_borrow_mut(|cache| {
        if let Some(counter) = cache
            .get(profile)
            .and_then(|by_result| by_result[index].as_ref())
        {
            counter.increment(1);
            return;
        }
        if cache.len() > 256 {
            cache.clear();
        }
        let counter = make();
        counter.increment(1);
        cache.entry(profile.into()).or_default()[index] = Some(counter);
    });
}

/// When `profile`'s published shared token expires (`None`: there is none), seen at `now`:
/// `stsvend_token_expiry_timestamp_seconds` is the expiry as Unix time (0 without a token), the
/// deprecated `stsvend_token_expiry_seconds` the time left (never negative).
pub fn record_token_expiry(profile: &str, expiration: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    let at = expiration.map_or(0.0, |at| at.timestamp_millis() as f64 / 1000.0);
    let left = expiration.map_or(0.0, |at| (at - now).num_milliseconds() as f64 / 1000.0);
    gauge!("stsvend_token_expiry_timestamp_seconds", "profile" => profile.to_owned()).set(at);
    gauge!("stsvend_token_expiry_seconds", "profile" => profile.to_owned()).set(left.max(0.0));
}

/// A refused token request. `reason` is a fixed word (`rate_limit_ip`, `auth`, …); `check` is
/// the failed JWT check's code for `auth`, empty otherwise.
pub fn record_rejection(profile: &str, reason: &'static str, check: &'static str) {
    counter!(
        "stsvend_rejections_total",
        "profile" => profile.to_owned(),
        "reason" => reason,
        "check" => check,
    )
    .increment(1);
}

/// A request report mode served that `jwt` mode would have refused for failing `check`.
pub fn record_would_deny(profile: &str, check: &'static str) {
    counter!(
        "stsvend_report_mode_would_deny_total",
        "profile" => profile.to_owned(),
        "check" => check,
    )
    .increment(1);
}

/// The source the credential chain chose for the service's own credentials.
pub fn record_base_credentials_source(source: &'static str) {
    gauge!("stsvend_base_credentials_info", "source" => source).set(1.0);
}

/// One renewal of the service's own temporary credentials.
pub fn record_base_credentials_refresh(source: &'static str, success: bool) {
    let outcome = if success { "success" } else { "error" };
    counter!("stsvend_base_credentials_refreshes_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

/// Whether `profile` vends tokens (the kill switch); call it at start-up for every profile and
/// on every change.
pub fn record_profile_enabled(profile: &str, enabled: bool) {
    gauge!("stsvend_profile_enabled", "profile" => profile.to_owned()).set(if enabled {
        1.0
    } else {
        0.0
    });
}

/// Fleet mode: the kill switch of `profile` changed to `enabled` because of the fleet's stored
/// state (not this replica's admin API).
pub fn record_kill_switch_fleet_change(profile: &str, enabled: bool) {
    let state = if enabled { "enabled" } else { "disabled" };
    counter!("stsvend_kill_switch_fleet_changes_total", "profile" => profile.to_owned(), "state" => state)
        .increment(1);
}

/// Fleet mode: what `profile`'s kill-switch state comes from: the replica that changed it and
/// when (Unix seconds), `None` when never switched, and whether the change is local only.
pub fn record_kill_switch_origin(profile: &str, changed: Option<(&str, f64)>, local_only: bool) {
    // The replica whose series reads 1, per profile: a new one turns the previous one to 0.
    static CURRENT: Mutex<Option<HashMap<String, metrics::SharedString>>> = Mutex::new(None);
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let label = changed.map(|(replica, _)| {
        let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
        bounded_label(
            seen.get_or_insert_with(HashSet::new),
            replica,
            MAX_REPLICA_LABELS,
            b"._:-",
        )
    });
    let by = |replica: metrics::SharedString| gauge!("stsvend_kill_switch_changed_by", "profile" => profile.to_owned(), "replica" => replica);
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    let current = current.get_or_insert_with(HashMap::new);
    let previous = match &label {
        Some(label) => current.insert(profile.to_owned(), label.clone()),
        None => current.remove(profile),
    };
    if let Some(previous) = previous.filter(|previous| Some(previous) != label.as_ref()) {
        by(previous).set(0.0);
    }
    if let Some(label) = label {
        by(label).set(1.0);
    }
    gauge!("stsvend_kill_switch_changed_at_seconds", "profile" => profile.to_owned())
        .set(changed.map_or(0.0, |(_, at)| at));
    gauge!("stsvend_kill_switch_local_only", "profile" => profile.to_owned()).set(if local_only {
        1.0
    } else {
        0.0
    });
}

/// Whether the fleet store answers (fleet mode only); set at start-up and on every change.
pub fn record_fleet_store_up(up: bool) {
    gauge!("stsvend_fleet_store_up").set(if up { 1.0 } else { 0.0 });
}

/// Where a caller token the local cache did not hold came from, in fleet mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetTokenSource {
    /// Another replica stored it.
    Stored,
    /// Fetched from STS under the fleet-wide lock, and stored.
    Fetched,
    /// Fetched from STS without the fleet (the store is down or slow, or the wait ran out).
    Local,
}

impl FleetTokenSource {
    fn label(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Fetched => "fetched",
            Self::Local => "local",
        }
    }
}

/// One caller token in fleet mode that the local cache did not hold.
pub fn record_fleet_caller_token(profile: &str, source: FleetTokenSource) {
    counter!("stsvend_fleet_caller_tokens_total", "profile" => profile.to_owned(), "source" => source.label())
        .increment(1);
}

/// One shared token a fleet replica published: stored by the lease holder, fetched as the
/// holder, or fetched alone.
pub fn record_fleet_shared_token(profile: &str, source: FleetTokenSource) {
    counter!("stsvend_fleet_shared_tokens_total", "profile" => profile.to_owned(), "source" => source.label())
        .increment(1);
}

/// Fleet mode: `part` (`budget` or `rate_limit`) was decided locally because the fleet store
/// did not answer.
pub fn record_fleet_fallback(part: &'static str) {
    counter!("stsvend_fleet_fallbacks_total", "part" => part).increment(1);
}

/// One login code sent to `platform` (`wechat`, `alipay`) for exchange; `outcome` is a fixed
/// word (`success`, `invalid_code`, `timeout`, …), never anything the platform sent.
pub fn record_login_exchange(platform: &'static str, outcome: &'static str) {
    counter!("stsvend_login_exchanges_total", "platform" => platform, "outcome" => outcome)
        .increment(1);
}

/// The count of open connections on `listener`; the server increments it per connection
/// accepted and decrements it when the connection ends.
pub fn open_connections(listener: &'static str) -> Gauge {
    gauge!("stsvend_connections_open", "listener" => listener)
}

/// `listener` has reached its connection cap and waits for a connection to close.
pub fn record_connection_cap_reached(listener: &'static str) {
    counter!("stsvend_connection_limit_reached_total", "listener" => listener).increment(1);
}

/// One reload of the TLS certificate files: swapped in, or refused and the previous pair kept.
pub fn record_tls_reload(ok: bool) {
    let outcome = if ok { "ok" } else { "refused" };
    counter!("stsvend_tls_reloads_total", "outcome" => outcome).increment(1);
}

/// Connections `listener` closed at its cap to make room.
pub fn connections_evicted(listener: &'static str) -> Counter {
    counter!("stsvend_connections_evicted_total", "listener" => listener)
}

/// Connections `listener` closed right after accept; `reason` is a fixed word (`per_address`).
pub fn connections_refused(listener: &'static str, reason: &'static str) -> Counter {
    counter!("stsvend_connections_refused_total", "listener" => listener, "reason" => reason)
}

/// Connections `listener` closed for `reason` (`idle`, `max_age`, `write_stall`).
pub fn connections_closed(listener: &'static str, reason: &'static str) -> Counter {
    counter!("stsvend_connections_closed_total", "listener" => listener, "reason" => reason)
}

/// One configuration reload (issue 17): `result` is `applied`, `refused` or `unchanged`. The
/// last-outcome gauges follow applied and refused ones (an unchanged file says nothing new);
/// `at_unix_seconds` is when it was applied, passed in by the caller.
pub fn record_config_reload(result: &'static str, at_unix_seconds: f64) {
    describe_config_reload();
    counter!("stsvend_config_reloads_total", "result" => result).increment(1);
    match result {
        "applied" => {
            gauge!("stsvend_config_last_reload_successful").set(1.0);
            gauge!("stsvend_config_last_reload_success_timestamp_seconds").set(at_unix_seconds);
        }
        "refused" => gauge!("stsvend_config_last_reload_successful").set(0.0),
        _ => {}
    }
}

/// At start-up: the running configuration is a good one, read at `at_unix_seconds`.
pub fn record_config_loaded(at_unix_seconds: f64) {
    describe_config_reload();
    gauge!("stsvend_config_last_reload_successful").set(1.0);
    gauge!("stsvend_config_last_reload_success_timestamp_seconds").set(at_unix_seconds);
}

/// Described at each use: reloads are rare, and a description given before the recorder is
/// installed would be lost.
fn describe_config_reload() {
    describe_counter!(
        "stsvend_config_reloads_total",
        "Configuration reloads (SIGHUP, POST /admin/reload, the file watcher), by result: applied, refused (invalid; the running configuration stays), unchanged"
    );
    describe_gauge!(
        "stsvend_config_last_reload_successful",
        "1 when the last configuration read (start-up or reload) was applied, 0 when it was refused"
    );
    describe_gauge!(
        "stsvend_config_last_reload_success_timestamp_seconds",
        Unit::Seconds,
        "When the running configuration was applied (start-up or the last applied reload), Unix time"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_codes_are_kept_only_when_they_look_like_codes() {
        let mut seen = HashSet::new();
        let mut label = |code: &str| sts_code_label_among(&mut seen, code).to_string();
        assert_eq!(label("Throttling.User"), "Throttling.User");
        assert_eq!(label("EntityNotExist.Role"), "EntityNotExist.Role");
        assert_eq!(label("<script>"), "invalid");
        assert_eq!(label(""), "invalid");
        assert_eq!(label(&"A".repeat(65)), "invalid");
        assert_eq!(&*status_label(200), "200");
        assert_eq!(&*status_label(418), "418");
    }

    #[test]
    fn distinct_sts_codes_are_capped() {
        let mut seen = HashSet::new();
        let labels: Vec<String> = (0..MAX_STS_CODES * 2)
            .map(|n| sts_code_label_among(&mut seen, &format!("Made.Up{n}")).to_string())
            .collect();
        assert_eq!(
            labels.iter().filter(|l| *l == "other").count(),
            MAX_STS_CODES
        );
        // A code seen before the cap keeps its own label.
        assert_eq!(labels[0], "Made.Up0");
        assert_eq!(&*sts_code_label_among(&mut seen, "Made.Up0"), "Made.Up0");
    }
}
