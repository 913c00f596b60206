//! The embedded backend: one SQLite file (WAL) or an in-memory database.
//!
//! Owns the same semantics as the Redis backend for one machine. Every operation is one
//! `BEGIN IMMEDIATE` transaction, so a process killed at any point leaves either the old or the
//! new state; claimed jobs of a killed process come back when their lease expires, like on
//! Redis. Per-status counts are kept by triggers in the same transactions (O(1) stats, never a
//! scan). Several processes may share one file: SQLite serialises the writers and
//! `busy_timeout` makes them wait instead of failing.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::error::{QueueError, QueueResult};
use super::job::{
    Ack, FailOutcome, Finished, Heartbeat, Job, JobStatus, NewJob, QueueStats, QueueTotals,
    ReapReport, ResultsEntry, WorkerInfo, backoff_ms,
};
use super::options::{QueueOptions, duration_ms};
use super::politeness::{Change, DomainInfo, Feedback, Policy, PolicyState};

mod dedup;
mod politeness;
mod results;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    template_id TEXT NOT NULL,
    target_url TEXT NOT NULL,
    config TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    assigned_worker TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_deadline INTEGER,
    not_before INTEGER NOT NULL DEFAULT 0,
    crawl_id TEXT,
    depth INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    lease_expiries INTEGER NOT NULL DEFAULT 0,
    gen INTEGER,
    root_gen INTEGER,
    pkey TEXT NOT NULL DEFAULT '',
    ikey TEXT,
    parked INTEGER NOT NULL DEFAULT 0,
    UNIQUE (queue, id)
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (queue, priority DESC, seq)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (queue, lease_deadline)
    WHERE status IN ('assigned', 'running');
CREATE INDEX IF NOT EXISTS jobs_worker ON jobs (queue, assigned_worker)
    WHERE status IN ('assigned', 'running');
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (queue, status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS configs (
    queue TEXT NOT NULL,
    hash TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (queue, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status)
);
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT INTO counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
-- Monotonic totals (see QueueTotals): transitions counted by triggers, never decremented.
CREATE TABLE IF NOT EXISTS totals (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (queue, name)
);
CREATE TRIGGER IF NOT EXISTS jobs_total_finished AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status AND NEW.status IN ('completed', 'failed', 'cancelled') BEGIN
    INSERT INTO totals (queue, name, value) VALUES (NEW.queue, NEW.status, 1)
        ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_total_duration AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status AND NEW.status = 'completed'
    AND NEW.started_at IS NOT NULL AND NEW.completed_at IS NOT NULL BEGIN
    INSERT INTO totals (queue, name, value) VALUES
        (NEW.queue, 'duration_ms_sum', MAX(NEW.completed_at - NEW.started_at, 0)),
        (NEW.queue, 'duration_count', 1),
        (NEW.queue, 'd' || (SELECT COUNT(*) FROM (SELECT 50 AS b UNION ALL SELECT 100
            UNION ALL SELECT 250 UNION ALL SELECT 500 UNION ALL SELECT 1000 UNION ALL SELECT 2500
            UNION ALL SELECT 5000 UNION ALL SELECT 10000 UNION ALL SELECT 30000
            UNION ALL SELECT 60000 UNION ALL SELECT 300000)
            WHERE b < MAX(NEW.completed_at - NEW.started_at, 0)), 1)
        ON CONFLICT (queue, name) DO UPDATE SET value = value + excluded.value;
END;
CREATE TRIGGER IF NOT EXISTS jobs_total_retried AFTER UPDATE OF retry_count ON jobs
    WHEN NEW.retry_count > OLD.retry_count BEGIN
    INSERT INTO totals (queue, name, value) VALUES (NEW.queue, 'retried', 1)
        ON CONFLICT (queue, name) DO UPDATE SET value = value + 1;
END;
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    job_id TEXT NOT NULL,
    records TEXT NOT NULL,
    gen INTEGER NOT NULL DEFAULT 0
);
-- Queue-wide counters that never go back (the fencing tokens).
CREATE TABLE IF NOT EXISTS sequences (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (queue, name)
);
CREATE TABLE IF NOT EXISTS workers (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0,
    session TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (queue, id)
);
";

/// A job's columns; its `config` put back from `configs` when it holds a reference
/// (`@<hash>`, see [`crate::queue::shared_config`]; a JSON object never starts with `@`).
const JOB_COLUMNS: &str = "id, name, template_id, target_url, \
    CASE WHEN substr(config, 1, 1) = '@' THEN (SELECT c.config FROM configs c \
    WHERE c.queue = jobs.queue AND c.hash = substr(jobs.config, 2)) ELSE config END, \
    priority, status, \
    assigned_worker, created_at, started_at, completed_at, retry_count, max_retries, result, \
    error, attempt, lease_deadline, not_before, crawl_id, depth, parent_id, token, \
    lease_expiries, pkey, ikey";

/// Columns added after the first release, for databases created before them.
const MIGRATIONS: [(&str, &str, &str); 9] = [
    ("jobs", "token", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "lease_expiries", "INTEGER NOT NULL DEFAULT 0"),
    ("results", "gen", "INTEGER NOT NULL DEFAULT 0"),
    ("workers", "session", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "gen", "INTEGER"),
    ("jobs", "root_gen", "INTEGER"),
    ("jobs", "pkey", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "ikey", "TEXT"),
    ("jobs", "parked", "INTEGER NOT NULL DEFAULT 0"),
];

/// The SQLite-backed queue.
pub struct SqliteQueue {
    connection: Arc<Mutex<Connection>>,
    options: QueueOptions,
    location: String,
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue database at `path`.
    pub fn open(path: &Path, options: QueueOptions) -> QueueResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| QueueError::Unavailable {
                url: format!("sqlite://{}", path.display()),
                operation: "open",
                detail: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let location = format!("sqlite://{}", path.display());
        let connection = Connection::open(path).map_err(|e| unavailable(&location, "open", &e))?;
        Self::init(connection, options, location)?.apply_policy()
    }

    /// An in-memory queue (`memory://`), private to this process.
    pub fn in_memory(options: QueueOptions) -> QueueResult<Self> {
        let connection =
            Connection::open_in_memory().map_err(|e| unavailable("memory://", "open", &e))?;
        Self::init(connection, options, "memory://".to_owned())?.apply_policy()
    }

