//! What a configured source hands the chain: fixed credentials or a renewing source. Apart from
//! [`super::source`], which the renewing sources use themselves.

use super::renew;
use super::value::Credentials;

/// What a source hands the chain.
pub(super) enum Found {
    Static(Credentials),
    /// A renewing source, with the first credentials if detection already fetched them.
    Temporary(Box<renew::Temporary>, Option<Credentials>),
}
