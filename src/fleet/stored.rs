//! A token as it is sealed in Redis, for per-caller tokens and the shared per-profile token
//! alike: the response body and the facts the audit log and the schedule need. Times are
//! wall-clock milliseconds, since each replica has its own monotonic clock.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::tokens::Token;
use crate::tokens::keeper::Fresh;

#[derive(Serialize, Deserialize)]
struct Stored {
    body: String,
    key_id_prefix: String,
    expiration_ms: i64,
    serve_until_ms: i64,
    refresh_at_ms: i64,
    stored_at_ms: i64,
    role_session_name: String,
    sts_request_id: Option<String>,
}

/// A token read back: when it was stored, and the token with its schedule on this replica.
pub(crate) struct Restored {
    pub(crate) stored_at: DateTime<Utc>,
    pub(crate) fresh: Fresh<Arc<Token>>,
}

/// `at`, a tokio deadline, as wall time, given that it is `now`.
pub(crate) fn wall(at: Instant, now: DateTime<Utc>) -> DateTime<Utc> {
    let left = at.saturating_duration_since(Instant::now());
    now + chrono::Duration::from_std(left).unwrap_or_default()
}

/// The plaintext to seal for `token`, servable until `serve_until` and due at `refresh_at`,
/// written `now`; `None` for a body that is not UTF-8 (never the case for STS's JSON, but not
/// stored rather than mangled).
pub(crate) fn plaintext(
    token: &Token,
    serve_until: Instant,
    refresh_at: Instant,
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let stored = Stored {
        body: std::str::from_utf8(&token.body).ok()?.to_owned(),
        key_id_prefix: token.key_id_prefix.clone(),
        expiration_ms: token.expiration.timestamp_millis(),
        serve_until_ms: wall(serve_until, now).timestamp_millis(),
        refresh_at_ms: wall(refresh_at, now).timestamp_millis(),
        stored_at_ms: now.timestamp_millis(),
        role_session_name: token.role_session_name.clone(),
        sts_request_id: token.sts_request_id.clone(),
    };
    serde_json::to_vec(&stored).ok()
}

/// The token in `plaintext`, scheduled on `clock`; `None` when it does not parse.
pub(crate) fn restore(plaintext: &[u8], clock: &Clock) -> Option<Restored> {
    let stored: Stored = serde_json::from_slice(plaintext).ok()?;
    let at = DateTime::<Utc>::from_timestamp_millis;
    let serve_until = clock.deadline(at(stored.serve_until_ms)?);
    let token = Token::restored(
        Bytes::from(stored.body),
        stored.key_id_prefix,
        at(stored.expiration_ms)?,
        serve_until,
        stored.role_session_name,
        stored.sts_request_id,
    );
    Some(Restored {
        stored_at: at(stored.stored_at_ms)?,
        fresh: Fresh {
            value: Arc::new(token),
            serve_until,
            refresh_at: clock.deadline(at(stored.refresh_at_ms)?),
        },
    })
}
