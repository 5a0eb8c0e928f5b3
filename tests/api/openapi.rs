//! The OpenAPI documents (`openapi/*.json`, served at `GET /openapi.json` on each listener):
//! they are served as committed, they list exactly the routes each router serves, and real
//! answers of the service validate against the schemas they document.
//!
//! The schema check is a small hand validator (`$ref`, `type`, `required`, `properties`,
//! `additionalProperties`, `enum`, `minLength`, `oneOf`) rather than a JSON Schema crate; the
//! few `pattern`s the documents use are checked by hand below. `scripts/schemathesis.sh` checks
//! much more (every status and header, generated requests) against a running `stsvend dev`.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde_json::Value;
use stsvend::http::openapi;

use crate::helpers::TestApp;

/// Every (path, method) the public router serves. OPTIONS is the CORS preflight.
const PUBLIC_ROUTES: &[(&str, &[&str])] = &[
    ("/get_sts_token", &["get", "head", "options"]),
    ("/get_sts_token/{profile}", &["get", "head", "options"]),
    ("/healthz", &["get", "head"]),
    ("/readyz", &["get", "head"]),
    ("/openapi.json", &["get", "head"]),
];

/// The login routes: served only when a profile takes mini program logins (not in the apps
/// these tests start; `tests/api/login.rs` asks them).
const LOGIN_ROUTES: &[(&str, &[&str])] =
    &[("/session", &["post"]), ("/session/{profile}", &["post"])];

/// Every (path, method) the admin router serves.
const ADMIN_ROUTES: &[(&str, &[&str])] = &[
    ("/metrics", &["get", "head"]),
    ("/healthz", &["get", "head"]),
    ("/readyz", &["get", "head"]),
    ("/openapi.json", &["get", "head"]),
    ("/admin/profiles/{name}/disable", &["post"]),
    ("/admin/profiles/{name}/enable", &["post"]),
    ("/admin/reload", &["post"]),
];

pub(crate) async fn fetch_document(app: &TestApp, base: &str) -> (Value, String) {
    let response = app
        .client
        .get(format!("http://{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    (doc, text)
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| *key != "parameters")
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect()
}

fn expected_routes(routes: &[(&str, &[&str])]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |method| ((*path).to_owned(), (*method).to_owned()))
        })
        .collect()
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local $ref");
            resolve(doc, doc.pointer(pointer).expect("$ref resolves"))
        }
        None => node,
    }
}

/// Errors of `value` against `schema`, each with its JSON path. Empty when it validates.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut errors = Vec::new();
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|option| validate(doc, option, value, at).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of oneOf, not exactly 1"));
        }
        return errors;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("the validator does not know type {other}"),
    };
    if !type_ok {
        errors.push(format!("{at}: {value} is not {}", schema["type"]));
        return errors;
    }
    if let (Some(min), Some(text)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) && (text.chars().count() as u64) < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(name.as_str().unwrap()) {
                errors.push(format!("{at}: missing required {name}"));
            }
        }
        for (key, item) in object {
            let path = format!("{at}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => errors.extend(validate(doc, property, item, &path)),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{path}: not an allowed property"));
                }
                (None, Some(extra)) if extra.is_object() => {
                    errors.extend(validate(doc, extra, item, &path));
                }
                (None, _) => {}
            }
        }
    }
    errors
}

/// The documented response of `method path` for `status`, resolved.
fn documented_response<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is documented");
    let response = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path} documents status {status}"));
    resolve(doc, response)
}

