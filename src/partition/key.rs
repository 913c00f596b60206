//! The grouping key of a URL: its host or its registrable domain.
//!
//! Owns URL validation for partitioning. A URL is accepted when `url::Url` parses it with an
//! `http`/`https` scheme and a host. Parsing and the public-suffix lookup run once per
//! distinct scheme-and-authority prefix, not once per URL: whether such a URL parses depends
//! only on that prefix, so the cache gives the same answer as parsing every URL, at the cost
//! of a scan of the authority and one lookup in a flat table ([`super::prefix`]).

use foldhash::HashMap;
use foldhash::HashMapExt;

use url::Url;

use super::prefix::PrefixCache;

/// What URLs are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupingKey {
    /// The registrable domain (eTLD+1 from the public suffix list): `shop.example.co.uk` and
    /// `www.example.co.uk` share `example.co.uk`. IP addresses and single-label hosts group by
    /// themselves. The default: one site, one worker, one politeness budget.
    #[default]
    RegistrableDomain,
    /// The exact host name (port ignored).
    Host,
}

impl GroupingKey {
    /// The accepted spellings, for error messages.
    pub const NAMES: &'static str = "registrable_domain, host";

    /// Parses `registrable_domain` / `domain` or `host`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "registrable_domain" | "domain" => Some(Self::RegistrableDomain),
            "host" => Some(Self::Host),
            _ => None,
        }
    }
}

/// Index of a distinct key in a [`KeyTable`].
pub type KeyId = u32;

/// Set in a cached answer that is the index of a reason (an invalid prefix), not a key id.
const REASON_BIT: u32 = 1 << 31;

/// Assigns each URL the id of its grouping key, remembering every distinct key.
#[derive(Debug)]
pub struct KeyTable {
    grouping: GroupingKey,
    /// Scheme + authority prefix (e.g. `https://www.example.com:8080`) -> key id, or
    /// `REASON_BIT | index` into `reasons`.
    by_prefix: PrefixCache,
    reasons: Vec<String>,
    /// Key text -> id (consulted once per distinct prefix only).
    ids: HashMap<String, KeyId>,
    /// Id -> key text.
    keys: Vec<String>,
}

impl KeyTable {
    /// An empty table grouping by `grouping`.
    pub fn new(grouping: GroupingKey) -> Self {
        Self {
            grouping,
            by_prefix: PrefixCache::default(),
            reasons: Vec::new(),
            ids: HashMap::new(),
            keys: Vec::new(),
        }
    }

    /// The key of `url`, or why the URL cannot be partitioned.
    #[inline]
    pub fn key_of(&mut self, url: &str) -> Result<KeyId, String> {
        let Some(prefix) = authority_prefix(url) else {
            return self.compute(url);
        };
        let hash = self.by_prefix.hash(prefix.as_bytes());
        if let Some(answer) = self.by_prefix.get(prefix.as_bytes(), hash) {
            return self.decode(answer);
        }
        self.compute_and_cache(url, prefix, hash)
    }

    /// The text of key `id`.
    pub fn key(&self, id: KeyId) -> &str {
        &self.keys[id as usize]
    }

    /// How many distinct keys were seen.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key was seen.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn decode(&self, answer: u32) -> Result<KeyId, String> {
        if answer & REASON_BIT == 0 {
            Ok(answer)
        } else {
            Err(self.reasons[(answer & !REASON_BIT) as usize].clone())
        }
    }

    #[cold]
    fn compute_and_cache(&mut self, url: &str, prefix: &str, hash: u64) -> Result<KeyId, String> {
        let answer = self.compute(url);
        let code = match &answer {
            Ok(id) => Some(*id),
            Err(reason) => u32::try_from(self.reasons.len())
                .ok()
                .filter(|index| index & REASON_BIT == 0)
                .map(|index| {
                    self.reasons.push(reason.clone());
                    index | REASON_BIT
                }),
        };
        if let Some(code) = code {
            // When the arena is full the prefix stays uncached: the answer is the same.
            self.by_prefix.insert(prefix.as_bytes(), hash, code);
        }
        answer
    }

    fn compute(&mut self, url: &str) -> Result<KeyId, String> {
        let text = grouping_text(url, self.grouping)?;
        let next = KeyId::try_from(self.keys.len())
            .ok()
            .filter(|id| id & REASON_BIT == 0)
            .ok_or("too many distinct domains")?;
        Ok(*self.ids.entry(text).or_insert_with_key(|text| {
            self.keys.push(text.clone());
            next
        }))
    }
}

