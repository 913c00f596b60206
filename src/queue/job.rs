//! The job record, its statuses and the rules a submission must pass.

use serde::{Deserialize, Serialize};

use super::error::{QueueError, QueueResult};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker, lease running.
    Assigned,
    /// The worker said it started (lease running).
    Running,
    /// Finished successfully (terminal).
    Completed,
    /// Ran out of retries, or failed permanently (terminal; retriable by hand).
    Failed,
    /// Failed and waiting for its backoff delay before it can be claimed again.
    Retrying,
    /// Cancelled by a user (terminal).
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Assigned,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Retrying,
        Self::Cancelled,
    ];

    /// The lowercase name stored in backends and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Completed, failed or cancelled: nothing more happens without a user.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Assigned or running: a worker holds a lease.
    pub fn is_leased(self) -> bool {
        matches!(self, Self::Assigned | Self::Running)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Highest accepted priority (and minus it the lowest); keeps the Redis sort key exact.
pub const PRIORITY_LIMIT: i64 = 1_000_000;

/// A job as stored. Times are milliseconds since the Unix epoch, from the backend's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id (the caller's, or a generated UUID).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The template the worker extracts with.
    pub template_id: String,
    /// The page to fetch.
    pub target_url: String,
    /// Job configuration, a JSON object as text.
    pub config: String,
    /// Higher runs first; FIFO within a priority.
    pub priority: i64,
    /// Current status.
    pub status: JobStatus,
    /// The worker holding (or that last held) the job.
    pub assigned_worker: Option<String>,
    /// Submission time.
    pub created_at: i64,
    /// Time of the latest claim.
    pub started_at: Option<i64>,
    /// Time it reached a terminal status.
    pub completed_at: Option<i64>,
    /// Retries scheduled so far after failed attempts.
    pub retry_count: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Result, a JSON value as text.
    pub result: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// Number of claims so far.
    pub attempt: u64,
    /// The fencing token of the current (or last) claim: unique within the queue, for ever
    /// (a queue-wide counter, so a job purged and submitted again never repeats one). Every
    /// change a worker makes to a claimed job must carry it.
    pub token: u64,
    /// Leases of this job that expired (its worker died, hung or was cut off); counted apart
    /// from the retries, so a server clock that jumps does not use up a job's retries.
    pub lease_expiries: u32,
    /// When the current lease runs out.
    pub lease_deadline: Option<i64>,
    /// Not claimable before this time (delayed retries, delayed submissions).
    pub not_before: Option<i64>,
    /// The crawl this job belongs to.
    pub crawl_id: Option<String>,
    /// Link depth from the crawl's seed URLs.
    pub depth: u32,
    /// The job whose page linked here.
    pub parent_id: Option<String>,
    /// The key the queue paces this job's requests by (see [`super::politeness`]); empty
    /// for a job stored before keys existed.
    pub politeness_key: String,
    /// Whether this claim holds a slot of its politeness key (the queue paced it: the key's
    /// delay and in-flight limit were applied). False for a key that needed no pacing when
    /// claimed — the worker must not send a request robots.txt asks to space out before the
    /// queue knows that (see `RequestOptions::queue_paced`).
    pub paced: bool,
}

/// What a caller submits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewJob {
    /// `None`: a UUID is generated.
    pub id: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// The template the worker extracts with.
    pub template_id: String,
    /// The page to fetch (http or https, with a host).
    pub target_url: String,
    /// A JSON object as text (`{}` when empty).
    pub config: String,
    /// Higher runs first, within +/- [`PRIORITY_LIMIT`].
    pub priority: i64,
    /// Retries allowed after the first attempt (default 3).
    pub max_retries: u32,
    /// The crawl this job belongs to.
    pub crawl_id: Option<String>,
    /// Link depth.
    pub depth: u32,
    /// The job whose page linked here.
    pub parent_id: Option<String>,
    /// The politeness key, when the job names one (config `"politeness_key"`, or set here);
    /// otherwise the queue derives it from the URL.
    pub politeness_key: Option<String>,
    /// How long the URL stays seen on a queue with dedup on (config `"revisit"`, seconds,
    /// read by [`NewJob::validated`]); `None`: the queue's default.
    pub revisit: Option<std::time::Duration>,
}

