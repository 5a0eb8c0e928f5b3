//! `stsvend dev`'s local Simple Log Service sink: accepts what `@aliyun-sls/web-track-browser`
//! with `@aliyun-sls/web-sts-plugin` sends, and checks it the way SLS would (PROTOCOL.md §7–8).
//!
//! `POST /sls/{project}/logstores/{logstore}` (a tracker `host` of `http://<dev>/sls/<project>`
//! makes the plugin post there): the LOG v1 signature with the emulated credentials, the security
//! token, expiry, the request time (±15 minutes), `Content-MD5`, and that the token's session
//! policy allows `log:PostLogStoreLogs` on that project and logstore. Rejections carry SLS's
//! `{"errorCode","errorMessage"}` body. Accepted logs are written to a JSONL file of this run
//! ([`DevLogFile`]) and shown at `/dev/logs` (a page that refreshes itself) and
//! `/dev/logs.json?project=&logstore=`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha1::Sha1;

use super::sts::{EmulatorState, Minted, constant_time_eq};

/// SLS refuses requests whose time differs from its own by more than this.
const TIME_WINDOW_SECONDS: i64 = 15 * 60;
/// Logs kept in memory for `/dev/logs`.
const MAX_KEPT: usize = 5_000;

/// One accepted log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredLog {
    /// The `RoleSessionName` of the credentials that signed the upload: in `jwt` and login
    /// mode, the user.
    pub role_session_name: String,
    pub project: String,
    pub logstore: String,
    pub received_at: String,
    pub topic: Option<String>,
    pub source: Option<String>,
    pub tags: Map<String, Value>,
    pub fields: Map<String, Value>,
}

/// `stsvend dev`'s log file, one per run: `logs.jsonl` (mode 0600) in a fresh directory
/// `stsvend-dev-XXXXXX` (mode 0700, random name) under the temp directory. Both are created
/// only if nothing is there yet, so a link or file planted by another user of a shared temp
/// directory is never followed or appended to; the file is opened once and written through
/// that handle. Both are kept after exit, for the developer to read.
#[derive(Debug)]
pub struct DevLogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// The file's name inside its private directory.
pub const DEV_LOG_FILE_NAME: &str = "logs.jsonl";

impl DevLogFile {
    /// Creates the private directory under `parent` and the empty file in it.
    pub fn create_in(parent: &FsPath) -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("stsvend-dev-");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        // Kept: the developer reads the logs after stopping `stsvend dev`.
        let dir = builder.tempdir_in(parent)?.keep();
        let path = dir.join(DEV_LOG_FILE_NAME);
        let file = create_new_private(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &FsPath {
        &self.path
    }

    fn append(&self, logs: &[StoredLog]) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for log in logs {
            if let Ok(line) = serde_json::to_string(log) {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}

/// Opens `path` for writing only if nothing exists there (`O_CREAT|O_EXCL`, which also refuses
/// a symbolic link, dangling or not), readable by the owner alone.
fn create_new_private(path: &FsPath) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[derive(Debug)]
pub struct SlsSink {
    sts: Arc<EmulatorState>,
    kept: Mutex<VecDeque<StoredLog>>,
    file: Option<DevLogFile>,
}

impl SlsSink {
    pub(crate) fn new(sts: Arc<EmulatorState>, file: Option<DevLogFile>) -> Self {
        Self {
            sts,
            kept: Mutex::new(VecDeque::new()),
            file,
        }
    }

    pub fn file(&self) -> Option<&FsPath> {
        self.file.as_ref().map(DevLogFile::path)
    }
}

/// The sink's routes and the log viewer.
pub fn router(sink: Arc<SlsSink>) -> Router {
    // Like SLS's web-tracking endpoints, the sink accepts cross-origin posts from any page (the
    // signature, not the origin, is what authorises a write).
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::POST])
        // `*` would not cover `Authorization` (Fetch standard), so echo what the preflight asks.
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .max_age(std::time::Duration::from_secs(600));
    Router::new()
        .route(
            "/sls/{project}/logstores/{logstore}",
            post(put_logs).layer(cors),
        )
        .route("/dev/logs.json", get(logs_json))
        .route("/dev/logs", get(logs_page))
        .with_state(sink)
}

/// An SLS error answer.
fn sls_error(status: StatusCode, code: &str, message: &str, now: DateTime<Utc>) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "errorCode": code, "errorMessage": message })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("AliyunSLS"));
    headers.insert("x-log-time", HeaderValue::from(now.timestamp()));
    headers.insert(
        "x-log-requestid",
        HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
            .unwrap_or(HeaderValue::from_static("0")),
    );
    response
}

