//! Logging in with the mini program itself: stsvend's own session token, and the platforms' code exchanges.
pub mod session;
pub mod wechat;
