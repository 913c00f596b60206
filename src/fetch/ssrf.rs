//! The SSRF guard: which addresses a fetch may connect to.
//!
//! On by default, the guard refuses every address that is not plainly public: private,
//! loopback, link-local (cloud metadata at 169.254.169.254 and `fd00:ec2::254` included),
//! CGNAT, multicast, broadcast, documentation, benchmarking and reserved ranges. IPv6 is
//! public only inside global unicast (`2000::/3`) and outside its special ranges; the forms
//! that embed an IPv4 address (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4) are judged by
//! the address they embed, and the translated and local-use forms (`::ffff:0:0/96`,
//! `64:ff9b:1::/48`) are refused. Hostnames are checked after resolution, by
//! [`GuardedResolver`], and the connection is made to the addresses that passed — so a DNS
//! answer cannot change between check and use (rebinding). Literal IPs are checked before any
//! connection; every redirect hop is checked again. An explicit allow list (all private
//! networks, or CIDRs, or host names) opens the guard for local sites — but the cloud
//! metadata addresses ([`metadata`]) stay closed unless a CIDR or a host name names them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address is refused, or `None` when it is public.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "\"this network\" (0.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local / cloud metadata (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18 | 19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4).map(|_| "IPv4-mapped IPv6 of a refused address");
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return classify_v4(embedded_v4(segments[6], segments[7]))
            .map(|_| "IPv4-compatible IPv6 of a refused address");
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(segments[6], segments[7]))
            .map(|_| "NAT64 (64:ff9b::/96) of a refused address");
    }
    if segments[0] == 0x2002 {
        return classify_v4(embedded_v4(segments[1], segments[2]))
            .map(|_| "6to4 (2002::/16) of a refused address");
    }
    Some(match segments[0] {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        0 if segments[1..6] == [0, 0, 0, 0xffff, 0] => "IPv4-translated (::ffff:0:0/96)",
        0x0064 if segments[1..3] == [0xff9b, 1] => "local-use NAT64 (64:ff9b:1::/48)",
        0x0000..=0x00ff => "reserved (::/8)",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xfc00..=0xfdff => "unique local / cloud metadata (fc00::/7)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if segments[1] == 0 => "Teredo (2001::/32)",
        0x2001 if segments[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x3fff if segments[1] < 0x1000 => "documentation (3fff::/20)",
        // Only global unicast is public.
        first if first & 0xe000 != 0x2000 => "not global unicast (outside 2000::/3)",
        _ => return None,
    })
}

/// Why `ip` is a cloud metadata or instance-credential address (its IPv4 forms inside IPv6
/// included), or `None`. These stay refused when private networks are allowed: a page that
/// links to one would hand the instance's credentials to whoever reads the results.
pub fn metadata(ip: IpAddr) -> Option<&'static str> {
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => embedded(v6),
    };
    if let Some(v4) = v4 {
        return match v4.octets() {
            [169, 254, ..] => Some("link-local, the cloud metadata range (169.254.0.0/16)"),
            [100, 100, 100, 200] => Some("cloud metadata (100.100.100.200)"),
            [192, 0, 0, 192] => Some("cloud metadata (192.0.0.192)"),
            _ => None,
        };
    }
    match ip {
        IpAddr::V6(v6) if v6.segments()[..2] == [0xfd00, 0x0ec2] => {
            Some("cloud metadata (fd00:ec2::/32)")
        }
        _ => None,
    }
}

/// The IPv4 address an IPv6 form carries: mapped, compatible, translated, NAT64, 6to4.
fn embedded(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if (s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified())
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || s[..3] == [0x64, 0xff9b, 1]
    {
        return Some(embedded_v4(s[6], s[7]));
    }
    (s[0] == 0x2002).then(|| embedded_v4(s[1], s[2]))
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// What the guard lets through besides public addresses.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Every address is allowed (the guard is off).
    pub allow_private_networks: bool,
    /// Networks allowed even though they are not public (e.g. `127.0.0.0/8`).
    pub allowed_networks: Vec<IpNet>,
    /// Host names allowed whatever they resolve to (lowercase, exact match).
    pub allowed_hosts: Vec<String>,
}

impl AddressPolicy {
    /// Why `ip` is refused, or `None` when the policy allows it.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed_networks.iter().any(|net| net.contains(&ip)) {
            return None; // named explicitly, metadata included
        }
        if let Some(reason) = metadata(ip) {
            return Some(reason);
        }
        if self.allow_private_networks {
            return None;
        }
        classify(ip)
    }

    /// True when `host` (as in a URL) is on the allow list of names.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }
}

