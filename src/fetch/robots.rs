//! robots.txt: fetched once per origin, cached with a TTL, parsed by `texting_robots`.
//!
//! Per RFC 9309: a 4xx answer means no rules (everything allowed); a 5xx answer or an
//! unreachable server means "disallow everything" until the entry expires.
//!
//! Bounded against hostile sites: the cache holds at most [`MAX_ORIGINS`] origins and about
//! [`MAX_CACHE_BYTES`] of rules (least recently used evicted first — wildcard subdomains make
//! origins without end); a robots.txt with more than [`MAX_RULES`] rules, or more than
//! [`MAX_PATTERN_RULES`] rules ending in `$` (each compiles a regular expression), is treated
//! as "disallow everything"; `Crawl-delay` is honoured up to [`MAX_CRAWL_DELAY`]; parsing
//! runs on the blocking pool (the caller's job).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashlink::LruCache;
use texting_robots::Robot;
use tokio::sync::Mutex;

use super::error::FetchErrorKind;

/// Most origins whose rules are cached.
pub const MAX_ORIGINS: usize = 4096;
/// About the most memory the cached rules take, bytes (a rule set's weight is its text, plus
/// [`PATTERN_WEIGHT`] per compiled pattern).
pub const MAX_CACHE_BYTES: usize = 64 << 20;
/// Most `Allow`/`Disallow` rules a robots.txt may have.
pub const MAX_RULES: usize = 10_000;
/// Most rules ending in `$` (compiled to regular expressions) a robots.txt may have.
pub const MAX_PATTERN_RULES: usize = 256;
/// The longest `Crawl-delay` honoured.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(30);
/// What one compiled pattern is counted as, bytes.
const PATTERN_WEIGHT: usize = 16 * 1024;

/// The rules of one origin.
pub enum Rules {
    /// No robots.txt (4xx): everything is allowed.
    AllowAll,
    /// The server failed (5xx, unreachable), or its robots.txt is over the caps: nothing is
    /// allowed for now.
    DisallowAll(String),
    /// Parsed rules, and about the memory they take.
    Parsed(Robot, usize),
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
            Self::Parsed(robot, _) if robot.allowed(url) => Ok(()),
            Self::Parsed(..) => Err((
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

    /// The `Crawl-delay` for our user agent, if any, at most [`MAX_CRAWL_DELAY`].
    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Self::Parsed(robot, _) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(MAX_CRAWL_DELAY.as_secs_f32()))),
            _ => None,
        }
    }

    /// About the memory the rules take, bytes.
    fn weight(&self) -> usize {
        match self {
            Self::Parsed(_, weight) => *weight,
            Self::DisallowAll(text) | Self::Blocked(text) | Self::Unreachable(_, text) => {
                text.len()
            }
            Self::AllowAll => 0,
        }
    }
}

/// The longest a failure to read robots.txt is remembered.
const FAILURE_TTL: Duration = Duration::from_secs(60);

type Slot = Arc<Mutex<Option<(Instant, Arc<Rules>)>>>;

struct Slots {
    lru: LruCache<String, (Slot, usize)>,
    weight: usize,
}

/// The per-origin cache, bounded (least recently used origins evicted first). Concurrent
/// first requests to one origin fetch robots.txt once.
pub struct RobotsCache {
    slots: std::sync::Mutex<Slots>,
    max_bytes: usize,
}

impl Default for RobotsCache {
    fn default() -> Self {
        Self::new(MAX_ORIGINS, MAX_CACHE_BYTES)
    }
}

impl RobotsCache {
    /// The rules of `origin` if they are cached (whatever their age), without loading (and
    /// without making `origin` the most recently used).
    pub fn cached(&self, origin: &str) -> Option<Arc<Rules>> {
        let slot = self
            .lock()
            .lru
            .peek(origin)
            .map(|(slot, _)| Arc::clone(slot))?;
        let entry = slot.try_lock().ok()?;
        entry.as_ref().map(|(_, rules)| Arc::clone(rules))
    }

    /// A cache of at most `max_origins` origins and about `max_bytes` of rules.
    pub fn new(max_origins: usize, max_bytes: usize) -> Self {
        Self {
            slots: std::sync::Mutex::new(Slots {
                lru: LruCache::new(max_origins.max(1)),
                weight: 0,
            }),
            max_bytes,
        }
    }

    /// Origins cached.
    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rules of `origin`, fetching them with `load` when missing or older than `ttl`.
    pub async fn rules<F, Fut>(&self, origin: &str, ttl: Duration, load: F) -> Arc<Rules>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Rules>,
    {
        let slot = {
            let mut slots = self.lock();
            if let Some((slot, _)) = slots.lru.get(origin) {
                Arc::clone(slot)
            } else {
                let slot = Slot::default();
                // Inserting at capacity evicts the least recently used origin.
                let evicted_weight = if slots.lru.len() >= slots.lru.capacity() {
                    slots.lru.remove_lru().map_or(0, |(_, (_, weight))| weight)
                } else {
                    0
                };
                slots.weight -= evicted_weight;
                slots.lru.insert(origin.to_owned(), (Arc::clone(&slot), 0));
                slot
            }
        };
        let mut entry = slot.lock().await;
        if let Some((fetched, rules)) = entry.as_ref()
            && fetched.elapsed() < rules.lifetime(ttl)
        {
            return Arc::clone(rules);
        }
        let rules = Arc::new(load().await);
        *entry = Some((Instant::now(), Arc::clone(&rules)));
        drop(entry);
        self.weigh(origin, &slot, rules.weight());
        rules
    }

