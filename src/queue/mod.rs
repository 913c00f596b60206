//! The distributed job queue: leases, fencing tokens and exact counts.
//!
//! Owns the job lifecycle that every backend implements identically:
//!
//! - **submit** one job or a batch in one step, idempotent by id;
//! - **claim** up to N jobs atomically (highest priority first, FIFO within a priority, due
//!   retries included), recording the worker, a lease deadline, the attempt number and a
//!   fencing token unique within the queue for ever (a queue-wide counter: a job purged and
//!   submitted again never sees an old token);
//! - **heartbeat** renews the leases of exactly the (job, token) claims a worker says it
//!   holds, reports those that are no longer its own, and gives back jobs leased under its id
//!   that it did not list (a claim whose reply was lost);
//! - **complete / fail / release / mark running** are accepted only with the current token, so
//!   a worker whose lease was taken over cannot overwrite the new owner's work;
//! - failures retry with exponential backoff and jitter until `max_retries`, then `failed`
//!   (the dead-letter view; retriable by hand); expired leases go back to pending through
//!   [`JobQueue::reap`], which any client may run, counted apart from retries (a clock step
//!   cannot use up a job's retries) until `max_lease_expiries`, after which a job that keeps
//!   killing its workers ends `failed`; workers silent for `worker_expiry` are removed;
//! - counts per status are maintained as jobs move (never by scanning).
//!
//! Backends: [`redis::RedisQueue`] (the fleet) and [`sqlite::SqliteQueue`] (one machine, a
//! file or memory). [`JobQueue::open`] picks one from the URL.

pub mod cursor;
pub mod dedup;
pub mod error;
pub mod job;
pub mod options;
pub mod politeness;
pub mod redis;
pub mod sharded;
pub mod shared_config;
pub mod sqlite;

pub use error::{QueueError, QueueResult};
pub use job::{
    Ack, DURATION_BUCKETS_MS, FailOutcome, Finished, Heartbeat, Job, JobStatus, NewJob, QueueStats,
    QueueTotals, ReapReport, ResultsEntry, WorkerInfo, backoff_ms,
};
pub use options::{QueueOptions, QueueUrl, redact};
pub use politeness::{Change, DomainInfo, Feedback, KeyMode, Policy, PolicyState};

use options::duration_ms;

/// The most jobs one claim hands out (a larger `limit` gets this many).
pub const MAX_CLAIM: usize = 10_000;

/// A queue on any backend.
// One value per open queue: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum JobQueue {
    /// Redis (`redis://`, `rediss://`).
    Redis(redis::RedisQueue),
    /// SQLite (`sqlite://`, `memory://`).
    Sqlite(sqlite::SqliteQueue),
    /// Redis, several shards (`shards` > 1; see [`sharded`]).
    Sharded(sharded::ShardedQueue),
}

macro_rules! dispatch {
    ($self:ident, $queue:ident => $call:expr) => {
        match $self {
            JobQueue::Redis($queue) => $call,
            JobQueue::Sqlite($queue) => $call,
            JobQueue::Sharded($queue) => $call,
        }
    };
}

impl JobQueue {
    /// Opens the queue at `url` with `options` (checked first).
    pub async fn open(url: &str, options: QueueOptions) -> QueueResult<Self> {
        options.validate()?;
        Ok(match QueueUrl::parse(url)? {
            QueueUrl::Redis(url) => {
                let first = redis::RedisQueue::connection(&url, options.clone()).await?;
                match sharded::open(first).await {
                    // Another client gave the queue shards while this one opened it.
                    Err(error) if redis::resharded(&error) => {
                        sharded::open(redis::RedisQueue::connection(&url, options).await?).await?
                    }
                    other => other?,
                }
            }
            _ if options.shards.is_some_and(|n| n > 1) => {
                return Err(QueueError::Config(crate::config::ConfigError::invalid(
                    "shards",
                    options.shards.unwrap_or_default(),
                    "1 on this backend (shards spread a Redis queue over several slots)",
                )));
            }
            QueueUrl::Sqlite(path) => Self::Sqlite(sqlite::SqliteQueue::open(&path, options)?),
            QueueUrl::Memory => Self::Sqlite(sqlite::SqliteQueue::in_memory(options)?),
        })
    }