/// How names become addresses: the system resolver by default; tests (and callers with
/// their own DNS) give another, so resolution can be exercised without sending a packet.
pub type Lookup = Arc<
    dyn Fn(String) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo` through tokio).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// reqwest's resolver with the guard in it: resolves, drops refused addresses, and fails
/// when none is left, naming the refused address and why.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// A resolver enforcing `policy` over the system resolver.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self::with_lookup(policy, system_lookup())
    }

    /// A resolver enforcing `policy` over `lookup`.
    pub fn with_lookup(policy: Arc<AddressPolicy>, lookup: Lookup) -> Self {
        Self { policy, lookup }
    }

    /// Keeps the addresses `policy` allows for `host`; the refusal of the first dropped one
    /// otherwise. Pure: this is what the resolver does after the DNS answer.
    pub fn filter(
        policy: &AddressPolicy,
        host: &str,
        addresses: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, BlockedAddress> {
        if policy.host_allowed(host) {
            return Ok(addresses.into_iter().collect());
        }
        let mut allowed = Vec::new();
        let mut refused = None;
        for address in addresses {
            match policy.refusal(address.ip()) {
                None => allowed.push(address),
                Some(reason) => {
                    refused.get_or_insert(BlockedAddress {
                        host: host.to_owned(),
                        address: address.ip(),
                        reason,
                    });
                }
            }
        }
        // A name that resolves to both public and refused addresses is refused whole: which
        // one the connection would use is not ours to guess.
        match refused {
            Some(blocked) => Err(blocked),
            None => Ok(allowed),
        }
    }
}

/// A refused address, as the resolver reports it. The text names the host and the kind of
/// address, not the address: it is stored with the job and shown by the coordinator, and
/// must not map a private network's DNS for whoever submits jobs (the address is in the
/// `debug` log).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{host} resolves to a {} address: refused by the SSRF guard",
    kind_of(reason)
)]
pub struct BlockedAddress {
    /// The host name.
    pub host: String,
    /// The refused address.
    pub address: IpAddr,
    /// Why.
    pub reason: &'static str,
}

/// A refusal's kind without its range: `private (10.0.0.0/8)` is `private`.
fn kind_of(reason: &str) -> &str {
    reason.split(" (").next().unwrap_or(reason)
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let lookup = Arc::clone(&self.lookup);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = lookup(host.clone()).await?;
            let allowed = Self::filter(&policy, &host, resolved).inspect_err(|blocked| {
                tracing::debug!(host, address = %blocked.address, reason = blocked.reason, "refused");
            })?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refused form, no socket involved.
    const REFUSED: &[&str] = &[
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.1.2.3",
        "169.254.169.254",
        "169.254.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.10",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "fc00::1",
        "fd00:ec2::254",
        "fdff::1",
        "ff02::1",
        "2001:db8::1",
        "2001::1",
        "100::1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::10.0.0.1",
        // IPv4-translated, local-use NAT64 (whatever they embed), the rest of ::/8 and
        // everything outside global unicast.
        "::ffff:0:8.8.8.8",
        "::ffff:0:10.0.0.1",
        "64:ff9b:1::808:808",
        "64:ff9b:1:ffff::1",
        "::1:2:3:4",
        "0:0:0:1::",
        "4000::1",
        "8000::1",
        "c000::1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "3fff::1",
    ];

    const PUBLIC: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.0.1",
        "172.32.0.1",
        "192.169.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ];

    #[test]
    fn refused_ranges_are_refused_with_a_reason() {
        assert!(REFUSED.len() >= 40);
        for text in REFUSED {
            let ip: IpAddr = text.parse().unwrap();
            assert!(classify(ip).is_some(), "{text} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in PUBLIC {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), None, "{text} is public");
        }
    }

    #[test]
    fn the_allow_list_opens_only_what_it_names() {
        let policy = AddressPolicy {
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert_eq!(policy.refusal("127.0.0.1".parse().unwrap()), None);
        assert!(policy.refusal("10.0.0.1".parse().unwrap()).is_some());
        assert!(policy.refusal("::1".parse().unwrap()).is_some());
        let open = AddressPolicy {
            allow_private_networks: true,
            ..AddressPolicy::default()
        };
        assert_eq!(open.refusal("10.1.2.3".parse().unwrap()), None);
        assert_eq!(open.refusal("fd12::1".parse().unwrap()), None);
        // Metadata stays closed with private networks open, in every form...
        for metadata in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.0.23",
            "100.100.100.200",
            "192.0.0.192",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "::ffff:169.254.169.254",
            "::ffff:0:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::169.254.169.254",
        ] {
            let ip: IpAddr = metadata.parse().unwrap();
            assert!(open.refusal(ip).is_some(), "{metadata}");
        }
        // ...unless a network names it.
        let named = AddressPolicy {
            allow_private_networks: true,
            allowed_networks: vec!["169.254.169.254/32".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert_eq!(named.refusal("169.254.169.254".parse().unwrap()), None);
        assert!(named.refusal("169.254.170.2".parse().unwrap()).is_some());
    }

    #[test]
    fn the_refusal_text_does_not_map_the_private_network() {
        let refused = GuardedResolver::filter(
            &AddressPolicy::default(),
            "redis.internal",
            [SocketAddr::new("10.3.0.7".parse().unwrap(), 6379)],
        )
        .unwrap_err();
        let text = refused.to_string();
        assert_eq!(
            text,
            "redis.internal resolves to a private address: refused by the SSRF guard"
        );
        assert!(!text.contains("10.3") && !text.contains("10.0.0.0"));
    }

    #[test]
    fn the_resolver_hook_drops_refused_answers() {
        let policy = AddressPolicy::default();
        let answer = |ips: &[&str]| -> Vec<SocketAddr> {
            ips.iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), 80))
                .collect()
        };
        // A name resolving to loopback (the classic rebinding target) is refused.
        let refused =
            GuardedResolver::filter(&policy, "evil.example", answer(&["127.0.0.1"])).unwrap_err();
        assert_eq!(refused.address, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(refused.to_string().contains("loopback"));
        // Mixed public and private answers are refused whole.
        assert!(
            GuardedResolver::filter(&policy, "mixed.example", answer(&["8.8.8.8", "10.0.0.1"]))
                .is_err()
        );
        let ok = GuardedResolver::filter(&policy, "public.example", answer(&["8.8.8.8"])).unwrap();
        assert_eq!(ok.len(), 1);
        let named = AddressPolicy {
            allowed_hosts: vec!["intranet.local".to_owned()],
            ..AddressPolicy::default()
        };
        assert!(GuardedResolver::filter(&named, "Intranet.Local.", answer(&["10.0.0.5"])).is_ok());
    }
}