async fn put_logs(
    State(sink): State<Arc<SlsSink>>,
    Path((project, logstore)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = sink.sts.clock().now();
    match accept(&sink, &project, &logstore, peer.ip(), &headers, &body, now) {
        Ok(count) => {
            tracing::info!(%project, %logstore, count, "dev SLS sink accepted logs");
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert(header::SERVER, HeaderValue::from_static("AliyunSLS"));
            response
        }
        Err((status, code, message)) => {
            tracing::info!(%project, %logstore, code, message = %message, "dev SLS sink refused logs");
            sls_error(status, code, &message, now)
        }
    }
}

type Refusal = (StatusCode, &'static str, String);

fn accept(
    sink: &SlsSink,
    project: &str,
    logstore: &str,
    client: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<usize, Refusal> {
    let minted = authenticate(sink, logstore, headers, body, now)?;
    if !policy_allows(minted.policy.as_deref(), project, logstore, client) {
        return Err((
            StatusCode::FORBIDDEN,
            "Unauthorized",
            format!(
                "denied by sts or ram, action: log:PostLogStoreLogs, resource: acs:log:*:*:project/{project}/logstore/{logstore}"
            ),
        ));
    }
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|_| bad("PostBodyInvalid", "The body is not a JSON log group."))?;
    Ok(store(
        sink,
        &minted.session_name,
        (project, logstore),
        payload,
        now,
    ))
}

fn unauthorized(code: &'static str, message: &str) -> Refusal {
    (StatusCode::UNAUTHORIZED, code, message.to_owned())
}

fn bad(code: &'static str, message: &str) -> Refusal {
    (StatusCode::BAD_REQUEST, code, message.to_owned())
}

/// SLS's checks before it looks at the logs: the `LOG` authorization, the request time's
/// window, the body's MD5, temporary credentials this emulator issued and still valid, and
/// the signature. The credentials it found, for their policy.
fn authenticate(
    sink: &SlsSink,
    logstore: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Minted, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization")
        .ok_or_else(|| unauthorized("MissAccessKeyId", "The Authorization header is missing."))?;
    let (key_id, signature) = authorization
        .strip_prefix("LOG ")
        .and_then(|rest| rest.rsplit_once(':'))
        .ok_or_else(|| {
            unauthorized(
                "Unauthorized",
                "The Authorization header is not LOG <AccessKeyId>:<Signature>.",
            )
        })?;
    let date = header("x-log-date")
        .or_else(|| header("date"))
        .ok_or_else(|| {
            bad(
                "InvalidRequestTime",
                "The request has no x-log-date or Date header.",
            )
        })?;
    check_request_time(date, now)?;
    let md5 = hex_upper(&Md5::digest(body));
    let content_md5 = header("content-md5").unwrap_or("");
    if !body.is_empty() && !content_md5.eq_ignore_ascii_case(&md5) {
        return Err(bad(
            "InvalidContentMD5",
            "Content-MD5 does not match the body.",
        ));
    }
    let minted = issued_credentials(sink, key_id, header("x-acs-security-token"), now)?;
    let to_sign = string_to_sign(
        "POST",
        content_md5,
        header("content-type").unwrap_or(""),
        date,
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
        &format!("/logstores/{logstore}"),
    );
    let expected = sign(&to_sign, minted.secret.expose_secret());
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(unauthorized(
            "SignatureNotMatch",
            "The signature does not match the request.",
        ));
    }
    Ok(minted)
}

fn check_request_time(date: &str, now: DateTime<Utc>) -> Result<(), Refusal> {
    let sent = DateTime::parse_from_rfc2822(date)
        .map_err(|_| {
            bad(
                "InvalidRequestTime",
                "The request time is not an RFC 1123 date.",
            )
        })?
        .with_timezone(&Utc);
    if (now - sent).num_seconds().abs() > TIME_WINDOW_SECONDS {
        return Err(bad(
            "RequestTimeExpired",
            &format!(
                "Request time {date} has been expired while server time is {}.",
                now.format("%a, %d %b %Y %H:%M:%S GMT")
            ),
        ));
    }
    Ok(())
}

/// The credentials the dev STS emulator issued under `key_id`, when `token` is theirs and they
/// have not expired.
fn issued_credentials(
    sink: &SlsSink,
    key_id: &str,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Minted, Refusal> {
    let minted = sink.sts.minted(key_id).ok_or_else(|| {
        unauthorized(
            "Unauthorized",
            "The AccessKeyId is not one the dev STS emulator issued.",
        )
    })?;
    if token.unwrap_or("") != minted.token.expose_secret() {
        return Err(unauthorized(
            "Unauthorized",
            "The security token does not belong to this AccessKeyId.",
        ));
    }
    if minted.expiration <= now {
        return Err(unauthorized(
            "Unauthorized",
            "The security token has expired.",
        ));
    }
    Ok(minted)
}

/// Keeps the logs (the newest [`MAX_KEPT`]) and appends them to the file; how many there were.
fn store(
    sink: &SlsSink,
    session_name: &str,
    (project, logstore): (&str, &str),
    payload: Payload,
    now: DateTime<Utc>,
) -> usize {
    let received_at = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let logs: Vec<StoredLog> = payload
        .logs
        .into_iter()
        .map(|fields| StoredLog {
            role_session_name: session_name.to_owned(),
            project: project.to_owned(),
            logstore: logstore.to_owned(),
            received_at: received_at.clone(),
            topic: payload.topic.clone(),
            source: payload.source.clone(),
            tags: payload.tags.clone().unwrap_or_default(),
            fields,
        })
        .collect();
    let count = logs.len();
    if let Some(file) = &sink.file {
        file.append(&logs);
    }
    let mut kept = sink
        .kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for log in logs {
        if kept.len() == MAX_KEPT {
            kept.pop_front();
        }
        kept.push_back(log);
    }
    count
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "__logs__")]
    logs: Vec<Map<String, Value>>,
    #[serde(rename = "__topic__")]
    topic: Option<String>,
    #[serde(rename = "__source__")]
    source: Option<String>,
    #[serde(rename = "__tags__")]
    tags: Option<Map<String, Value>>,
}

