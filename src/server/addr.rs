//! Who a request comes from: the client's address (the peer's, or, behind a proxy the
//! operator named with `--trusted-proxy`, the one that proxy forwarded), and the key that
//! per-address limits and bans count by.
//!
//! Only a trusted proxy's forwarding headers are believed: anyone else could write
//! `X-Forwarded-For: 1.2.3.4` to look like a fresh address on every request. Behind a
//! chain of proxies the client is the rightmost address that is not a trusted proxy, since
//! each proxy appends what it saw and only the entries our own proxies wrote can be trusted.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// What per-address limits and bans count by: an IPv4 address (IPv4-mapped IPv6 read as
/// IPv4), or an IPv6 /64, since one IPv6 host usually holds a whole /64 and can rotate
/// through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                Self(IpAddr::V6(segments.into()))
            }
            v4 => Self(v4),
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client's address for a request that came from `peer` with `headers`.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        // RFC 7239 `Forwarded` is the standard; `X-Forwarded-For` is what most proxies send.
        // A proxy sends one or the other; where both are present the standard one wins.
        let hops = forwarded_for(headers);
        let hops = if hops.is_empty() {
            x_forwarded_for(headers)
        } else {
            hops
        };
        for hop in hops.into_iter().rev() {
            match hop {
                Some(addr) if self.contains(addr) => continue,
                Some(addr) => return addr,
                // An entry we cannot read (`unknown`, an obfuscated name): nothing to its
                // left can be trusted, and the proxy itself is the best we know.
                None => return peer,
            }
        }
        peer
    }
}

/// The `for=` addresses of every `Forwarded` header, in order (None where unreadable).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// Every `X-Forwarded-For` entry, in order (None where unreadable).
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`,
/// `[::1]:5678` or a bare IPv6 address.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            trusted.client_addr(ip("192.0.2.9"), &forged),
            ip("192.0.2.9")
        );
        assert_eq!(
            TrustedProxies::default().client_addr(ip("10.0.0.1"), &forged),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "::1/128"]);
        // The client forged the first entry; our proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(trusted.client_addr(ip("::1"), &h), ip("198.51.100.7"));
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, For=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            trusted.client_addr(ip("10.1.1.1"), &h),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.1:51000")]);
        assert_eq!(trusted.client_addr(ip("10.1.1.1"), &h), ip("203.0.113.1"));
    }

    #[test]
    fn unreadable_or_missing_forwarding_falls_back_to_the_proxy() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(trusted.client_addr(peer, &HeaderMap::new()), peer);
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(trusted.client_addr(peer, &h), peer);
        let h = headers(&[("x-forwarded-for", "9.9.9.9, _hidden")]);
        assert_eq!(trusted.client_addr(peer, &h), peer);
        // Every hop trusted: the proxy is all we know.
        let h = headers(&[("x-forwarded-for", "127.0.0.9")]);
        assert_eq!(trusted.client_addr(peer, &h), peer);
    }

    #[test]
    fn keys_group_an_ipv6_64_and_read_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddrKey::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::of(ip("::ffff:192.0.2.1")),
            AddrKey::of(ip("192.0.2.1"))
        );
        assert_ne!(AddrKey::of(ip("192.0.2.1")), AddrKey::of(ip("192.0.2.2")));
        assert_eq!(AddrKey::of(ip("2001:db8::5")).to_string(), "2001:db8::/64");
    }
}
