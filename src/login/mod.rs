//! Mini program login: stsvend's own session token and the platforms' code exchanges.
pub mod session;
pub mod wechat;
