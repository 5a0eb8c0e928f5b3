//! The admin listener (`STSVEND_ADMIN_LISTEN`, default `127.0.0.1:9090`): liveness, readiness,
//! Prometheus metrics, the kill switch and the configuration reload. It is separate from the public listener so that none
//! of this is reachable from the internet unless the operator puts both on one address.
//!
//! A web page the operator opens may try to reach it through the operator's browser (a
//! `kubectl port-forward` makes it `127.0.0.1:9090`), so every admin route, on its own listener
//! or on the public one, is guarded: the `Host` must be an IP address, `localhost` or a name in
//! `STSVEND_ADMIN_HOSTS` (DNS rebinding); an `Origin` other than the listener's own is refused;
//! a `POST` needs the `X-Stsvend-Admin` header, which no page can send to another
//! site without a CORS preflight (which the admin listener never grants); and with
//! `STSVEND_ADMIN_TOKEN` set, `/metrics`, the kill switch and the reload need it as a bearer
//! token. The
//! probes (`/healthz`, `/readyz`) and `/openapi.json` need no token: the kubelet sends none.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::config::{AdminAccess, AdminToken};
use crate::http::edge::{Edge, Methods};
use crate::http::error::RequestId;
use crate::http::{ApiError, AppState, fleet_switch, harden, health, openapi};
use crate::reload::{Outcome, Reloads, Trigger};

/// Renders the metrics exposition text.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The header that marks a state-changing call as not coming from a cross-site web page.
pub const ADMIN_HEADER: &str = "x-stsvend-admin";

/// How long `POST /admin/reload` waits for its reload, its turn behind others included. A
/// reload reads a few small files and builds the profiles; far less than this.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the admin routes serve besides the app: the metrics page and the reloader.
#[derive(Clone, Default)]
pub struct AdminParts {
    pub metrics: Option<RenderMetrics>,
    /// Where `POST /admin/reload` asks; without it the route is not there.
    pub reloads: Option<Reloads>,
}

impl std::fmt::Debug for AdminParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminParts")
            .field("metrics", &self.metrics.is_some())
            .field("reloads", &self.reloads)
            .finish()
    }
}

#[derive(Clone)]
struct AdminState {
    app: AppState,
    parts: AdminParts,
}

/// What the guard checks, for one group of routes.
#[derive(Clone)]
struct Guard {
    hosts: Arc<Vec<String>>,
    /// Required for this group of routes when set.
    token: Option<AdminToken>,
}

/// Routes of the admin listener: metrics and the kill switch, plus health and readiness, each
/// behind the guard and the edge (request id, `nosniff`, in-flight cap, timeout, metrics).
pub fn admin_router(app: AppState, parts: AdminParts, access: &AdminAccess, edge: &Edge) -> Router {
    let open = Guard {
        hosts: Arc::new(access.hosts.clone()),
        token: None,
    };
    let health_routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::admin))
        .with_state(app.clone())
        .route_layer(axum::middleware::from_fn_with_state(open, guard));
    let routes = guarded_routes(app, parts, access)
        .merge(health_routes)
        .fallback(|| async { ApiError::NotFound });
    harden(routes, edge.with_methods(Methods::Routed))
}

/// Only metrics and the kill switch, guarded as on the admin listener and behind `edge`'s
/// in-flight cap, for merging into the public router when the operator puts both on one
/// address (the public router already serves health and readiness).
pub fn admin_routes(app: AppState, parts: AdminParts, access: &AdminAccess, edge: &Edge) -> Router {
    harden(
        guarded_routes(app, parts, access),
        edge.with_methods(Methods::Routed),
    )
}

fn guarded_routes(app: AppState, parts: AdminParts, access: &AdminAccess) -> Router {
    let guarded = Guard {
        hosts: Arc::new(access.hosts.clone()),
        token: access.token.clone(),
    };
    let mut router = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/admin/profiles/{name}/disable", post(disable))
        .route("/admin/profiles/{name}/enable", post(enable));
    if parts.reloads.is_some() {
        router = router.route("/admin/reload", post(reload));
    }
    router
        .with_state(AdminState { app, parts })
        .route_layer(axum::middleware::from_fn_with_state(guarded, guard))
}