/// A job a worker finished, reported with everything that must happen with it atomically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finished {
    /// The job.
    pub id: String,
    /// The fencing token of the worker's claim.
    pub token: u64,
    /// The job's result, a JSON value as text.
    pub result: Option<String>,
    /// The items recorded, a JSON array of records as text, appended to the results log.
    pub records: Option<String>,
    /// How long the page took (it feeds the politeness key's `AutoThrottle` delay).
    pub latency: Option<std::time::Duration>,
    /// Jobs discovered on the page, submitted (idempotently, by id).
    pub discovered: Vec<NewJob>,
}

/// One entry of a queue's results log: the item records of one completed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsEntry {
    /// Position in the log; read on after it with the next call.
    pub cursor: String,
    /// The job the records came from.
    pub job_id: String,
    /// Which incarnation of that job (a queue-wide number given when the job was created):
    /// with `job_id` and each record's position, the key under which exports deduplicate
    /// records of a job that ran again after the backend lost an acknowledged finish.
    pub generation: u64,
    /// A JSON array of item records.
    pub records: String,
}

/// Default cap on a job's config, in bytes of JSON.
pub const DEFAULT_MAX_CONFIG_BYTES: usize = 1024 * 1024;

impl NewJob {
    /// Checks the submission and fills in the id; the error names the job.
    pub fn validated(mut self, max_config_bytes: usize) -> QueueResult<Self> {
        // From the operating system (one getrandom call, ~1 µs): a thread-local generator
        // would repeat its sequence in a forked child (rand >= 0.9 does not reseed on fork),
        // and a repeated id is a job the queue leaves out as already known.
        let id = self
            .id
            .take()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let invalid = |reason: String| QueueError::InvalidJob {
            job_id: id.clone(),
            reason,
        };
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(invalid(
                "the id must be 1 to 256 printable characters".to_owned(),
            ));
        }
        check_url(&self.target_url).map_err(invalid)?;
        if self.config.trim().is_empty() {
            "{}".clone_into(&mut self.config);
        }
        if self.config.len() > max_config_bytes {
            return Err(invalid(format!(
                "config is {} bytes of JSON, over the {max_config_bytes}-byte limit",
                self.config.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(&self.config) {
            Ok(serde_json::Value::Object(config)) => {
                if let Some(revisit) = super::dedup::revisit_of(&config).map_err(invalid)? {
                    self.revisit = Some(revisit);
                }
                match config.get("politeness_key") {
                    None | Some(serde_json::Value::Null) => {}
                    Some(serde_json::Value::String(key)) => {
                        super::politeness::check_key(key).map_err(invalid)?;
                        self.politeness_key.get_or_insert_with(|| key.clone());
                    }
                    Some(other) => {
                        return Err(invalid(format!(
                            "config politeness_key must be a string, not {other}"
                        )));
                    }
                }
            }
            Ok(_) => return Err(invalid("config must be a JSON object".to_owned())),
            Err(error) => return Err(invalid(format!("config is not valid JSON: {error}"))),
        }
        if let Some(key) = &self.politeness_key {
            super::politeness::check_key(key).map_err(invalid)?;
        }
        if self.priority.abs() > PRIORITY_LIMIT {
            return Err(invalid(format!(
                "priority {} is outside -{PRIORITY_LIMIT}..={PRIORITY_LIMIT}",
                self.priority
            )));
        }
        self.id = Some(id);
        Ok(self)
    }

    /// The id (present after [`NewJob::validated`]).
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }
}

/// An http(s) URL with a host, or why not.
pub fn check_url(target: &str) -> Result<(), String> {
    let parsed = url::Url::parse(target)
        .map_err(|e| format!("target_url {target:?} is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "target_url {target:?} must use http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("target_url {target:?} has no host"));
    }
    Ok(())
}

/// The answer to an operation that needs the current fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Done.
    Accepted,
    /// Refused: the caller's token is not the current one, or the job is no longer leased
    /// (the lease expired and another worker took it, it was cancelled, ...). Nothing
    /// changed.
    Stale {
        /// The job's status now.
        status: JobStatus,
        /// The job's current fencing token.
        token: u64,
    },
    /// No such job.
    NotFound,
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Scheduled again after a backoff delay (status `retrying`).
    Retrying {
        /// When it becomes claimable, ms since the epoch.
        not_before: i64,
    },
    /// Out of retries, or failed permanently (status `failed`).
    Failed,
}

/// Counts maintained as jobs move; never computed by scanning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct QueueStats {
    /// Jobs per status.
    pub by_status: Vec<(JobStatus, u64)>,
    /// All jobs stored.
    pub total: u64,
    /// Workers with a heartbeat within the liveness window.
    pub active_workers: u64,
    /// Registered workers.
    pub total_workers: u64,
    /// What workers could start within the queue's `runnable_horizon`: pending jobs of keys
    /// that need no pacing, due retries, and per paced key what its delay and in-flight
    /// limit let through in that time (a key limited to one request a second adds about one
    /// per second of horizon, however many jobs it has). This is what more workers could
    /// work on; the autoscaler scales on it.
    pub runnable: u64,
    /// Politeness keys with their own queue (paced, limited or throttled).
    pub paced_keys: u64,
    /// Of those, keys waiting for their next allowed time.
    pub waiting_keys: u64,
    /// Monotonic totals since the queue was created.
    pub totals: QueueTotals,
}

