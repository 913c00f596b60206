//! robots.txt: fetched once per origin, cached with a TTL, parsed by `texting_robots`.
//!
//! Per RFC 9309: a 4xx answer means no rules (everything allowed); a 5xx answer or an
//! unreachable server means "disallow everything" until the entry expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use texting_robots::Robot;
use tokio::sync::Mutex;

use super::error::FetchErrorKind;

/// The rules of one origin.
pub enum Rules {
    /// No robots.txt (4xx): everything is allowed.
    AllowAll,
    /// The server failed (5xx, unreachable): nothing is allowed for now.
    DisallowAll(String),
    /// Parsed rules.
    Parsed(Robot),
    /// The origin itself is refused by the SSRF guard (reported as that, not as robots).
    Blocked(String),
    /// The origin could not be reached at all (name lookup, connection, TLS, timeout):
    /// reported as that error, so a dead host reads as one and a transient failure is
    /// retried like any other, instead of "denied by robots.txt".
    Unreachable(FetchErrorKind, String),
}

impl Rules {
    /// Whether `url` may be fetched; why not, as an error kind and a reason.
    pub fn check(&self, url: &str) -> Result<(), (FetchErrorKind, String)> {
        match self {
            Self::AllowAll => Ok(()),
            Self::DisallowAll(reason) => Err((FetchErrorKind::RobotsDenied, reason.clone())),
            Self::Parsed(robot) if robot.allowed(url) => Ok(()),
            Self::Parsed(_) => Err((
                FetchErrorKind::RobotsDenied,
                "disallowed by robots.txt".to_owned(),
            )),
            Self::Blocked(reason) => Err((FetchErrorKind::BlockedAddress, reason.clone())),
            Self::Unreachable(kind, reason) => Err((*kind, reason.clone())),
        }
    }

    /// How long these rules may be cached: `ttl`, but at most a minute when robots.txt could
    /// not be read (a passing outage must not block a host for the whole TTL).
    pub fn lifetime(&self, ttl: Duration) -> Duration {
        match self {
            Self::DisallowAll(_) | Self::Unreachable(..) => ttl.min(FAILURE_TTL),
            _ => ttl,
        }
    }

    /// The `Crawl-delay` for our user agent, if any.
    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Self::Parsed(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(3600.0))),
            _ => None,
        }
    }
}

/// The longest a failure to read robots.txt is remembered.
const FAILURE_TTL: Duration = Duration::from_secs(60);

type Slot = Arc<Mutex<Option<(Instant, Arc<Rules>)>>>;

/// The per-origin cache. Concurrent first requests to one origin fetch robots.txt once.
#[derive(Default)]
pub struct RobotsCache {
    slots: std::sync::Mutex<HashMap<String, Slot>>,
}

impl RobotsCache {
    /// The rules of `origin` if they are cached (whatever their age), without loading.
    pub fn cached(&self, origin: &str) -> Option<Arc<Rules>> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(origin)
            .cloned()?;
        let entry = slot.try_lock().ok()?;
        entry.as_ref().map(|(_, rules)| Arc::clone(rules))
    }

    /// The rules of `origin`, fetching them with `load` when missing or older than `ttl`.
    pub async fn rules<F, Fut>(&self, origin: &str, ttl: Duration, load: F) -> Arc<Rules>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Rules>,
    {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry(origin.to_owned()).or_default())
        };
        let mut entry = slot.lock().await;
        if let Some((fetched, rules)) = entry.as_ref()
            && fetched.elapsed() < rules.lifetime(ttl)
        {
            return Arc::clone(rules);
        }
        let rules = Arc::new(load().await);
        *entry = Some((Instant::now(), Arc::clone(&rules)));
        rules
    }
}

/// The lines of a robots.txt that can change a decision — `user-agent`, `allow`,
/// `disallow`, `crawl-delay`, and blank lines — without comments, sitemaps or other fields:
/// what the fleet shares (parsing it gives the same rules as parsing the whole file).
pub fn summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let field = line
            .split_once(':')
            .map(|(field, _)| field.trim().to_ascii_lowercase());
        let keep = line.is_empty()
            || matches!(
                field.as_deref(),
                Some("user-agent" | "allow" | "disallow" | "crawl-delay")
            );
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Where a fleet shares robots.txt outcomes, so each origin's file is fetched about once per
/// TTL for all workers (the queue implements it).
pub trait RobotsStore: Send + Sync {
    /// The stored outcome for `origin` (see [`Shared`]), if any.
    fn get<'a>(&'a self, origin: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Stores the outcome for `origin` for `ttl`.
    fn put<'a>(&'a self, origin: &'a str, value: String, ttl: Duration) -> BoxFuture<'a, ()>;
    /// True when this caller should fetch `origin`'s robots.txt (nobody else is, for `ttl`).
    fn claim<'a>(&'a self, origin: &'a str, ttl: Duration) -> BoxFuture<'a, bool>;
}

