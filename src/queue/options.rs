//! Settings shared by every queue backend, and the queue URL.

use std::time::Duration;

use crate::config::{ConfigError, ConfigResult};

use super::job::DEFAULT_MAX_CONFIG_BYTES;
use super::politeness::{KeyMode, Policy};

/// The most shards a queue can have.
pub const MAX_SHARDS: u32 = 256;

/// Settings of a queue (the same on every backend).
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Queue name: several queues can share one Redis or one SQLite file.
    pub name: String,
    /// Redis key prefix (namespace) in front of `{name}`.
    pub prefix: String,
    /// How long a claim is valid without renewal (visibility timeout).
    pub lease: Duration,
    /// Largest job config accepted, bytes of JSON.
    pub max_config_bytes: usize,
    /// First retry delay; doubles with each retry (with jitter).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// How long finished (completed, failed, cancelled) jobs are kept.
    pub retention: Duration,
    /// A worker without a heartbeat for this long counts as stale.
    pub worker_liveness: Duration,
    /// A worker without a heartbeat for this long is removed from the registry by the
    /// reaper (its leases have long expired): dead workers do not pile up.
    pub worker_expiry: Duration,
    /// After this many expired leases a job fails for good ("it keeps killing or hanging its
    /// workers"). Expired leases do not use up the job's retries.
    pub max_lease_expiries: u32,
    /// SQLite only: make every commit durable across an operating-system crash
    /// (`synchronous=FULL`). Off, a crash of the machine (not of the process) can lose the
    /// last commits, and with them results an export may already have copied.
    pub durable_commits: bool,
    /// Longest wait for any backend call; past it the call fails with `Unavailable`.
    pub operation_timeout: Duration,
    /// Accept `rediss://...#insecure` (no certificate check). Off: such a URL is refused.
    pub allow_insecure_tls: bool,
    /// What a job's politeness key is made of (every client of a queue should agree).
    pub politeness_key: KeyMode,
    /// Queue-wide politeness settings written to the queue when the queue is opened (the
    /// values left `None` stay as the queue has them).
    pub policy: Policy,
    /// `runnable` in the stats counts what could start within this time.
    pub runnable_horizon: Duration,
    /// A politeness key idle this long with nothing to keep is forgotten by the reaper.
    pub domain_idle: Duration,
    /// The seen-URL filter (see [`super::dedup`]); `None`: dedup by job id only, for as long
    /// as the job record is kept.
    pub dedup: Option<super::dedup::DedupOptions>,
    /// The results log keeps at most this many entries (about, on Redis): the reaper deletes
    /// the oldest beyond it. An exporter that falls further behind loses entries and says so
    /// loudly. `None`: the log grows until it is trimmed (`trim_results`).
    pub results_max_len: Option<u64>,
    /// Redis: the number of shards (key hash tags, so slots of a cluster) the queue is spread
    /// over, set when the queue is created (see [`super::sharded`]). `None`: as the queue
    /// was created (one shard for a new queue). A queue created with another number is
    /// refused, not resharded.
    pub shards: Option<u32>,
    /// Discovered jobs store a config their page's links share once, by reference
    /// ([`super::shared_config`]). Off: every job keeps its own copy — for a rolling upgrade
    /// while clients of an older release, which cannot read such jobs, still use the queue.
    pub shared_configs: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            prefix: "scraperv4".to_owned(),
            lease: Duration::from_secs(60),
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 24 * 3600),
            worker_liveness: Duration::from_secs(120),
            worker_expiry: Duration::from_secs(3600),
            max_lease_expiries: 5,
            durable_commits: true,
            operation_timeout: Duration::from_secs(10),
            allow_insecure_tls: false,
            politeness_key: KeyMode::Domain,
            policy: Policy::default(),
            runnable_horizon: Duration::from_secs(10),
            domain_idle: Duration::from_secs(3600),
            dedup: None,
            results_max_len: None,
            shards: None,
            shared_configs: true,
        }
    }
}