    /// The backend URL, without any password.
    pub fn location(&self) -> &str {
        dispatch!(self, q => q.location())
    }

    /// The queue's settings.
    pub fn options(&self) -> &QueueOptions {
        dispatch!(self, q => q.options())
    }

    /// The number of shards the queue is spread over (1 but for a sharded Redis queue).
    pub fn shards(&self) -> usize {
        match self {
            JobQueue::Sharded(queue) => queue.shard_count(),
            JobQueue::Redis(_) | JobQueue::Sqlite(_) => 1,
        }
    }

    /// Validates and submits jobs: `(id, created)` per job; `created` is false for an id
    /// the queue already had. Nothing is submitted when any job is invalid.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> QueueResult<Vec<(String, bool)>> {
        let limit = self.options().max_config_bytes;
        let jobs = jobs
            .into_iter()
            .map(|job| job.validated(limit))
            .collect::<QueueResult<Vec<_>>>()?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, q => q.submit(jobs).await)
    }

    /// Claims up to `limit` jobs for `worker`: `assigned`, or `running` at once when `start`
    /// (a worker that starts what it claims saves a round trip per job). Only jobs whose
    /// politeness key is ready are given (see [`politeness`]).
    ///
    /// A claimed job whose stored record cannot be read (edited by hand, say) is not returned:
    /// it is moved to `failed` with the reason, logged, and the other jobs are claimed as
    /// usual (if moving it fails, it stays leased and its lease runs out).
    pub async fn claim(&self, worker: &str, limit: usize, start: bool) -> QueueResult<Vec<Job>> {
        Ok(self.claim_with_wake(worker, limit, start).await?.0)
    }

    /// [`JobQueue::claim`], also saying — when fewer jobs than asked were given — in how long
    /// a paced key or a delayed retry becomes ready (`None`: nothing is scheduled), so a
    /// worker can ask again then instead of polling.
    pub async fn claim_with_wake(
        &self,
        worker: &str,
        limit: usize,
        start: bool,
    ) -> QueueResult<(Vec<Job>, Option<std::time::Duration>)> {
        // One claim is one atomic step on the server: bounded, so it never holds Redis (or
        // the SQLite write lock) for long.
        let limit = limit.min(MAX_CLAIM);
        let (claimed, wake) = dispatch!(self, q => q.claim(worker.to_owned(), limit, start).await)?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for job in claimed {
            match job {
                Ok(job) => jobs.push(job),
                Err(QueueError::CorruptJob { job_id, detail }) => {
                    tracing::warn!(job_id, detail, "quarantined a corrupt job record");
                    let reason = format!("corrupt job record: {detail}");
                    if let Err(error) =
                        dispatch!(self, q => q.quarantine(job_id.clone(), reason).await)
                    {
                        tracing::warn!(job_id, %error, "could not quarantine a corrupt job");
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Ok((jobs, wake))
    }

    /// Marks a claimed job as running (fenced by `token`).
    pub async fn mark_running(&self, id: &str, token: u64) -> QueueResult<Ack> {
        dispatch!(self, q => q.mark_running(id.to_owned(), token).await)
    }

    /// Completes a job with an optional JSON result (fenced by `token`).
    pub async fn complete(&self, id: &str, token: u64, result: Option<String>) -> QueueResult<Ack> {
        dispatch!(self, q => q.complete(id.to_owned(), token, result).await)
    }

    /// Completes many jobs in one step, each fenced by its own token.
    pub async fn complete_many(
        &self,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> QueueResult<Vec<Ack>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, q => q.complete_many(completions).await)
    }

    /// Completes jobs a worker finished, each fenced by its token, in one atomic step per
    /// backend call: for every accepted job its item records are appended to the results log
    /// and the jobs it discovered are submitted (idempotent by id). For a stale token nothing
    /// happens at all, so a worker that lost its lease records nothing.
    ///
    /// A discovered job that fails validation is dropped with a warning (a page cannot make
    /// its parent fail by linking to something odd).
    pub async fn finish_many(&self, mut finished: Vec<Finished>) -> QueueResult<Vec<Ack>> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.options().max_config_bytes;
        for job in &mut finished {
            job.discovered = std::mem::take(&mut job.discovered)
                .into_iter()
                .filter_map(|child| match child.validated(limit) {
                    Ok(child) => Some(child),
                    Err(error) => {
                        tracing::warn!(parent = job.id, %error, "dropped a discovered job");
                        None
                    }
                })
                .collect();
        }
        dispatch!(self, q => q.finish_many(finished).await)
    }

    /// Up to `limit` entries of the results log after `cursor` (from the start when `None`).
    pub async fn results_after(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> QueueResult<Vec<ResultsEntry>> {
        dispatch!(self, q => q.results_after(cursor, limit).await)
    }

    /// Deletes the results log up to and including `cursor` (one that
    /// [`JobQueue::results_after`] returned), so the log does not grow without bound; returns
    /// the entries removed. Entries after the cursor stay. Every reader of the log must be
    /// past the cursor.
    pub async fn trim_results(&self, cursor: &str) -> QueueResult<u64> {
        dispatch!(self, q => q.trim_results(cursor.to_owned()).await)
    }

    /// The job id and generation of the results log entry at `cursor`, if the log still has
    /// it: a reader whose last entry is gone or different knows the log was trimmed or
    /// rolled back (a backend restored from a backup, a failover to a replica that lagged)
    /// and reads it again from the start.
    pub async fn results_entry(&self, cursor: &str) -> QueueResult<Option<(String, u64)>> {
        dispatch!(self, q => q.results_entry(cursor.to_owned()).await)
    }

    /// The last results log entry deleted — by [`JobQueue::trim_results`] or by the log's
    /// bound (`results_max_len`) — if any: a reader whose cursor is before it lost entries.
    pub async fn results_trimmed_to(&self) -> QueueResult<Option<String>> {
        dispatch!(self, q => q.results_trimmed_to().await)
    }

    /// Records a failed attempt (fenced): `retrying` after a backoff while retries remain and
    /// `retryable`, else `failed`. `feedback` says what the failure means for the job's
    /// politeness key (a 429/503 or a failed request slows the key down for the whole fleet).
    pub async fn fail(
        &self,
        id: &str,
        token: u64,
        error: &str,
        retryable: bool,
        feedback: Option<Feedback>,
    ) -> QueueResult<(Ack, Option<FailOutcome>)> {
        dispatch!(self, q => q.fail(id.to_owned(), token, error.to_owned(), retryable, feedback).await)
    }

    /// Gives a claimed job back at once without counting a retry (fenced by `token`).
    pub async fn release(&self, id: &str, token: u64) -> QueueResult<Ack> {
        dispatch!(self, q => q.release(id.to_owned(), token).await)
    }

    /// Cancels a job that has not finished.
    pub async fn cancel(&self, id: &str) -> QueueResult<Ack> {
        dispatch!(self, q => q.cancel(id.to_owned()).await)
    }

    /// Puts a failed or cancelled job back to pending with its retries reset.
    pub async fn retry(&self, id: &str) -> QueueResult<Ack> {
        dispatch!(self, q => q.retry(id.to_owned()).await)
    }

    /// One job; `None` when unknown.
    pub async fn get(&self, id: &str) -> QueueResult<Option<Job>> {
        dispatch!(self, q => q.get(id.to_owned()).await)
    }

    /// Jobs with `status`, paged.
    pub async fn list(
        &self,
        status: JobStatus,
        offset: usize,
        limit: usize,
    ) -> QueueResult<Vec<QueueResult<Job>>> {
        dispatch!(self, q => q.list(status, offset, limit).await)
    }

    /// Counts per status, total, workers, runnable backlog.
    pub async fn stats(&self) -> QueueResult<QueueStats> {
        dispatch!(self, q => q.stats().await)
    }

    /// Counts by reading every job (slow; to verify [`JobQueue::stats`]).
    pub async fn recount_by_scan(&self) -> QueueResult<Vec<(JobStatus, u64)>> {
        dispatch!(self, q => q.recount_by_scan().await)
    }

    /// Registers a worker (clearing its drain flag). With a `session` — a value unique to
    /// one run of the worker — the run takes the id over: jobs still leased under the id (an
    /// earlier run's that was killed, or that is still running with the same id by mistake)
    /// go back to pending now, counted as expired leases, and the earlier run's heartbeats
    /// report [`Heartbeat::superseded`]. Returns how many jobs went back.
    pub async fn register_worker(&self, worker: &str, session: Option<&str>) -> QueueResult<u64> {
        let session = session.map(str::to_owned);
        dispatch!(self, q => q.register_worker(worker.to_owned(), session).await)
    }

    /// Heartbeat: renews the leases of the `(id, token)` claims in `held` — exactly those: a
    /// job leased under `worker`'s id and not listed is given back to pending (counted as an
    /// expired lease), and a listed one that is no longer the worker's is reported in
    /// [`Heartbeat::lost`]. With `None`, every job leased under the id is renewed (for
    /// clients that do not track claims). With the run's `session`, a run another has
    /// superseded renews nothing (see [`JobQueue::register_worker`]).
    pub async fn heartbeat(
        &self,
        worker: &str,
        held: Option<Vec<(String, u64)>>,
        session: Option<&str>,
    ) -> QueueResult<Heartbeat> {
        let session = session.map(str::to_owned);
        dispatch!(self, q => q.heartbeat(worker.to_owned(), held, session, true).await)
    }

    /// [`JobQueue::heartbeat`] from a worker that could not reach the queue since its last
    /// heartbeat: the jobs leased under its id that it does not list are given back without
    /// counting an expired lease. They were dropped because the queue was unreachable (a
    /// claim whose reply was lost, leases that could not be renewed, a finish or a failure
    /// that could not be recorded): the queue's trouble, which must not fail healthy jobs
    /// after `max_lease_expiries` outages.
    pub async fn heartbeat_after_outage(
        &self,
        worker: &str,
        held: Vec<(String, u64)>,
        session: Option<&str>,
    ) -> QueueResult<Heartbeat> {
        let session = session.map(str::to_owned);
        dispatch!(self, q => q.heartbeat(worker.to_owned(), Some(held), session, false).await)
    }

    /// Sets a worker's drain flag; false when the worker is unknown.
    pub async fn set_draining(&self, worker: &str, draining: bool) -> QueueResult<bool> {
        dispatch!(self, q => q.set_draining(worker.to_owned(), draining).await)
    }

    /// Removes a worker, releasing the jobs it holds; returns how many were released —
    /// `None` when `session` is given and another run has taken the id over since (then
    /// nothing is done: the id and its jobs are that run's).
    pub async fn unregister_worker(
        &self,
        worker: &str,
        session: Option<&str>,
    ) -> QueueResult<Option<u64>> {
        let session = session.map(str::to_owned);
        dispatch!(self, q => q.unregister_worker(worker.to_owned(), session).await)
    }

    /// The politeness keys the queue keeps a record of (paced, limited, throttled or with
    /// an override), most recently changed first.
    pub async fn domains(&self, offset: usize, limit: usize) -> QueueResult<Vec<DomainInfo>> {
        dispatch!(self, q => q.domains(offset, limit).await)
    }

    /// One politeness key; `None` when the queue keeps no record of it (it needs no pacing).
    pub async fn domain(&self, key: &str) -> QueueResult<Option<DomainInfo>> {
        dispatch!(self, q => q.domain(key.to_owned()).await)
    }

    /// Sets or clears a key's delay and concurrency overrides.
    pub async fn set_domain(
        &self,
        key: &str,
        delay: Change<std::time::Duration>,
        concurrency: Change<u32>,
    ) -> QueueResult<DomainInfo> {
        politeness::check_key(key).map_err(|reason| {
            QueueError::Config(crate::config::ConfigError::invalid(
                "politeness key",
                key,
                reason,
            ))
        })?;
        let delay = match delay {
            Change::Set(d) if d > std::time::Duration::from_secs(24 * 3600) => {
                return Err(QueueError::Config(crate::config::ConfigError::invalid(
                    "delay",
                    format!("{d:?}"),
                    "at most a day",
                )));
            }
            Change::Set(d) => Change::Set(duration_ms(d)),
            Change::Clear => Change::Clear,
            Change::Keep => Change::Keep,
        };
        dispatch!(self, q => q.set_domain(key.to_owned(), delay, concurrency).await)
    }

    /// A robots.txt `Crawl-delay` seen for `key`: the key's least delay for the whole fleet,
    /// for `ttl`.
    pub async fn set_crawl_delay(
        &self,
        key: &str,
        delay: std::time::Duration,
        ttl: std::time::Duration,
    ) -> QueueResult<()> {
        // At least 1 ms (a sub-millisecond Crawl-delay must still park the key: a worker
        // refuses unpaced requests to its host) and held at least a minute (a TTL of 0 would
        // leave the key unpaced, its jobs given back for ever).
        let delay = duration_ms(delay).max(1);
        let ttl = duration_ms(ttl).max(60_000);
        dispatch!(self, q => q.set_crawl_delay(key.to_owned(), delay, ttl).await)
    }

    /// Writes the values of `policy` that are set and returns the queue's policy after it.
    pub async fn set_policy(&self, policy: Policy) -> QueueResult<PolicyState> {
        policy.validate()?;
        dispatch!(self, q => q.set_policy(policy).await)
    }

    /// The queue's politeness policy.
    pub async fn policy(&self) -> QueueResult<PolicyState> {
        dispatch!(self, q => q.set_policy(Policy::default()).await)
    }

    /// The robots.txt outcome the fleet shares for `origin` (see [`crate::fetch::robots`]).
    pub async fn robots_get(&self, origin: &str) -> QueueResult<Option<String>> {
        dispatch!(self, q => q.robots_get(origin.to_owned()).await)
    }

    /// Shares the robots.txt outcome for `origin` for `ttl`.
    pub async fn robots_put(
        &self,
        origin: &str,
        value: String,
        ttl: std::time::Duration,
    ) -> QueueResult<()> {
        dispatch!(self, q => q.robots_put(origin.to_owned(), value, duration_ms(ttl)).await)
    }

    /// True when the caller should fetch `origin`'s robots.txt: nobody else has claimed it
    /// within `ttl`.
    pub async fn robots_claim(&self, origin: &str, ttl: std::time::Duration) -> QueueResult<bool> {
        dispatch!(self, q => q.robots_claim(origin.to_owned(), duration_ms(ttl)).await)
    }

    /// The politeness key of a job for `url` under this queue's key mode.
    pub fn politeness_key(&self, url: &str, override_key: Option<&str>) -> String {
        politeness::key_of(url, override_key, self.options().politeness_key)
    }

    /// Registered workers.
    pub async fn workers(&self) -> QueueResult<Vec<WorkerInfo>> {
        dispatch!(self, q => q.workers().await)
    }

    /// Expired leases back to pending (at most `limit`), dead workers removed, old finished
    /// jobs deleted.
    pub async fn reap(&self, limit: usize) -> QueueResult<ReapReport> {
        dispatch!(self, q => q.reap(limit).await)
    }

    /// Deletes jobs that finished more than `older_than` ago.
    pub async fn purge(&self, older_than: std::time::Duration) -> QueueResult<u64> {
        let older_than_ms = duration_ms(older_than);
        dispatch!(self, q => q.purge(older_than_ms).await)
    }
}