async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match check(&guard, request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The admin guard's checks, in order: `Host`, `Origin`, token. (The kill switch then asks for
/// the header: [`require_preflighted`].)
fn check(guard: &Guard, uri: &axum::http::Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    // HTTP/1 sends `Host`; HTTP/2 sends `:authority`, which hyper puts in the URI. A request
    // with neither comes from no browser.
    let host = match headers.get(header::HOST) {
        Some(value) => Some(value.to_str().map_err(|_| ApiError::AdminHostRefused)?),
        None => uri.authority().map(axum::http::uri::Authority::as_str),
    };
    if let Some(host) = host
        && !host_allowed(host, &guard.hosts)
    {
        return Err(ApiError::AdminHostRefused);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = host.is_some_and(|host| {
            origin.to_str().is_ok_and(|origin| {
                ["http://", "https://"].iter().any(|scheme| {
                    origin
                        .strip_prefix(scheme)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
                })
            })
        });
        if !same {
            return Err(ApiError::AdminOriginRefused);
        }
    }
    if let Some(token) = &guard.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::AdminTokenMissing)?;
        let bytes = presented.as_bytes();
        let scheme_ok = bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ");
        if !scheme_ok || !token.matches(bytes[7..].trim_ascii()) {
            return Err(ApiError::AdminTokenInvalid);
        }
    }
    Ok(())
}

/// A state-changing call must carry the header that no cross-site page can send
/// without a preflight. Checked by the kill switch itself, after the guard, so that a method a
/// path does not serve still gets the router's `405`.
fn require_preflighted(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(ADMIN_HEADER) {
        Ok(())
    } else {
        Err(ApiError::AdminHeaderMissing)
    }
}

/// An IP literal or `localhost` (no page can make a browser send one for its own name), or a
/// configured name. The port is not checked: `kubectl port-forward` may pick any local one.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, port)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty() || valid_port(port.strip_prefix(':')))
            });
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(Some(port)) => name,
            _ => host,
        },
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn valid_port(port: Option<&str>) -> bool {
    port.is_some_and(|p| p.parse::<u16>().is_ok())
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    match &state.parts.metrics {
        Some(render) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn disable(
    state: State<AdminState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_preflighted(&headers)?;
    switch(state, name, false).await
}

async fn enable(
    state: State<AdminState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_preflighted(&headers)?;
    switch(state, name, true).await
}

/// The kill switch: disabling stops vending for the profile at once and drops its cached
/// tokens; tokens already handed out live until they expire (see the README's runbook). In
/// fleet mode the change is also stored for every replica ([`fleet_switch::switch`]).
async fn switch(
    State(state): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
    enabled: bool,
) -> Result<Response, ApiError> {
    // A name that does not percent-decode to UTF-8 (`%FF`) names no profile either: the standard
    // 404 rather than axum's plain-text 400.
    let Ok(Path(name)) = name else {
        return Err(ApiError::UnknownProfile);
    };
    let profile = state.app.profile(&name).ok_or(ApiError::UnknownProfile)?;
    if let Some(board) = state.app.fleet_switch() {
        let now = state.app.clock.now();
        let body = fleet_switch::switch(board, &profile, enabled, now).await;
        return Ok((StatusCode::OK, axum::Json(body)).into_response());
    }
    profile.set_enabled(enabled).await;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "profile": profile.name, "enabled": enabled })),
    )
        .into_response())
}

/// `POST /admin/reload`: re-reads the config file and the `_FILE` secrets and applies them,
/// as SIGHUP does, and says what changed. A configuration that does not validate changes
/// nothing and is answered `422 config_invalid` with one line per problem: the request was
/// well formed and understood, but what it asks to apply (the files as they are now) cannot
/// be; `400` would blame the request, `409`/`500` the server's state.
async fn reload(State(state): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_preflighted(&headers)?;
    let Some(reloads) = &state.parts.reloads else {
        return Err(ApiError::NotFound);
    };
    let outcome = match reloads.ask(Trigger::Admin, RELOAD_WAIT).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(%error, "POST /admin/reload: no outcome");
            return Err(ApiError::Overloaded);
        }
    };
    let body = match outcome {
        Outcome::Applied(diff) => json!({ "result": "applied", "changes": diff }),
        Outcome::Unchanged => json!({ "result": "unchanged" }),
        Outcome::Refused(problems) => {
            let id = RequestId::current();
            let request_id = id.as_ref().map_or("", RequestId::as_str);
            let body = json!({ "error": {
                "code": "config_invalid",
                "message": "the configuration does not validate; nothing was changed and the running configuration keeps serving",
                "problems": problems,
                "request_id": request_id,
            }});
            let no_store = [(header::CACHE_CONTROL, "no-store")];
            return Ok(
                (StatusCode::UNPROCESSABLE_ENTITY, no_store, axum::Json(body)).into_response(),
            );
        }
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