impl QueueOptions {
    /// Checks every setting.
    pub fn validate(&self) -> ConfigResult<()> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        };
        if !name_ok(&self.name) {
            return Err(ConfigError::invalid(
                "queue name",
                &self.name,
                "1-128 characters among A-Z a-z 0-9 - _ . :",
            ));
        }
        if !name_ok(&self.prefix) {
            return Err(ConfigError::invalid(
                "key prefix",
                &self.prefix,
                "1-128 characters among A-Z a-z 0-9 - _ . :",
            ));
        }
        for (setting, value, minimum) in [
            ("lease", self.lease, Duration::from_millis(100)),
            (
                "runnable_horizon",
                self.runnable_horizon,
                Duration::from_millis(100),
            ),
            ("retry_base", self.retry_base, Duration::ZERO),
            ("retention", self.retention, Duration::ZERO),
            (
                "worker_liveness",
                self.worker_liveness,
                Duration::from_millis(100),
            ),
            (
                "operation_timeout",
                self.operation_timeout,
                Duration::from_millis(10),
            ),
        ] {
            if value < minimum {
                return Err(ConfigError::invalid(
                    setting,
                    format!("{value:?}"),
                    format!("at least {minimum:?}"),
                ));
            }
        }
        if self.worker_expiry < self.lease.max(self.worker_liveness) {
            return Err(ConfigError::invalid(
                "worker_expiry",
                format!("{:?}", self.worker_expiry),
                "at least the lease and the worker liveness window",
            ));
        }
        self.policy.validate()?;
        if let Some(dedup) = &self.dedup {
            dedup.validate()?;
        }
        if self.results_max_len == Some(0) {
            return Err(ConfigError::invalid(
                "results_max_len",
                0,
                "at least 1 entry (or none: no bound)",
            ));
        }
        if let Some(shards) = self.shards
            && !(1..=MAX_SHARDS).contains(&shards)
        {
            return Err(ConfigError::invalid(
                "shards",
                shards,
                format!("1 to {MAX_SHARDS}"),
            ));
        }
        if self.max_lease_expiries == 0 {
            return Err(ConfigError::invalid(
                "max_lease_expiries",
                self.max_lease_expiries,
                "at least 1",
            ));
        }
        if self.retry_cap < self.retry_base {
            return Err(ConfigError::invalid(
                "retry_cap",
                format!("{:?}", self.retry_cap),
                "at least retry_base",
            ));
        }
        if self.max_config_bytes < 2 {
            return Err(ConfigError::invalid(
                "max_config_bytes",
                self.max_config_bytes,
                "at least 2 (an empty JSON object)",
            ));
        }
        Ok(())
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        duration_ms(self.lease)
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The backend a queue URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// `redis://`, `rediss://`, or a cluster: `redis+cluster://host:port[,host:port...]`.
    Redis(String),
    /// `sqlite:///absolute/path.db` or `sqlite://relative/path.db`.
    Sqlite(std::path::PathBuf),
    /// `memory://`: an in-process queue (lost when the process exits).
    Memory,
}

impl QueueUrl {
    /// Picks the backend from the URL scheme.
    pub fn parse(url: &str) -> ConfigResult<Self> {
        let expected = "redis://host:port/db, rediss://..., redis+cluster://host:port[,host:port...], \
                        sqlite:///path/queue.db or memory://";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(ConfigError::invalid("queue URL", redact(url), expected));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" | "valkey" | "valkeys" | "redis+cluster" | "rediss+cluster"
            | "valkey+cluster" | "valkeys+cluster" => {
                crate::config::check_credentials("queue URL", url)?;
                Ok(Self::Redis(url.to_owned()))
            }
            "sqlite" => {
                let path = rest.split(['?', '#']).next().unwrap_or_default();
                if path.is_empty() {
                    return Err(ConfigError::invalid(
                        "queue URL",
                        url,
                        "a file path after sqlite://, e.g. sqlite:///var/lib/scraperv4/queue.db",
                    ));
                }
                Ok(Self::Sqlite(path.into()))
            }
            "memory" => Ok(Self::Memory),
            _ => Err(ConfigError::invalid("queue URL", redact(url), expected)),
        }
    }
}

/// The URL with its credentials replaced by `***`, for messages and logs: everything between
/// `://` and the last `@` ([`crate::config::redact_url`]), so a password holding `/ ? # @`
/// is masked whole.
pub fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("rediss://app:s3cret@h/1"), "rediss://app:***@h/1");
        assert_eq!(redact("redis://s3cret@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        assert!(!redact("redis://u:p@ss:w@h/0").contains("ss:w"));
        for password in ["p/ss", "p?ss", "p#ss", "p@ss", "p%2Fss"] {
            let masked = redact(&format!("redis://:{password}@h:6379/0"));
            assert_eq!(masked, "redis://***@h:6379/0", "{password}");
        }
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(QueueUrl::parse("memory://").unwrap(), QueueUrl::Memory);
        assert_eq!(
            QueueUrl::parse("sqlite:///tmp/q.db").unwrap(),
            QueueUrl::Sqlite("/tmp/q.db".into())
        );
        for url in [
            "redis://h/0",
            "redis+cluster://a:7000,b:7000",
            "rediss+cluster://a:7000",
        ] {
            assert!(
                matches!(QueueUrl::parse(url).unwrap(), QueueUrl::Redis(_)),
                "{url}"
            );
        }
        let error = QueueUrl::parse("postgres://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("pw") && error.contains("sqlite://"),
            "{error}"
        );
    }
}
