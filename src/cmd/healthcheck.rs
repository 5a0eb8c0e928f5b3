//! `stsvend healthcheck`: asks a running stsvend's `/healthz` and exits 0 on `200`.
//!
//! For container `HEALTHCHECK` lines in images without a shell or curl. Plain HTTP/1.1 over a
//! blocking socket: no runtime, no TLS (the admin listener is plain HTTP).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use reqwest::Url;

pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/healthz";

/// `/healthz` on the admin listener `admin_listen` (as `STSVEND_ADMIN_LISTEN` gives it), asked
/// on loopback when it listens on every address; [`DEFAULT_URL`] without one.
pub fn default_url(admin_listen: Option<&str>) -> String {
    let Some(addr) = admin_listen.and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok())
    else {
        return DEFAULT_URL.to_owned();
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/healthz",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

/// `Ok` when `url` answers `200` within `timeout`; otherwise what went wrong.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let url = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(
            "only http:// URLs are supported (the admin listener is plain HTTP)".to_owned(),
        );
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: stsvend-healthcheck\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!("{url} answered status {status:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_follows_the_admin_listener() {
        assert_eq!(default_url(None), DEFAULT_URL);
        assert_eq!(
            default_url(Some("0.0.0.0:9191")),
            "http://127.0.0.1:9191/healthz"
        );
        assert_eq!(default_url(Some("[::]:9191")), "http://[::1]:9191/healthz");
        assert_eq!(
            default_url(Some("10.0.0.5:9090")),
            "http://10.0.0.5:9090/healthz"
        );
        assert_eq!(default_url(Some("nonsense")), DEFAULT_URL);
    }
}
