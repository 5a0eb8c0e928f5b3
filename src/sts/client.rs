//! The only code that sends requests to STS: build → sign → send → parse.

use std::time::Duration;

use reqwest::Url;

use super::budget::Lane;
use super::request::{AssumeRole, AssumeRoleWithOidc, SignedRequest};
use super::response::{self, ApiErrorBody, IssuedCredentials, MalformedResponse, Parsed};
use crate::clock::Clock;
use crate::credentials::Credentials;
use crate::metrics::{self, StsOutcome};
/// Re-exported where it lived before `outbound` owned it: the integration tests call it here.
pub use crate::outbound::install_crypto_provider;
use crate::outbound::{BodyError, error_text, read_capped};

/// How long one STS call may take in all. STS answers in tens of milliseconds; a call that takes
/// this long is better retried with a fresh nonce and timestamp.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a response body we read. A token is a few kilobytes; anything near this is not STS.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Whether a failure is worth telling the client to retry soon, or needs the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Throttled, 5xx, timeout, unreachable, or an unreadable answer: retried with backoff.
    Unavailable,
    /// STS refused the call (permissions, role, signature, parameters): the operator must act.
    Rejected,
}

/// What went wrong with one STS call. Never holds a URL, a body or a secret.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("STS answered HTTP {status} with error `{}` ({}), request id {}", body.code, body.message, body.request_id.as_deref().unwrap_or("none"))]
    Api { status: u16, body: ApiErrorBody },
    #[error("STS answered HTTP {status} with a body that cannot be used: {reason}")]
    Malformed {
        status: u16,
        reason: MalformedResponse,
    },
    #[error("STS answered HTTP {status} with a body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { status: u16 },
    #[error("STS did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("could not reach STS ({0})")]
    Unreachable(String),
    /// The answer started but its body did not arrive whole (reset, or closed before its
    /// `Content-Length`). Kept apart from [`Self::Unreachable`] because its hint (DNS, egress
    /// firewall) would send the operator the wrong way: STS was reached.
    #[error("the connection to STS broke while its answer was being read ({0})")]
    Interrupted(String),
    /// stsvend's own AssumeRole budget is spent for now; STS was not called.
    #[error("the AssumeRole budget (STSVEND_STS_BUDGET_PER_SECOND) is spent; next slot in {}s", retry_after.as_secs().max(1))]
    BudgetExhausted { retry_after: Duration },
}

impl StsError {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Api { status, body } => classify(*status, &body.code),
            Self::Malformed { .. }
            | Self::TooLarge { .. }
            | Self::Timeout
            | Self::Unreachable(_)
            | Self::Interrupted(_)
            | Self::BudgetExhausted { .. } => FailureClass::Unavailable,
        }
    }

    /// STS's error code, if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    /// What the operator should do about it, when we know.
    pub fn hint(&self) -> Option<&'static str> {
        let Self::Api { body, .. } = self else {
            return match self {
                Self::Unreachable(_) | Self::Timeout => Some(
                    "check that this host can reach the STS endpoint (STSVEND_REGION / STSVEND_STS_ENDPOINT), DNS and any egress firewall",
                ),
                Self::Interrupted(_) => Some(
                    "STS, or a proxy on the way to it, cut its answer short; it is retried with backoff, and if it keeps happening check any proxy or middlebox between this host and STS",
                ),
                Self::BudgetExhausted { .. } => Some(
                    "more distinct callers than the budget allows need new tokens at once; raise STSVEND_STS_BUDGET_PER_SECOND if the account's quota allows",
                ),
                _ => None,
            };
        };
        let code = body.code.as_str();
        Some(match code {
            "NoPermission" => {
                "grant the calling RAM identity sts:AssumeRole (policy AliyunSTSAssumeRoleAccess) and list it as a principal in the role's trust policy; a root account cannot assume roles"
            }
            "EntityNotExist.Role" => {
                "the role in the role ARN does not exist; check the role ARN (it must be a role ARN, not a user ARN)"
            }
            "InvalidParameter.DurationSeconds" => {
                "the duration is above the role's MaxSessionDuration (default 3600 s); lower STSVEND_DURATION_SECONDS or raise MaxSessionDuration on the role"
            }
            "InvalidParameter.PolicyGrammar" | "InvalidParameter.PolicySize" => {
                "STS refused the session policy; check STSVEND_POLICY / STSVEND_LOGSTORE"
            }
            "InvalidTimeStamp.Expired" => {
                "this host's clock differs from STS by more than 15 minutes; fix time synchronisation (NTP/chrony)"
            }
            "SignatureDoesNotMatch" | "IncompleteSignature" => {
                "the AccessKey secret does not match the key id; check ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            }
            "MissingSecurityToken"
            | "InvalidSecurityToken.Expired"
            | "InvalidSecurityToken.Malformed"
            | "InvalidSecurityToken.MismatchWithAccessKey" => {
                "the key is a temporary STS key: set ALIBABA_CLOUD_SECURITY_TOKEN to its current token"
            }
            c if c.starts_with("InvalidAccessKeyId") => {
                "the AccessKey id is unknown or disabled; check ALIBABA_CLOUD_ACCESS_KEY_ID in the RAM console"
            }
            c if c.starts_with("Throttling") => {
                "STS is throttling this account (AssumeRole allows about 100 calls per second per account, shared by everything in it)"
            }
            _ => return None,
        })
    }
}

