//! Loopback ports held by the test, so no other test (nor the kernel's port-0 allocator) can
//! take them while they are in use.

use std::net::SocketAddr;

/// A loopback port that is bound but never listens, so connecting to it is refused at once (as
/// the metadata address is off-cloud). Held for as long as this value lives.
#[derive(Debug)]
pub(crate) struct ClosedPort {
    pub(crate) addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

/// A loopback socket bound to a port of the kernel's choice, never listening.
fn bound_loopback(reuse_address: bool) -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("can create a socket");
    if reuse_address {
        socket.set_reuseaddr(true).expect("can set SO_REUSEADDR");
    }
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("can bind a loopback port");
    let addr = socket.local_addr().expect("bound socket has an address");
    (addr, socket)
}

impl ClosedPort {
    pub(crate) fn new() -> Self {
        let (addr, _socket) = bound_loopback(false);
        Self { addr, _socket }
    }

    /// `http://127.0.0.1:PORT/`, for an endpoint that must not answer.
    pub(crate) fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }
}

/// A loopback port for a child process to listen on (`STSVEND_LISTEN`), bound by the test
/// before the child starts and held, not listening, until this value is dropped.
///
/// Why this works without a race: the reservation sets `SO_REUSEADDR` and never listens, so the
/// child (tokio binds with `SO_REUSEADDR` too) may bind the same address and listen on it, while
/// everybody else is refused: the kernel never hands out a port that is bound for a port-0 bind
/// or an outgoing connection, and an explicit bind conflicts with the child's listener. The old
/// way, reading a free port and releasing it, let a parallel test take the port in between.
#[derive(Debug)]
pub(crate) struct ReservedPort {
    pub(crate) addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl ReservedPort {
    pub(crate) fn new() -> Self {
        let (addr, _socket) = bound_loopback(true);
        Self { addr, _socket }
    }
}
