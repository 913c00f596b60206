//! Fleet-wide politeness: the queue hands out a job only when its politeness key is ready.
//!
//! Every job has a **politeness key** — its registrable domain by default (`shop.example.co.uk`
//! for `www.shop.example.co.uk`), its host, or a key the job names in its config
//! (`"politeness_key"`). Per key the queue keeps a next-allowed time, the number of jobs in
//! flight and a delay; `claim` gives only jobs whose key is ready and books the key's next
//! slot, atomically, with the backend's clock — so the rules hold for any number of workers.
//! The delay has a floor (the queue's `delay`, a per-key override, robots.txt `Crawl-delay`)
//! and an adaptive part: a 429/503 or a failed request doubles it for the whole fleet (and a
//! `Retry-After` pauses the key), each success lowers it by a tenth; with `AutoThrottle` the
//! delay follows observed latency / target concurrency. See `docs/politeness.md`.
//!
//! This module holds what both backends share: the key of a job, the settings, the feedback
//! a worker reports and the description of a key.

use std::time::Duration;

use serde::Serialize;

use crate::config::{ConfigError, ConfigResult};

/// What a job's politeness key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// The registrable domain (public suffix list): `a.example.com` and `b.example.com`
    /// share one key. IP addresses and `localhost` are their own key.
    #[default]
    Domain,
    /// The host name as written (no port).
    Host,
}

impl KeyMode {
    /// Parses `domain` or `host`.
    pub fn parse(text: &str) -> ConfigResult<Self> {
        match text {
            "domain" => Ok(Self::Domain),
            "host" => Ok(Self::Host),
            other => Err(ConfigError::invalid(
                "politeness_key",
                other,
                "domain or host",
            )),
        }
    }

    /// `domain` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domain => "domain",
            Self::Host => "host",
        }
    }
}

/// The politeness key of a job for `url` (`override_key` from its config wins); empty when
/// the URL has no host (such a job is refused at submit anyway).
pub fn key_of(url: &str, override_key: Option<&str>, mode: KeyMode) -> String {
    if let Some(key) = override_key.filter(|k| !k.is_empty()) {
        return key.to_owned();
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return String::new();
    };
    match parsed.host() {
        Some(url::Host::Domain(domain)) => {
            let host = domain.trim_end_matches('.').to_ascii_lowercase();
            match mode {
                KeyMode::Host => host,
                KeyMode::Domain => psl::domain_str(&host).map_or(host.clone(), str::to_owned),
            }
        }
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => String::new(),
    }
}

/// The longest override key accepted.
pub const MAX_KEY_LEN: usize = 256;

/// Checks a key given by a user or a job config.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(format!(
            "politeness key {key:?} must be 1 to {MAX_KEY_LEN} printable characters"
        ));
    }
    Ok(())
}

/// The queue-wide politeness settings, stored in the queue (every client sees the same).
/// `None` leaves the stored value as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Policy {
    /// Least time between two claims of one key (zero: none).
    pub delay: Option<Duration>,
    /// Most jobs of one key in flight at once, fleet-wide (0: no limit).
    pub concurrency: Option<u32>,
    /// `AutoThrottle`: the delay follows latency / this target concurrency (0: off).
    pub autothrottle: Option<f64>,
    /// The adaptive delay never grows past this.
    pub max_delay: Option<Duration>,
    /// The longest `Retry-After` pause honoured.
    pub max_pause: Option<Duration>,
}

impl Policy {
    /// Whether any value is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the values that are set.
    pub fn validate(&self) -> ConfigResult<()> {
        for (name, value) in [
            ("domain_delay", self.delay),
            ("max_domain_delay", self.max_delay),
            ("max_domain_pause", self.max_pause),
        ] {
            if let Some(value) = value
                && value > Duration::from_secs(24 * 3600)
            {
                return Err(ConfigError::invalid(
                    name,
                    format!("{value:?}"),
                    "at most a day",
                ));
            }
        }
        if let Some(target) = self.autothrottle
            && !(target.is_finite() && (0.0..=10_000.0).contains(&target))
        {
            return Err(ConfigError::invalid(
                "autothrottle",
                target,
                "a target concurrency from 0 (off) to 10000",
            ));
        }
        Ok(())
    }
}