    /// Records the weight of `origin`'s new rules and evicts the least recently used
    /// origins while the total is over the budget (the newest stays).
    fn weigh(&self, origin: &str, slot: &Slot, weight: usize) {
        let mut slots = self.lock();
        let Some((cached, old)) = slots.lru.peek_mut(origin) else {
            return; // evicted meanwhile
        };
        if !Arc::ptr_eq(cached, slot) {
            return;
        }
        let old = std::mem::replace(old, weight);
        slots.weight = slots.weight - old + weight;
        while slots.weight > self.max_bytes && slots.lru.len() > 1 {
            match slots.lru.remove_lru() {
                Some((_, (_, weight))) => slots.weight -= weight,
                None => break,
            }
        }
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

/// Parses a robots.txt body for `user_agent`; unparsable text means no rules, text over the
/// caps means "disallow everything". CPU work: call it off the async threads.
pub fn parse(user_agent: &str, body: &[u8]) -> Rules {
    let (rules, patterns) = count_rules(body);
    if rules > MAX_RULES || patterns > MAX_PATTERN_RULES {
        return Rules::DisallowAll(format!(
            "robots.txt has {rules} rules ({patterns} ending in $), over the {MAX_RULES} \
             ({MAX_PATTERN_RULES}) honoured: treated as disallow"
        ));
    }
    // Rules are matched on the product token ("ScraperV4"), not the full header value.
    let agent = user_agent.split(['/', ' ']).next().unwrap_or(user_agent);
    let weight = body.len() + patterns * PATTERN_WEIGHT;
    Robot::new(agent, body).map_or(Rules::AllowAll, |robot| Rules::Parsed(robot, weight))
}

/// `Allow`/`Disallow` lines, and those of them with a `$` (a regular expression each).
fn count_rules(body: &[u8]) -> (usize, usize) {
    let mut rules = 0;
    let mut patterns = 0;
    for line in body.split(|b| matches!(b, b'\n' | b'\r' | 0)) {
        let line = line.trim_ascii_start();
        let is_rule = [&b"allow"[..], b"disallow"].iter().any(|key| {
            line.len() > key.len()
                && line[..key.len()].eq_ignore_ascii_case(key)
                && line[key.len()..].trim_ascii_start().starts_with(b":")
        });
        if is_rule {
            rules += 1;
            let value = line.split(|b| *b == b'#').next().unwrap_or_default();
            if value.contains(&b'$') {
                patterns += 1;
            }
        }
    }
    (rules, patterns)
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
        let slow = parse("ScraperV4", b"User-agent: *\nCrawl-delay: 3600\n");
        assert_eq!(slow.crawl_delay(), Some(MAX_CRAWL_DELAY), "capped");
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

    #[test]
    fn hostile_robots_files_are_capped() {
        // 512 KiB of `Disallow: /*a$` would compile tens of thousands of regexes.
        let hostile = "Disallow: /*a$\n".repeat(512 * 1024 / 15);
        let started = Instant::now();
        let rules = parse("ScraperV4", hostile.as_bytes());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(rules, Rules::DisallowAll(ref r) if r.contains("over the")));
        let many = "Disallow: /x\n".repeat(MAX_RULES + 1);
        assert!(matches!(
            parse("ScraperV4", many.as_bytes()),
            Rules::DisallowAll(_)
        ));
        // Under the caps, rules are honoured, comments and case included.
        let fine = format!(
            "User-agent: *\n{}disallow : /p$ # no\nDISALLOW: /secret\n",
            "Allow: /ok$\n".repeat(MAX_PATTERN_RULES - 1)
        );
        let rules = parse("ScraperV4", fine.as_bytes());
        assert!(rules.check("https://x/secret/1").is_err());
        assert!(rules.check("https://x/ok").is_ok());
        assert_eq!(
            count_rules(b"Disallow: /a # $\n  allow:/b$\nDisallowed: x\n"),
            (2, 1)
        );
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_cache_is_bounded_in_origins_and_bytes() {
        let cache = RobotsCache::new(3, 1 << 20);
        let hour = Duration::from_secs(3600);
        run(async {
            for i in 0..10 {
                let origin = format!("https://sub{i}.evil.example");
                cache
                    .rules(&origin, hour, || async { Rules::AllowAll })
                    .await;
            }
        });
        assert_eq!(cache.len(), 3, "wildcard subdomains cannot grow it");
        // Rules over the byte budget push the least recently used out (the newest stays).
        let heavy = RobotsCache::new(100, 100_000);
        let body = format!("User-agent: *\n{}", "Disallow: /x$\n".repeat(5));
        run(async {
            for i in 0..5 {
                let origin = format!("https://h{i}.example");
                let body = body.clone();
                heavy
                    .rules(&origin, hour, || async move {
                        parse("ScraperV4", body.as_bytes())
                    })
                    .await;
            }
        });
        assert!(heavy.len() < 5 && !heavy.is_empty(), "{}", heavy.len());
        // A cached origin is not fetched again within the TTL; an evicted one is.
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let counting = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Rules::AllowAll
        };
        run(async {
            cache.rules("https://a.example", hour, counting).await;
            cache.rules("https://a.example", hour, counting).await;
        });
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