/// Upper bounds (ms) of the job duration histogram the queue keeps (the last bucket holds
/// what is above the last bound). Kept in step with `prelude.lua` and the SQLite schema.
pub const DURATION_BUCKETS_MS: [u64; 11] = [
    50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000,
];

/// Counters that only grow (they survive the retention purge), kept by the queue itself as
/// jobs move, so every client reads the same numbers: rates and the duration histogram of a
/// fleet come from their differences over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueTotals {
    /// Jobs that reached `completed`.
    pub completed: u64,
    /// Jobs that reached `failed` (retries exhausted or not retryable).
    pub failed: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Retries scheduled after failed attempts.
    pub retried: u64,
    /// Leases that expired (the job went back to pending, or failed after too many).
    pub expired: u64,
    /// Failed or cancelled jobs put back to pending by hand (`retry`): a job that failed and
    /// then completed after a replay is in both `failed` and `completed`; `failed - replayed`
    /// is what stayed failed.
    pub replayed: u64,
    /// Sum of the durations of completed jobs' successful attempts (claim to completion), ms.
    pub duration_ms_sum: u64,
    /// Completed jobs with a measured duration.
    pub duration_count: u64,
    /// Completed jobs per duration bucket (see [`DURATION_BUCKETS_MS`]; one more bucket for
    /// above the last bound), not cumulative.
    pub duration_buckets: Vec<u64>,
}

impl QueueTotals {
    /// Totals from `(name, value)` pairs as the backends store them.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let mut totals = Self {
            duration_buckets: vec![0; DURATION_BUCKETS_MS.len() + 1],
            ..Self::default()
        };
        for (name, value) in pairs {
            let value = u64::try_from(value).unwrap_or(0);
            match name {
                "completed" => totals.completed = value,
                "failed" => totals.failed = value,
                "cancelled" => totals.cancelled = value,
                "retried" => totals.retried = value,
                "expired" => totals.expired = value,
                "replayed" => totals.replayed = value,
                "duration_ms_sum" => totals.duration_ms_sum = value,
                "duration_count" => totals.duration_count = value,
                bucket => {
                    if let Some(slot) = bucket
                        .strip_prefix('d')
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| totals.duration_buckets.get_mut(i))
                    {
                        *slot = value;
                    }
                }
            }
        }
        totals
    }

    /// The totals of several queues (the shards of one) added up.
    pub fn sum(all: impl IntoIterator<Item = Self>) -> Self {
        let mut sum = Self::from_pairs([]);
        for one in all {
            sum.completed += one.completed;
            sum.failed += one.failed;
            sum.cancelled += one.cancelled;
            sum.retried += one.retried;
            sum.expired += one.expired;
            sum.replayed += one.replayed;
            sum.duration_ms_sum += one.duration_ms_sum;
            sum.duration_count += one.duration_count;
            for (total, n) in sum.duration_buckets.iter_mut().zip(&one.duration_buckets) {
                *total += n;
            }
        }
        sum
    }
}

