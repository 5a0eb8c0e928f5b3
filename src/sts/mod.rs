//! Speaking to Alibaba Cloud STS (API 2015-04-01, RPC style, signature V1).
//!
//! - [`signature`]: the pure V1 signer, proven against the official SDK's vectors;
//! - [`request`]: the `AssumeRole` parameter set, signed for a given time and nonce;
//! - [`response`]: success and error bodies, and the JSON we hand to clients;
//! - [`names`]: which role ARNs and session names STS accepts;
//! - [`policy`]: the least-privilege session policy and the checks on a custom one;
//! - [`client`]: the only place that sends anything to STS;
//! - [`budget`]: the process-wide cap on `AssumeRole` calls.
//!
//! API reference: <https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-assumerole>.

pub mod budget;
pub mod client;
pub mod names;
pub mod policy;
pub mod request;
pub mod response;
pub mod signature;

pub use client::{FailureClass, StsClient, StsError};
pub use request::AssumeRole;
pub use response::IssuedCredentials;