/// LOG signature v1 string-to-sign (PROTOCOL.md §8.2): the verb, `Content-MD5`, `Content-Type`,
/// the date, every `x-log-*`/`x-acs-*` header except `x-log-date` as sorted `name:value` lines,
/// then the resource.
pub fn string_to_sign<'a>(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    resource: &str,
) -> String {
    let mut canonical: Vec<(String, String)> = headers
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| (k.starts_with("x-log-") || k.starts_with("x-acs-")) && k != "x-log-date")
        .collect();
    canonical.sort();
    let mut text = format!("{method}\n{content_md5}\n{content_type}\n{date}\n");
    for (name, value) in canonical {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(resource);
    text
}

/// Base64 HMAC-SHA1 keyed by the secret itself (no `&`, unlike the RPC signature).
pub fn sign(string_to_sign: &str, secret: &str) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Whether a session policy allows `log:PostLogStoreLogs` on the logstore for a request from
/// `client`. No policy means the role's own permissions, which the dev role grants. Conditions:
/// `IpAddress`/`NotIpAddress` on `acs:SourceIp` and `Bool` `acs:SecureTransport` (false: the dev
/// sink is plain HTTP) are evaluated; a statement with any other condition is not applied.
pub fn policy_allows(policy: Option<&str>, project: &str, logstore: &str, client: IpAddr) -> bool {
    let Some(policy) = policy else { return true };
    let Ok(doc) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let resource = format!("acs:log:cn-dev:1234567890123456:project/{project}/logstore/{logstore}");
    let mut allowed = false;
    for statement in doc
        .get("Statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let listed = |key: &str| -> Vec<&str> {
            match statement.get(key) {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            }
        };
        let action_ok = listed("Action")
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), "log:postlogstorelogs"));
        let resource_ok = listed("Resource").iter().any(|r| glob(r, &resource));
        if !(action_ok && resource_ok && conditions_hold(statement.get("Condition"), client)) {
            continue;
        }
        match statement.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