/// The grouping text of one URL (no caching).
pub fn grouping_text(url: &str, grouping: GroupingKey) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|error| format!("not a valid URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?} (only http and https)",
            parsed.scheme()
        ));
    }
    let Some(host) = parsed.host() else {
        return Err("the URL has no host".to_owned());
    };
    let host_text = match host {
        url::Host::Domain(domain) => domain.trim_end_matches('.').to_owned(),
        url::Host::Ipv4(ip) => return Ok(ip.to_string()),
        url::Host::Ipv6(ip) => return Ok(ip.to_string()),
    };
    if host_text.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    Ok(match grouping {
        GroupingKey::Host => host_text,
        GroupingKey::RegistrableDomain => {
            psl::domain_str(&host_text).map_or_else(|| host_text.clone(), str::to_owned)
        }
    })
}

/// The `scheme://authority` prefix of `url` when the URL parser's answer for `url` depends
/// on that prefix alone; `None` sends the URL to the full parser.
///
/// One scan of the authority only: the parser never fails on a path, query or fragment, and
/// what it strips or rewrites there (tabs, newlines, spaces, control characters) cannot
/// change the host. Such a character in the authority itself could: those URLs go to the
/// parser uncached.
#[inline]
fn authority_prefix(url: &str) -> Option<&str> {
    let bytes = url.as_bytes();
    let start = if bytes.starts_with(b"https://") {
        8
    } else if bytes.starts_with(b"http://") {
        7
    } else {
        return None;
    };
    for (offset, &byte) in bytes[start..].iter().enumerate() {
        match byte {
            // An empty authority is not a prefix: the parser skips any further slashes
            // (`https:///user@host/` has the host `host`).
            b'/' | b'?' | b'#' | b'\\' if offset == 0 => return None,
            b'/' | b'?' | b'#' | b'\\' => return Some(&url[..start + offset]),
            0..=b' ' => return None,
            _ => {}
        }
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domain_joins_subdomains_under_multi_label_suffixes() {
        let mut table = KeyTable::new(GroupingKey::RegistrableDomain);
        let a = table.key_of("https://shop.example.co.uk/a").unwrap();
        let b = table.key_of("http://www.example.co.uk:8080/b?c").unwrap();
        assert_eq!(a, b);
        assert_eq!(table.key(a), "example.co.uk");
    }

    #[test]
    fn host_grouping_keeps_subdomains_apart_and_ignores_port_and_case() {
        let mut table = KeyTable::new(GroupingKey::Host);
        let a = table.key_of("https://Shop.Example.com/a").unwrap();
        let b = table.key_of("https://shop.example.com:444/").unwrap();
        let c = table.key_of("https://www.example.com/").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(table.key(a), "shop.example.com");
    }

    #[test]
    fn ip_and_single_label_hosts_group_by_themselves() {
        let mut table = KeyTable::new(GroupingKey::RegistrableDomain);
        let ip = table.key_of("http://127.0.0.1:8000/x").unwrap();
        let v6 = table.key_of("http://[::1]/x").unwrap();
        let local = table.key_of("http://localhost/x").unwrap();
        assert_eq!(table.key(ip), "127.0.0.1");
        assert_eq!(table.key(v6), "::1");
        assert_eq!(table.key(local), "localhost");
    }

    #[test]
    fn invalid_urls_come_back_with_a_reason() {
        let mut table = KeyTable::new(GroupingKey::Host);
        for (url, reason) in [
            ("not a url", "not a valid URL"),
            ("ftp://example.com/file", "unsupported scheme"),
            ("https://exa mple.com/", "not a valid URL"),
            ("http://", "not a valid URL"),
            ("https://example.com:99999/", "not a valid URL"),
            ("mailto:someone@example.com", "unsupported scheme"),
        ] {
            let error = table.key_of(url).unwrap_err();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn the_prefix_cache_agrees_with_the_parser() {
        let mut cached = KeyTable::new(GroupingKey::RegistrableDomain);
        for url in [
            "https://a.example.com/x",
            "https://a.example.com/y z",
            "https://a.example.com\\path",
            "https://a.example.com?q",
            "https://a.example.com#f",
            "https://user:pw@a.example.com/",
            "https://a.example.com:bad/",
            "https://a.example.com:bad/other",
            "https://%zz/",
            "https://xn--nxasmq6b.com/",
            "https://ελληνικά.com/",
        ] {
            let uncached = grouping_text(url, GroupingKey::RegistrableDomain);
            let via_cache = cached.key_of(url).map(|id| cached.key(id).to_owned());
            assert_eq!(via_cache, uncached, "{url}");
        }
    }
}
