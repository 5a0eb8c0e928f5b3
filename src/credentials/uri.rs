//! `ALIBABA_CLOUD_CREDENTIALS_URI`: a local endpoint (often a sidecar) that answers
//! `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

use super::env::var;
use super::error::SourceError;
use super::local::{credentials_from_json, local_http_client, read_small_body};
use super::origin::Origin;
use super::value::Credentials;

/// The name renewals are counted and logged under.
pub(super) const SOURCE: &str = Origin::CredentialsUri.as_str();

pub struct Uri {
    http: reqwest::Client,
    url: Url,
}

impl std::fmt::Debug for Uri {
    // The URI may carry a secret in its query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uri")
            .field("url", &self.describe())
            .finish_non_exhaustive()
    }
}

pub(super) fn detect(env: &HashMap<String, String>) -> Result<Option<Uri>, SourceError> {
    let Some(text) = var(env, "ALIBABA_CLOUD_CREDENTIALS_URI") else {
        return Ok(None);
    };
    let url = Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            SourceError::new("ALIBABA_CLOUD_CREDENTIALS_URI must be an http:// or https:// URL")
        })?;
    // The timeouts the official SDKs use for this source.
    let http = local_http_client(Duration::from_secs(5), Duration::from_secs(10))?;
    Ok(Some(Uri { http, url }))
}

impl Uri {
    pub(super) fn describe(&self) -> String {
        // The URI may carry a secret in its query; show where it points, not all of it.
        format!(
            "credentials from {}://{}{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or(""),
            self.url.path()
        )
    }

    pub(super) async fn fetch(&self) -> Result<Credentials, SourceError> {
        let fail = |why: String| SourceError::new(format!("credentials URI: {why}"));
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| fail(crate::outbound::error_text(e)))?;
        let status = response.status();
        let bytes = read_small_body(response).await.map_err(fail)?;
        if !status.is_success() {
            return Err(fail(format!("answered HTTP {}", status.as_u16())));
        }
        credentials_from_json(&bytes, Origin::CredentialsUri).map_err(fail)
    }
}
