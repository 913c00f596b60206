//! The grouping key of a URL: its host or its registrable domain.
//!
//! Owns URL validation for partitioning. A URL is accepted when `url::Url` parses it with an
//! `http`/`https` scheme and a host. Parsing and the public-suffix lookup run once per
//! distinct scheme-and-authority prefix, not once per URL: whether such a URL parses depends
//! only on that prefix, so the cache gives the same answer as parsing every URL, at the cost
//! of a byte scan.

use foldhash::HashMap;
use foldhash::HashMapExt;

use url::Url;

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

/// Assigns each URL the id of its grouping key, remembering every distinct key.
#[derive(Debug)]
pub struct KeyTable {
    grouping: GroupingKey,
    /// Scheme + authority prefix (e.g. `https://www.example.com:8080`) -> key or reason.
    by_prefix: HashMap<String, Result<KeyId, String>>,
    /// Key text -> id.
    ids: HashMap<String, KeyId>,
    /// Id -> key text.
    keys: Vec<String>,
}

impl KeyTable {
    /// An empty table grouping by `grouping`.
    pub fn new(grouping: GroupingKey) -> Self {
        Self {
            grouping,
            by_prefix: HashMap::new(),
            ids: HashMap::new(),
            keys: Vec::new(),
        }
    }

    /// The key of `url`, or why the URL cannot be partitioned.
    pub fn key_of(&mut self, url: &str) -> Result<KeyId, String> {
        match cacheable_prefix(url) {
            Some(prefix) => {
                if let Some(known) = self.by_prefix.get(prefix) {
                    return known.clone();
                }
                let answer = self.compute(url);
                self.by_prefix.insert(prefix.to_owned(), answer.clone());
                answer
            }
            None => self.compute(url),
        }
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

    fn compute(&mut self, url: &str) -> Result<KeyId, String> {
        let text = grouping_text(url, self.grouping)?;
        let next = KeyId::try_from(self.keys.len()).map_err(|_| "too many distinct domains")?;
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
fn cacheable_prefix(url: &str) -> Option<&str> {
    let rest_start = if url.starts_with("https://") {
        8
    } else if url.starts_with("http://") {
        7
    } else {
        return None;
    };
    let bytes = url.as_bytes();
    // The parser strips or rewrites spaces, tabs, newlines and control characters wherever
    // they are, which could change the authority: leave such URLs to it.
    if bytes.iter().any(|&b| b <= b' ') {
        return None;
    }
    let end = bytes[rest_start..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .map_or(bytes.len(), |offset| rest_start + offset);
    Some(&url[..end])
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