fn conditions_hold(condition: Option<&Value>, client: IpAddr) -> bool {
    let Some(condition) = condition.and_then(Value::as_object) else {
        return true;
    };
    condition.iter().all(|(operator, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, values)| {
                let values: Vec<&str> = match values {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                let in_ranges = || {
                    values.iter().any(|v| {
                        v.parse::<ipnet::IpNet>()
                            .map(|net| net.contains(&client))
                            .or_else(|_| v.parse::<IpAddr>().map(|ip| ip == client))
                            .unwrap_or(false)
                    })
                };
                match (operator.as_str(), key.as_str()) {
                    ("IpAddress", "acs:SourceIp") => in_ranges(),
                    ("NotIpAddress", "acs:SourceIp") => !in_ranges(),
                    ("Bool", "acs:SecureTransport") => values.iter().all(|v| *v == "false"),
                    _ => false,
                }
            })
        })
    })
}

/// `*` matches any run of characters and `?` one, as in RAM policies.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Deserialize)]
struct Filter {
    project: Option<String>,
    logstore: Option<String>,
}

fn filtered(sink: &SlsSink, filter: &Filter) -> Vec<StoredLog> {
    let kept = sink
        .kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    kept.iter()
        .filter(|l| filter.project.as_ref().is_none_or(|p| *p == l.project))
        .filter(|l| filter.logstore.as_ref().is_none_or(|s| *s == l.logstore))
        .cloned()
        .collect()
}

async fn logs_json(State(sink): State<Arc<SlsSink>>, Query(filter): Query<Filter>) -> Response {
    axum::Json(json!({ "logs": filtered(&sink, &filter) })).into_response()
}

