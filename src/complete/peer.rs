//! Who the client is, for login throttling: the socket's peer address, and
//! `X-Forwarded-For` only behind proxies the operator trusts.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

use crate::error::ConfigError;

/// The setting named in [`TrustedProxies::parse`]'s errors.
const SETTING: &str = "trusted_proxies";

/// The most `X-Forwarded-For` hops walked through trusted proxies. A real chain of
/// proxies is a handful long; past this the last trusted hop stands for the client.
const MAX_HOPS: usize = 32;

/// The socket's peer address of a request: a request extension the application inserts,
/// from which login throttling learns who the client is.
///
/// Without it every client counts as one unknown client. Insert the address the
/// connection came from, never a value read from the request: `X-Forwarded-For` is read
/// only when this peer is one of the [`TrustedProxies`].
///
/// With axum, serve the router with `into_make_service_with_connect_info::<SocketAddr>()`
/// and copy axum's `ConnectInfo` into the request with a `map_request` middleware:
///
/// ```no_run
/// use std::net::SocketAddr;
///
/// use axum::extract::{ConnectInfo, Request};
/// use axum::routing::get;
/// use axum::{middleware, Router};
/// use tower_stepup::complete::PeerAddr;
///
/// async fn peer_addr(ConnectInfo(addr): ConnectInfo<SocketAddr>, mut req: Request) -> Request {
///     req.extensions_mut().insert(PeerAddr(addr));
///     req
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(middleware::map_request(peer_addr));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// # }
/// ```
///
/// With hyper, the accept loop has the address; insert it before the service sees the
/// request:
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use hyper_util::rt::{TokioExecutor, TokioIo};
/// use hyper_util::server::conn::auto;
/// use hyper_util::service::TowerToHyperService;
/// use tower::{service_fn, ServiceExt};
/// use tower_stepup::complete::PeerAddr;
///
/// # async fn run() -> std::io::Result<()> {
/// let app = service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// loop {
///     let (stream, addr) = listener.accept().await?;
///     let service = app.clone().map_request(move |mut req: Request<Incoming>| {
///         req.extensions_mut().insert(PeerAddr(addr));
///         req
///     });
///     tokio::spawn(async move {
///         let _ = auto::Builder::new(TokioExecutor::new())
///             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
///             .await;
///     });
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        Self(addr)
    }
}

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges, IPv4 and
/// IPv6. None by default.
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address it maps, both
/// as a peer and in a range: `192.0.2.0/24` contains `::ffff:192.0.2.7`, and an IPv6
/// range that covers `::ffff:0:0/96` covers IPv4 addresses too.
///
/// # Security
/// Every listed proxy can name any client it likes, so list only your own proxies, and
/// only as widely as they run: a client that can connect from inside a trusted range can
/// make up its address and so escape per-client throttling (the per-account cap still
/// holds). With none listed, the client is the socket's peer and `X-Forwarded-For` is
/// ignored; behind a proxy every client then counts as the proxy.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Ranges in the IPv6 address space, IPv4 ones as IPv4-mapped (`::ffff:0:0/96`).
    ranges: Vec<Range>,
}

/// One CIDR range in the IPv6 address space.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Range {
    /// The network, host bits zero.
    net: u128,
    /// The prefix length, 0 to 128.
    prefix: u8,
}

impl Range {
    fn contains(self, addr: u128) -> bool {
        addr & mask(self.prefix) == self.net
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`: IPv4 ranges in IPv4 form.
impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = Ipv6Addr::from(self.net);
        match ip.to_ipv4_mapped() {
            Some(v4) if self.prefix >= 96 => write!(f, "{v4}/{}", self.prefix - 96),
            _ => write!(f, "{ip}/{}", self.prefix),
        }
    }
}

/// The netmask of a prefix length (0 to 128) in the IPv6 address space.
fn mask(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// `ip` in the IPv6 address space: an IPv4 address as its IPv4-mapped form.
fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl TrustedProxies {
    /// No trusted proxies: the client is always the socket's peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses a comma-separated list of IP addresses and CIDR ranges, e.g.
    /// `"10.0.0.0/8, 192.0.2.7, fd00::/8"`. Whitespace around items is ignored; an empty
    /// or blank list is [`none`](Self::none).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad item: an empty item (`"a,,b"`, a
    /// trailing comma), something that is not an address, a prefix longer than the
    /// address (`/33`, `/129`), or a range with host bits set (`10.0.0.1/8`: write
    /// `10.0.0.0/8`, or `10.0.0.1/32` for one address), which is usually a typo that
    /// would trust far more than meant.
    ///
    /// ```
    /// use tower_stepup::complete::TrustedProxies;
    ///
    /// let trusted = TrustedProxies::parse("10.0.0.0/8, 2001:db8::1").unwrap();
    /// assert!(trusted.contains("10.1.2.3".parse().unwrap()));
    /// assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
    /// assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        if list.trim().is_empty() {
            return Ok(Self::none());
        }
        let ranges = list
            .split(',')
            .enumerate()
            .map(|(i, item)| parse_range(i.saturating_add(1), item.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ranges })
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address counts as its IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let addr = to_u128(ip);
        self.ranges.iter().any(|r| r.contains(addr))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.ranges).finish()
    }
}

