//! Mini program login: the platforms' code exchanges, so a mini program needs no login server.
//!
//! - [`alipay_sign`]: Alipay's RSA2 request signature and answer verification (pure).

pub mod alipay_sign;

#[cfg(test)]
mod alipay_sign_vectors;
