//! Talking to a service under test: a plain client, one request read in full as an [`Answer`].

use std::time::Duration;

/// A plain HTTP client for tests. reqwest is built without a default TLS provider and refuses to
/// build a client until one is installed; installing it twice is harmless.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("HTTP client builds")
}

/// One answer of the service, read in full.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// `error.code` of an error body.
    pub(crate) fn error_code(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_owned)
    }

    /// `AccessKeyId` of a token body.
    pub(crate) fn access_key_id(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get("AccessKeyId")?
            .as_str()
            .map(str::to_owned)
    }

    /// Whether `needle` appears in the body or in any header value.
    pub(crate) fn mentions(&self, needle: &str) -> bool {
        self.body.contains(needle)
            || self
                .headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
    }
}

/// Sends `method path` with `headers` and reads the whole answer.
pub(crate) async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(String, String)],
) -> Answer {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body readable");
    Answer {
        status,
        headers,
        body,
    }
}
