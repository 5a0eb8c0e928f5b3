//! What a listener serves: its router, and the lanes that skip it.
//!
//! A lane is one route called without the router, for the one request shape that is most of the
//! traffic: a `GET` of the route's exact path. The router's dispatch (path lookup, the matched
//! path and URL parameters put in the request's extensions, the route's boxed service cloned
//! and its future boxed, twice, for the route and for the layers around it) cost a cached token
//! request about as much as its audit line (README, Performance, "Round 6"). A lane's service
//! is the route's own, in the same layers, built in the same place as the route, so the answer
//! is the router's; every other request (another method, any other path) goes to the router.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;

/// A lane's answer in the making.
pub type LaneFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// One route, called without the router for a `GET` of exactly `path`.
#[derive(Clone)]
pub struct Lane {
    path: Box<str>,
    call: Arc<dyn Fn(Request) -> LaneFuture + Send + Sync>,
}

impl Lane {
    /// `call` answers a `GET` of `path` as the router would.
    pub fn new(path: &str, call: impl Fn(Request) -> LaneFuture + Send + Sync + 'static) -> Self {
        Self {
            path: path.into(),
            call: Arc::new(call),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The route's answer to `request`.
    pub fn call(&self, request: Request) -> LaneFuture {
        (self.call)(request)
    }
}

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane").field("path", &self.path).finish()
    }
}

/// A listener's router and its lanes, swapped together by a reload.
#[derive(Debug, Clone)]
pub struct Served {
    pub router: Router,
    lanes: Vec<Lane>,
}

impl Served {
    /// `router`, with `lanes` for some of its routes. Lanes have distinct paths, as the router's
    /// routes do (axum refuses two routes for one path before a lane could be made for both).
    pub fn new(router: Router, lanes: Vec<Lane>) -> Self {
        debug_assert!(
            lanes
                .iter()
                .enumerate()
                .all(|(i, lane)| lanes[..i].iter().all(|known| known.path != lane.path)),
            "two lanes for one path"
        );
        Self { router, lanes }
    }

    /// The same lanes, on the router `change` makes of this one (routes merged in beside them).
    #[must_use]
    pub fn map_router(self, change: impl FnOnce(Router) -> Router) -> Self {
        Self {
            router: change(self.router),
            lanes: self.lanes,
        }
    }

    /// The lane for a request of `method` on `path`, if there is one: only a `GET` of a lane's
    /// exact path (the router answers `HEAD`, `OPTIONS` and the rest).
    pub fn lane(&self, method: &Method, path: &str) -> Option<&Lane> {
        if *method != Method::GET {
            return None;
        }
        self.lanes.iter().find(|lane| *lane.path == *path)
    }
}

impl From<Router> for Served {
    fn from(router: Router) -> Self {
        Self::new(router, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    fn lane(path: &str, answer: &'static str) -> Lane {
        Lane::new(path, move |_| {
            Box::pin(async move { answer.into_response() })
        })
    }

    #[test]
    fn only_a_get_of_the_exact_path_takes_a_lane() {
        let served = Served::new(Router::new(), vec![lane("/get_sts_token", "a")]);
        assert!(served.lane(&Method::GET, "/get_sts_token").is_some());
        for (method, path) in [
            (Method::HEAD, "/get_sts_token"),
            (Method::OPTIONS, "/get_sts_token"),
            (Method::POST, "/get_sts_token"),
            (Method::GET, "/get_sts_token/"),
            (Method::GET, "/get_sts_token/x"),
            (Method::GET, "/GET_STS_TOKEN"),
            (Method::GET, "/"),
        ] {
            assert!(served.lane(&method, path).is_none(), "{method} {path}");
        }
    }
}
