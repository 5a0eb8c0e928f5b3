//! Which address a request comes from.
//!
//! The socket peer, unless the peer is one of the configured trusted proxies (the load balancer
//! in front); only then are `X-Forwarded-For` / `X-Real-IP` believed. Anyone can write those
//! headers, so a peer that is not trusted never gets to choose its address.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address for rate limiting, logging and source-IP binding.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // X-Forwarded-For lists the hops left to right; each proxy appends the address it saw.
    // Walk from the right past our own proxies; the first other address is the client.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut candidate = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => candidate = ip,
            Some(ip) => return ip,
            // Garbage in the chain: stop at the last address a trusted proxy vouched for.
            None => return candidate,
        }
    }
    if hops.is_empty()
        && let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_hop(v.trim()))
    {
        return ip;
    }
    candidate
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn slb() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &slb()), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_skipped() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.2.3")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("198.51.100.7"));
    }

    #[test]
    fn a_client_cannot_prepend_a_fake_hop() {
        // The client sent "X-Forwarded-For: 6.6.6.6"; the SLB appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("198.51.100.7"));
    }

    #[test]
    fn several_headers_ports_ipv6_and_x_real_ip() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("2001:db8::1"));
        let h = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("198.51.100.8"));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(mapped, &HeaderMap::new(), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn garbage_stops_at_the_last_trusted_hop() {
        let h = headers(&[("x-forwarded-for", "not-an-ip, 10.2.2.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &slb()), ip("10.2.2.2"));
        let h = headers(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &slb()),
            ip("10.3.3.3"),
            "all hops ours"
        );
    }
}