/// Throttling and server-side trouble are transient; other API errors mean the request or the
/// identity is wrong and retrying the same thing will not help.
fn classify(status: u16, code: &str) -> FailureClass {
    let transient = status >= 500
        || code.starts_with("Throttling")
        || code == "ServiceUnavailable"
        || code.starts_with("InternalError")
        || code == "SignatureNonceUsed";
    if transient {
        FailureClass::Unavailable
    } else {
        FailureClass::Rejected
    }
}

/// How long a background renewal waits for the AssumeRole budget.
const BACKGROUND_BUDGET_WAIT: Duration = Duration::from_secs(30);

/// Sends signed requests to one STS endpoint.
#[derive(Debug, Clone)]
pub struct StsClient {
    http: reqwest::Client,
    endpoint: Url,
    clock: Clock,
    /// Every AssumeRole of the process spends from this, when set.
    budget: Option<std::sync::Arc<super::budget::StsBudget>>,
}

impl StsClient {
    pub fn new(endpoint: Url, clock: Clock) -> Result<Self, reqwest::Error> {
        // STS never redirects; following one could send the signed request elsewhere.
        let http = crate::outbound::client_builder(CONNECT_TIMEOUT, REQUEST_TIMEOUT).build()?;
        Ok(Self {
            http,
            endpoint,
            clock,
            budget: None,
        })
    }