impl QueueStats {
    /// The count of one status.
    pub fn count(&self, status: JobStatus) -> u64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// A registered worker as the queue sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: String,
    /// Registration time (ms).
    pub registered_at: i64,
    /// Last heartbeat (ms).
    pub last_heartbeat: i64,
    /// Asked to drain: it claims nothing more and leaves when its jobs are done.
    pub draining: bool,
    /// The jobs it holds now.
    pub jobs: Vec<String>,
    /// `active` or `stale` (no heartbeat within the liveness window; the reaper removes a
    /// worker silent for longer than the queue's `worker_expiry`).
    pub state: String,
}

/// What a heartbeat did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Heartbeat {
    /// Leases renewed.
    pub renewed: u64,
    /// The worker is asked to drain.
    pub draining: bool,
    /// Claims (id, token) the worker listed that are no longer its own (the lease expired
    /// and the job went back, or it was cancelled): it must stop working on them.
    pub lost: Vec<(String, u64)>,
    /// Jobs claimed under the worker's id that it did not list (a claim whose reply was
    /// lost, say), given back to pending.
    pub released: u64,
    /// Another run has registered the worker's id since this run did (see
    /// [`crate::queue::JobQueue::register_worker`]): nothing was renewed or given back, and
    /// the run must stop — the id and its jobs belong to the newer run.
    pub superseded: bool,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ReapReport {
    /// Expired leases whose job went back to pending.
    pub requeued: u64,
    /// Expired leases whose job had expired too often (`max_lease_expiries`) and failed.
    pub failed: u64,
    /// Finished jobs deleted because they were older than the retention.
    pub purged: u64,
    /// Workers removed because they sent no heartbeat for `worker_expiry`.
    pub workers_expired: u64,
}

/// Milliseconds to wait before retry number `retry` (1-based): `min(base * 2^(retry-1),
/// cap)`, half of it fixed and half scaled by `jitter` in `[0, 1]` ("equal jitter": retries
/// of many jobs that failed together spread out, and none comes back too early).
/// The Redis scripts compute the same formula.
pub fn backoff_ms(retry: u32, base_ms: u64, cap_ms: u64, jitter: f64) -> u64 {
    let full = base_ms
        .saturating_mul(1_u64 << retry.saturating_sub(1).min(30))
        .min(cap_ms);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let scaled = (full as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64;
    full / 2 + scaled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(url: &str, config: &str) -> NewJob {
        NewJob {
            id: Some("j1".to_owned()),
            target_url: url.to_owned(),
            config: config.to_owned(),
            ..NewJob::default()
        }
    }

    #[test]
    fn validation_names_the_job_and_the_problem() {
        let cases = [
            (job("ftp://x.com/", "{}"), "http or https"),
            (job("not a url", "{}"), "not a valid URL"),
            (job("https://x.com/", "[1]"), "JSON object"),
            (job("https://x.com/", "{"), "not valid JSON"),
            (
                job(
                    "https://x.com/",
                    &format!("{{\"a\":\"{}\"}}", "x".repeat(100)),
                ),
                "limit",
            ),
        ];
        for (new_job, expected) in cases {
            let error = new_job.validated(64).unwrap_err().to_string();
            assert!(error.starts_with("job j1: "), "{error}");
            assert!(error.contains(expected), "{error}");
        }
        let ok = job("https://x.com/", "").validated(64).unwrap();
        assert_eq!(ok.config, "{}");
        let generated = NewJob {
            target_url: "https://x.com/".to_owned(),
            ..NewJob::default()
        };
        assert_eq!(generated.validated(64).unwrap().id().len(), 36);
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        for retry in 1..=5 {
            let full = 1000 * (1 << (retry - 1));
            assert_eq!(backoff_ms(retry, 1000, 60_000, 0.0), full / 2);
            assert_eq!(backoff_ms(retry, 1000, 60_000, 1.0), full);
            assert_eq!(backoff_ms(retry, 1000, 60_000, 0.5), full * 3 / 4);
        }
        assert_eq!(backoff_ms(40, 1000, 60_000, 1.0), 60_000);
    }
}