/// A future the store returns.
pub type BoxFuture<'a, T> = futures_util::future::BoxFuture<'a, T>;

/// A robots.txt outcome as the fleet shares it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Shared {
    /// No robots.txt: everything allowed.
    AllowAll,
    /// Nothing allowed for now (5xx, unreadable).
    DisallowAll {
        /// Why.
        reason: String,
    },
    /// The rules: the file's [`summary`].
    Parsed {
        /// The summary.
        rules: String,
    },
    /// The origin could not be reached.
    Unreachable {
        /// The error kind.
        kind: FetchErrorKind,
        /// What happened.
        reason: String,
    },
}

impl Shared {
    /// The rules for `user_agent`.
    pub fn rules(&self, user_agent: &str) -> Rules {
        match self {
            Self::AllowAll => Rules::AllowAll,
            Self::DisallowAll { reason } => Rules::DisallowAll(reason.clone()),
            Self::Parsed { rules } => parse(user_agent, rules.as_bytes()),
            Self::Unreachable { kind, reason } => Rules::Unreachable(*kind, reason.clone()),
        }
    }
}

/// Parses a robots.txt body for `user_agent`; unparsable text means no rules.
pub fn parse(user_agent: &str, body: &[u8]) -> Rules {
    // Rules are matched on the product token ("ScraperV4"), not the full header value.
    let agent = user_agent.split(['/', ' ']).next().unwrap_or(user_agent);
    Robot::new(agent, body).map_or(Rules::AllowAll, Rules::Parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_crawl_delay_for_our_agent() {
        let txt = b"User-agent: ScraperV4\nDisallow: /private\nCrawl-delay: 2\n\nUser-agent: *\nDisallow: /";
        let rules = parse("ScraperV4/0.1 (+https://example.com)", txt);
        assert!(rules.check("https://example.com/public/page").is_ok());
        assert!(
            Rules::Blocked("guard".to_owned())
                .check("https://x/")
                .is_err()
        );
        assert!(rules.check("https://example.com/private/x").is_err());
        assert_eq!(rules.crawl_delay(), Some(Duration::from_secs(2)));
        let others = parse("OtherBot/1.0", txt);
        assert!(others.check("https://example.com/public/page").is_err());
    }

    #[test]
    fn the_shared_summary_keeps_the_decisions() {
        let txt = b"# comment\nSitemap: https://x/s.xml\nUser-agent: ScraperV4 # us\nDisallow: /private\nFoo: bar\nCrawl-delay: 2\n\nUser-agent: *\nDisallow: /\n";
        let short = summary(txt);
        assert!(!short.contains("Sitemap") && !short.contains("comment") && !short.contains("Foo"));
        let shared = Shared::Parsed { rules: short };
        let stored = serde_json::to_string(&shared).unwrap();
        let back: Shared = serde_json::from_str(&stored).unwrap();
        let agent = "ScraperV4/0.1";
        for url in ["https://x/public", "https://x/private/a"] {
            assert_eq!(
                back.rules(agent).check(url).is_ok(),
                parse(agent, txt).check(url).is_ok(),
                "{url}"
            );
        }
        assert_eq!(
            back.rules(agent).crawl_delay(),
            Some(Duration::from_secs(2))
        );
        assert!(back.rules("OtherBot").check("https://x/public").is_err());
    }

    #[test]
    fn failures_are_reported_as_themselves_and_cached_briefly() {
        let unreachable = Rules::Unreachable(FetchErrorKind::Dns, "no such host".to_owned());
        assert_eq!(
            unreachable.check("https://x/").unwrap_err().0,
            FetchErrorKind::Dns
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(unreachable.lifetime(hour), FAILURE_TTL);
        assert_eq!(
            Rules::DisallowAll("503".to_owned()).lifetime(hour),
            FAILURE_TTL
        );
        assert_eq!(Rules::AllowAll.lifetime(hour), hour);
    }
}
