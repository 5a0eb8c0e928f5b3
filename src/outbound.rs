//! What every outgoing HTTP call shares: error text that never carries a URL, and response
//! bodies read with a size cap.
//!
//! URLs are kept out of errors because ours carry secrets: the STS query holds the signature and
//! any security token, a credentials URI or JWKS URL may hold an access token. Bodies are capped
//! because every peer (STS, the metadata service, a credentials URI, a JWKS server) may be
//! hostile or broken.

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
