//! Mini program login: the platforms' code exchanges, so a mini program needs no login server.
//!
//! - [`exchange`]: a profile's platforms, each asked through its client;
//! - [`error`]: the one error type of the exchanges;
//! - [`alipay`]: Alipay's `alipay.system.oauth.token` client;
//! - [`alipay_sign`]: Alipay's RSA2 request signature and answer verification (pure);
//! - [`session`]: stsvend's own session token (pure);
//! - [`wechat`]: WeChat's `jscode2session` client.

pub mod alipay;
pub mod alipay_sign;
pub mod error;
pub mod exchange;
pub mod session;
pub mod wechat;

#[cfg(test)]
mod alipay_sign_vectors;