/// One item of the list, already trimmed; `position` counts from 1, for the error.
fn parse_range(position: usize, item: &str) -> Result<Range, ConfigError> {
    let bad = |why: &str| ConfigError::invalid(SETTING, format!("item {position} {item:?}: {why}"));
    if item.is_empty() {
        return Err(bad("empty item"));
    }
    let (addr, prefix) = match item.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (item, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| bad("not an IP address or CIDR range"))?;
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix = match prefix {
        None => max,
        // Digits only: `u8::from_str` would also take `+8`.
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad(&format!("prefix longer than {max} bits")))?,
        Some(_) => return Err(bad("the prefix length is not a number")),
    };
    // In the IPv6 space, an IPv4 prefix sits after the 96 bits of `::ffff:0:0/96`.
    let prefix = if max == 32 { prefix + 96 } else { prefix };
    let addr = to_u128(ip);
    let net = addr & mask(prefix);
    if net != addr {
        return Err(bad("host bits set after the prefix"));
    }
    Ok(Range { net, prefix })
}

/// The client of a request, for throttling.
///
/// The rule: the client is the socket's `peer`. Only when the peer is a trusted proxy,
/// `X-Forwarded-For` is read (every header line, in order, as one comma-separated list),
/// from the right, because each proxy appends the address it saw: trusted proxies are
/// skipped, and the first address that is not one is the client. Everything to its left
/// was written by that client or by proxies nobody vouches for, and is never read.
///
/// The walk stops early, and the last address read stands for the client (the peer, or
/// the nearest trusted proxy that an entry named), when an entry is not an address
/// (`unknown`, a quoted value, garbage, invalid UTF-8), when the list is all trusted
/// proxies, or after [`MAX_HOPS`] trusted hops. Empty list elements are skipped
/// (RFC 9110 §5.6.1). An entry may carry a port as some proxies write it (`192.0.2.1:80`,
/// `[2001:db8::1]:80`); the port is dropped. IPv4-mapped IPv6 addresses come back as
/// IPv4.
///
/// `None` only when the application did not say who the peer is (no [`PeerAddr`]).
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let mut client = peer?.to_canonical();
    if !trusted.contains(client) {
        return Some(client);
    }
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','))
        .map(|entry| entry.trim_ascii())
        .filter(|entry| !entry.is_empty());
    for (hops, entry) in entries.enumerate() {
        if hops >= MAX_HOPS {
            break;
        }
        let Some(ip) = parse_hop(entry) else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, or an address with a port.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|sa| sa.ip()))
        .ok()
}