/// The values the queue holds (after defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PolicyState {
    /// Least time between two claims of one key, ms.
    pub delay_ms: u64,
    /// Jobs of one key in flight at once (0: no limit).
    pub concurrency: u32,
    /// `AutoThrottle` target concurrency (0: off).
    pub autothrottle: f64,
    /// Cap of the adaptive delay, ms.
    pub max_delay_ms: u64,
    /// Longest `Retry-After` pause honoured, ms.
    pub max_pause_ms: u64,
}

impl Default for PolicyState {
    fn default() -> Self {
        Self {
            delay_ms: 0,
            concurrency: 0,
            autothrottle: 0.0,
            max_delay_ms: 60_000,
            max_pause_ms: 3_600_000,
        }
    }
}

/// What a failed attempt says about the job's politeness key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// The site answered 429 or 503 (`Retry-After`, when it said one).
    Throttled {
        /// The pause the site asked for.
        retry_after: Option<Duration>,
    },
    /// The request failed (timeout, connection refused or reset).
    Error,
}

impl Feedback {
    /// `(kind, pause ms)` as the backends store them.
    pub(crate) fn encode(self) -> (&'static str, u64) {
        match self {
            Self::Throttled { retry_after } => (
                "throttled",
                retry_after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
            Self::Error => ("error", 0),
        }
    }
}

/// A change to a per-key override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Leave it.
    #[default]
    Keep,
    /// Remove the override (the queue's value applies).
    Clear,
    /// Set it.
    Set(T),
}

impl<T: ToString> Change<T> {
    /// `''` keep, `'-'` clear, the value.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Keep => String::new(),
            Self::Clear => "-".to_owned(),
            Self::Set(value) => value.to_string(),
        }
    }
}

/// One politeness key as the queue sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainInfo {
    /// The key.
    pub key: String,
    /// Jobs waiting in the key's own queue (jobs of a key that needs no pacing wait in the
    /// shared queue and are not counted here).
    pub waiting: u64,
    /// Jobs of the key in flight.
    pub inflight: u64,
    /// The delay between two claims now, ms (the largest of the floor and the adaptive part).
    pub delay_ms: u64,
    /// Jobs in flight at once allowed (0: no limit).
    pub concurrency: u32,
    /// When the key may be claimed again, ms since the epoch (0: now).
    pub ready_at: i64,
    /// 429 and 503 answers reported.
    pub throttled: u64,
    /// Failed requests reported (timeouts, connection errors).
    pub errors: u64,
    /// Last 429/503, ms since the epoch (0: never).
    pub last_throttled: i64,
    /// Last failed request, ms since the epoch (0: never).
    pub last_error: i64,
    /// Whether the key has its own queue (it is paced or limited).
    pub parked: bool,
    /// The per-key delay override, ms.
    pub delay_override_ms: Option<u64>,
    /// The per-key concurrency override.
    pub concurrency_override: Option<u32>,
    /// robots.txt `Crawl-delay` in force, ms (0: none).
    pub crawl_delay_ms: u64,
    /// A `Retry-After` pause in force until, ms since the epoch (0: none).
    pub paused_until: i64,
    /// The backend's time when this was read, ms.
    pub now: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_registrable_domain_or_host() {
        let key = |url, mode| key_of(url, None, mode);
        assert_eq!(
            key("https://www.shop.example.co.uk/a", KeyMode::Domain),
            "example.co.uk"
        );
        assert_eq!(
            key("https://A.Example.com:8443/", KeyMode::Domain),
            "example.com"
        );
        assert_eq!(
            key("https://a.example.com/", KeyMode::Host),
            "a.example.com"
        );
        assert_eq!(key("http://127.0.0.2:8080/x", KeyMode::Domain), "127.0.0.2");
        assert_eq!(key("http://[::1]:80/", KeyMode::Domain), "::1");
        assert_eq!(key("http://localhost:9/", KeyMode::Domain), "localhost");
        assert_eq!(
            key_of("https://a.example.com/", Some("tenant-7"), KeyMode::Domain),
            "tenant-7"
        );
    }
}