/// Checks a real answer against the document: the status is documented, every required
/// documented header is present (and enum-valued ones have a listed value), and the body
/// validates against the documented JSON schema.
pub(crate) async fn check_answer(
    doc: &Value,
    path: &str,
    method: &str,
    response: reqwest::Response,
) -> Value {
    let status = response.status().as_u16();
    let documented = documented_response(doc, path, method, status);
    let headers = response.headers().clone();
    for (name, header) in documented["headers"].as_object().unwrap() {
        let header = resolve(doc, header);
        let value = headers.get(name.as_str()).map(|v| v.to_str().unwrap());
        if header["required"] == true {
            assert!(
                value.is_some(),
                "{method} {path} {status}: header {name} missing"
            );
        }
        if let (Some(value), Some(allowed)) = (value, header["schema"]["enum"].as_array()) {
            assert!(
                allowed.contains(&Value::from(value)),
                "{method} {path} {status}: {name}: {value}"
            );
        }
    }
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(is_request_id(&request_id), "{request_id}");
    if documented.get("content").is_none() {
        let body = response.bytes().await.unwrap();
        assert!(
            body.is_empty(),
            "{method} {path} {status}: no body documented"
        );
        return Value::Null;
    }
    let content_type = headers[reqwest::header::CONTENT_TYPE].to_str().unwrap();
    let schema = &documented["content"][content_type]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: content type {content_type} documented"
    );
    let body: Value = response.json().await.unwrap();
    let errors = validate(doc, schema, &body, "$");
    assert!(errors.is_empty(), "{method} {path} {status}: {errors:#?}");
    if let Some(error) = body.get("error") {
        assert_eq!(error["request_id"], request_id.as_str());
    }
    body
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn both_listeners_serve_their_document_as_committed() {
    let app = TestApp::emulated().start().await;
    let (public, text) = fetch_document(&app, &app.addr.to_string()).await;
    assert_eq!(text, openapi::PUBLIC);
    assert_eq!(public["info"]["title"], "stsvend public listener");
    let (admin, text) = fetch_document(&app, &app.admin_addr.to_string()).await;
    assert_eq!(text, openapi::ADMIN);
    assert_eq!(admin["info"]["title"], "stsvend admin listener");
    // Every $ref in both documents resolves.
    for doc in [&public, &admin] {
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            assert!(
                doc.pointer(target.trim_start_matches('#')).is_some(),
                "{target} resolves"
            );
        }
    }
}

#[tokio::test]
async fn the_documents_list_exactly_the_routes_the_routers_serve() {
    let app = TestApp::emulated().start().await;
    let (public, _) = fetch_document(&app, &app.addr.to_string()).await;
    let (admin, _) = fetch_document(&app, &app.admin_addr.to_string()).await;
    let mut public_routes = expected_routes(PUBLIC_ROUTES);
    public_routes.extend(expected_routes(LOGIN_ROUTES));
    assert_eq!(documented_routes(&public), public_routes);
    assert_eq!(documented_routes(&admin), expected_routes(ADMIN_ROUTES));

    // Each listed route is really served: not the router's `not_found` fallback, not a 405.
    // (OPTIONS is a preflight only where CORS is on, so it is left to the CORS tests.)
    for (base, routes) in [(app.addr, PUBLIC_ROUTES), (app.admin_addr, ADMIN_ROUTES)] {
        for (path, methods) in routes {
            let url = format!(
                "http://{base}{}",
                path.replace("{profile}", "nope").replace("{name}", "nope")
            );
            for method in methods.iter().filter(|m| **m != "options") {
                let method: reqwest::Method = method.to_uppercase().parse().unwrap();
                let response = app
                    .client
                    .request(method.clone(), &url)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                assert_ne!(status, 405, "{method} {url}");
                // `/metrics` without a recorder (as here, in-process) is the documented 404.
                if status == 404 && method != reqwest::Method::HEAD && *path != "/metrics" {
                    let body: Value = response.json().await.unwrap();
                    assert_ne!(
                        body["error"]["code"], "not_found",
                        "{method} {url} is routed"
                    );
                }
            }
        }
    }
    // And a path not in the document is not served.
    assert_eq!(app.get("/openapi.yaml").await.status(), 404);
}

