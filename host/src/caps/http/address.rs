//! Which addresses a plugin's requests may connect to, and the resolver that enforces it.
//!
//! A request may not connect to an address of the host itself or of its networks:
//! loopback, link-local (cloud metadata services live there), private, unique-local,
//! CGNAT, unspecified, multicast, broadcast and reserved addresses, nor to IPv6 forms that
//! embed such an IPv4 address (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
//! The one exception is an address the user wrote as an endpoint (an IP literal, or
//! `localhost`): the caller names such hosts as exempt for the request.
//!
//! IP literals are checked by the policy before a request is built; names are checked
//! here, after resolution, and reqwest connects to exactly the addresses this resolver
//! returns, so the address checked is the address connected to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The class of addresses `ip` belongs to if plugins may not reach it, such as
/// `"loopback"` or `"private"`; `None` for an address they may reach.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// `class` with its indefinite article: `a loopback`, `an unspecified`.
pub fn a(class: &str) -> String {
    let article = if class == "unspecified" { "an" } else { "a" };
    format!("{article} {class}")
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    let class = match (a, b) {
        (0, _) => "unspecified",
        (127, _) => "loopback",
        (10, _) | (192, 168) => "private",
        (172, 16..=31) => "private",
        (169, 254) => "link-local",
        (100, 64..=127) => "CGNAT",
        (224..=239, _) => "multicast",
        _ if ip == Ipv4Addr::BROADCAST => "broadcast",
        (240..=255, _) => "reserved",
        // Benchmarking networks, sometimes used inside data centres.
        (198, 18..=19) => "reserved",
        _ => return None,
    };
    Some(class)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    let class = match s[0] {
        0xfe80..=0xfebf => "link-local",
        // Deprecated site-local addresses: private networks.
        0xfec0..=0xfeff => "private",
        0xfc00..=0xfdff => "unique-local",
        0xff00..=0xffff => "multicast",
        // NAT64 for local use (RFC 8215): a private network's translator.
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => "private",
        // The rest of `::/16` (reserved by IANA) and the discard prefix `100::/64`.
        0x0000 => "reserved",
        0x0100 if s[1..4] == [0, 0, 0] => "reserved",
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(low(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(low(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// A resolver refused every address of a name.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "{host} resolves to {address}, {} address, which plugins may not reach (only an address or `localhost` that \
     the user wrote as the endpoint may be private)",
    a(class)
)]
pub struct AddressRefused {
    /// The name asked for.
    pub host: String,
    /// The first refused address.
    pub address: IpAddr,
    /// Its class, from [`forbidden`].
    pub class: &'static str,
}

/// A name resolved to no address at all.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no address")]
struct NoAddress(String);

/// Resolves names for reqwest: from the override map if it names the host, else with the
/// system resolver; drops forbidden addresses unless the name is exempt, and fails with
/// [`AddressRefused`] when none remain.
#[derive(Debug, Clone)]
pub struct Resolver {
    overrides: Arc<BTreeMap<String, Vec<IpAddr>>>,
    exempt: BTreeSet<String>,
}

impl Resolver {
    /// Resolves with `overrides` first; the names in `exempt` may resolve to any address.
    pub fn new(overrides: Arc<BTreeMap<String, Vec<IpAddr>>>, exempt: BTreeSet<String>) -> Self {
        Resolver { overrides, exempt }
    }

    /// The addresses of `host` that may be connected to.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let host = host.to_ascii_lowercase();
        let key = host.strip_suffix('.').unwrap_or(&host);
        let all: Vec<IpAddr> = match self.overrides.get(key) {
            Some(addresses) => addresses.clone(),
            None => tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect(),
        };
        if self.exempt.contains(key) {
            return if all.is_empty() { Err(Box::new(NoAddress(host))) } else { Ok(all) };
        }
        let mut refused = None;
        let mut allowed = Vec::new();
        for address in all {
            match forbidden(address) {
                None => allowed.push(address),
                Some(class) => {
                    refused.get_or_insert((address, class));
                }
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some((address, class))) => Err(Box::new(AddressRefused { host, address, class })),
            (true, None) => Err(Box::new(NoAddress(host))),
        }
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = resolver.lookup(&host).await?;
            // Port 0: reqwest puts in the URL's port.
            let addrs: reqwest::dns::Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The [`AddressRefused`] somewhere in an error's source chain, if any.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

/// Parses the resolver overrides of `PIER_RESOLVE`: whitespace-separated
/// `host=address[,address...]` pairs.
pub fn parse_overrides(text: &str) -> Result<BTreeMap<String, Vec<IpAddr>>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split_whitespace() {
        let Some((host, addresses)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not `host=address[,address...]`"));
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !host_ok {
            return Err(format!("`{host}` is not a host name"));
        }
        let mut list = Vec::new();
        for address in addresses.split(',') {
            let ip: IpAddr = address.parse().map_err(|_| format!("`{address}` (for `{host}`) is not an IP address"))?;
            list.push(ip);
        }
        out.insert(host, list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(text: &str) -> Option<&'static str> {
        forbidden(text.parse().unwrap())
    }

    #[test]
    fn each_forbidden_class_is_named() {
        for (address, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.1.2", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fec0::1", "private"),
            ("64:ff9b:1::a00:1", "private"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("198.18.0.1", "reserved"),
            ("::1:2:3", "reserved"),
            ("100::1", "reserved"),
        ] {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn embedded_ipv4_is_classified_by_the_ipv4_address() {
        for (address, expected) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("::127.0.0.1", "loopback"),
            ("::ffff:0:127.0.0.1", "loopback"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::192.168.0.1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:c0a8:101::", "private"),
            ("2002:6440:1::", "CGNAT"),
        ] {
            assert_eq!(class(address), Some(expected), "{address}");
        }
        // Public IPv4 addresses in the same forms are fine.
        for address in ["::ffff:93.184.215.14", "64:ff9b::8.8.8.8", "2002:808:808::1"] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.167.1.1",
            "11.0.0.1",
            "126.255.255.255",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    /// Addresses of each forbidden IPv4 range, from its first address and prefix length.
    fn in_range(base: [u8; 4], prefix: u32, offset: u32) -> Ipv4Addr {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ipv4Addr::from((u32::from(Ipv4Addr::from(base)) & mask) | (offset & !mask))
    }

    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([10, 0, 0, 0], 8, "private"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 168, 0, 0], 16, "private"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([100, 64, 0, 0], 10, "CGNAT"),
        ([224, 0, 0, 0], 4, "multicast"),
    ];

    proptest! {
        #[test]
        fn every_address_of_a_forbidden_range_is_refused(range in 0..RANGES.len(), offset in any::<u32>()) {
            let (base, prefix, expected) = RANGES[range];
            let v4 = in_range(base, prefix, offset);
            prop_assert_eq!(forbidden(IpAddr::V4(v4)), Some(expected), "{}", v4);
            prop_assert_eq!(forbidden(IpAddr::V6(v4.to_ipv6_mapped())), Some(expected), "{}", v4.to_ipv6_mapped());
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            prop_assert_eq!(forbidden(IpAddr::V6(nat64)), Some(expected), "{}", nat64);
            let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
            prop_assert_eq!(forbidden(IpAddr::V6(six_to_four)), Some(expected), "{}", six_to_four);
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn the_resolver_drops_forbidden_addresses_and_names_the_refused_one() {
        let overrides = Arc::new(BTreeMap::from([
            ("mixed.test".to_string(), vec!["127.0.0.1".parse().unwrap(), "93.184.215.14".parse().unwrap()]),
            ("meta.test".to_string(), vec!["169.254.169.254".parse().unwrap()]),
            ("localhost".to_string(), vec!["127.0.0.1".parse().unwrap()]),
        ]));
        let rt = runtime();
        let plain = Resolver::new(overrides.clone(), BTreeSet::new());
        assert_eq!(rt.block_on(plain.lookup("mixed.test")).unwrap(), ["93.184.215.14".parse::<IpAddr>().unwrap()]);
        let error = rt.block_on(plain.lookup("META.test.")).unwrap_err();
        let refused = refusal_in(error.as_ref()).expect("an address refusal");
        assert_eq!(refused.class, "link-local");
        assert_eq!(
            refused.to_string(),
            "meta.test. resolves to 169.254.169.254, a link-local address, which plugins may not reach (only an \
             address or `localhost` that the user wrote as the endpoint may be private)"
        );
        assert!(rt.block_on(plain.lookup("localhost")).is_err());
        let exempt = Resolver::new(overrides, BTreeSet::from(["localhost".to_string()]));
        assert_eq!(rt.block_on(exempt.lookup("localhost")).unwrap(), ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        // Only the name itself is exempt.
        assert!(rt.block_on(exempt.lookup("meta.test")).is_err());
    }

    #[test]
    fn overrides_parse_from_host_address_pairs() {
        let parsed = parse_overrides(" api.example.test=127.0.0.1 meta.test=169.254.169.254,::1\n").unwrap();
        assert_eq!(parsed["api.example.test"], ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(parsed["meta.test"].len(), 2);
        assert!(parse_overrides("").unwrap().is_empty());
        for bad in ["api.example.test", "api=", "=127.0.0.1", "api=localhost", "a b=1.2.3.4", "x/y=1.2.3.4", "a..b=::1"]
        {
            assert!(parse_overrides(bad).is_err(), "{bad}");
        }
    }
}
