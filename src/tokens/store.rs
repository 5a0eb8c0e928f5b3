//! The one interface the HTTP layer asks for tokens through: [`Tokens`], "a servable token for
//! this key, fetching at most once". The shared per-profile token
//! ([`crate::tokens::shared::SharedToken`]) and the per-caller cache
//! ([`crate::tokens::callers::CallerTokens`]) both implement it; a store shared between replicas
//! can implement it too, and the handler does not change.
//!
//! The trait is object-safe (the HTTP state holds `Arc<dyn Tokens>`), so its futures are boxed:
//! one small allocation per request that must wait; a token already held is answered by
//! [`Tokens::held`] without one.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::token::Token;
use crate::auth::subject::CallerId;
use crate::sts::FailureClass;

/// Whom a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey {
    /// The exact (issuer, subject) of a JWT caller.
    pub caller: Option<CallerId>,
    /// The `RoleSessionName` derived from the JWT subject; shared with the verified claims.
    pub session_name: Option<Arc<str>>,
    /// The caller's address (an IPv6 caller's prefix), when the profile binds tokens to it;
    /// the token's policy allows exactly this network.
    pub ip: Option<IpNet>,
}

impl CallerKey {
    /// The key as a lookup borrows it.
    pub fn borrowed(&self) -> CallerKeyRef<'_> {
        CallerKeyRef {
            caller: self.caller,
            session_name: self.session_name.as_ref(),
            ip: self.ip,
        }
    }
}

/// A caller's session name follows from their id, so it is hashed only without one: a lookup
/// need not hash its text again. Equal keys still hash alike, as `Eq` requires.
impl Hash for CallerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

/// A [`CallerKey`] borrowed from the caller's claims: what a cache hit looks up. Owning the
/// session name would clone its `Arc` for every request, two atomic writes to a cache line the
/// hit has no other reason to touch.
#[derive(Debug, Clone, Copy)]
pub struct CallerKeyRef<'a> {
    pub caller: Option<CallerId>,
    pub session_name: Option<&'a Arc<str>>,
    pub ip: Option<IpNet>,
}

impl CallerKeyRef<'_> {
    /// The key to keep: for a fetch, a renewal, an entry.
    pub fn to_owned(self) -> CallerKey {
        CallerKey {
            caller: self.caller,
            session_name: self.session_name.cloned(),
            ip: self.ip,
        }
    }
}

/// [`CallerKey`]'s hash, which the borrowed key must share to find its entry.
impl Hash for CallerKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.caller {
            Some(caller) => caller.hash(state),
            None => self.session_name.hash(state),
        }
        self.ip.hash(state);
    }
}

/// Equal exactly when [`CallerKey`]'s `Eq` would be; the session name a hit carries is most
/// often the entry's own `Arc`, compared by address before by text.
impl quick_cache::Equivalent<CallerKey> for CallerKeyRef<'_> {
    fn equivalent(&self, key: &CallerKey) -> bool {
        let same_name = match (self.session_name, &key.session_name) {
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs) || mine == theirs,
            (None, None) => true,
            _ => false,
        };
        self.caller == key.caller && self.ip == key.ip && same_name
    }
}

/// Where a request comes from, as the new-token limit and the budget's fair queue group it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// IPv4 /24, IPv6 /64 by default: what the new-token limit counts.
    pub network: IpNet,
    /// IPv4 /16, IPv6 /48: only orders waiting callers.
    pub wide: IpNet,
}

impl Origin {
    /// For callers whose address is not known (tests driving a cache directly): no new-token
    /// limit applies.
    pub const UNKNOWN: Self = Self {
        network: IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
        wide: IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
    };
}

/// Why no token can be handed out right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// What the last attempt ran into; `None` while the first call has not finished.
    pub class: Option<FailureClass>,
    /// When it is worth asking again.
    pub retry_after: Duration,
}

/// Why no token was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// STS or the budget could not give one now.
    Unavailable(Unavailable),
    /// The caller's network has had its share of new tokens; a 429.
    NetworkLimit { retry_after: Duration },
}

