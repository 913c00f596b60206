//! The fetcher's settings, with the defaults a crawler should have.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{ConfigError, ConfigResult};

/// Settings of a [`super::Fetcher`]. Unknown keys are refused (a typo would otherwise be
/// silently ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Requests in flight at once, all hosts together.
    pub concurrency: usize,
    /// Requests in flight at once to one host.
    pub per_host_concurrency: usize,
    /// Politeness delay between two requests to one host, seconds, random in `[min, max]`
    /// (the scaling guide's job config `"delay_range": [1, 3]`).
    pub delay_range: (f64, f64),
    /// Seconds to establish a connection.
    pub connect_timeout: f64,
    /// Seconds allowed between two reads of the response (a slow drip fails).
    pub read_timeout: f64,
    /// Seconds for the whole request, redirects and body included, counted from when it may
    /// be sent: a politeness wait or a queue for a fetch permit is not the site's time.
    pub total_timeout: f64,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// The User-Agent header, also the agent robots.txt rules are matched against.
    pub user_agent: String,
    /// A proxy URL (`http://`, `https://`, `socks5://`). Without one, proxy environment
    /// variables are ignored: a crawler must not leak through a proxy it was not told about.
    pub proxy: Option<String>,
    /// Extra request headers (`Authorization`, `Cookie`, ...), sent only to the origin of
    /// the URL asked for — never to another origin a redirect leads to — and, when
    /// `header_origins` is set, only to those origins.
    pub headers: BTreeMap<String, String>,
    /// The origins (`https://api.example.com`) `headers` may be sent to; empty: any origin
    /// a fetch starts at.
    pub header_origins: Vec<String>,
    /// Keep cookies between requests.
    pub cookies: bool,
    /// Largest body accepted, bytes after decompression.
    pub max_body_bytes: u64,
    /// Largest decompressed-to-compressed size ratio (zip bombs).
    pub max_decompression_ratio: u64,
    /// Retries after a timeout, a connection error, 429 or 5xx.
    pub retries: u32,
    /// First retry delay, seconds (doubles each time, with jitter).
    pub retry_base: f64,
    /// Longest wait honoured from a `Retry-After` header, seconds.
    pub max_retry_after: f64,
    /// Obey robots.txt.
    pub respect_robots: bool,
    /// How long a host's robots.txt is cached, seconds.
    pub robots_ttl: f64,
    /// Turn the SSRF guard off: every address may be fetched (local sites, tests).
    pub allow_private_networks: bool,
    /// Networks fetched even though they are not public, e.g. `["10.1.0.0/16"]`.
    pub allowed_networks: Vec<String>,
    /// Host names fetched whatever they resolve to.
    pub allowed_hosts: Vec<String>,
    /// A PEM file of extra trusted root certificates (an internal CA), added to the
    /// system's trust store.
    pub ca_file: Option<String>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_host_concurrency: 8,
            delay_range: (0.0, 0.0),
            connect_timeout: 10.0,
            read_timeout: 30.0,
            total_timeout: 60.0,
            max_redirects: 10,
            user_agent: format!(
                "ScraperV4/{} (+https://github.com/scraperv4/scraperv4-scale)",
                env!("CARGO_PKG_VERSION")
            ),
            proxy: None,
            headers: BTreeMap::new(),
            header_origins: Vec::new(),
            cookies: false,
            max_body_bytes: 10 * 1024 * 1024,
            max_decompression_ratio: 100,
            retries: 3,
            retry_base: 0.5,
            max_retry_after: 60.0,
            respect_robots: true,
            robots_ttl: 3600.0,
            allow_private_networks: false,
            allowed_networks: Vec::new(),
            allowed_hosts: Vec::new(),
            ca_file: None,
        }
    }
}

impl FetchConfig {
    /// Checks every value; returns the parsed allowed networks.
    pub fn validate(&self) -> ConfigResult<Vec<IpNet>> {
        if self.concurrency == 0 || self.per_host_concurrency == 0 {
            return Err(ConfigError::invalid(
                "concurrency",
                format!("{} / {}", self.concurrency, self.per_host_concurrency),
                "concurrency and per_host_concurrency at least 1",
            ));
        }
        let (low, high) = self.delay_range;
        if !(low.is_finite() && high.is_finite() && low >= 0.0 && low <= high) {
            return Err(ConfigError::invalid(
                "delay_range",
                format!("[{low}, {high}]"),
                "[min, max] seconds with 0 <= min <= max",
            ));
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
            ("total_timeout", self.total_timeout),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::invalid(name, value, "seconds > 0"));
            }
        }
        for (name, value) in [
            ("retry_base", self.retry_base),
            ("max_retry_after", self.max_retry_after),
            ("robots_ttl", self.robots_ttl),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::invalid(name, value, "seconds >= 0"));
            }
        }
        if self.max_body_bytes == 0 || self.max_decompression_ratio == 0 {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                self.max_body_bytes,
                "max_body_bytes and max_decompression_ratio at least 1",
            ));
        }
        if let Some(proxy) = &self.proxy {
            crate::config::check_credentials("proxy", proxy)?;
        }
        if self.user_agent.trim().is_empty() {
            return Err(ConfigError::invalid(
                "user_agent",
                "",
                "a non-empty user agent",
            ));
        }
        self.allowed_networks
            .iter()
            .map(|net| {
                net.parse::<IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid("allowed_networks", net, "CIDRs like 10.0.0.0/8")
                    })
            })
            .collect()
    }

    /// `header_origins` as origins (`scheme://host[:port]`, the default port left out).
    pub fn header_origins(&self) -> ConfigResult<Vec<String>> {
        self.header_origins
            .iter()
            .map(|text| {
                let url = url::Url::parse(text).ok().filter(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && matches!(u.path(), "" | "/")
                        && u.query().is_none()
                        && u.username().is_empty()
                });
                url.map(|u| u.origin().ascii_serialization())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "header_origins",
                            text,
                            "origins like https://api.example.com",
                        )
                    })
            })
            .collect()
    }

    pub(crate) fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value.max(0.0))
    }
}
