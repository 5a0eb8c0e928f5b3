//! Verifications remembered: a JWT verified once is not verified again while it stays valid.
//!
//! An RS256 signature check costs about 120 µs of CPU; a hash of the token costs a few. Per-user
//! callers present the same token on every request until it expires, so the verifier remembers
//! what verification produced, keyed by the SHA-256 of the whole token string:
//! - the cache never holds a bearer credential, only its hash;
//! - a token that differs anywhere (the same claims under another signature included) is
//!   another key, and is verified in full;
//! - only successes are remembered, so a refusal is never served from here as a success;
//! - an entry stands only while the token's own window holds at the request's time, checked by
//!   the same [`Validity::check`] (same leeway) as a full verification;
//! - an entry checked with a key from the JWKS URL remembers the key set's generation; once the
//!   keys are refetched (rotation, a withdrawn key) it is retired and the token verified again.
//!   The secret and the JWKS file never change for a verifier's life: a configuration reload
//!   builds a new verifier, whose cache starts empty ([`super::JwtVerifier::forget_verified`]
//!   empties one in place);
//! - memory is bounded by weight ([`VERIFIED_CACHE_BYTES`]); an entry read
//!   [`MAX_VERIFIED_LIFETIME`] after it was made is dropped and the token verified in full, and
//!   one never read again is evicted by the bound. Until then an expired token's entry answers
//!   with the refusal a full verification would give ([`Verified::decide`]).
//!
//! Whether an entry stands ([`Verified::decide`]) is pure: the caller passes the time and the
//! key set's current generation.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::claims::{Claims, Validity};
use super::error::JwtError;
use super::limits::{MAX_VERIFIED_LIFETIME, VERIFIED_ENTRY_BYTES};

/// The cache key: SHA-256 of the whole token string.
pub(super) type TokenHash = [u8; 32];

pub(super) fn hash(token: impl AsRef<[u8]>) -> TokenHash {
    Sha256::digest(token.as_ref()).into()
}

/// What verifying one token produced, and what keeps that result standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verified {
    /// Shared with every request the entry serves: a hit clones the `Arc`, not the strings.
    pub(super) claims: Arc<Claims>,
    pub(super) validity: Validity,
    /// The generation of the JWKS URL's key set the signature was checked with; `None` when it
    /// was checked with the configured secret or the JWKS file.
    pub(super) remote_generation: Option<u64>,
}

/// What a remembered verification says at a given time.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Still valid: these are the token's claims.
    Serve(Arc<Claims>),
    /// The token's window does not hold now: the refusal a full verification would give.
    Refuse(JwtError),
    /// Checked with keys the verifier no longer uses: verify the token again.
    Stale,
}

impl Verified {
    /// Whether this verification stands at `now` (seconds since the epoch), given the JWKS
    /// URL's current key set generation (`None` when the verifier has no URL or no keys).
    ///
    /// The key check comes first, as in a full verification (key, then signature, then
    /// claims): with unchanged keys the same token verifies the same way, so the time check
    /// alone then decides, with the leeway `claims.rs` applies.
    pub(super) fn decide(&self, now: i64, current_generation: Option<u64>) -> Decision {
        if self
            .remote_generation
            .is_some_and(|generation| Some(generation) != current_generation)
        {
            return Decision::Stale;
        }
        match self.validity.check(now) {
            Ok(()) => Decision::Serve(self.claims.clone()),
            Err(error) => Decision::Refuse(error),
        }
    }

    /// How long, from `now`, the entry is worth keeping in memory: until its token expires, at
    /// most [`MAX_VERIFIED_LIFETIME`]. `None` when it has expired already.
    pub(super) fn lifetime(&self, now: i64) -> Option<Duration> {
        let left = self.validity.expires_at().saturating_sub(now);
        let left = u64::try_from(left).ok().filter(|&seconds| seconds > 0)?;
        Some(Duration::from_secs(left).min(MAX_VERIFIED_LIFETIME))
    }

