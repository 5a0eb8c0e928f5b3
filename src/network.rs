//! Which network an address belongs to, for rate limits, caches and the AssumeRole budget.
//!
//! One host on IPv6 usually owns a whole `/64` (2^64 addresses), so counting IPv6 callers per
//! address would give one caller 2^64 rate-limit buckets. Addresses are therefore grouped by
//! prefix: IPv6 by `STSVEND_IPV6_PREFIX_LENGTH` (default 64) everywhere; IPv4 per address for
//! rate limits and caches (a NAT address already stands for many users), and by
//! `STSVEND_IPV4_NETWORK_PREFIX_LENGTH` (default 24) only where new tokens are counted per
//! network. Pure and allocation-free: masking is a few instructions per request.

use std::net::IpAddr;

use ipnet::IpNet;

/// The default IPv6 grouping: the size a provider hands to one subscriber line or one host.
pub const DEFAULT_IPV6_PREFIX_LENGTH: u8 = 64;
/// The default IPv4 network for counting new tokens: carrier-grade NAT puts thousands of
/// legitimate users behind the addresses of one /24, so the limit per /24 must stay generous.
pub const DEFAULT_IPV4_NETWORK_PREFIX_LENGTH: u8 = 24;
/// A wider grouping used only to order waiting callers fairly (never to refuse anyone): an
/// operator of a whole IPv4 /16 or IPv6 /48 should not outrank every other network.
const WIDE_IPV4: u8 = 16;
const WIDE_IPV6: u8 = 48;

/// How addresses are grouped; copied into every place that groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    pub ipv6_prefix: u8,
    pub ipv4_network_prefix: u8,
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            ipv6_prefix: DEFAULT_IPV6_PREFIX_LENGTH,
            ipv4_network_prefix: DEFAULT_IPV4_NETWORK_PREFIX_LENGTH,
        }
    }
}

impl Grouping {
    /// The caller as rate limits and per-address caches see it: an IPv4 address itself, an
    /// IPv6 address's prefix.
    pub fn caller(self, ip: IpAddr) -> IpNet {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
            v6 => truncate(v6, self.ipv6_prefix),
        }
    }

    /// The network new per-caller tokens are counted against.
    pub fn network(self, ip: IpAddr) -> IpNet {
        match ip.to_canonical() {
            v4 @ IpAddr::V4(_) => truncate(v4, self.ipv4_network_prefix),
            v6 => truncate(v6, self.ipv6_prefix),
        }
    }

    /// The wider network used to order waiting callers fairly.
    pub fn wide(self, ip: IpAddr) -> IpNet {
        match ip.to_canonical() {
            v4 @ IpAddr::V4(_) => truncate(v4, WIDE_IPV4.min(self.ipv4_network_prefix)),
            v6 => truncate(v6, WIDE_IPV6.min(self.ipv6_prefix)),
        }
    }
}

/// `ip`'s network of `prefix` bits (clamped to the family's length).
fn truncate(ip: IpAddr, prefix: u8) -> IpNet {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, prefix.min(max))
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_prefix() {
        let g = Grouping::default();
        assert_eq!(g.caller(ip("2001:db8:1:2::1")), net("2001:db8:1:2::/64"));
        assert_eq!(
            g.caller(ip("2001:db8:1:2:ffff:1:2:3")),
            g.caller(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            g.caller(ip("2001:db8:1:3::1")),
            g.caller(ip("2001:db8:1:2::1"))
        );
        let g56 = Grouping {
            ipv6_prefix: 56,
            ..g
        };
        assert_eq!(
            g56.caller(ip("2001:db8:1:2ff::1")),
            net("2001:db8:1:200::/56")
        );
        assert_eq!(g.wide(ip("2001:db8:1:2::1")), net("2001:db8:1::/48"));
    }

    #[test]
    fn ipv4_callers_stay_per_address_but_networks_are_prefixes() {
        let g = Grouping::default();
        assert_eq!(g.caller(ip("198.51.100.7")), net("198.51.100.7/32"));
        assert_eq!(g.network(ip("198.51.100.7")), net("198.51.100.0/24"));
        assert_eq!(g.wide(ip("198.51.100.7")), net("198.51.0.0/16"));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(g.caller(ip("::ffff:198.51.100.7")), net("198.51.100.7/32"));
        let g16 = Grouping {
            ipv4_network_prefix: 8,
            ..g
        };
        assert_eq!(g16.wide(ip("198.51.100.7")), net("198.0.0.0/8"));
    }
}
