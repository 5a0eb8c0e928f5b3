//! The base every in-process fake remote service is built on: an axum router served on a
//! loopback listener that is bound before its address is handed out, a script of replies, and
//! the helpers for reading requests and writing expiry times the way Alibaba Cloud does.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::Uri;
use chrono::Utc;

/// A fake remote service on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub(crate) struct FakeServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Serves `router` on a fresh loopback port.
    pub(crate) async fn start(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, task }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replies given in order, then the fallback (if any) for every later call.
#[derive(Debug)]
pub(crate) struct Script<R> {
    queue: Mutex<VecDeque<R>>,
    fallback: Mutex<Option<R>>,
}

impl<R: Clone> Script<R> {
    pub(crate) fn new(replies: Vec<R>) -> Self {
        Self {
            queue: Mutex::new(replies.into()),
            fallback: Mutex::new(None),
        }
    }

    pub(crate) fn set_fallback(&self, reply: R) {
        *self.fallback.lock().unwrap() = Some(reply);
    }

    /// The next scripted reply, else the fallback; `None` leaves the default to the fake.
    pub(crate) fn next(&self) -> Option<R> {
        let scripted = self.queue.lock().unwrap().pop_front();
        scripted.or_else(|| self.fallback.lock().unwrap().clone())
    }
}

/// A request's parameters, query and form body merged (STS reads both).
pub(crate) fn params(uri: &Uri, body: &Bytes) -> HashMap<String, String> {
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    params.extend(form_urlencoded::parse(body).into_owned());
    params
}

/// `now + seconds` as STS and the metadata service write an `Expiration`.
pub(crate) fn expiration_in(seconds: i64) -> String {
    #[allow(clippy::disallowed_methods)] // the fakes play remote services, with their own clock
    let at = Utc::now() + chrono::Duration::seconds(seconds);
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