    /// The entry's weight for the bound: fixed overhead plus the strings it holds.
    fn weight(&self) -> u32 {
        u32::try_from(VERIFIED_ENTRY_BYTES + self.claims.text_len()).unwrap_or(u32::MAX)
    }
}

/// A remembered verification and until when it is worth keeping. Held in the cache by value,
/// not behind another `Arc`: a hit clones the claims' `Arc` and copies the rest, one pointer
/// fewer to chase through memory per request.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) verified: Verified,
    /// Seconds since the epoch, [`MAX_VERIFIED_LIFETIME`] after insertion: from then on the
    /// entry is dropped when read, and the token verified in full.
    keep_until: i64,
}

impl Entry {
    /// Whether the entry is still worth serving from at `now`; checked on read, since the cache
    /// itself keeps no clock (its byte bound evicts what is never read again).
    fn is_kept(&self, now: i64) -> bool {
        now < self.keep_until
    }
}

/// Weighs an entry by [`Verified::weight`].
#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<TokenHash, Entry> for ByWeight {
    fn weight(&self, _key: &TokenHash, entry: &Entry) -> u64 {
        u64::from(entry.verified.weight())
    }
}

/// Verifications remembered by one verifier, bounded in memory.
///
/// A `quick_cache` rather than moka: a read is a shard's read lock and a hash probe, with no
/// expiry wheel or access log to feed, and an entry costs less memory; it was the largest part
/// of a cached per-user request's cost besides the token cache (README, Performance).
pub(super) struct VerifiedCache {
    entries: quick_cache::sync::Cache<TokenHash, Entry, ByWeight>,
}

impl VerifiedCache {
    /// A cache whose entries weigh at most `max_bytes` in all (by [`Verified`]'s weigher).
    pub(super) fn new(max_bytes: u64) -> Self {
        let estimated = max_bytes / VERIFIED_ENTRY_BYTES as u64;
        let entries = quick_cache::sync::Cache::with_weighter(
            usize::try_from(estimated).unwrap_or(usize::MAX),
            max_bytes,
            ByWeight,
        );
        Self { entries }
    }

    /// The entry for `key` while it is kept at `now`; one past its time is dropped.
    pub(super) fn get(&self, key: &TokenHash, now: i64) -> Option<Entry> {
        let entry = self.entries.get(key)?;
        if entry.is_kept(now) {
            return Some(entry);
        }
        // Unless a verification made meanwhile replaced it.
        self.entries.remove_if(key, |current| {
            Arc::ptr_eq(&current.verified.claims, &entry.verified.claims)
        });
        None
    }

    /// Remembers a successful verification made at `now`; one that has already expired is not
    /// worth an entry.
    pub(super) fn insert(&self, key: TokenHash, verified: Verified, now: i64) {
        if verified.lifetime(now).is_some() {
            let lifetime = i64::try_from(MAX_VERIFIED_LIFETIME.as_secs()).unwrap_or(i64::MAX);
            let keep_until = now.saturating_add(lifetime);
            let entry = Entry {
                verified,
                keep_until,
            };
            self.entries.insert(key, entry);
        }
    }

    pub(super) fn remove(&self, key: &TokenHash) {
        self.entries.remove(key);
    }

    pub(super) fn clear(&self) {
        self.entries.clear();
    }