/// What [`Tokens::token`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<Token>, Refusal>> + Send + 'a>>;

/// Somewhere servable tokens come from.
pub trait Tokens: Send + Sync + std::fmt::Debug {
    /// A token for `key` that may be served now: a held one, or one fetched for it, where every
    /// request for the same key that arrives meanwhile shares that one fetch. `origin` is what
    /// a fetch is counted against.
    fn token(&self, key: CallerKey, origin: Origin) -> TokenFuture<'_>;

    /// The token [`Tokens::token`] would answer at once, when one is held for `key` and may be
    /// served now; `None` says to ask `token`. A cache hit then costs no boxed future.
    fn held(&self, _key: CallerKeyRef<'_>, _origin: Origin) -> Option<Arc<Token>> {
        None
    }

    /// Drops every token held, so none handed out so far is handed out again (the kill switch).
    fn clear(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::auth::subject::caller_id;

    fn key(caller: Option<CallerId>, session_name: Option<&str>, ip: Option<&str>) -> CallerKey {
        CallerKey {
            caller,
            session_name: session_name.map(Arc::from),
            ip: ip.map(|ip| ip.parse().unwrap()),
        }
    }

    /// Keys that differ in one part or another, each from all the others.
    fn distinct_keys() -> [CallerKey; 9] {
        let alice = caller_id(Some("idp"), "alice");
        let bob = caller_id(Some("idp"), "bob");
        [
            key(Some(alice), Some("alice"), None),
            key(Some(alice), Some("alice"), Some("198.51.100.0/24")),
            key(Some(bob), Some("alice"), None),
            key(Some(alice), Some("other"), None),
            key(Some(alice), None, None),
            key(None, Some("alice"), None),
            key(None, Some("flood-1"), None),
            key(None, None, Some("198.51.100.0/24")),
            key(None, None, Some("2001:db8::/64")),
        ]
    }

    #[test]
    fn equal_keys_hash_alike_and_unequal_ones_stay_apart() {
        let hasher = std::hash::RandomState::new();
        let alice = caller_id(Some("idp"), "alice");
        let same = [
            key(Some(alice), Some("alice"), None),
            key(Some(alice), Some("alice"), None),
        ];
        assert_eq!(same[0], same[1]);
        assert_eq!(hasher.hash_one(&same[0]), hasher.hash_one(&same[1]));
        // Hashed alike or not, keys that differ in any part are different keys.
        let keys = distinct_keys();
        for (i, one) in keys.iter().enumerate() {
            for other in &keys[i + 1..] {
                assert_ne!(one, other);
            }
        }
        // Without a caller id the session name is what tells keys apart.
        assert_ne!(
            hasher.hash_one(key(None, Some("flood-1"), None)),
            hasher.hash_one(key(None, Some("flood-2"), None))
        );
    }

    /// A lookup with the borrowed key finds exactly the entries the owned key would: the same
    /// hash, and equivalence where `Eq` holds, whether the session name is the entry's own `Arc`
    /// or equal text in another.
    #[test]
    fn a_borrowed_key_hashes_and_compares_as_the_owned_one() {
        let hasher = std::hash::RandomState::new();
        let keys = distinct_keys();
        for stored in &keys {
            for asked in &keys {
                let copy = CallerKey {
                    session_name: asked.session_name.as_deref().map(Arc::from), // another `Arc`
                    ..asked.clone()
                };
                for borrowed in [asked.borrowed(), copy.borrowed()] {
                    assert_eq!(
                        quick_cache::Equivalent::equivalent(&borrowed, stored),
                        asked == stored,
                        "{asked:?} against {stored:?}"
                    );
                    assert_eq!(hasher.hash_one(borrowed), hasher.hash_one(asked));
                    assert_eq!(&borrowed.to_owned(), asked);
                }
            }
        }
        // Another `Arc` with the same text is the same key.
        let fresh = key(keys[0].caller, Some("alice"), None);
        assert!(quick_cache::Equivalent::equivalent(
            &fresh.borrowed(),
            &keys[0]
        ));
    }
}