#[tokio::test]
async fn real_answers_validate_against_the_documented_schemas() {
    let app = TestApp::emulated().start().await;
    let (public, _) = fetch_document(&app, &app.addr.to_string()).await;
    let (admin, _) = fetch_document(&app, &app.admin_addr.to_string()).await;

    // A real token.
    let token = check_answer(
        &public,
        "/get_sts_token",
        "get",
        app.get("/get_sts_token").await,
    )
    .await;
    let token_schema = &public["components"]["schemas"]["Token"];
    assert_eq!(
        token_schema["properties"]["AccessKeyId"]["pattern"],
        "^STS\\."
    );
    assert!(token["AccessKeyId"].as_str().unwrap().starts_with("STS."));
    assert_eq!(
        token_schema["properties"]["Expiration"]["pattern"],
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
    );
    NaiveDateTime::parse_from_str(token["Expiration"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%SZ")
        .expect("Expiration as documented");
    assert_eq!(
        public["components"]["schemas"]["RequestId"]["pattern"],
        "^[0-9a-f]{32}$"
    );

    // Real errors: unknown profile, unknown path, and a preflight for a profile that is not there.
    let body = check_answer(
        &public,
        "/get_sts_token/{profile}",
        "get",
        app.get("/get_sts_token/nope").await,
    )
    .await;
    assert_eq!(body["error"]["code"], "unknown_profile");
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/get_sts_token/nope"))
        .send()
        .await
        .unwrap();
    check_answer(&public, "/get_sts_token/{profile}", "options", preflight).await;
    // OPTIONS without CORS on the default profile: the documented 204, with `Allow`.
    let allowed = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/get_sts_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["allow"], "GET, HEAD, OPTIONS");
    assert!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    check_answer(&public, "/get_sts_token", "options", allowed).await;
    let not_found = app.get("/nothing").await;
    let schema = &public["components"]["schemas"]["ErrorNotFound"];
    let body: Value = not_found.json().await.unwrap();
    assert!(validate(&public, schema, &body, "$").is_empty(), "{body}");

    // Health and readiness on both listeners.
    check_answer(&public, "/healthz", "get", app.get("/healthz").await).await;
    let ready = check_answer(&public, "/readyz", "get", app.get("/readyz").await).await;
    assert_eq!(ready["status"], "ready");
    let admin_get = |path: &str| {
        app.client
            .get(format!("http://{}{path}", app.admin_addr))
            .send()
    };
    check_answer(
        &admin,
        "/healthz",
        "get",
        admin_get("/healthz").await.unwrap(),
    )
    .await;
    check_answer(
        &admin,
        "/readyz",
        "get",
        admin_get("/readyz").await.unwrap(),
    )
    .await;

    // The kill switch and its errors.
    let admin_post = |path: &str| {
        app.client
            .post(format!("http://{}{path}", app.admin_addr))
            .header("x-stsvend-admin", "1")
            .send()
    };
    let path = "/admin/profiles/{name}/disable";
    let body = check_answer(
        &admin,
        path,
        "post",
        admin_post("/admin/profiles/default/disable").await.unwrap(),
    )
    .await;
    assert_eq!(
        body,
        serde_json::json!({"profile": "default", "enabled": false})
    );
    let body = check_answer(
        &public,
        "/get_sts_token",
        "get",
        app.get("/get_sts_token").await,
    )
    .await;
    assert_eq!(body["error"]["code"], "profile_disabled");
    for name in ["nope", "%FF"] {
        let url = format!("/admin/profiles/{name}/enable");
        let body = check_answer(
            &admin,
            "/admin/profiles/{name}/enable",
            "post",
            admin_post(&url).await.unwrap(),
        )
        .await;
        assert_eq!(body["error"]["code"], "unknown_profile", "{name}");
    }
    check_answer(
        &admin,
        "/admin/profiles/{name}/enable",
        "post",
        admin_post("/admin/profiles/default/enable").await.unwrap(),
    )
    .await;

    // The admin router's own 405 has the standard body and the route's real `Allow`.
    let refused = admin_get("/admin/profiles/default/disable").await.unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    let body: Value = refused.json().await.unwrap();
    let schema = &admin["components"]["responses"]["MethodNotAllowed"]["content"]["application/json"]
        ["schema"];
    assert!(validate(&admin, schema, &body, "$").is_empty(), "{body}");
}