async fn logs_page(State(sink): State<Arc<SlsSink>>, Query(filter): Query<Filter>) -> Html<String> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for log in filtered(&sink, &filter).iter().rev().take(200) {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
            escape(&log.received_at),
            escape(&log.role_session_name),
            escape(&log.project),
            escape(&log.logstore),
            escape(log.topic.as_deref().unwrap_or("")),
            escape(&Value::Object(log.fields.clone()).to_string()),
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
<title>stsvend dev — logs</title><style>body{{font-family:sans-serif;margin:2em}}td{{padding:.2em .6em;border-bottom:1px solid #ddd;vertical-align:top}}</style></head>\
<body><h1>Logs received by the dev SLS sink</h1><p>Newest first; this page refreshes every 2 s. JSON: <a href=\"/dev/logs.json\">/dev/logs.json</a></p>\
<table><tr><th>received</th><th>from (RoleSessionName)</th><th>project/logstore</th><th>topic</th><th>fields</th></tr>\n{rows}</table></body></html>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &FsPath) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn each_dev_log_file_is_new_and_private() {
        let parent = tempfile::tempdir().unwrap();
        let first = DevLogFile::create_in(parent.path()).unwrap();
        let second = DevLogFile::create_in(parent.path()).unwrap();
        assert_ne!(first.path(), second.path());
        for file in [&first, &second] {
            let dir = file.path().parent().unwrap();
            assert_eq!(dir.parent().unwrap(), parent.path());
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
            assert_eq!(mode(file.path()), 0o600, "{}", file.path().display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_link_or_file_is_never_opened() {
        let parent = tempfile::tempdir().unwrap();
        let victim = parent.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let link = parent.path().join("link.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = parent.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(parent.path().join("nowhere"), &dangling).unwrap();
        for planted in [&link, &dangling, &victim] {
            let error = create_new_private(planted).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(!parent.path().join("nowhere").exists());
    }

    /// PROTOCOL.md §8.3 vector S1, produced by the real web-sts-plugin.
    #[test]
    fn the_plugin_vector_s1_signs_the_same() {
        let headers = [
            ("Content-Type", "application/json"),
            ("Content-MD5", "2CBB4028AED12D21F9A6E25C7CDDFB55"),
            ("x-log-bodyrawsize", "163"),
            ("x-acs-security-token", "CAIS+test/token=="),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-signaturemethod", "hmac-sha1"),
            ("x-log-date", "Tue, 02 Jan 2024 03:04:05 GMT"),
        ];
        let text = string_to_sign(
            "POST",
            "2CBB4028AED12D21F9A6E25C7CDDFB55",
            "application/json",
            "Tue, 02 Jan 2024 03:04:05 GMT",
            headers.iter().copied(),
            "/logstores/web-log",
        );
        assert_eq!(
            text,
            "POST\n2CBB4028AED12D21F9A6E25C7CDDFB55\napplication/json\nTue, 02 Jan 2024 03:04:05 GMT\nx-acs-security-token:CAIS+test/token==\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:163\nx-log-signaturemethod:hmac-sha1\n/logstores/web-log"
        );
        assert_eq!(
            sign(&text, "testAccessKeySecret"),
            "e3Z11DhlTbhVrw3TYcbNXtD84jU="
        );
        let body = br#"{"__logs__":[{"event":"login","user":"alice","n":"3","obj":"{\"a\":1}","__time__":1704164645}],"__topic__":"topic","__source__":"source","__tags__":{"app":"mini"}}"#;
        assert_eq!(
            hex_upper(&Md5::digest(body)),
            "2CBB4028AED12D21F9A6E25C7CDDFB55"
        );
    }

    #[test]
    fn the_session_policy_decides_which_logstores_may_be_written() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let policy = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":["acs:log:*:*:project/dev-project/logstore/dev-logstore"]}]}"#;
        assert!(policy_allows(
            Some(policy),
            "dev-project",
            "dev-logstore",
            ip
        ));
        assert!(!policy_allows(Some(policy), "dev-project", "other", ip));
        assert!(!policy_allows(
            Some(policy),
            "other-project",
            "dev-logstore",
            ip
        ));
        assert!(policy_allows(None, "any", "thing", ip));
        let wildcard = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:*","Resource":"acs:log:*:*:project/p*/logstore/*"}]}"#;
        assert!(policy_allows(Some(wildcard), "proj", "x", ip));
        let bound =
            crate::sts::policy::bound_to_source_ip(Some(policy), "198.51.100.7".parse().unwrap())
                .unwrap();
        assert!(
            !policy_allows(Some(&bound), "dev-project", "dev-logstore", ip),
            "other address denied"
        );
        assert!(policy_allows(
            Some(&bound),
            "dev-project",
            "dev-logstore",
            "198.51.100.7".parse().unwrap()
        ));
        let https_only = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"true"}}}]}"#;
        assert!(
            !policy_allows(Some(https_only), "p", "l", ip),
            "the dev sink is plain HTTP"
        );
    }

    #[test]
    fn glob_matches_like_ram() {
        assert!(glob(
            "acs:log:*:*:project/p/logstore/*",
            "acs:log:cn:1:project/p/logstore/x"
        ));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a*d", "abc"));
    }
}
