//! Who the client is, and how it reached the server, when a trusted reverse proxy stands in
//! between (`http.trusted_proxies`). `X-Forwarded-*` headers are believed only from a trusted
//! peer: anyone else could write anything there.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderValue};

use crate::config::TrustedProxy;
use crate::http::ClientAddr;

/// How the request looked as the client sent it, where that differs from what the listener
/// saw: the scheme (TLS here, or `X-Forwarded-Proto` from a trusted proxy) and the host
/// (`X-Forwarded-Host` from a trusted proxy). A request extension, present only when the
/// listener knows something: a plain-HTTP request from an untrusted peer carries none (it may
/// come through a TLS-terminating proxy nobody declared, so its scheme is unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    /// `Some(true)` when the client used HTTPS, `Some(false)` when it used plain HTTP.
    pub https: Option<bool>,
    /// The `Host` the client sent, as a trusted proxy forwarded it.
    pub host: Option<HeaderValue>,
}

/// The configured trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<TrustedProxy>);

impl TrustedProxies {
    pub fn new(proxies: Vec<TrustedProxy>) -> Self {
        Self(proxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, addr: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
        let addr = addr.to_canonical();
        self.0.iter().any(|p| p.contains(&addr))
    }

    /// The request extensions for a request from `peer` over a connection that is TLS or not:
    /// the client's address, and what is known of the request as the client sent it.
    pub fn identify(&self, peer: IpAddr, tls: bool, headers: &HeaderMap) -> (ClientAddr, Option<ClientView>) {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            let view = tls.then(|| ClientView {
                https: Some(true),
                host: None,
            });
            return (ClientAddr(peer), view);
        }
        let client = self.client_addr(peer, forwarded_for(headers));
        let https = match rightmost(headers, "x-forwarded-proto") {
            Some(proto) if proto.eq_ignore_ascii_case("https") => Some(true),
            Some(proto) if proto.eq_ignore_ascii_case("http") => Some(false),
            // The proxy said nothing usable: the hop to it is unknown, the hop from it is this one.
            _ => tls.then_some(true),
        };
        let host = rightmost(headers, "x-forwarded-host").and_then(|h| HeaderValue::from_str(h).ok());
        (ClientAddr(client), Some(ClientView { https, host }))
    }

    /// The client of a request from `peer`, given the `X-Forwarded-For` entries in order: the
    /// peer itself unless trusted; else walking from the right (each proxy appends the address
    /// it received the request from), the first address that is not a trusted proxy. When
    /// every entry is trusted, the leftmost one; an entry that is not an address stops the
    /// walk at the last address a trusted proxy vouched for.
    pub fn client_addr<'a>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for entry in forwarded_for.rev() {
            let Some(addr) = parse_forwarded_addr(entry) else {
                return client;
            };
            client = addr;
            if !self.trusts(addr) {
                return addr;
            }
        }
        client
    }
}

/// The `X-Forwarded-For` entries, in order, over all the header's lines.
fn forwarded_for(headers: &HeaderMap) -> std::vec::IntoIter<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|line| line.to_str().unwrap_or_default().split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

/// The last value of a comma-separated header: the one the nearest proxy wrote.
fn rightmost<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let line = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    line.rsplit(',').next().map(str::trim).filter(|v| !v.is_empty())
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:5678`).
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    let addr = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            list.iter()
                .map(|p| TrustedProxy::try_from((*p).to_owned()).expect("proxy"))
                .collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn walk(trusted: &[&str], peer: &str, xff: &str) -> IpAddr {
        let entries: Vec<&str> = xff.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        proxies(trusted).client_addr(ip(peer), entries.into_iter())
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        assert_eq!(walk(&[], "203.0.113.9", "1.1.1.1"), ip("203.0.113.9"));
        assert_eq!(walk(&["127.0.0.1"], "203.0.113.9", "1.1.1.1"), ip("203.0.113.9"));
    }

    #[test]
    fn walks_from_the_right_past_trusted_proxies() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // A client-supplied spoof on the left is skipped: the walk stops at the first
        // address no trusted proxy is.
        assert_eq!(
            walk(&trusted, "127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3"),
            ip("198.51.100.7")
        );
        assert_eq!(walk(&trusted, "127.0.0.1", "198.51.100.7"), ip("198.51.100.7"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(walk(&trusted, "127.0.0.1", ""), ip("127.0.0.1"));
        // Every hop trusted: the leftmost.
        assert_eq!(walk(&trusted, "127.0.0.1", "10.0.0.5, 10.0.0.6"), ip("10.0.0.5"));
        // Garbage stops the walk at the last vouched-for address.
        assert_eq!(
            walk(&trusted, "127.0.0.1", "198.51.100.7, junk, 10.0.0.6"),
            ip("10.0.0.6")
        );
        // Ports and brackets, IPv6, and IPv4-mapped peers.
        assert_eq!(walk(&trusted, "127.0.0.1", "[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(walk(&trusted, "127.0.0.1", "198.51.100.7:5555"), ip("198.51.100.7"));
        assert_eq!(walk(&trusted, "::ffff:127.0.0.1", "198.51.100.7"), ip("198.51.100.7"));
    }

    #[test]
    fn identify_reads_forwarded_headers_only_from_trusted_peers() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("evil.example, intact.example"),
        );
        let trusted = proxies(&["127.0.0.1"]);
        let (addr, view) = trusted.identify(ip("127.0.0.1"), false, &headers);
        assert_eq!(addr, ClientAddr(ip("198.51.100.7")));
        assert_eq!(
            view,
            Some(ClientView {
                https: Some(true),
                host: Some(HeaderValue::from_static("intact.example")),
            })
        );
        let (addr, view) = trusted.identify(ip("192.0.2.1"), false, &headers);
        assert_eq!(addr, ClientAddr(ip("192.0.2.1")));
        assert_eq!(view, None);
        let (_, view) = trusted.identify(ip("192.0.2.1"), true, &headers);
        assert_eq!(
            view,
            Some(ClientView {
                https: Some(true),
                host: None,
            })
        );
    }

    #[test]
    fn trusted_proxy_syntax() {
        for ok in [
            "127.0.0.1",
            "::1",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "fd00::/8",
            " 192.168.0.1 ",
        ] {
            TrustedProxy::try_from(ok.to_owned()).expect(ok);
        }
        for bad in ["", "localhost", "10.0.0.0/33", "10.0.0", "1.2.3.4:80"] {
            let err = TrustedProxy::try_from(bad.to_owned()).expect_err(bad);
            assert!(err.contains("trusted_proxies"), "{err}");
        }
        assert!(proxies(&["10.1.2.3/8"]).trusts(ip("10.200.0.1")));
        assert!(!proxies(&["10.0.0.0/8"]).trusts(ip("11.0.0.1")));
    }
}
