//! What every outgoing HTTP call shares: one way to build the client (TLS provider, user agent,
//! no redirects, timeouts), error text that never carries a URL, and response bodies read with a
//! size cap.
//!
//! Redirects are never followed: a signed STS request or a fetch of keys or credentials must go
//! to the configured address only. URLs are kept out of errors because ours carry secrets: the
//! STS query holds the signature and any security token, a credentials URI or JWKS URL may hold
//! an access token. Bodies are capped because every peer (STS, the metadata service, a
//! credentials URI, a JWKS server) may be hostile or broken.

use std::time::Duration;

/// The start of every outgoing HTTP client: ring as the TLS provider, stsvend's user agent, no
/// redirects, and the peer's timeouts. Callers add what is theirs (no proxy for local
/// endpoints) and build.
pub fn client_builder(connect: Duration, total: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("stsvend/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
}

/// Makes ring the process's rustls crypto provider. reqwest is built without a default one (so
/// no C toolchain is needed for aws-lc), and building any reqwest client before this panics;
/// the TLS listener needs it too. Safe to call any number of times.
pub fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest error as one line, with its causes and without the URL.
pub fn error_text(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the whole body, refusing more than `max` bytes (before or while reading).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