/// The throttling key of a client: an IPv4 address as itself, an IPv6 address as its
/// /64 prefix (one subscriber usually holds a whole /64), an IPv4-mapped IPv6 address as
/// its IPv4. The forms cannot collide.
pub(crate) fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & mask(64));
            format!("{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn error_of(list: &str) -> String {
        TrustedProxies::parse(list).unwrap_err().to_string()
    }

    // --- TrustedProxies::parse / contains ---

    #[test]
    fn none_trusts_nobody() {
        let none = TrustedProxies::none();
        assert!(none.is_empty());
        assert!(!none.contains(ip("127.0.0.1")));
        assert!(!none.contains(ip("::1")));
        assert_eq!(none, TrustedProxies::default());
    }

    #[test]
    fn empty_or_blank_list_is_none() {
        assert_eq!(trusted(""), TrustedProxies::none());
        assert_eq!(trusted("  \t "), TrustedProxies::none());
    }

    #[test]
    fn single_addresses_are_exact() {
        let t = trusted("192.0.2.7, 2001:db8::1");
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(!t.contains(ip("192.0.2.6")));
        assert!(t.contains(ip("2001:db8::1")));
        assert!(!t.contains(ip("2001:db8::2")));
    }

    #[test]
    fn ipv4_cidr_covers_its_range_only() {
        let t = trusted("10.0.0.0/8,172.16.0.0/12");
        assert!(t.contains(ip("10.0.0.0")));
        assert!(t.contains(ip("10.255.255.255")));
        assert!(!t.contains(ip("11.0.0.0")));
        assert!(!t.contains(ip("9.255.255.255")));
        assert!(t.contains(ip("172.31.255.255")));
        assert!(!t.contains(ip("172.32.0.0")));
    }

    #[test]
    fn ipv6_cidr_covers_its_range_only() {
        let t = trusted("2001:db8:1::/48");
        assert!(t.contains(ip("2001:db8:1::")));
        assert!(t.contains(ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff")));
        assert!(!t.contains(ip("2001:db8:2::")));
        assert!(!t.contains(ip("10.0.0.1")));
    }

    #[test]
    fn zero_and_full_prefixes() {
        let all_v4 = trusted("0.0.0.0/0");
        assert!(all_v4.contains(ip("1.2.3.4")));
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("2001:db8::1")));
        let one = trusted("1.2.3.4/32, 2001:db8::5/128");
        assert!(one.contains(ip("1.2.3.4")));
        assert!(!one.contains(ip("1.2.3.5")));
        assert!(one.contains(ip("2001:db8::5")));
        assert!(!one.contains(ip("2001:db8::4")));
        let all_v6 = trusted("::/0");
        assert!(all_v6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let t = trusted("192.0.2.0/24");
        assert!(t.contains(ip("::ffff:192.0.2.9")));
        assert!(!t.contains(ip("::ffff:192.0.3.9")));
        // Listed in mapped form, it matches the plain IPv4 address too.
        let mapped = trusted("::ffff:198.51.100.0/120");
        assert!(mapped.contains(ip("198.51.100.200")));
        assert!(!mapped.contains(ip("198.51.101.1")));
        assert!(trusted("::ffff:203.0.113.5").contains(ip("203.0.113.5")));
        // The deprecated IPv4-compatible form (::a.b.c.d) is not IPv4.
        assert!(!t.contains(ip("::192.0.2.9")));
    }

    #[test]
    fn whitespace_around_items_is_ignored() {
        let t = trusted(" 10.0.0.1 ,\t2001:db8::/32  ");
        assert!(t.contains(ip("10.0.0.1")));
        assert!(t.contains(ip("2001:db8:ffff::1")));
    }

    #[test]
    fn empty_items_are_refused_with_their_position() {
        assert!(error_of("10.0.0.1,,10.0.0.2").contains("item 2"));
        assert!(error_of("10.0.0.1,").contains("item 2"));
        assert!(error_of(",10.0.0.1").contains("item 1"));
        assert!(error_of("10.0.0.1, ,10.0.0.2").contains("empty item"));
        assert!(error_of(",").contains("empty item"));
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_item() {
        for item in [
            "localhost",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "1.2.3.4:80",
            "[::1]",
            "fe80::1%eth0",
            "2001:db8:::1",
            "unknown",
            "10.0.0.0 /8",
        ] {
            let error = error_of(&format!("192.0.2.1, {item}"));
            assert!(
                error.contains(&format!("{item:?}")) && error.contains("item 2"),
                "{item}: {error}"
            );
            assert!(error.contains("trusted_proxies"), "{error}");
        }
    }

    #[test]
    fn prefixes_longer_than_the_address_are_refused() {
        assert!(error_of("10.0.0.0/33").contains("longer than 32"));
        assert!(error_of("::/129").contains("longer than 128"));
        assert!(error_of("10.0.0.0/999").contains("longer than 32"));
        assert!(error_of("::ffff:10.0.0.0/129").contains("longer than 128"));
    }

    #[test]
    fn malformed_prefixes_are_refused() {
        for item in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-8",
            "10.0.0.0/8/8",
            "10.0.0.0/x",
            "10.0.0.0/0008",
            "10.0.0.0/ 8",
            "/8",
        ] {
            let error = error_of(item);
            assert!(error.contains(&format!("{item:?}")), "{item}: {error}");
        }
    }

    #[test]
    fn host_bits_after_the_prefix_are_refused() {
        assert!(error_of("10.0.0.1/8").contains("host bits"));
        assert!(error_of("2001:db8::1/32").contains("host bits"));
        assert!(TrustedProxies::parse("10.0.0.1/32").is_ok());
    }

    #[test]
    fn debug_lists_the_ranges() {
        let t = trusted("10.0.0.0/8, 192.0.2.7, 2001:db8::/32");
        assert_eq!(
            format!("{t:?}"),
            "[10.0.0.0/8, 192.0.2.7/32, 2001:db8::/32]"
        );
    }

    // --- client_ip ---

    #[test]
    fn no_peer_is_no_client() {
        assert_eq!(
            client_ip(None, &xff(&["1.2.3.4"]), &trusted("10.0.0.0/8")),
            None
        );
    }

    #[test]
    fn untrusted_peer_is_the_client_and_xff_is_ignored() {
        let peer = Some(ip("203.0.113.9"));
        assert_eq!(
            client_ip(peer, &xff(&["1.2.3.4"]), &TrustedProxies::none()),
            peer
        );
        assert_eq!(
            client_ip(peer, &xff(&["1.2.3.4"]), &trusted("10.0.0.0/8")),
            peer
        );
    }

    #[test]
    fn trusted_peer_without_xff_is_the_client() {
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), &trusted("10.0.0.0/8")),
            peer
        );
        assert_eq!(client_ip(peer, &xff(&[""]), &trusted("10.0.0.0/8")), peer);
        assert_eq!(
            client_ip(peer, &xff(&[" , ,"]), &trusted("10.0.0.0/8")),
            peer
        );
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted_xff_address() {
        let t = trusted("10.0.0.0/8");
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, &xff(&["198.51.100.1"]), &t),
            Some(ip("198.51.100.1"))
        );
        // The client made up the left entries; the proxy appended the right one.
        assert_eq!(
            client_ip(peer, &xff(&["6.6.6.6, 7.7.7.7, 198.51.100.1"]), &t),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn trusted_hops_are_skipped() {
        let t = trusted("10.0.0.0/8, 2001:db8:ffff::/48");
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(
                peer,
                &xff(&["6.6.6.6, 198.51.100.1, 10.0.0.3, 2001:db8:ffff::2, 10.0.0.2"]),
                &t
            ),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn a_spoofed_trusted_address_left_of_the_client_is_not_reached() {
        let t = trusted("10.0.0.0/8");
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &xff(&["10.9.9.9, 198.51.100.1"]), &t),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn all_header_lines_form_one_list_in_order() {
        let t = trusted("10.0.0.0/8");
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, &xff(&["6.6.6.6, 198.51.100.1", "10.0.0.2"]), &t),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(
                peer,
                &xff(&["6.6.6.6", "198.51.100.1, 10.0.0.2", "10.0.0.3"]),
                &t
            ),
            Some(ip("198.51.100.1"))
        );
        // The last line counts, not the first.
        assert_eq!(
            client_ip(peer, &xff(&["198.51.100.1", "203.0.113.1"]), &t),
            Some(ip("203.0.113.1"))
        );
    }

    #[test]
    fn all_trusted_chain_gives_the_leftmost_trusted_hop() {
        let t = trusted("10.0.0.0/8");
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &xff(&["10.0.0.3, 10.0.0.2"]), &t),
            Some(ip("10.0.0.3"))
        );
    }

    #[test]
    fn unparseable_entry_stops_at_the_last_good_hop() {
        let t = trusted("10.0.0.0/8");
        let peer = Some(ip("10.0.0.1"));
        for bad in [
            "unknown",
            "\"198.51.100.1\"",
            "garbage",
            "_hidden",
            "1.2.3",
            "[::1]",
        ] {
            // Right next to the peer: the peer stands for the client.
            assert_eq!(
                client_ip(peer, &xff(&[&format!("198.51.100.1, {bad}")]), &t),
                peer,
                "{bad}"
            );
            // Behind a trusted hop: that hop stands for the client.
            assert_eq!(
                client_ip(peer, &xff(&[&format!("198.51.100.1, {bad}, 10.0.0.2")]), &t),
                Some(ip("10.0.0.2")),
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_utf8_entry_stops_the_walk() {
        let t = trusted("10.0.0.0/8");
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.1, \xff\xfe, 10.0.0.2").unwrap(),
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &t),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        let t = trusted("10.0.0.0/8");
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.1")),
                &xff(&["198.51.100.1,, ,10.0.0.2,"]),
                &t
            ),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn entries_with_ports_give_their_address() {
        let t = trusted("10.0.0.0/8");
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(
            client_ip(peer, &xff(&["198.51.100.1:8080"]), &t),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(peer, &xff(&["[2001:db8::7]:443"]), &t),
            Some(ip("2001:db8::7"))
        );
        // A trusted hop with a port is still skipped.
        assert_eq!(
            client_ip(peer, &xff(&["198.51.100.1, 10.0.0.2:80"]), &t),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn ipv4_mapped_addresses_come_back_as_ipv4() {
        let t = trusted("10.0.0.0/8");
        // A dual-stack listener reports IPv4 peers in mapped form.
        assert_eq!(
            client_ip(
                Some(ip("::ffff:10.0.0.1")),
                &xff(&["::ffff:198.51.100.1"]),
                &t
            ),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(Some(ip("::ffff:203.0.113.1")), &xff(&["1.2.3.4"]), &t),
            Some(ip("203.0.113.1"))
        );
    }

    #[test]
    fn ipv6_peers_and_entries() {
        let t = trusted("2001:db8:ffff::/48");
        assert_eq!(
            client_ip(
                Some(ip("2001:db8:ffff::1")),
                &xff(&["2001:db8:1:2::99, 2001:db8:ffff::2"]),
                &t
            ),
            Some(ip("2001:db8:1:2::99"))
        );
    }

    #[test]
    fn long_trusted_chains_stop_after_max_hops() {
        let t = trusted("10.0.0.0/8");
        let mut list = vec!["198.51.100.1".to_owned()];
        list.extend((0..MAX_HOPS + 5).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)));
        let headers = xff(&[&list.join(",")]);
        // The walk gives up inside the trusted chain: a trusted hop, never the far left.
        let got = client_ip(Some(ip("10.255.0.1")), &headers, &t).unwrap();
        assert!(t.contains(got), "{got}");
        // A chain just within the limit reaches the client.
        let mut short = vec!["198.51.100.1".to_owned()];
        short.extend((0..MAX_HOPS - 1).map(|i| format!("10.1.0.{}", i + 1)));
        assert_eq!(
            client_ip(Some(ip("10.255.0.1")), &xff(&[&short.join(",")]), &t),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn huge_header_from_untrusted_client_is_cheap_and_harmless() {
        let t = trusted("10.0.0.0/8");
        let huge = format!("{}198.51.100.1", "10.0.0.9, ".repeat(100_000));
        let headers = xff(&[&huge, &"x".repeat(64 * 1024)]);
        // The rightmost entry is garbage: the peer stands.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &t),
            Some(ip("10.0.0.1"))
        );
        let headers = xff(&[&huge]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &t),
            Some(ip("198.51.100.1"))
        );
    }

    proptest! {
        #[test]
        fn any_header_bytes_never_panic(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
            peer in any::<[u8; 4]>(),
        ) {
            let t = trusted("0.0.0.0/1, ::/1");
            let mut headers = HeaderMap::new();
            for line in lines {
                if let Ok(v) = HeaderValue::from_bytes(&line) {
                    headers.append("x-forwarded-for", v);
                }
            }
            let got = client_ip(Some(IpAddr::from(peer)), &headers, &t);
            prop_assert!(got.is_some());
        }

        #[test]
        fn any_list_parses_or_errs_without_panic(list in "[0-9a-fA-F:./, \\[\\]%+-]{0,40}") {
            let _ = TrustedProxies::parse(&list);
        }

        #[test]
        fn a_cidr_contains_exactly_the_addresses_sharing_its_prefix(
            net in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>(),
        ) {
            let net = net & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let t = trusted(&format!("{}/{prefix}", std::net::Ipv4Addr::from(net)));
            let shift = 32 - u32::from(prefix);
            let same = probe.checked_shr(shift).unwrap_or(0) == net.checked_shr(shift).unwrap_or(0);
            prop_assert_eq!(t.contains(IpAddr::from(probe.to_be_bytes())), same);
        }
    }

    // --- client_key ---

    #[test]
    fn ipv4_key_is_the_address() {
        assert_eq!(client_key(ip("198.51.100.1")), "198.51.100.1");
        assert_eq!(client_key(ip("0.0.0.0")), "0.0.0.0");
    }

    #[test]
    fn ipv6_key_is_the_slash_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(client_key(ip("::1")), "::/64");
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn addresses_in_one_slash_64_share_a_key() {
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
    }

    #[test]
    fn ipv4_mapped_key_is_the_ipv4() {
        assert_eq!(client_key(ip("::ffff:198.51.100.1")), "198.51.100.1");
    }
}