    /// Entries and their total weight (for tests).
    #[cfg(test)]
    pub(super) fn size(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.entries.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::LEEWAY_SECONDS;

    const T: i64 = 1_796_000_000;

    fn entry(exp: i64, nbf: Option<i64>, remote_generation: Option<u64>) -> Verified {
        Verified {
            claims: Arc::new(Claims::new("user-42".to_owned(), None)),
            validity: Validity { exp, nbf },
            remote_generation,
        }
    }

    fn serve() -> Decision {
        Decision::Serve(Arc::new(Claims::new("user-42".to_owned(), None)))
    }

    #[test]
    fn an_entry_stands_within_its_window_with_the_leeway() {
        let cases = [
            ("well within", entry(T + 600, None, None), T, serve()),
            (
                "last second before exp + leeway",
                entry(T, None, None),
                T + LEEWAY_SECONDS - 1,
                serve(),
            ),
            (
                "at exp + leeway",
                entry(T, None, None),
                T + LEEWAY_SECONDS,
                Decision::Refuse(JwtError::Expired),
            ),
            (
                "at nbf - leeway",
                entry(T + 600, Some(T + 100), None),
                T + 100 - LEEWAY_SECONDS,
                serve(),
            ),
            (
                "a second before nbf - leeway",
                entry(T + 600, Some(T + 100), None),
                T + 100 - LEEWAY_SECONDS - 1,
                Decision::Refuse(JwtError::NotYetValid),
            ),
            (
                "exp at the end of time",
                entry(i64::MAX, None, None),
                T,
                serve(),
            ),
        ];
        for (what, entry, now, expected) in cases {
            assert_eq!(entry.decide(now, None), expected, "{what}");
        }
    }

    #[test]
    fn an_entry_from_the_jwks_url_stands_only_with_the_same_key_set() {
        let remote = entry(T + 600, None, Some(3));
        assert_eq!(remote.decide(T, Some(3)), serve());
        assert_eq!(remote.decide(T, Some(4)), Decision::Stale);
        assert_eq!(remote.decide(T, None), Decision::Stale);
        // Stale wins over expired: the keys decide first, as in a full verification.
        assert_eq!(remote.decide(T + 10_000, Some(4)), Decision::Stale);
        // Checked with the secret or the file: the URL's key set is irrelevant.
        let local = entry(T + 600, None, None);
        assert_eq!(local.decide(T, Some(7)), serve());
    }

    #[test]
    fn an_entry_lives_until_its_token_expires_at_most_an_hour() {
        let hour = MAX_VERIFIED_LIFETIME;
        let cases = [
            (
                T + 600,
                T,
                Some(Duration::from_secs(600 + LEEWAY_SECONDS as u64)),
            ),
            (T + 7200, T, Some(hour)),
            (i64::MAX, T, Some(hour)),
            (T, T + LEEWAY_SECONDS - 1, Some(Duration::from_secs(1))),
            (T, T + LEEWAY_SECONDS, None),
            (i64::MIN, T, None),
        ];
        for (exp, now, expected) in cases {
            assert_eq!(
                entry(exp, None, None).lifetime(now),
                expected,
                "exp {exp}, now {now}"
            );
        }
    }

    #[test]
    fn an_entry_read_past_its_time_is_dropped() {
        let cache = VerifiedCache::new(1024 * 1024);
        let key = hash("a.b.c");
        // Lives two hours: kept for the first hour only.
        cache.insert(key, entry(T + 7200, None, None), T);
        let hour = MAX_VERIFIED_LIFETIME.as_secs() as i64;
        assert!(cache.get(&key, T + hour - 1).is_some());
        assert!(cache.get(&key, T + hour).is_none());
        assert_eq!(cache.size().0, 0, "dropped, not only hidden");
        // Expired: still read, to refuse it as a full verification would.
        cache.insert(key, entry(T + 600, None, None), T);
        let expired = cache.get(&key, T + 600 + LEEWAY_SECONDS).unwrap();
        assert_eq!(
            expired.verified.decide(T + 600 + LEEWAY_SECONDS, None),
            Decision::Refuse(JwtError::Expired)
        );
    }

    #[test]
    fn the_key_is_the_sha256_of_the_whole_token() {
        // FIPS 180-2 test vector: SHA-256("abc").
        assert_eq!(
            hash("abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256, not some other hash"
        );
        assert_ne!(hash("a.b.c"), hash("a.b.d"));
    }
}
