//! The numbers JWT verification works with: size caps, clock leeway, JWKS fetch intervals and
//! timeouts. Here rather than in `mod.rs` so that the files `mod.rs` imports can use them without
//! an import loop.

use std::time::Duration;

/// How far `exp` and `nbf` may be off, to absorb clock skew between the issuer and us.
pub const LEEWAY_SECONDS: i64 = 30;
/// Longer tokens are refused before any parsing. Real ones are well under 2 KiB; the cap keeps
/// base64 and JSON work per request small.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest HMAC secret we accept: 256 bits, the output size of SHA-256 (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// An unknown `kid` refetches the JWKS URL at most this often.
pub const JWKS_REFETCH_INTERVAL_SECONDS: i64 = 60;
/// While no keys have ever been fetched, a failed fetch is retried this soon: every request is
/// failing meanwhile, so waiting a whole refetch interval would be a minute-long outage.
pub(super) const JWKS_RETRY_WITHOUT_KEYS_SECONDS: i64 = 5;
/// Cached JWKS keys older than this are refetched on next use (failures keep the old keys).
pub const JWKS_MAX_AGE_SECONDS: i64 = 15 * 60;
/// The most of a JWKS response we read. A JWKS with a handful of RSA keys is a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A key server is on the request path of the first request, so it must answer quickly.
pub(super) const JWKS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// RSA keys below this size are ignored (NIST SP 800-57 retired 1024-bit RSA years ago).
pub(super) const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Memory, by the cache's weigher, each verifier may spend remembering verified tokens. An
/// entry weighs [`VERIFIED_ENTRY_BYTES`] plus its strings: about 22 000 callers with
/// short subjects, a little more than the per-caller token cache's default holds. Past the
/// bound, quick_cache evicts (and may decline to admit) entries; those tokens are verified again.
pub const VERIFIED_CACHE_BYTES: u64 = 12 * 1024 * 1024;
/// What one remembered verification holds besides its strings (`sub`, `iss`, the session
/// name derived from them): the 32-byte hash key, the `Arc`'d entry and claims, the caller id,
/// and the cache's bookkeeping. Measured with moka (less with
/// quick_cache, so the bound errs towards fewer entries): 544–550 bytes of resident
/// memory per entry with a 17-byte subject, at 20 000 and at 100 000 entries (a program
/// filling a moka 0.12.16 cache of the same types and reading `VmRSS`).
pub(super) const VERIFIED_ENTRY_BYTES: usize = 528;
/// A verification is remembered at most this long, even for a token that lives longer, so an
/// idle entry does not sit in memory for days.
pub const MAX_VERIFIED_LIFETIME: Duration = Duration::from_secs(60 * 60);