    fn init(connection: Connection, options: QueueOptions, location: String) -> QueueResult<Self> {
        let setup = || -> rusqlite::Result<()> {
            connection.busy_timeout(options.operation_timeout)?;
            // WAL: readers never block the writer. FULL sync makes every commit durable across
            // an operating-system crash too; NORMAL only across a process crash (an OS crash
            // can lose the last commits — and roll back row numbers an export has read).
            connection.pragma_update(None, "journal_mode", "WAL")?;
            let sync = if options.durable_commits {
                "FULL"
            } else {
                "NORMAL"
            };
            connection.pragma_update(None, "synchronous", sync)?;
            connection.execute_batch(SCHEMA)?;
            migrate(&connection)?;
            connection.execute_batch(dedup::SCHEMA)?;
            connection.execute_batch(results::SCHEMA)?;
            connection.execute_batch(politeness::SCHEMA)
        };
        setup().map_err(|e| unavailable(&location, "open", &e))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            options,
            location,
        })
    }

    /// Writes the queue's politeness policy when the options set one (blocking: at open).
    fn apply_policy(self) -> QueueResult<Self> {
        if self.options.policy.is_empty() {
            return Ok(self);
        }
        let policy = self.options.policy;
        self.run_blocking("set_policy", move |tx, ctx| {
            politeness::set_policy(tx, ctx, &policy).map(drop)
        })?;
        Ok(self)
    }

    /// Where the data lives (`sqlite:///path` or `memory://`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The queue's settings.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Runs `work` in one immediate transaction (it writes) on a blocking thread.
    async fn transaction<T, F>(&self, operation: &'static str, work: F) -> QueueResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<T> + Send + 'static,
    {
        self.run_in(operation, TransactionBehavior::Immediate, work)
            .await
    }

    /// Runs `work`, which only reads, in one deferred transaction: it takes no write lock, so
    /// it neither waits for the writers nor makes them wait.
    async fn read<T, F>(&self, operation: &'static str, work: F) -> QueueResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<T> + Send + 'static,
    {
        self.run_in(operation, TransactionBehavior::Deferred, work)
            .await
    }

    async fn run_in<T, F>(
        &self,
        operation: &'static str,
        behavior: TransactionBehavior,
        work: F,
    ) -> QueueResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let ctx = self.ctx(operation);
        let location = self.location.clone();
        let joined =
            tokio::task::spawn_blocking(move || execute(&connection, ctx, behavior, work)).await;
        joined.map_err(|e| QueueError::Backend {
            url: location,
            operation,
            detail: format!("the database thread stopped: {e}"),
        })?
    }

    /// Runs `work` in one immediate transaction on this thread (for `open`).
    fn run_blocking<T, F>(&self, operation: &'static str, work: F) -> QueueResult<T>
    where
        F: FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<T>,
    {
        let ctx = self.ctx(operation);
        execute(&self.connection, ctx, TransactionBehavior::Immediate, work)
    }

    fn ctx(&self, operation: &'static str) -> Ctx {
        Ctx {
            queue: self.options.name.clone(),
            options: self.options.clone(),
            location: self.location.clone(),
            operation,
            now: now_ms(),
        }
    }

    /// Submits jobs (validated by the caller); returns `(id, created)` for each, where
    /// `created` is false for an id the queue already had (nothing changes for it).
    pub async fn submit(&self, jobs: Vec<NewJob>) -> QueueResult<Vec<(String, bool)>> {
        self.transaction("submit", move |tx, ctx| insert_jobs(tx, ctx, &jobs, None))
            .await
    }

    /// Claims up to `limit` runnable jobs for `worker` (none while the worker is draining):
    /// `running` at once when `start`, else `assigned`; each claim gets a new fencing token.
    pub async fn claim(
        &self,
        worker: String,
        limit: usize,
        start: bool,
    ) -> QueueResult<(Vec<QueueResult<Job>>, Option<Duration>)> {
        self.transaction("claim", move |tx, ctx| {
            let draining: bool = tx
                .query_row(
                    "SELECT draining FROM workers WHERE queue = ?1 AND id = ?2",
                    params![ctx.queue, worker],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| ctx.error(&e))?
                .unwrap_or(false);
            if draining || limit == 0 {
                return Ok((Vec::new(), None));
            }
            let lease_deadline = ctx.now + ctx.options.lease_ms();
            let mut token = next_tokens(tx, ctx, limit)?;
            let status = if start { "running" } else { "assigned" };
            let mut update = tx
                .prepare_cached(
                    "UPDATE jobs SET status = ?6, assigned_worker = ?3, started_at = ?4, \
                     lease_deadline = ?5, attempt = attempt + 1, token = ?7, ikey = ?8 \
                     WHERE queue = ?1 AND id = ?2",
                )
                .map_err(|e| ctx.error(&e))?;
            let mut claimed = Vec::with_capacity(limit);
            let wake =
                politeness::claim(tx, ctx, limit, |taken| {
                    token += 1;
                    update
                        .execute(params![
                            ctx.queue,
                            taken.id,
                            worker,
                            ctx.now,
                            lease_deadline,
                            status,
                            token,
                            taken.ikey
                        ])
                        .map_err(|e| ctx.error(&e))?;
                    claimed.push(read_job(tx, ctx, &taken.id).and_then(|job| {
                        job.ok_or_else(|| QueueError::JobNotFound(taken.id.clone()))
                    }));
                    Ok(())
                })?;
            touch_worker(tx, ctx, &worker)?;
            Ok((
                claimed,
                wake.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            ))
        })
        .await
    }

    /// Marks a claimed job as running (fenced by `token`).
    pub async fn mark_running(&self, id: String, token: u64) -> QueueResult<Ack> {
        self.fenced_update(
            "mark_running",
            id,
            token,
            "UPDATE jobs SET status = 'running' WHERE queue = ?1 AND id = ?2",
        )
        .await
    }

    /// Runs `sql` (parameters: queue, id) on a leased job when `token` is its token.
    async fn fenced_update(
        &self,
        operation: &'static str,
        id: String,
        token: u64,
        sql: &'static str,
    ) -> QueueResult<Ack> {
        self.transaction(operation, move |tx, ctx| {
            fenced(tx, ctx, &id, token, |tx, ctx| {
                exec(tx, ctx, sql, params![ctx.queue, id])
            })
        })
        .await
    }

    /// Completes a job with its result (fenced by `token`).
    pub async fn complete(
        &self,
        id: String,
        token: u64,
        result: Option<String>,
    ) -> QueueResult<Ack> {
        let mut acks = self.complete_many(vec![(id, token, result)]).await?;
        Ok(acks.pop().unwrap_or(Ack::NotFound))
    }

    /// Completes many jobs in one transaction, each fenced by its token.
    pub async fn complete_many(
        &self,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> QueueResult<Vec<Ack>> {
        let finished = completions
            .into_iter()
            .map(|(id, token, result)| Finished {
                id,
                token,
                result,
                records: None,
                latency: None,
                discovered: Vec::new(),
            })
            .collect();
        self.finish_many(finished).await
    }

    /// Completes finished jobs in one transaction: for each accepted one, its records go to
    /// the results table and its discovered jobs are submitted.
    pub async fn finish_many(&self, finished: Vec<Finished>) -> QueueResult<Vec<Ack>> {
        self.transaction("finish", move |tx, ctx| {
            finished
                .into_iter()
                .map(|job| {
                    fenced(tx, ctx, &job.id, job.token, |tx, ctx| {
                        let ikey: Option<String> = tx
                            .prepare_cached(
                                "UPDATE jobs SET status = 'completed', completed_at = ?3, \
                                 result = ?4, lease_deadline = NULL WHERE queue = ?1 AND id = ?2 \
                                 RETURNING ikey",
                            )
                            .and_then(|mut update| {
                                update.query_row(
                                    params![ctx.queue, job.id, ctx.now, job.result],
                                    |row| row.get(0),
                                )
                            })
                            .map_err(|e| ctx.error(&e))?;
                        if let Some(key) = ikey {
                            let latency = job
                                .latency
                                .map(|l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX));
                            politeness::succeed(tx, ctx, &key, latency)?;
                        }
                        if let Some(records) = &job.records {
                            exec(
                                tx,
                                ctx,
                                "INSERT INTO results (queue, job_id, records, gen) SELECT ?1, ?2, \
                                 ?3, COALESCE(gen, seq) FROM jobs WHERE queue = ?1 AND id = ?2",
                                params![ctx.queue, job.id, records],
                            )?;
                        }
                        if job.discovered.is_empty() {
                            return Ok(());
                        }
                        let root: i64 = tx
                            .query_row(
                                "SELECT COALESCE(root_gen, gen, seq) FROM jobs WHERE queue = ?1 \
                                 AND id = ?2",
                                params![ctx.queue, job.id],
                                |row| row.get(0),
                            )
                            .map_err(|e| ctx.error(&e))?;
                        insert_jobs(tx, ctx, &job.discovered, Some(root)).map(drop)
                    })
                })
                .collect()
        })
        .await
    }

    /// Results log entries after `cursor` (a row number), oldest first.
    pub async fn results_after(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> QueueResult<Vec<ResultsEntry>> {
        let after: i64 = match cursor {
            None => 0,
            Some(text) => parse_cursor(&text)?,
        };
        self.read("results", move |tx, ctx| {
            let mut select = tx
                .prepare_cached(
                    "SELECT seq, job_id, records, gen FROM results WHERE queue = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(|e| ctx.error(&e))?;
            select
                .query_map(params![ctx.queue, after, limit], |row| {
                    Ok(ResultsEntry {
                        cursor: row.get::<_, i64>(0)?.to_string(),
                        job_id: row.get(1)?,
                        records: row.get(2)?,
                        generation: row.get(3)?,
                    })
                })
                .and_then(Iterator::collect)
                .map_err(|e| ctx.error(&e))
        })
        .await
    }

    /// Deletes the results log up to and including `cursor`; returns the entries removed.
    pub async fn trim_results(&self, cursor: String) -> QueueResult<u64> {
        let through = parse_cursor(&cursor)?;
        self.transaction("trim_results", move |tx, ctx| {
            let removed = tx
                .execute(
                    "DELETE FROM results WHERE queue = ?1 AND seq <= ?2",
                    params![ctx.queue, through],
                )
                .map_err(|e| ctx.error(&e))?;
            if removed > 0 {
                results::trimmed(tx, ctx, through)?;
            }
            Ok(removed as u64)
        })
        .await
    }

    /// The last results log entry deleted (by a trim or the log's bound), if any.
    pub async fn results_trimmed_to(&self) -> QueueResult<Option<String>> {
        self.read("results", results::trimmed_to).await
    }

    /// The job id and generation of the results entry at `cursor`, if the log has it.
    pub async fn results_entry(&self, cursor: String) -> QueueResult<Option<(String, u64)>> {
        let at = parse_cursor(&cursor)?;
        self.read("results", move |tx, ctx| {
            tx.query_row(
                "SELECT job_id, gen FROM results WHERE queue = ?1 AND seq = ?2",
                params![ctx.queue, at],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| ctx.error(&e))
        })
        .await
    }

    /// Records a failed attempt (fenced): retried after a backoff while retries remain and
    /// `retryable`, else `failed`.
    pub async fn fail(
        &self,
        id: String,
        token: u64,
        error: String,
        retryable: bool,
        feedback: Option<Feedback>,
    ) -> QueueResult<(Ack, Option<FailOutcome>)> {
        self.transaction("fail", move |tx, ctx| {
            let mut outcome = None;
            let ack = fenced(tx, ctx, &id, token, |tx, ctx| {
                let (retry_count, max_retries, key): (u32, u32, String) = tx
                    .query_row(
                        "SELECT retry_count, max_retries, pkey FROM jobs WHERE queue = ?1 AND \
                         id = ?2",
                        params![ctx.queue, id],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .map_err(|e| ctx.error(&e))?;
                if let Some(feedback) = feedback {
                    politeness::penalize(tx, ctx, &key, feedback)?;
                }
                outcome = Some(schedule_retry(
                    tx,
                    ctx,
                    &id,
                    retry_count,
                    max_retries,
                    retryable,
                    &error,
                )?);
                Ok(())
            })?;
            Ok((ack, outcome))
        })
        .await
    }

    /// Gives a claimed job back at once, without counting a retry (graceful shutdown).
    pub async fn release(&self, id: String, token: u64) -> QueueResult<Ack> {
        self.fenced_update(
            "release",
            id,
            token,
            "UPDATE jobs SET status = 'pending', lease_deadline = NULL, not_before = 0 \
             WHERE queue = ?1 AND id = ?2",
        )
        .await
    }

    /// Cancels a job that is not finished yet; a worker holding it will be refused.
    pub async fn cancel(&self, id: String) -> QueueResult<Ack> {
        self.transaction("cancel", move |tx, ctx| {
            let Some((status, token)) = status_of(tx, ctx, &id)? else {
                return Ok(Ack::NotFound);
            };
            if status.is_terminal() {
                return Ok(Ack::Stale { status, token });
            }
            exec(
                tx,
                ctx,
                "UPDATE jobs SET status = 'cancelled', completed_at = ?3, lease_deadline = NULL \
                 WHERE queue = ?1 AND id = ?2",
                params![ctx.queue, id, ctx.now],
            )?;
            Ok(Ack::Accepted)
        })
        .await
    }

    /// Puts a failed or cancelled job back to pending with its retries reset.
    pub async fn retry(&self, id: String) -> QueueResult<Ack> {
        self.transaction("retry", move |tx, ctx| {
            let Some((status, token)) = status_of(tx, ctx, &id)? else {
                return Ok(Ack::NotFound);
            };
            if !matches!(status, JobStatus::Failed | JobStatus::Cancelled) {
                return Ok(Ack::Stale { status, token });
            }
            exec(
                tx,
                ctx,
                "UPDATE jobs SET status = 'pending', retry_count = 0, lease_expiries = 0, \
                 completed_at = NULL, not_before = 0 WHERE queue = ?1 AND id = ?2",
                params![ctx.queue, id],
            )?;
            add_total(tx, ctx, "replayed", 1)?;
            Ok(Ack::Accepted)
        })
        .await
    }

    /// Moves a job whose record cannot be read to `failed` with `reason`.
    pub async fn quarantine(&self, id: String, reason: String) -> QueueResult<Ack> {
        self.transaction("quarantine", move |tx, ctx| {
            let changed = tx
                .execute(
                    "UPDATE jobs SET status = 'failed', error = ?3, completed_at = ?4, \
                     lease_deadline = NULL WHERE queue = ?1 AND id = ?2",
                    params![ctx.queue, id, reason, ctx.now],
                )
                .map_err(|e| ctx.error(&e))?;
            Ok(if changed == 1 {
                Ack::Accepted
            } else {
                Ack::NotFound
            })
        })
        .await
    }

    /// One job, or `None`.
    pub async fn get(&self, id: String) -> QueueResult<Option<Job>> {
        self.read("get", move |tx, ctx| read_job(tx, ctx, &id))
            .await
    }

    /// Jobs with `status`, oldest first (pending: in claim order), paged.
    pub async fn list(
        &self,
        status: JobStatus,
        offset: usize,
        limit: usize,
    ) -> QueueResult<Vec<QueueResult<Job>>> {
        self.read("list", move |tx, ctx| {
            let order = match status {
                JobStatus::Pending | JobStatus::Retrying => "priority DESC, seq",
                JobStatus::Assigned | JobStatus::Running => "started_at, seq",
                _ => "completed_at DESC, seq",
            };
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND status = ?2 ORDER BY {order} \
                 LIMIT ?3 OFFSET ?4"
            );
            let mut select = tx.prepare(&sql).map_err(|e| ctx.error(&e))?;
            let rows = select
                .query_map(
                    params![ctx.queue, status.as_str(), limit, offset],
                    job_from_row,
                )
                .map_err(|e| ctx.error(&e))?;
            Ok(rows
                .map(|row| row.map_err(|e| ctx.error(&e)).and_then(|parsed| parsed))
                .collect())
        })
        .await
    }

    /// Counts, from the trigger-maintained table.
    pub async fn stats(&self) -> QueueResult<QueueStats> {
        self.read("stats", move |tx, ctx| {
            let mut stats = QueueStats::default();
            let mut select = tx
                .prepare_cached("SELECT status, n FROM counts WHERE queue = ?1")
                .map_err(|e| ctx.error(&e))?;
            let counts: Vec<(String, u64)> = select
                .query_map(params![ctx.queue], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(|e| ctx.error(&e))?;
            for status in JobStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(name, _)| name == status.as_str())
                    .map_or(0, |(_, n)| *n);
                stats.by_status.push((status, n));
                stats.total += n;
            }
            let live_since = ctx.now - duration_ms(ctx.options.worker_liveness);
            (stats.total_workers, stats.active_workers) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(last_heartbeat >= ?2), 0) FROM workers \
                     WHERE queue = ?1",
                    params![ctx.queue, live_since],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(|e| ctx.error(&e))?;
            (stats.runnable, stats.paced_keys, stats.waiting_keys) = politeness::runnable(tx, ctx)?;
            let totals: Vec<(String, i64)> = tx
                .prepare_cached("SELECT name, value FROM totals WHERE queue = ?1")
                .and_then(|mut select| {
                    select
                        .query_map(params![ctx.queue], |row| Ok((row.get(0)?, row.get(1)?)))
                        .and_then(Iterator::collect)
                })
                .map_err(|e| ctx.error(&e))?;
            stats.totals = QueueTotals::from_pairs(totals.iter().map(|(k, v)| (k.as_str(), *v)));
            Ok(stats)
        })
        .await
    }

    /// Counts by scanning every job (to check the maintained counts; never used for stats).
    pub async fn recount_by_scan(&self) -> QueueResult<Vec<(JobStatus, u64)>> {
        self.read("recount", move |tx, ctx| {
            let mut select = tx
                .prepare("SELECT status, COUNT(*) FROM jobs WHERE queue = ?1 GROUP BY status")
                .map_err(|e| ctx.error(&e))?;
            let rows: Vec<(String, u64)> = select
                .query_map(params![ctx.queue], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(|e| ctx.error(&e))?;
            Ok(JobStatus::ALL
                .into_iter()
                .map(|s| {
                    let n = rows
                        .iter()
                        .find(|(name, _)| name == s.as_str())
                        .map_or(0, |r| r.1);
                    (s, n)
                })
                .collect())
        })
        .await
    }

    /// Registers (or re-registers) a worker; with a `session`, takes the id over (see
    /// [`crate::queue::JobQueue::register_worker`]). Returns the jobs given back.
    pub async fn register_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<u64> {
        self.transaction("register_worker", move |tx, ctx| {
            let mut released = 0;
            if let Some(session) = &session {
                let reason = format!(
                    "worker {worker:?} restarted before finishing the job (its earlier run \
                     crashed or was replaced)"
                );
                let (requeued, failed) = expire_leases_of(tx, ctx, &worker, None, &reason)?;
                released = requeued + failed;
                exec(
                    tx,
                    ctx,
                    "INSERT INTO workers (queue, id, registered_at, last_heartbeat, draining, \
                     session) VALUES (?1, ?2, ?3, ?3, 0, ?4) ON CONFLICT (queue, id) DO UPDATE \
                     SET registered_at = ?3, last_heartbeat = ?3, draining = 0, session = ?4",
                    params![ctx.queue, worker, ctx.now, session],
                )?;
            } else {
                exec(
                    tx,
                    ctx,
                    "INSERT INTO workers (queue, id, registered_at, last_heartbeat, draining) \
                     VALUES (?1, ?2, ?3, ?3, 0) ON CONFLICT (queue, id) DO UPDATE SET \
                     registered_at = ?3, last_heartbeat = ?3, draining = 0",
                    params![ctx.queue, worker, ctx.now],
                )?;
            }
            Ok(released)
        })
        .await
    }

    /// Heartbeat: renews the worker's liveness and the leases of the `(id, token)` claims in
    /// `held` (the others leased under its id go back to pending, counted as expired leases;
    /// listed claims that are no longer its own are reported lost), or with `None` of every
    /// job leased under its id. With a `session` another run has replaced: nothing done,
    /// superseded.
    pub async fn heartbeat(
        &self,
        worker: String,
        held: Option<Vec<(String, u64)>>,
        session: Option<String>,
        count_unlisted: bool,
    ) -> QueueResult<Heartbeat> {
        self.transaction("heartbeat", move |tx, ctx| {
            if let Some(session) = &session {
                if superseded(tx, ctx, &worker, session)? {
                    return Ok(Heartbeat {
                        superseded: true,
                        ..Heartbeat::default()
                    });
                }
                exec(
                    tx,
                    ctx,
                    "INSERT INTO workers (queue, id, registered_at, last_heartbeat, session) \
                     VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT (queue, id) DO UPDATE SET \
                     last_heartbeat = ?3, session = ?4",
                    params![ctx.queue, worker, ctx.now, session],
                )?;
            } else {
                touch_worker(tx, ctx, &worker)?;
            }
            // Renewed leases are told apart from the worker's other leases by their deadline
            // (below): it must differ from every one of them, also from a claim made in the
            // same millisecond (same deadline), so it is past the latest.
            let latest: Option<i64> = tx
                .query_row(
                    "SELECT MAX(lease_deadline) FROM jobs WHERE queue = ?1 AND \
                     assigned_worker = ?2 AND status IN ('assigned', 'running')",
                    params![ctx.queue, worker],
                    |row| row.get(0),
                )
                .map_err(|e| ctx.error(&e))?;
            let deadline = (ctx.now + ctx.options.lease_ms()).max(latest.map_or(0, |at| at + 1));
            let mut beat = Heartbeat::default();
            match held {
                None => {
                    beat.renewed = tx
                        .execute(
                            "UPDATE jobs SET lease_deadline = ?3 WHERE queue = ?1 AND \
                             assigned_worker = ?2 AND status IN ('assigned', 'running')",
                            params![ctx.queue, worker, deadline],
                        )
                        .map_err(|e| ctx.error(&e))? as u64;
                }
                Some(held) => {
                    let mut renew = tx
                        .prepare_cached(
                            "UPDATE jobs SET lease_deadline = ?5 WHERE queue = ?1 AND id = ?2 \
                             AND assigned_worker = ?3 AND token = ?4 AND status IN ('assigned', \
                             'running')",
                        )
                        .map_err(|e| ctx.error(&e))?;
                    for (id, token) in &held {
                        let renewed = renew
                            .execute(params![ctx.queue, id, worker, token, deadline])
                            .map_err(|e| ctx.error(&e))?;
                        if renewed == 1 {
                            beat.renewed += 1;
                        } else {
                            beat.lost.push((id.clone(), *token));
                        }
                    }
                    // Leased under this id but not listed: given back (the worker does not
                    // know it has them). Renewed leases now carry `deadline`, the others not.
                    let (requeued, failed) = if count_unlisted {
                        let reason = format!(
                            "worker {worker:?} dropped the job without finishing it (its task \
                             died or the claim reply was lost)"
                        );
                        expire_leases_of(tx, ctx, &worker, Some(deadline), &reason)?
                    } else {
                        let reason = format!(
                            "worker {worker:?} could not reach the queue and gave the job back"
                        );
                        (return_leases_of(tx, ctx, &worker, deadline, &reason)?, 0)
                    };
                    beat.released = requeued + failed;
                }
            }
            beat.draining = tx
                .query_row(
                    "SELECT draining FROM workers WHERE queue = ?1 AND id = ?2",
                    params![ctx.queue, worker],
                    |row| row.get(0),
                )
                .map_err(|e| ctx.error(&e))?;
            Ok(beat)
        })
        .await
    }

    /// Sets or clears a worker's drain flag; false when the worker is unknown.
    pub async fn set_draining(&self, worker: String, draining: bool) -> QueueResult<bool> {
        self.transaction("set_draining", move |tx, ctx| {
            let changed = tx
                .execute(
                    "UPDATE workers SET draining = ?3 WHERE queue = ?1 AND id = ?2",
                    params![ctx.queue, worker, draining],
                )
                .map_err(|e| ctx.error(&e))?;
            Ok(changed == 1)
        })
        .await
    }

    /// Removes a worker; the jobs it still holds go back to pending. Returns how many, or
    /// `None` when `session` is given and another run has registered the id since.
    pub async fn unregister_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<Option<u64>> {
        self.transaction("unregister_worker", move |tx, ctx| {
            if let Some(session) = &session
                && superseded(tx, ctx, &worker, session)?
            {
                return Ok(None);
            }
            let released = tx
                .execute(
                    "UPDATE jobs SET status = 'pending', lease_deadline = NULL, not_before = 0 \
                     WHERE queue = ?1 AND assigned_worker = ?2 AND status IN ('assigned', \
                     'running')",
                    params![ctx.queue, worker],
                )
                .map_err(|e| ctx.error(&e))?;
            exec(
                tx,
                ctx,
                "DELETE FROM workers WHERE queue = ?1 AND id = ?2",
                params![ctx.queue, worker],
            )?;
            Ok(Some(released as u64))
        })
        .await
    }

    /// Keys with a record, most recently changed first.
    pub async fn domains(&self, offset: usize, limit: usize) -> QueueResult<Vec<DomainInfo>> {
        self.read("domains", move |tx, ctx| {
            politeness::list(tx, ctx, offset, limit)
        })
        .await
    }

    /// One key, if the queue keeps a record of it.
    pub async fn domain(&self, key: String) -> QueueResult<Option<DomainInfo>> {
        self.read("domains", move |tx, ctx| politeness::get(tx, ctx, &key))
            .await
    }

    /// Sets or clears a key's overrides (delay in ms).
    pub async fn set_domain(
        &self,
        key: String,
        delay_ms: Change<i64>,
        concurrency: Change<u32>,
    ) -> QueueResult<DomainInfo> {
        self.transaction("set_domain", move |tx, ctx| {
            politeness::set(tx, ctx, &key, delay_ms, concurrency)
        })
        .await
    }

    /// A robots.txt `Crawl-delay` for `key`, in force for `ttl_ms`.
    pub async fn set_crawl_delay(
        &self,
        key: String,
        delay_ms: i64,
        ttl_ms: i64,
    ) -> QueueResult<()> {
        self.transaction("set_crawl_delay", move |tx, ctx| {
            politeness::set_crawl_delay(tx, ctx, &key, delay_ms, ttl_ms)
        })
        .await
    }

    /// Writes the values of `policy` that are set; the policy after it.
    pub async fn set_policy(&self, policy: Policy) -> QueueResult<PolicyState> {
        self.transaction("set_policy", move |tx, ctx| {
            politeness::set_policy(tx, ctx, &policy)
        })
        .await
    }

    /// The shared robots.txt outcome for `origin`.
    pub async fn robots_get(&self, origin: String) -> QueueResult<Option<String>> {
        self.read("robots", move |tx, ctx| {
            politeness::robots_get(tx, ctx, &origin)
        })
        .await
    }

    /// Shares the outcome for `origin` for `ttl_ms`.
    pub async fn robots_put(&self, origin: String, value: String, ttl_ms: i64) -> QueueResult<()> {
        self.transaction("robots", move |tx, ctx| {
            politeness::robots_put(tx, ctx, &origin, &value, ttl_ms)
        })
        .await
    }

    /// True when nobody has claimed fetching `origin`'s robots.txt within `ttl_ms`.
    pub async fn robots_claim(&self, origin: String, ttl_ms: i64) -> QueueResult<bool> {
        self.transaction("robots", move |tx, ctx| {
            politeness::robots_claim(tx, ctx, &origin, ttl_ms)
        })
        .await
    }

    /// Every registered worker with the jobs it holds.
    pub async fn workers(&self) -> QueueResult<Vec<WorkerInfo>> {
        self.read("workers", move |tx, ctx| {
            let live_since = ctx.now - duration_ms(ctx.options.worker_liveness);
            let mut select = tx
                .prepare(
                    "SELECT w.id, w.registered_at, w.last_heartbeat, w.draining, \
                     (SELECT group_concat(j.id, char(10)) FROM jobs j WHERE j.queue = w.queue \
                     AND j.assigned_worker = w.id AND j.status IN ('assigned', 'running')) \
                     FROM workers w WHERE w.queue = ?1 ORDER BY w.id",
                )
                .map_err(|e| ctx.error(&e))?;
            select
                .query_map(params![ctx.queue], |row| {
                    let last_heartbeat: i64 = row.get(2)?;
                    let jobs: Option<String> = row.get(4)?;
                    Ok(WorkerInfo {
                        id: row.get(0)?,
                        registered_at: row.get(1)?,
                        last_heartbeat,
                        draining: row.get(3)?,
                        jobs: jobs
                            .map(|j| j.split('\n').map(str::to_owned).collect())
                            .unwrap_or_default(),
                        state: if last_heartbeat >= live_since {
                            "active"
                        } else {
                            "stale"
                        }
                        .to_owned(),
                    })
                })
                .and_then(Iterator::collect)
                .map_err(|e| ctx.error(&e))
        })
        .await
    }

    /// Requeues jobs whose lease expired (or fails those that expired too often), removes
    /// workers silent for `worker_expiry` (their jobs given back), then deletes finished jobs
    /// older than the retention — in bounded transactions of their own, so the recovery
    /// never waits on a large delete. Processes at most `limit` leases and workers.
    pub async fn reap(&self, limit: usize) -> QueueResult<ReapReport> {
        let mut report = self
            .transaction("reap", move |tx, ctx| {
                let mut report = ReapReport::default();
                let expired: Vec<(String, String, u32)> = {
                    let mut select = tx
                        .prepare_cached(
                            "SELECT id, COALESCE(assigned_worker, ''), lease_expiries FROM jobs \
                             WHERE queue = ?1 AND status IN ('assigned', 'running') AND \
                             lease_deadline < ?2 ORDER BY lease_deadline LIMIT ?3",
                        )
                        .map_err(|e| ctx.error(&e))?;
                    select
                        .query_map(params![ctx.queue, ctx.now, limit], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .and_then(Iterator::collect)
                        .map_err(|e| ctx.error(&e))?
                };
                for (id, worker, expiries) in expired {
                    if expire_lease(tx, ctx, &id, expiries, &expired_reason(&worker))? {
                        report.failed += 1;
                    } else {
                        report.requeued += 1;
                    }
                }
                let cutoff = ctx.now - duration_ms(ctx.options.worker_expiry);
                let dead: Vec<String> = {
                    let mut select = tx
                        .prepare_cached(
                            "SELECT id FROM workers WHERE queue = ?1 AND last_heartbeat < ?2 \
                             LIMIT ?3",
                        )
                        .map_err(|e| ctx.error(&e))?;
                    select
                        .query_map(params![ctx.queue, cutoff, limit], |row| row.get(0))
                        .and_then(Iterator::collect)
                        .map_err(|e| ctx.error(&e))?
                };
                for worker in dead {
                    let (requeued, failed) =
                        expire_leases_of(tx, ctx, &worker, None, &expired_reason(&worker))?;
                    report.requeued += requeued;
                    report.failed += failed;
                    exec(
                        tx,
                        ctx,
                        "DELETE FROM workers WHERE queue = ?1 AND id = ?2",
                        params![ctx.queue, worker],
                    )?;
                    report.workers_expired += 1;
                }
                let idle_since = ctx.now - duration_ms(ctx.options.domain_idle);
                politeness::forget_idle(tx, ctx, idle_since, limit)?;
                dedup::expire(tx, ctx, limit)?;
                if let Some(max_len) = ctx.options.results_max_len {
                    results::bound(tx, ctx, max_len)?;
                }
                Ok(report)
            })
            .await?;
        let cutoff = duration_ms(self.options.retention);
        report.purged = self.purge_batch("reap", cutoff, false, limit).await?;
        Ok(report)
    }

    /// Deletes up to `limit` finished jobs that finished before `now - older_than_ms` (at or
    /// before, when `inclusive`), in one transaction; returns how many.
    async fn purge_batch(
        &self,
        operation: &'static str,
        older_than_ms: i64,
        inclusive: bool,
        limit: usize,
    ) -> QueueResult<u64> {
        self.transaction(operation, move |tx, ctx| {
            let sql = if inclusive {
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE queue = ?1 AND status \
                 IN ('completed', 'failed', 'cancelled') AND completed_at <= ?2 LIMIT ?3)"
            } else {
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE queue = ?1 AND status \
                 IN ('completed', 'failed', 'cancelled') AND completed_at < ?2 LIMIT ?3)"
            };
            let removed = tx
                .execute(sql, params![ctx.queue, ctx.now - older_than_ms, limit])
                .map_err(|e| ctx.error(&e))?;
            Ok(removed as u64)
        })
        .await
    }

    /// Deletes finished jobs that finished more than `older_than_ms` ago, in bounded
    /// transactions; returns how many.
    pub async fn purge(&self, older_than_ms: i64) -> QueueResult<u64> {
        let mut purged = 0;
        loop {
            let batch = self
                .purge_batch("purge", older_than_ms, true, PURGE_CHUNK)
                .await?;
            purged += batch;
            if batch == 0 {
                return Ok(purged);
            }
        }
    }
}

/// Jobs deleted per transaction by `purge` (a long delete would hold the write lock).
const PURGE_CHUNK: usize = 1000;

/// Runs `work` in one transaction on `connection` and commits it.
fn execute<T>(
    connection: &Mutex<Connection>,
    mut ctx: Ctx,
    behavior: TransactionBehavior,
    work: impl FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<T>,
) -> QueueResult<T> {
    let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
    let tx = connection
        .transaction_with_behavior(behavior)
        .map_err(|e| ctx.error(&e))?;
    // The time is read once the locks are held: a call that waited for another writer (up
    // to the operation timeout) must not renew a lease to a deadline already past.
    ctx.now = now_ms();
    let value = work(&tx, &ctx)?;
    tx.commit().map_err(|e| ctx.error(&e))?;
    Ok(value)
}

/// Adds the columns of [`MIGRATIONS`] a database created by an older version lacks.
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in MIGRATIONS {
        let present: bool = connection
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
            ))?
            .exists(params![column])?;
        if !present {
            connection.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// What every transaction knows.
struct Ctx {
    queue: String,
    options: QueueOptions,
    location: String,
    operation: &'static str,
    now: i64,
}

impl Ctx {
    fn error(&self, error: &rusqlite::Error) -> QueueError {
        let busy = matches!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            QueueError::Unavailable {
                url: self.location.clone(),
                operation: self.operation,
                detail: format!("database busy for longer than the operation timeout: {error}"),
            }
        } else {
            QueueError::Backend {
                url: self.location.clone(),
                operation: self.operation,
                detail: error.to_string(),
            }
        }
    }
}

