use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::*;

const APPID: &str = "wx1234567890abcdef";
const SECRET: &str = "app-secret-4f1c9e0b7d2a6c3e8b5f1a9d";
const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
const UNIONID: &str = "o6_bmasdasdsad6_2sgVt7hMZOPfL";

/// A fake `jscode2session`: what it answers depends on the code; it checks the app's
/// credentials and records the codes it received.
#[derive(Clone, Default)]
struct FakeWechat {
    codes: Arc<Mutex<Vec<String>>>,
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    // WeChat serves its JSON as text/plain.
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

fn errcode(code: i64, message: &str) -> Response {
    // Like WeChat's, the message may echo things; stsvend must not pass it on.
    let body =
        format!(r#"{{"errcode":{code},"errmsg":"{message}, rid: 6541f0a1-secret={SECRET}"}}"#);
    text(StatusCode::OK, body)
}

async fn jscode2session(
    State(fake): State<FakeWechat>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let code = query.get("js_code").cloned().unwrap_or_default();
    fake.codes.lock().unwrap().push(code.clone());
    let app_ok = query.get("appid").map(String::as_str) == Some(APPID)
        && query.get("secret").map(String::as_str) == Some(SECRET)
        && query.get("grant_type").map(String::as_str) == Some("authorization_code")
        && query.len() == 4;
    if !app_ok {
        return errcode(40125, "invalid appsecret");
    }
    let user = |unionid: Option<&str>| {
        let mut body = serde_json::json!({"session_key": SESSION_KEY, "openid": OPENID});
        if let Some(unionid) = unionid {
            body["unionid"] = unionid.into();
        }
        text(StatusCode::OK, body.to_string())
    };
    match code.strip_prefix("c0de-").unwrap_or(&code) {
        "good" | "a+b/c=d&e%20f" => user(None),
        "good-union" => user(Some(UNIONID)),
        "good-empty-union" => user(Some("")),
        "good-errcode-0" => text(
            StatusCode::OK,
            format!(
                r#"{{"errcode":0,"errmsg":"ok","openid":"{OPENID}","session_key":"{SESSION_KEY}"}}"#
            ),
        ),
        "invalid" => errcode(40029, "invalid code"),
        "used" => errcode(40163, "code been used"),
        "risky" => errcode(40226, "invalid user"),
        "frequent" => errcode(45011, "api minute-quota reach limit"),
        "busy" => errcode(-1, "system error"),
        "odd" => errcode(40013, "invalid appid"),
        "boom" => text(StatusCode::INTERNAL_SERVER_ERROR, "upstream failure"),
        "moved" => (
            StatusCode::FOUND,
            [(header::LOCATION, "http://example.invalid/")],
        )
            .into_response(),
        "garbage" => text(StatusCode::OK, "<html>Service Unavailable</html>"),
        "not-json" => text(StatusCode::OK, format!("{{openid: {OPENID}")),
        "array" => text(StatusCode::OK, format!(r#"[{{"openid":"{OPENID}"}}]"#)),
        "string-errcode" => text(StatusCode::OK, r#"{"errcode":"40029"}"#),
        "no-openid" => text(
            StatusCode::OK,
            format!(r#"{{"session_key":"{SESSION_KEY}"}}"#),
        ),
        "empty-openid" => text(StatusCode::OK, r#"{"openid":""}"#),
        "spaced-openid" => text(StatusCode::OK, r#"{"openid":"has a space"}"#),
        "long-openid" => text(
            StatusCode::OK,
            format!(r#"{{"openid":"{}"}}"#, "o".repeat(200)),
        ),
        "odd-unionid" => text(
            StatusCode::OK,
            format!(r#"{{"openid":"{OPENID}","unionid":"tab\there"}}"#),
        ),
        "huge" => text(
            StatusCode::OK,
            format!(r#"{{"openid":"{OPENID}","pad":"{}"}}"#, "x".repeat(8192)),
        ),
        "huge-chunked" => {
            // No Content-Length: the cap must hold while reading.
            let chunks =
                (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024])));
            text(
                StatusCode::OK,
                Body::from_stream(futures_util::stream::iter(chunks)),
            )
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            user(None)
        }
        _ => errcode(40029, "invalid code"),
    }
}

impl FakeWechat {
    /// Serves on 127.0.0.1:0 under `prefix`; returns the API base to configure.
    async fn start(prefix: &str) -> (Self, Url) {
        let fake = Self::default();
        let path = format!("{prefix}/sns/jscode2session");
        let app = axum::Router::new()
            .route(&path, axum::routing::get(jscode2session))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://{address}{prefix}").parse().unwrap();
        (fake, base)
    }

    fn codes(&self) -> Vec<String> {
        self.codes.lock().unwrap().clone()
    }
}

fn client(api_base: Url, secret: &str) -> WechatClient {
    WechatClient::new(WechatApp {
        appid: APPID.to_owned(),
        app_secret: SecretString::from(secret),
        api_base,
    })
    .unwrap()
}

async fn exchange(code: &str) -> Result<WechatUser, ExchangeError> {
    let (_fake, base) = FakeWechat::start("").await;
    client(base, SECRET).exchange(&format!("c0de-{code}")).await
}

fn user(unionid: Option<&str>) -> WechatUser {
    WechatUser {
        openid: OPENID.to_owned(),
        unionid: unionid.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_good_code_gives_the_openid_with_or_without_a_unionid() {
    assert_eq!(exchange("good").await, Ok(user(None)));
    assert_eq!(exchange("good-union").await, Ok(user(Some(UNIONID))));
    assert_eq!(exchange("good-empty-union").await, Ok(user(None)));
    assert_eq!(exchange("good-errcode-0").await, Ok(user(None)));
}

#[tokio::test]
async fn the_request_carries_the_app_and_the_code_encoded() {
    // Under a path prefix (a proxy in front of WeChat), with a code needing percent-encoding.
    let (fake, base) = FakeWechat::start("/wechat-proxy").await;
    let client = client(base, SECRET);
    let code = "c0de-a+b/c=d&e f";
    // A space is not printable ASCII for a code: refused before the call.
    assert_eq!(client.exchange(code).await, Err(ExchangeError::InvalidCode));
    let code = "c0de-a+b/c=d&e%20f";
    assert_eq!(client.exchange(code).await, Ok(user(None)));
    assert_eq!(fake.codes(), [code], "the code arrives intact, once");
    // A wrong secret is what WeChat says it is, and points at the setting to check.
    let (_fake, base) = FakeWechat::start("").await;
    let error = self::client(base, "not-the-secret")
        .exchange("c0de-good")
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ExchangeError::Unavailable(Unavailable::Errcode(40125))
    );
    assert!(
        error.to_string().contains("STSVEND_WECHAT_APP_SECRET"),
        "{error}"
    );
}

#[tokio::test]
async fn wechat_error_codes_map_to_what_the_caller_is_told() {
    let cases = [
        (
            "invalid",
            ExchangeError::InvalidCode,
            401,
            "invalid_login_code",
            None,
        ),
        (
            "used",
            ExchangeError::InvalidCode,
            401,
            "invalid_login_code",
            None,
        ),
        ("risky", ExchangeError::Blocked, 403, "login_blocked", None),
        (
            "frequent",
            ExchangeError::RateLimited,
            429,
            "login_rate_limited",
            Some(RATE_LIMITED_RETRY_AFTER),
        ),
        (
            "busy",
            ExchangeError::Unavailable(Unavailable::Busy),
            503,
            "login_unavailable",
            Some(UNAVAILABLE_RETRY_AFTER),
        ),
        (
            "odd",
            ExchangeError::Unavailable(Unavailable::Errcode(40013)),
            503,
            "login_unavailable",
            Some(UNAVAILABLE_RETRY_AFTER),
        ),
    ];
    for (code, expected, status, name, retry_after) in cases {
        let error = exchange(code).await.unwrap_err();
        assert_eq!(error, expected, "{code}");
        assert_eq!(error.status(), status, "{code}");
        assert_eq!(error.code(), name, "{code}");
        assert_eq!(error.retry_after(), retry_after, "{code}");
    }
    assert_eq!(RATE_LIMITED_RETRY_AFTER, Duration::from_secs(60));
}

#[tokio::test]
async fn broken_answers_make_wechat_unavailable() {
    let cases = [
        ("boom", Unavailable::Status(500)),
        ("moved", Unavailable::Status(302)),
        ("garbage", Unavailable::Malformed("not a JSON object")),
        (
            "not-json",
            Unavailable::Malformed("not the JSON WeChat sends"),
        ),
        ("array", Unavailable::Malformed("not a JSON object")),
        (
            "string-errcode",
            Unavailable::Malformed("not the JSON WeChat sends"),
        ),
        ("no-openid", Unavailable::Malformed("no openid")),
        ("huge", Unavailable::TooLarge),
        ("huge-chunked", Unavailable::TooLarge),
    ];
    for (code, expected) in cases {
        let error = exchange(code).await.unwrap_err();
        assert_eq!(error, ExchangeError::Unavailable(expected), "{code}");
        assert_eq!(error.status(), 503, "{code}");
        assert_eq!(error.retry_after(), Some(UNAVAILABLE_RETRY_AFTER), "{code}");
    }
    for code in [
        "empty-openid",
        "spaced-openid",
        "long-openid",
        "odd-unionid",
    ] {
        let error = exchange(code).await.unwrap_err();
        assert!(
            matches!(error, ExchangeError::Unavailable(Unavailable::Malformed(_))),
            "{code}: {error:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_times_out_in_bounded_time() {
    let (fake, base) = FakeWechat::start("").await;
    let started = tokio::time::Instant::now();
    let error = client(base, SECRET)
        .exchange("c0de-slow")
        .await
        .unwrap_err();
    assert_eq!(error, ExchangeError::Unavailable(Unavailable::Timeout));
    assert_eq!(error.status(), 503);
    let waited = started.elapsed();
    assert!(
        waited >= EXCHANGE_TIMEOUT && waited <= EXCHANGE_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    // It was the answer that was slow: the request arrived.
    assert_eq!(fake.codes(), ["c0de-slow"]);
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_without_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let base = format!("http://{address}").parse().unwrap();
    let error = client(base, SECRET)
        .exchange("c0de-good")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ExchangeError::Unavailable(Unavailable::Unreachable(_))
        ),
        "{error:?}"
    );
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("c0de-good"),
        "{shown}"
    );
}

#[tokio::test]
async fn implausible_codes_are_refused_without_asking_wechat() {
    let (fake, base) = FakeWechat::start("").await;
    let client = client(base, SECRET);
    for code in ["", " ", "tab\tcode", "é", &"c".repeat(MAX_CODE_LEN + 1)] {
        assert_eq!(
            client.exchange(code).await,
            Err(ExchangeError::InvalidCode),
            "{code:?}"
        );
    }
    assert!(fake.codes().is_empty(), "{:?}", fake.codes());
    // The longest plausible code is sent.
    let longest = "c".repeat(MAX_CODE_LEN);
    assert_eq!(
        client.exchange(&longest).await,
        Err(ExchangeError::InvalidCode)
    );
    assert_eq!(fake.codes(), [longest]);
}

#[test]
fn the_api_base_must_be_an_http_url_without_a_query() {
    let build = |base: &str| {
        WechatClient::new(WechatApp {
            appid: APPID.to_owned(),
            app_secret: SecretString::from(SECRET),
            api_base: base.parse().unwrap(),
        })
    };
    for bad in [
        "ftp://api.weixin.qq.com",
        "https://api.weixin.qq.com/?x=1",
        "mailto:a@b.c",
    ] {
        assert!(
            matches!(build(bad), Err(WechatSetupError::BadApiBase)),
            "{bad}"
        );
    }
    let cases = [
        (
            DEFAULT_API_BASE,
            "https://api.weixin.qq.com/sns/jscode2session",
        ),
        (
            "https://proxy.example/wx/",
            "https://proxy.example/wx/sns/jscode2session",
        ),
        (
            "http://127.0.0.1:8080/wx",
            "http://127.0.0.1:8080/wx/sns/jscode2session",
        ),
    ];
    for (base, endpoint) in cases {
        assert_eq!(build(base).unwrap().endpoint.as_str(), endpoint);
    }
}

/// Everything logged on this thread at any level, while the guard lives.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // As in tests/api/helpers/logs.rs: a second, everlasting dispatcher keeps tracing from
    // deciding once for every thread that nobody listens.
    static KEEPER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    KEEPER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn the_secret_the_code_and_session_key_leak_nowhere() {
    let (logs, _guard) = capture_logs();
    let (fake, base) = FakeWechat::start("").await;
    let client = client(base, SECRET);
    let codes = [
        "good",
        "good-union",
        "invalid",
        "used",
        "risky",
        "frequent",
        "busy",
        "odd",
        "boom",
        "moved",
        "garbage",
        "not-json",
        "no-openid",
        "huge",
        "huge-chunked",
        "spaced-openid",
    ];
    let mut shown = format!("{client:?}");
    for code in codes {
        let code = format!("c0de-{code}-9f3a7");
        match client.exchange(&code).await {
            Ok(user) => shown.push_str(&format!("{user:?}")),
            Err(error) => {
                shown.push_str(&format!("{error} {error:?} {}", error.code()));
            }
        }
    }
    // A failure to connect, whose reqwest error would carry the URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_base = format!("http://{}", dead.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(dead);
    let error = self::client(dead_base, SECRET)
        .exchange("c0de-unreachable-9f3a7")
        .await
        .unwrap_err();
    shown.push_str(&format!("{error} {error:?}"));
    assert_eq!(
        fake.codes().len(),
        codes.len(),
        "every exchange reached the fake"
    );

    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("WeChat code exchange failed"),
        "the capture works: {logs}"
    );
    for (what, text) in [("errors", &shown), ("logs", &logs)] {
        for secret in [
            SECRET,
            SESSION_KEY,
            "tiihtNczf5v6AKRyjwEU",
            "-9f3a7",
            "js_code=",
        ] {
            assert!(!text.contains(secret), "{what} show {secret:?}: {text}");
        }
    }
    let app = WechatApp {
        appid: APPID.to_owned(),
        app_secret: SecretString::from(SECRET),
        api_base: DEFAULT_API_BASE.parse().unwrap(),
    };
    assert!(!format!("{app:?}").contains(SECRET));
}

#[tokio::test]
async fn exchanges_are_counted_by_outcome() {
    let metrics = crate::metrics::install();
    let (_fake, base) = FakeWechat::start("").await;
    let client = client(base, SECRET);
    let count = |outcome: &str| {
        let series =
            format!("stsvend_login_exchanges_total{{platform=\"wechat\",outcome=\"{outcome}\"}} ");
        metrics
            .render()
            .lines()
            .find_map(|line| {
                line.strip_prefix(&series)
                    .map(|n| n.parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    };
    let before = (count("success"), count("rate_limited"), count("status"));
    client.exchange("c0de-good").await.unwrap();
    client.exchange("c0de-frequent").await.unwrap_err();
    client.exchange("c0de-boom").await.unwrap_err();
    // Other tests of this process may count too, never fewer.
    assert!(count("success") >= before.0 + 1.0);
    assert!(count("rate_limited") >= before.1 + 1.0);
    assert!(count("status") >= before.2 + 1.0);
}

#[test]
fn answers_are_read_without_keeping_session_key() {
    let body = format!(r#"{{"session_key":"{SESSION_KEY}","openid":"{OPENID}","extra":[1,2]}}"#);
    assert_eq!(read_answer(body.as_bytes()), Ok(user(None)));
    // Whitespace before the object is fine; a BOM or trailing junk is not.
    assert_eq!(read_answer(format!("\n {body}").as_bytes()), Ok(user(None)));
    assert!(read_answer(format!("\u{feff}{body}").as_bytes()).is_err());
    assert!(read_answer(format!("{body} x").as_bytes()).is_err());
    assert!(read_answer(b"").is_err());
}
