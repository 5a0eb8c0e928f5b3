//! Tokens kept fresh: one refresh-ahead engine for every credential the service holds.
//!
//! - [`schedule`]: the pure maths: when a value stops being served, when it is renewed, the
//!   backoff after failures, and whether a held value is fresh, due or done;
//! - [`keeper`]: the async half: one fetch-and-plan step, a background keeper that publishes on
//!   a `watch` channel (single flight, stale-while-valid, backoff), and the on-demand [`Held`]
//!   value for caches. Its paused-time tests are the engine's;
//! - [`store`]: [`Tokens`], the one interface the HTTP layer asks through: "a servable token
//!   for this key, fetching at most once". It is object-safe (`Arc<dyn Tokens>`), so a store
//!   shared between replicas can implement it later without touching the handlers;
//! - [`shared`]: the per-profile shared token, kept by a background keeper;
//! - [`callers`]: per-caller tokens in a bounded cache, fetched on demand;
//! - [`token`]: the served value: the response body, serialised once per token.
//!
//! The service's own base credentials are kept by the same keeper, from
//! [`crate::credentials::renew`]; [`schedule`] and [`keeper`] import nothing above the clock,
//! so the credential chain can use them.
//!
//! [`Held`]: keeper::Held
//! [`Tokens`]: store::Tokens

pub mod callers;
pub mod keeper;
pub mod schedule;
pub mod shared;
pub mod store;
pub mod token;

pub use callers::CallerTokens;
pub use shared::SharedToken;
pub use store::{CallerKey, Origin, Refusal, Tokens, Unavailable};
pub use token::Token;