fn unavailable(location: &str, operation: &'static str, error: &rusqlite::Error) -> QueueError {
    QueueError::Unavailable {
        url: location.to_owned(),
        operation,
        detail: error.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A results cursor of this backend: a row number.
fn parse_cursor(text: &str) -> QueueResult<i64> {
    text.parse().map_err(|_| {
        QueueError::Config(crate::config::ConfigError::invalid(
            "results cursor",
            text,
            "a cursor returned by this queue",
        ))
    })
}

fn exec(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    sql: &str,
    params: impl rusqlite::Params,
) -> QueueResult<()> {
    tx.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map(drop)
        .map_err(|e| ctx.error(&e))
}

/// Whether another run than `session` has registered `worker` since.
fn superseded(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    worker: &str,
    session: &str,
) -> QueueResult<bool> {
    let current: Option<String> = tx
        .query_row(
            "SELECT session FROM workers WHERE queue = ?1 AND id = ?2",
            params![ctx.queue, worker],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    Ok(current.is_some_and(|current| !current.is_empty() && current != session))
}

fn touch_worker(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, worker: &str) -> QueueResult<()> {
    exec(
        tx,
        ctx,
        "INSERT INTO workers (queue, id, registered_at, last_heartbeat) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (queue, id) DO UPDATE SET last_heartbeat = ?3",
        params![ctx.queue, worker, ctx.now],
    )
}

fn status_of(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    id: &str,
) -> QueueResult<Option<(JobStatus, u64)>> {
    let row: Option<(String, u64)> = tx
        .query_row(
            "SELECT status, token FROM jobs WHERE queue = ?1 AND id = ?2",
            params![ctx.queue, id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    row.map(|(status, attempt)| {
        JobStatus::parse(&status)
            .map(|s| (s, attempt))
            .ok_or_else(|| QueueError::CorruptJob {
                job_id: id.to_owned(),
                detail: format!("unknown status {status:?}"),
            })
    })
    .transpose()
}

/// Inserts validated jobs; `(id, created)` per job (an id the queue has is left alone).
/// `root`: the root generation of the crawl the jobs were discovered in (their generations
/// derive from it, see [`derived_generation`]); `None` for jobs a client submits.
fn insert_jobs(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    jobs: &[NewJob],
    root: Option<i64>,
) -> QueueResult<Vec<(String, bool)>> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO jobs (queue, id, name, template_id, target_url, config, \
             priority, status, created_at, max_retries, crawl_id, depth, parent_id, gen, \
             root_gen, pkey, parked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, \
             ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT (queue, id) DO NOTHING",
        )
        .map_err(|e| ctx.error(&e))?;
    let mut keys = politeness::Inserting::new(tx, ctx)?;
    let mut share = tx
        .prepare_cached("INSERT OR IGNORE INTO configs (queue, hash, config) VALUES (?1, ?2, ?3)")
        .map_err(|e| ctx.error(&e))?;
    let seen = dedup::Seen::of(ctx);
    // Configs the jobs of this call share, stored once (as on Redis: per call).
    let shared = crate::queue::shared_config::roles(ctx.options.shared_configs, jobs.iter());
    let mut created = Vec::with_capacity(jobs.len());
    for (job, shared) in jobs.iter().zip(shared) {
        // A shared config by reference, stored by the first job of the call sharing it,
        // whether that job is created or not (a seen URL, a known id).
        let config = match shared {
            Some((hash, first)) => {
                if first {
                    share
                        .execute(params![ctx.queue, hash, job.config])
                        .map_err(|e| ctx.error(&e))?;
                }
                std::borrow::Cow::Owned(format!("@{hash}"))
            }
            None => std::borrow::Cow::Borrowed(job.config.as_str()),
        };
        // With the seen-URL filter on, a URL it has seen is not queued again either.
        let probe = match &seen {
            Some(seen) => match seen.check(tx, ctx, job)? {
                None => {
                    created.push((job.id().to_owned(), false));
                    continue;
                }
                probe => probe,
            },
            None => None,
        };
        let generation = root.map(|root| derived_generation(root, job.id()));
        let key = super::politeness::key_of(
            &job.target_url,
            job.politeness_key.as_deref(),
            ctx.options.politeness_key,
        );
        let parked = keys.parked(tx, ctx, &key)?;
        let changed = insert
            .execute(params![
                ctx.queue,
                job.id(),
                job.name,
                job.template_id,
                job.target_url,
                config,
                job.priority,
                ctx.now,
                job.max_retries,
                job.crawl_id,
                job.depth,
                job.parent_id,
                generation,
                root,
                key,
                parked,
            ])
            .map_err(|e| ctx.error(&e))?;
        if let (Some(seen), Some(probe)) = (&seen, &probe)
            && changed == 1
        {
            seen.record(tx, ctx, probe)?;
        }
        created.push((job.id().to_owned(), changed == 1));
    }
    keys.finish(tx, ctx)?;
    Ok(created)
}

/// The generation of a job discovered in the crawl whose root incarnation is `root`: the
/// same for the same (root, id), whichever page found it and however often the discovery is
/// replayed (a database restored from a backup, the crawl run again from there), so its
/// results are recognised as the same incarnation. 2^52 plus 52 bits of hash: never a row
/// number.
fn derived_generation(root: i64, id: &str) -> i64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&root.to_le_bytes());
    hasher.update(id.as_bytes());
    let bits = hasher.digest() & ((1 << 52) - 1);
    (1_i64 << 52) | i64::try_from(bits).unwrap_or(0)
}

/// Runs `change` only when `token` is the job's current fencing token and it is leased.
fn fenced(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    id: &str,
    token: u64,
    change: impl FnOnce(&rusqlite::Transaction<'_>, &Ctx) -> QueueResult<()>,
) -> QueueResult<Ack> {
    match status_of(tx, ctx, id)? {
        None => Ok(Ack::NotFound),
        Some((status, current)) if status.is_leased() && current == token => {
            change(tx, ctx)?;
            Ok(Ack::Accepted)
        }
        Some((status, current)) => Ok(Ack::Stale {
            status,
            token: current,
        }),
    }
}

/// `n` new fencing tokens: returns the last one given before them (the caller adds 1 per
/// claim). The counter is queue-wide and counts up from the larger of itself and the time
/// (ms * 1024), so a database rolled back by a crash cannot hand out a token again.
fn next_tokens(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, n: usize) -> QueueResult<u64> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let floor = ctx.now.saturating_mul(1024);
    let after: i64 = tx
        .query_row(
            "INSERT INTO sequences (queue, name, value) VALUES (?1, 'tokens', ?3 + ?2) \
             ON CONFLICT (queue, name) DO UPDATE SET value = MAX(value, ?3) + ?2 \
             RETURNING value",
            params![ctx.queue, n, floor],
            |row| row.get(0),
        )
        .map_err(|e| ctx.error(&e))?;
    Ok(u64::try_from(after - n).unwrap_or(0))
}

/// Adds `delta` to the monotonic total `name`.
fn add_total(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, name: &str, delta: i64) -> QueueResult<()> {
    exec(
        tx,
        ctx,
        "INSERT INTO totals (queue, name, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (queue, name) DO UPDATE SET value = value + excluded.value",
        params![ctx.queue, name, delta],
    )
}

/// Why a lease held by `worker` expired.
fn expired_reason(worker: &str) -> String {
    format!("lease expired: worker {worker:?} stopped renewing it (crashed, hung or cut off)")
}

/// Expires every lease held by `worker`, except the leases whose deadline is `keep` (just
/// renewed); returns (requeued, failed).
fn expire_leases_of(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    worker: &str,
    keep: Option<i64>,
    error: &str,
) -> QueueResult<(u64, u64)> {
    let held: Vec<(String, u32)> = {
        let mut select = tx
            .prepare_cached(
                "SELECT id, lease_expiries FROM jobs WHERE queue = ?1 AND assigned_worker = ?2 \
                 AND status IN ('assigned', 'running') AND (?3 IS NULL OR lease_deadline IS NOT ?3)",
            )
            .map_err(|e| ctx.error(&e))?;
        select
            .query_map(params![ctx.queue, worker, keep], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| ctx.error(&e))?
    };
    let (mut requeued, mut failed) = (0, 0);
    for (id, expiries) in held {
        if expire_lease(tx, ctx, &id, expiries, error)? {
            failed += 1;
        } else {
            requeued += 1;
        }
    }
    Ok((requeued, failed))
}

/// Gives back the leases of `worker` other than those renewed to `keep`, without counting
/// an expiry (its holder could not reach the queue); how many.
fn return_leases_of(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    worker: &str,
    keep: i64,
    error: &str,
) -> QueueResult<u64> {
    let returned = tx
        .execute(
            "UPDATE jobs SET status = 'pending', error = ?4, not_before = ?5, \
             lease_deadline = NULL WHERE queue = ?1 AND assigned_worker = ?2 AND status IN \
             ('assigned', 'running') AND lease_deadline IS NOT ?3",
            params![ctx.queue, worker, keep, error, ctx.now],
        )
        .map_err(|e| ctx.error(&e))? as u64;
    add_total(
        tx,
        ctx,
        "expired",
        i64::try_from(returned).unwrap_or(i64::MAX),
    )?;
    Ok(returned)
}

/// An expired lease: back to pending at once, counted in the job's `lease_expiries` (not its
/// retries); after `max_lease_expiries` of them the job fails for good. True when it failed.
fn expire_lease(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    id: &str,
    expiries: u32,
    error: &str,
) -> QueueResult<bool> {
    add_total(tx, ctx, "expired", 1)?;
    let expiries = expiries + 1;
    if expiries >= ctx.options.max_lease_expiries {
        exec(
            tx,
            ctx,
            "UPDATE jobs SET status = 'failed', error = ?3, completed_at = ?4, \
             lease_deadline = NULL, lease_expiries = ?5 WHERE queue = ?1 AND id = ?2",
            params![
                ctx.queue,
                id,
                format!(
                    "{error}; {expiries} leases of this job expired: it may be crashing or \
                     hanging its workers"
                ),
                ctx.now,
                expiries
            ],
        )?;
        return Ok(true);
    }
    exec(
        tx,
        ctx,
        "UPDATE jobs SET status = 'pending', error = ?3, not_before = ?4, lease_deadline = NULL, \
         lease_expiries = ?5 WHERE queue = ?1 AND id = ?2",
        params![ctx.queue, id, error, ctx.now, expiries],
    )?;
    Ok(false)
}

/// After a failed attempt: retry after a backoff while retries remain, else fail for good.
fn schedule_retry(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    id: &str,
    retry_count: u32,
    max_retries: u32,
    retryable: bool,
    error: &str,
) -> QueueResult<FailOutcome> {
    if retryable && retry_count < max_retries {
        let delay = backoff_ms(
            retry_count + 1,
            u64::try_from(duration_ms(ctx.options.retry_base)).unwrap_or(0),
            u64::try_from(duration_ms(ctx.options.retry_cap)).unwrap_or(0),
            rand::random::<f64>(),
        );
        let not_before = ctx.now + i64::try_from(delay).unwrap_or(0);
        exec(
            tx,
            ctx,
            "UPDATE jobs SET status = 'retrying', retry_count = retry_count + 1, error = ?3, \
             not_before = ?4, lease_deadline = NULL WHERE queue = ?1 AND id = ?2",
            params![ctx.queue, id, error, not_before],
        )?;
        Ok(FailOutcome::Retrying { not_before })
    } else {
        exec(
            tx,
            ctx,
            "UPDATE jobs SET status = 'failed', error = ?3, completed_at = ?4, \
             lease_deadline = NULL WHERE queue = ?1 AND id = ?2",
            params![ctx.queue, id, error, ctx.now],
        )?;
        Ok(FailOutcome::Failed)
    }
}

fn read_job(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, id: &str) -> QueueResult<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND id = ?2");
    tx.prepare_cached(&sql)
        .and_then(|mut select| {
            select
                .query_row(params![ctx.queue, id], job_from_row)
                .optional()
        })
        .map_err(|e| ctx.error(&e))?
        .transpose()
}

/// A row in [`JOB_COLUMNS`] order; a corrupt row is a [`QueueError::CorruptJob`] for that job
/// only.
fn job_from_row(row: &Row<'_>) -> rusqlite::Result<QueueResult<Job>> {
    let id: String = row.get(0)?;
    let status_text: String = row.get(6)?;
    let Some(status) = JobStatus::parse(&status_text) else {
        return Ok(Err(QueueError::CorruptJob {
            job_id: id,
            detail: format!("unknown status {status_text:?}"),
        }));
    };
    let job = (|| -> rusqlite::Result<Job> {
        Ok(Job {
            id: id.clone(),
            name: row.get(1)?,
            template_id: row.get(2)?,
            target_url: row.get(3)?,
            config: row.get(4)?,
            priority: row.get(5)?,
            status,
            assigned_worker: row.get(7)?,
            created_at: row.get(8)?,
            started_at: row.get(9)?,
            completed_at: row.get(10)?,
            retry_count: row.get(11)?,
            max_retries: row.get(12)?,
            result: row.get(13)?,
            error: row.get(14)?,
            attempt: row.get(15)?,
            lease_deadline: row.get(16)?,
            not_before: row.get::<_, Option<i64>>(17)?.filter(|t| *t > 0),
            crawl_id: row.get(18)?,
            depth: row.get(19)?,
            parent_id: row.get(20)?,
            token: row.get(21)?,
            lease_expiries: row.get(22)?,
            politeness_key: row.get(23)?,
            paced: row
                .get::<_, Option<String>>(24)?
                .is_some_and(|key| !key.is_empty()),
        })
    })();
    Ok(job.map_err(|e| QueueError::CorruptJob {
        job_id: id,
        detail: e.to_string(),
    }))
}