    /// The same client, spending every `AssumeRole` from `budget`.
    #[must_use]
    pub fn with_budget(mut self, budget: std::sync::Arc<super::budget::StsBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Calls `AssumeRole` once, with a fresh timestamp and nonce, in the budget's service lane
    /// (the shared tokens, the service's own credentials), waiting for it as a background task
    /// may.
    pub async fn assume_role(
        &self,
        credentials: &Credentials,
        call: &AssumeRole,
    ) -> Result<IssuedCredentials, StsError> {
        self.assume_role_within(credentials, call, Lane::Service, BACKGROUND_BUDGET_WAIT)
            .await
    }

    /// Calls `AssumeRole` once in `lane`, waiting at most `max_wait` for the budget.
    #[tracing::instrument(skip_all, fields(role_session_name = %call.role_session_name))]
    pub async fn assume_role_within(
        &self,
        credentials: &Credentials,
        call: &AssumeRole,
        lane: Lane,
        max_wait: Duration,
    ) -> Result<IssuedCredentials, StsError> {
        if let Some(budget) = &self.budget
            && let Err(retry_after) = budget.acquire(lane, max_wait).await
        {
            metrics::record_sts_call("AssumeRole", StsOutcome::Other("budget"), None);
            return Err(StsError::BudgetExhausted { retry_after });
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        let signed = call.sign(credentials, self.clock.now(), &nonce);
        self.send("AssumeRole", &signed).await
    }

    /// Calls `AssumeRoleWithOIDC` once (unsigned).
    #[tracing::instrument(skip_all, fields(role_session_name = %call.role_session_name))]
    pub async fn assume_role_with_oidc(
        &self,
        call: &AssumeRoleWithOidc,
    ) -> Result<IssuedCredentials, StsError> {
        self.send("AssumeRoleWithOIDC", &call.request(self.clock.now()))
            .await
    }

    /// Sends one call and counts and times it in `stsvend_sts_calls_total` and
    /// `stsvend_sts_call_duration_seconds`.
    async fn send(
        &self,
        action: &'static str,
        request: &SignedRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let started = tokio::time::Instant::now();
        let result = self.send_untracked(action, request).await;
        let outcome = match &result {
            Ok(_) => StsOutcome::Success,
            Err(StsError::Api { body, .. }) => StsOutcome::Api(&body.code),
            Err(StsError::Malformed { .. }) => StsOutcome::Other("malformed"),
            Err(StsError::TooLarge { .. }) => StsOutcome::Other("too_large"),
            Err(StsError::Timeout) => StsOutcome::Other("timeout"),
            // Counted with `unreachable`: the label set is part of the metric's documented help.
            Err(StsError::Unreachable(_) | StsError::Interrupted(_)) => {
                StsOutcome::Other("unreachable")
            }
            Err(StsError::BudgetExhausted { .. }) => StsOutcome::Other("budget"),
        };
        metrics::record_sts_call(action, outcome, Some(started.elapsed()));
        result
    }

    async fn send_untracked(
        &self,
        action: &'static str,
        request: &SignedRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let mut url = self.endpoint.clone();
        url.set_query(Some(&SignedRequest::encode(&request.query)));
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .header("x-acs-action", action)
            .header("x-acs-version", super::request::API_VERSION)
            .body(SignedRequest::encode(&request.form))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => StsError::TooLarge { status },
                BodyError::Transport(e) if e.is_timeout() => StsError::Timeout,
                BodyError::Transport(e) => StsError::Interrupted(error_text(e)),
            })?;
        match response::parse(status, &body) {
            Ok(Parsed::Success(issued)) => Ok(issued),
            Ok(Parsed::Error(body)) => {
                if let (Some(budget), true) = (&self.budget, body.code.starts_with("Throttling")) {
                    budget.throttled();
                }
                Err(StsError::Api { status, body })
            }
            Err(reason) => Err(StsError::Malformed { status, reason }),
        }
    }
}

/// reqwest's errors print the URL, and ours carries the signature and any security token in its
/// query, so the URL is dropped before the error goes anywhere.
fn transport_error(error: reqwest::Error) -> StsError {
    if error.is_timeout() {
        return StsError::Timeout;
    }
    StsError::Unreachable(error_text(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> StsError {
        StsError::Api {
            status,
            body: ApiErrorBody {
                code: code.into(),
                message: String::new(),
                request_id: None,
            },
        }
    }

    #[test]
    fn failures_are_classified_for_the_client() {
        let cases = [
            (api(400, "Throttling.User"), FailureClass::Unavailable),
            (api(503, "ServiceUnavailable"), FailureClass::Unavailable),
            (api(500, "InternalError"), FailureClass::Unavailable),
            (api(403, "NoPermission"), FailureClass::Rejected),
            (api(404, "EntityNotExist.Role"), FailureClass::Rejected),
            (api(400, "SignatureDoesNotMatch"), FailureClass::Rejected),
            (api(400, "InvalidTimeStamp.Expired"), FailureClass::Rejected),
            (StsError::Timeout, FailureClass::Unavailable),
            (
                StsError::Unreachable("refused".into()),
                FailureClass::Unavailable,
            ),
            (
                StsError::TooLarge { status: 200 },
                FailureClass::Unavailable,
            ),
            (
                StsError::Interrupted("reset".into()),
                FailureClass::Unavailable,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
    }

    #[test]
    fn operator_hints_name_what_to_fix() {
        assert!(
            api(403, "NoPermission")
                .hint()
                .unwrap()
                .contains("sts:AssumeRole")
        );
        assert!(
            api(400, "InvalidTimeStamp.Expired")
                .hint()
                .unwrap()
                .contains("clock")
        );
        assert!(
            api(404, "InvalidAccessKeyId.NotFound")
                .hint()
                .unwrap()
                .contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
        );
        assert!(api(400, "SomethingNew").hint().is_none());
    }
}
