//! The Redis backend: every operation is one round trip (one Lua script, or one command).
//!
//! Owns the key layout and the scripts in `lua/`. Each script is loaded once and called by
//! its SHA (`redis::Script` reloads it transparently after a Redis restart or `SCRIPT FLUSH`).
//! All keys of a queue are `<prefix>:{<name>}:...`, one hash slot: on a Redis Cluster
//! (`redis+cluster://`) a queue lives on the master of that slot (see `cluster.rs` for how
//! its calls stay whole while the slot migrates or fails over). Scripts take the time from
//! the server (`TIME`), so workers' clocks never matter.
//!
//! Keys: `job:<id>` (hash: the immutable submission as one JSON field `spec`, plus the
//! fields that change), `pending` (zset, claim order), `delayed` (zset of retrying jobs
//! by not-before), `leases` (zset by lease deadline), `idx:<status>` (zsets of finished jobs by time, for listing and retention; leased jobs are listed from `leases`),
//! `counts` (hash: jobs per status), `seq`, `workers` (zset by last heartbeat),
//! `worker:<id>` (hash), `wjobs:<id>` (set of held job ids), `results` (stream: the item
//! records of each completed job, appended in the step that completes it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use super::error::{QueueError, QueueResult};
use super::job::{
    Ack, FailOutcome, Finished, Heartbeat, Job, JobStatus, NewJob, PRIORITY_LIMIT, QueueStats,
    QueueTotals, ReapReport, ResultsEntry, WorkerInfo,
};
use super::options::{QueueOptions, duration_ms, redact};
use super::politeness::{self, Feedback, KeyMode};
use super::shared_config;
use crate::config::ConfigError;

mod cluster;
mod dedup;
mod domains;
mod outbox;
mod results;
mod scripts;
mod shards;

pub use outbox::Forward;
pub use shards::{Layout, slot_of_tag};

use scripts::{
    ADMIN, CLAIM, COMPLETE_MANY, DOMAINS, DOMAINS_READ, FINISH, HEARTBEAT, LIBRARY, LIST, PURGE,
    QueueScript, REAP, RESULTS, SETTLE, STATS, SUBMIT, UPGRADE, WORKERS, WORKERS_READ,
};

/// What a client that opened a queue before it was given shards is told.
const RESHARDED: &str = "one opened again: it was given shards after this client opened it";

/// Whether `error` says the queue was given shards after this client opened it.
pub fn resharded(error: &QueueError) -> bool {
    matches!(error, QueueError::Config(config) if config.to_string().contains(RESHARDED))
}

/// Jobs per submit script call: big batches are split so no script runs for long.
const SUBMIT_CHUNK: usize = 1000;
/// Finished jobs per script call (each may carry items and discovered links).
const FINISH_CHUNK: usize = 200;
/// Jobs deleted per status and script call by `purge` (a script blocks Redis while it runs).
const PURGE_CHUNK: usize = 1000;

/// A pooled blocking connection unused for this long is checked (PING) before a script is
/// sent on it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The scripts that only read (by operation name): safe to send again.
const READ_ONLY_SCRIPTS: &[&str] = &["stats", "list", "domains", "workers"];

/// A connection to one server, or to a cluster: one connection for plain commands (routed
/// by their keys, redirects followed) and one for queue calls, which never sends a request
/// twice (see `cluster.rs`).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection, ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection, _) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection, _) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection, _) => connection.get_db(),
        }
    }
}

/// One queue operation's call: `KEYS` = `counts` then `keys`, `ARGV` = the queue's key base
/// then `args`.
struct Call<'a> {
    script: &'a QueueScript,
    counts: &'a str,
    keys: &'a [String],
    base: &'a str,
    args: &'a [String],
}

impl Call<'_> {
    /// As the library's function.
    fn fcall(&self) -> redis::Cmd {
        self.function_call(true)
    }

    /// As the library's function declaring no keys (a Redis Cluster: see `cluster.rs`):
    /// `ARGV` = the number of keys, the keys, then the usual `ARGV`.
    fn keyless_fcall(&self) -> redis::Cmd {
        self.function_call(false)
    }

    fn function_call(&self, declared: bool) -> redis::Cmd {
        let mut fcall = redis::cmd("FCALL");
        fcall.arg(LIBRARY.function(self.script));
        if !declared {
            fcall.arg(0);
        }
        fcall
            .arg(1 + self.keys.len())
            .arg(self.counts)
            .arg(self.keys)
            .arg(self.base)
            .arg(self.args);
        fcall
    }

    /// As a script (servers without functions).
    fn invocation(&self) -> redis::ScriptInvocation<'_> {
        let mut invocation = self.script.script().key(self.counts);
        invocation.key(self.keys).arg(self.base).arg(self.args);
        invocation
    }
}

/// The Redis-backed queue.
pub struct RedisQueue {
    /// Multiplexed, reconnecting connection for async callers (one server or a cluster).
    connection: Connection,
    /// Blocking connections for callers that wait anyway (the sync Python API): a round trip
    /// without hand-offs between threads. Opened on demand, dropped on any I/O error.
    blocking: std::sync::Mutex<Vec<(redis::Connection, Instant)>>,
    client: redis::Client,
    options: QueueOptions,
    /// `<prefix>:{<name>}`.
    base: String,
    /// The key base as calls send it: with a final `!` for a shard of a sharded queue (a
    /// plain client's calls are refused once the queue has shards: see `prelude.lua`).
    call_base: String,
    /// The URL without its password.
    redacted_url: String,
    /// The server runs the queue's function library (Redis >= 7): `FCALL`, else `EVALSHA`.
    functions: AtomicBool,
    /// The seen-URL filter, when dedup is on.
    seen: Option<dedup::SeenFilter>,
}

impl RedisQueue {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, `rediss://...`, or a
    /// cluster: `redis+cluster://[user:password@]host:port[,host:port...]`).
    pub async fn connect(url: &str, options: QueueOptions) -> QueueResult<Self> {
        Self::connection(url, options).await?.opened().await
    }

    /// [`RedisQueue::connect`] without a call of the queue's functions yet (the caller looks
    /// at the queue's layout first: see [`crate::queue::sharded::open`]).
    pub(crate) async fn connection(url: &str, options: QueueOptions) -> QueueResult<Self> {
        let redacted_url = redact(url);
        if url.contains("#insecure") && !options.allow_insecure_tls {
            return Err(ConfigError::invalid(
                "queue URL",
                &redacted_url,
                "certificate checks on: remove #insecure, or pass allow_insecure_tls=True \
                 if you really mean to accept any certificate",
            )
            .into());
        }
        crate::tls::ensure_crypto_provider();
        let seeds = cluster::seeds(url).transpose()?;
        let first = seeds.as_ref().and_then(|seeds| seeds.first().cloned());
        let client = redis::Client::open(first.as_deref().unwrap_or(url)).map_err(|e| {
            QueueError::Config(ConfigError::invalid(
                "queue URL",
                &redacted_url,
                format!("a Redis URL ({})", scrub(&e.to_string(), url)),
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.operation_timeout))
            .set_response_timeout(Some(options.operation_timeout))
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let connect = async {
            match &seeds {
                Some(seeds) => {
                    let commands = cluster::connect(seeds, options.operation_timeout, 3).await?;
                    let calls = cluster::connect(seeds, options.operation_timeout, 0).await?;
                    Ok(Connection::Cluster(commands, calls))
                }
                None => ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Connection::Single),
            }
        };
        let connection = tokio::time::timeout(options.operation_timeout, connect)
            .await
            .map_err(|_| QueueError::Unavailable {
                url: redacted_url.clone(),
                operation: "connect",
                detail: format!("no answer within {:?}", options.operation_timeout),
            })?
            .map_err(|e| QueueError::Unavailable {
                url: redacted_url.clone(),
                operation: "connect",
                detail: scrub(&e.to_string(), url),
            })?;
        let base = format!("{}:{{{}}}", options.prefix, options.name);
        warn_if_evicting(&mut connection.clone(), &redacted_url).await;
        let queue = Self {
            connection,
            blocking: std::sync::Mutex::new(Vec::new()),
            client,
            options,
            call_base: base.clone(),
            base,
            redacted_url,
            functions: AtomicBool::new(false),
            seen: None,
        };
        if let Connection::Single(_) = &queue.connection {
            let mut connection = queue.connection.clone();
            let info: String = queue
                .query(
                    "connect",
                    redis::cmd("INFO").arg("cluster"),
                    &mut connection,
                )
                .await?;
            if info.contains("cluster_enabled:1") {
                return Err(ConfigError::invalid(
                    "queue URL",
                    &queue.redacted_url,
                    "redis+cluster://host:port[,host:port...]: this server is a node of a \
                     Redis Cluster, which a redis:// URL cannot follow across nodes",
                )
                .into());
            }
        }
        Ok(queue)
    }

    /// Makes a newly built queue ready: brought up to date, its function library loaded, its
    /// seen-URL filter read, the options' policy written.
    pub(crate) async fn opened(mut self) -> QueueResult<Self> {
        self.upgrade().await?;
        self.seen = self.open_seen().await?;
        if !self.options.policy.is_empty() {
            self.set_policy(self.options.policy).await?;
        }
        Ok(self)
    }

    /// Brings a queue written by an earlier version up to date (the index of every pending
    /// job, `idx:pending`, is built from the shared queue once), and loads the queue's
    /// function library where the server has functions.
    async fn upgrade(&self) -> QueueResult<()> {
        let timed_out = || QueueError::Unavailable {
            url: self.redacted_url.clone(),
            operation: "connect",
            detail: format!("no answer within {:?}", self.options.operation_timeout),
        };
        let mut connection = self.connection.clone();
        let loaded = match &mut connection {
            Connection::Cluster(_, scripts) => {
                let load = cluster::load(scripts, &self.base);
                match tokio::time::timeout(self.options.operation_timeout, load).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(error)) if scripts::functions_unsupported(&error) => {
                        return Err(ConfigError::invalid(
                            "queue URL",
                            &self.redacted_url,
                            format!(
                                "a cluster of Redis >= 7 servers that allow FUNCTION and FCALL \
                                 ({error})"
                            ),
                        )
                        .into());
                    }
                    Ok(Err(error)) => return Err(self.error("connect", &error)),
                    Ok(Ok(())) => true,
                }
            }
            Connection::Single(_) => {
                let load = load_command();
                let call = load.query_async::<redis::Value>(&mut connection);
                match tokio::time::timeout(self.options.operation_timeout, call).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Ok(_)) => true,
                    Ok(Err(error)) if scripts::already_loaded(&error) => true,
                    Ok(Err(error)) if scripts::functions_unsupported(&error) => {
                        tracing::info!(
                            url = %self.redacted_url,
                            detail = %error,
                            "the server cannot load Redis functions: the queue runs as scripts \
                             (EVALSHA)"
                        );
                        false
                    }
                    Ok(Err(error)) => return Err(self.error("connect", &error)),
                }
            }
        };
        self.functions.store(loaded, Ordering::Relaxed);
        let _: i64 = self.run("connect", &UPGRADE, Vec::new()).await?;
        Ok(())
    }

    /// The URL without its password.
    pub fn location(&self) -> &str {
        &self.redacted_url
    }

    /// The queue's settings.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Runs `script` with `args` after the key base, within the operation timeout: as the
    /// library's function when the server has it, else as a script.
    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &QueueScript,
        args: Vec<String>,
    ) -> QueueResult<T> {
        self.run_keyed(operation, script, Vec::new(), args).await
    }

    /// [`RedisQueue::run`] declaring `keys` after the first (the seen-URL filter's).
    async fn run_keyed<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &QueueScript,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> QueueResult<T> {
        let counts = format!("{}:counts", self.base);
        // Each form is encoded only when it is sent (the script only on servers without
        // functions).
        let call = Call {
            script,
            counts: &counts,
            keys: &keys,
            base: &self.call_base,
            args: &args,
        };
        if let Connection::Cluster(_, connection) = &self.connection {
            let mut connection = connection.clone();
            let deadline = Instant::now() + self.options.operation_timeout;
            let call = cluster::call(&mut connection, &call, deadline);
            // A little longer than the call's own deadline, which ends in its last error.
            let timeout = self.options.operation_timeout + Duration::from_secs(1);
            return self.answered(operation, timeout, call).await;
        }
        if crate::runtime::caller_may_block() {
            return self.run_blocking(operation, |connection| {
                self.call_blocking(&call, connection)
            });
        }
        let mut connection = self.connection.clone();
        let call = self.call(&call, &mut connection);
        self.answered(operation, self.options.operation_timeout, call)
            .await
    }

    /// `call`'s answer within `timeout`, its error typed; no answer in time is
    /// `Unavailable`.
    async fn answered<T>(
        &self,
        operation: &'static str,
        timeout: Duration,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> QueueResult<T> {
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(QueueError::Unavailable {
                url: self.redacted_url.clone(),
                operation,
                detail: format!("no answer within {:?}", self.options.operation_timeout),
            }),
            Ok(result) => result.map_err(|error| self.error(operation, &error)),
        }
    }

    /// One call of a queue operation: `fcall` (the library is loaded again when the server
    /// lost it) or, on a server without functions, `invocation`.
    async fn call<T: redis::FromRedisValue>(
        &self,
        call: &Call<'_>,
        connection: &mut Connection,
    ) -> redis::RedisResult<T> {
        if self.functions.load(Ordering::Relaxed) {
            let fcall = call.fcall();
            match fcall.query_async::<T>(connection).await {
                Err(error) if scripts::function_missing(&error) => {
                    match load_command().query_async::<redis::Value>(connection).await {
                        Err(error) if !scripts::already_loaded(&error) => return Err(error),
                        _ => return fcall.query_async::<T>(connection).await,
                    }
                }
                Err(error) if scripts::functions_unsupported(&error) => {
                    // The server changed under us (a failover to an older or restricted one).
                    self.functions.store(false, Ordering::Relaxed);
                }
                outcome => return outcome,
            }
        }
        call.invocation().invoke_async::<T>(connection).await
    }

    /// [`RedisQueue::call`] on a blocking connection.
    fn call_blocking<T: redis::FromRedisValue>(
        &self,
        call: &Call<'_>,
        connection: &mut redis::Connection,
    ) -> redis::RedisResult<T> {
        if self.functions.load(Ordering::Relaxed) {
            let fcall = call.fcall();
            match fcall.query::<T>(connection) {
                Err(error) if scripts::function_missing(&error) => {
                    match load_command().query::<redis::Value>(connection) {
                        Err(error) if !scripts::already_loaded(&error) => return Err(error),
                        _ => return fcall.query::<T>(connection),
                    }
                }
                Err(error) if scripts::functions_unsupported(&error) => {
                    self.functions.store(false, Ordering::Relaxed);
                }
                outcome => return outcome,
            }
        }
        call.invocation().invoke::<T>(connection)
    }

    /// One command that reads (or may run twice), on the async connection, within the
    /// operation timeout. A connection found broken (the server restarted) is replaced and the
    /// command sent once more.
    async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &impl Read,
        connection: &mut Connection,
    ) -> QueueResult<T> {
        let mut retried = false;
        loop {
            let call = command.send::<T>(connection);
            match tokio::time::timeout(self.options.operation_timeout, call).await {
                Err(_) => {
                    return Err(QueueError::Unavailable {
                        url: self.redacted_url.clone(),
                        operation,
                        detail: format!("no answer within {:?}", self.options.operation_timeout),
                    });
                }
                Ok(Err(error))
                    if !retried && (error.is_connection_dropped() || error.is_io_error()) =>
                {
                    retried = true;
                }
                Ok(result) => return result.map_err(|e| self.error(operation, &e)),
            }
        }
    }

    /// [`RedisQueue::run`] on a blocking connection (see the `blocking` field).
    fn run_blocking<T>(
        &self,
        operation: &'static str,
        call: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> QueueResult<T> {
        // A signal handled by this thread during the round trip would interrupt the read
        // (EINTR) and turn a call the server applied into a reported failure: signals wait
        // until the answer is in (another thread takes them meanwhile).
        let held = SignalsHeld::new();
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        // A connection idle for a while may have been closed by the server (a restart): a
        // PING finds out before a script is sent on it, so the script is sent once, on a
        // connection that works (a script failing on a dead connection cannot be sent
        // again: it may have run).
        let (mut connection, reused) = match pooled {
            Some((mut connection, used)) if used.elapsed() >= IDLE_CHECK => {
                match redis::cmd("PING").query::<String>(&mut connection) {
                    Ok(_) => (connection, true),
                    Err(_) => (self.open_blocking(operation)?, false),
                }
            }
            Some((connection, _)) => (connection, true),
            None => (self.open_blocking(operation)?, false),
        };
        let mut outcome = call(&mut connection);
        // A read that met a pooled connection the server had closed is sent once more on a
        // fresh one (as `query` does for commands): running it twice changes nothing.
        if reused
            && READ_ONLY_SCRIPTS.contains(&operation)
            && matches!(&outcome, Err(e) if e.is_connection_dropped() || e.is_io_error())
        {
            connection = self.open_blocking(operation)?;
            outcome = call(&mut connection);
        }
        drop(held);
        match outcome {
            Ok(value) => {
                self.blocking
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((connection, Instant::now()));
                Ok(value)
            }
            // Not returned to the pool: the next call opens a fresh connection.
            Err(error) => Err(self.error(operation, &error)),
        }
    }

    fn open_blocking(&self, operation: &'static str) -> QueueResult<redis::Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.options.operation_timeout)
            .map_err(|e| self.error(operation, &e))?;
        let timeout = Some(self.options.operation_timeout);
        connection
            .set_read_timeout(timeout)
            .and_then(|()| connection.set_write_timeout(timeout))
            .map_err(|e| self.error(operation, &e))?;
        Ok(connection)
    }

    fn error(&self, operation: &'static str, error: &redis::RedisError) -> QueueError {
        let detail = error.to_string();
        if error.code() == Some("SHARDED") || detail.contains("SHARDED this queue") {
            return ConfigError::invalid("queue", &self.redacted_url, RESHARDED).into();
        }
        if error.code() == Some("INUSE") {
            let what = error.detail().unwrap_or_default();
            let what = what.split(" script:").next().unwrap_or(what).trim();
            return ConfigError::invalid(
                "shards",
                &self.redacted_url,
                format!(
                    "a queue never used before ({what}): shards are given to a new queue, \
                     before anything uses it"
                ),
            )
            .into();
        }
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || error.is_unrecoverable_error()
            || error
                .code()
                .is_some_and(|code| TRANSIENT_CODES.contains(&code))
            || cluster::slot_unsettled(error)
            // On a cluster, past the retries of `cluster::call`: no node of the slot answered.
            || (matches!(self.connection, Connection::Cluster(..))
                && scripts::function_missing(error))
        {
            QueueError::Unavailable {
                url: self.redacted_url.clone(),
                operation,
                detail,
            }
        } else {
            QueueError::Backend {
                url: self.redacted_url.clone(),
                operation,
                detail,
            }
        }
    }

    /// Submits validated jobs; `(id, created)` per job (one round trip per 1,000 jobs).
    pub async fn submit(&self, jobs: Vec<NewJob>) -> QueueResult<Vec<(String, bool)>> {
        if let Some(seen) = &self.seen {
            seen.check_windows(&jobs)?;
        }
        self.submit_rooted(&jobs, "", false).await
    }

    /// [`RedisQueue::submit`]; jobs discovered in a crawl whose root generation is `root`
    /// (`""`: submitted by a client) get generations derived from it.
    async fn submit_rooted(
        &self,
        jobs: &[NewJob],
        root: &str,
        discovered: bool,
    ) -> QueueResult<Vec<(String, bool)>> {
        let mut results = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(SUBMIT_CHUNK) {
            let mut args = Vec::with_capacity(2 + chunk.len() * 5);
            args.push(chunk.len().to_string());
            args.push(root.to_owned());
            let mut jobs = Vec::with_capacity(chunk.len());
            let shared = shared_config::roles(self.options.shared_configs, chunk.iter());
            for (job, shared) in chunk.iter().zip(&shared) {
                jobs.push((args.len() + 2, job));
                args.extend(submit_args(
                    job,
                    self.options.politeness_key,
                    shared.as_ref(),
                )?);
            }
            let created: Vec<i64> = self
                .run_submitting("submit", &SUBMIT, args, &jobs, discovered)
                .await?;
            results.extend(
                chunk
                    .iter()
                    .zip(created)
                    .map(|(job, flag)| (job.id().to_owned(), flag == 1)),
            );
        }
        Ok(results)
    }

    /// Claims up to `limit` jobs for `worker` (`running` at once when `start`), and when
    /// fewer were given, in how long a paced key or a retry becomes ready.
    pub async fn claim(
        &self,
        worker: String,
        limit: usize,
        start: bool,
    ) -> QueueResult<(Vec<QueueResult<Job>>, Option<Duration>)> {
        let args = vec![
            worker,
            limit.to_string(),
            self.options.lease_ms().to_string(),
            if start { "running" } else { "assigned" }.to_owned(),
        ];
        let (raw, wake): (Vec<Vec<Option<String>>>, i64) = self.run("claim", &CLAIM, args).await?;
        Ok((
            raw.into_iter().map(job_from_values).collect(),
            u64::try_from(wake).ok().map(Duration::from_millis),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        operation: &'static str,
        id: String,
        token: u64,
        action: &str,
        text: String,
        retryable: bool,
        feedback: Option<Feedback>,
    ) -> QueueResult<(Ack, String, i64)> {
        let (kind, pause) = feedback.map_or(("", 0), Feedback::encode);
        let args = vec![
            id.clone(),
            token.to_string(),
            action.to_owned(),
            text,
            if retryable { "1" } else { "0" }.to_owned(),
            duration_ms(self.options.retry_base).to_string(),
            duration_ms(self.options.retry_cap).to_string(),
            rand::random::<f64>().to_string(),
            kind.to_owned(),
            pause.to_string(),
        ];
        let (code, status, current, outcome, not_before): (i64, String, u64, String, i64) =
            self.run(operation, &SETTLE, args).await?;
        Ok((ack(code, &id, &status, current)?, outcome, not_before))
    }

    /// Marks a claimed job as running (fenced by `token`).
    pub async fn mark_running(&self, id: String, token: u64) -> QueueResult<Ack> {
        let (ack, ..) = self
            .settle(
                "mark_running",
                id,
                token,
                "running",
                String::new(),
                false,
                None,
            )
            .await?;
        Ok(ack)
    }

    /// Completes a job (fenced by `token`).
    pub async fn complete(
        &self,
        id: String,
        token: u64,
        result: Option<String>,
    ) -> QueueResult<Ack> {
        let (ack, ..) = self
            .settle(
                "complete",
                id,
                token,
                "complete",
                result.unwrap_or_default(),
                false,
                None,
            )
            .await?;
        Ok(ack)
    }

    /// Completes many jobs, each fenced by its token (one round trip per 1,000).
    pub async fn complete_many(
        &self,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> QueueResult<Vec<Ack>> {
        let mut acks = Vec::with_capacity(completions.len());
        for chunk in completions.chunks(SUBMIT_CHUNK) {
            let mut args = Vec::with_capacity(1 + chunk.len() * 3);
            args.push(chunk.len().to_string());
            for (id, token, result) in chunk {
                args.extend([
                    id.clone(),
                    token.to_string(),
                    result.clone().unwrap_or_default(),
                ]);
            }
            let answers: Vec<(i64, String, u64)> =
                self.run("complete_many", &COMPLETE_MANY, args).await?;
            for ((id, ..), (code, status, token)) in chunk.iter().zip(answers) {
                acks.push(ack(code, id, &status, token)?);
            }
        }
        Ok(acks)
    }

    /// Records a failed attempt (fenced by `token`).
    pub async fn fail(
        &self,
        id: String,
        token: u64,
        error: String,
        retryable: bool,
        feedback: Option<Feedback>,
    ) -> QueueResult<(Ack, Option<FailOutcome>)> {
        let (ack, outcome, not_before) = self
            .settle("fail", id, token, "fail", error, retryable, feedback)
            .await?;
        let outcome = match outcome.as_str() {
            "retrying" => Some(FailOutcome::Retrying { not_before }),
            "failed" => Some(FailOutcome::Failed),
            _ => None,
        };
        Ok((ack, outcome))
    }

    /// Gives a claimed job back at once (fenced by `token`), not counting a retry.
    pub async fn release(&self, id: String, token: u64) -> QueueResult<Ack> {
        let (ack, ..) = self
            .settle("release", id, token, "release", String::new(), false, None)
            .await?;
        Ok(ack)
    }

    async fn admin(
        &self,
        operation: &'static str,
        id: String,
        action: &str,
        reason: String,
    ) -> QueueResult<Ack> {
        let (code, status, token): (i64, String, u64) = self
            .run(
                operation,
                &ADMIN,
                vec![id.clone(), action.to_owned(), reason],
            )
            .await?;
        ack(code, &id, &status, token)
    }

    /// Cancels an unfinished job.
    pub async fn cancel(&self, id: String) -> QueueResult<Ack> {
        self.admin("cancel", id, "cancel", String::new()).await
    }

    /// Puts a failed or cancelled job back to pending, retries reset.
    pub async fn retry(&self, id: String) -> QueueResult<Ack> {
        self.admin("retry", id, "retry", String::new()).await
    }

    /// Moves a job whose record cannot be read to `failed` with `reason`.
    pub async fn quarantine(&self, id: String, reason: String) -> QueueResult<Ack> {
        self.admin("quarantine", id, "quarantine", reason).await
    }

    /// One job, or `None`.
    pub async fn get(&self, id: String) -> QueueResult<Option<Job>> {
        let mut command = redis::cmd("HMGET");
        command
            .arg(format!("{}:job:{id}", self.base))
            .arg(&JOB_FIELDS[..]);
        let mut values: Vec<Option<String>> = self.query_checked("get", &command).await?;
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        // A config stored by reference: its carrier (which never goes away).
        if let Some(hash) = values[0]
            .as_deref()
            .and_then(|spec| shared_config::hash_after(spec, shared_config::REFERENCE))
        {
            let mut command = redis::cmd("GET");
            command.arg(format!("{}:config:{hash}", self.base));
            values.push(self.query_checked("get", &command).await?);
        }
        values.insert(0, Some(id));
        job_from_values(values).map(Some)
    }

    /// Completes finished jobs with their records and discovered jobs (one round trip per
    /// 200 jobs; see `finish.lua`).
    pub async fn finish_many(&self, finished: Vec<Finished>) -> QueueResult<Vec<Ack>> {
        let routed: Vec<_> = finished.into_iter().map(|job| (job, Vec::new())).collect();
        let answers = self.finish_routed(&routed).await?;
        Ok(answers.into_iter().map(|(ack, _)| ack).collect())
    }

    /// [`RedisQueue::finish_many`], each job with the jobs it discovered for other shards of
    /// a sharded queue (`(shard, job)`): an accepted finish puts them in the outbox, and its
    /// answer carries the page's root generation and their outbox entries, in order.
    pub(crate) async fn finish_routed(
        &self,
        finished: &[(Finished, Vec<(usize, NewJob)>)],
    ) -> QueueResult<Vec<(Ack, Option<(String, Vec<String>)>)>> {
        let mode = self.options.politeness_key;
        let mut acks = Vec::with_capacity(finished.len());
        for chunk in finished.chunks(FINISH_CHUNK) {
            let mut args = vec![chunk.len().to_string()];
            let mut children = Vec::new();
            for (job, elsewhere) in chunk {
                args.extend([
                    job.id.clone(),
                    job.token.to_string(),
                    job.result.clone().unwrap_or_default(),
                    job.records.clone().unwrap_or_default(),
                    job.latency
                        .map_or(-1, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX))
                        .to_string(),
                    job.discovered.len().to_string(),
                ]);
                // Shared per page: a page whose finish is refused stores nothing, so its
                // carrier must not serve another page's jobs. Jobs for other shards keep
                // their config (the shard they are forwarded to shares it in turn).
                let shared =
                    shared_config::roles(self.options.shared_configs, job.discovered.iter());
                for (child, shared) in job.discovered.iter().zip(&shared) {
                    children.push((args.len() + 2, child));
                    args.extend(submit_args(child, mode, shared.as_ref())?);
                }
                args.push(elsewhere.len().to_string());
                for (shard, child) in elsewhere {
                    args.push(shard.to_string());
                    args.extend(submit_args(child, mode, None)?);
                }
            }
            let answers: Vec<Vec<String>> = self
                .run_submitting("finish", &FINISH, args, &children, true)
                .await?;
            for ((job, _), answer) in chunk.iter().zip(answers) {
                let mut fields = answer.into_iter();
                let code = fields.next().unwrap_or_default();
                let status = fields.next().unwrap_or_default();
                let token = fields.next().unwrap_or_default();
                let root = fields.next().unwrap_or_default();
                let number = |text: &str| {
                    text.parse::<i64>().map_err(|e| QueueError::Backend {
                        url: self.redacted_url.clone(),
                        operation: "finish",
                        detail: format!("an answer that is not a number ({text:?}: {e})"),
                    })
                };
                let token = u64::try_from(number(&token)?).unwrap_or(0);
                let ack = ack(number(&code)?, &job.id, &status, token)?;
                let outbox = (!root.is_empty()).then(|| (root, fields.collect()));
                acks.push((ack, outbox));
            }
        }
        Ok(acks)
    }

    /// Results stream entries after `cursor` (a stream id), oldest first.
    pub async fn results_after(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> QueueResult<Vec<ResultsEntry>> {
        let start = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let mut command = redis::cmd("XRANGE");
        command
            .arg(format!("{}:results", self.base))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1));
        let reply: redis::streams::StreamRangeReply =
            self.query_checked("results", &command).await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| ResultsEntry {
                job_id: entry.get::<String>("job").unwrap_or_default(),
                generation: entry.get::<u64>("gen").unwrap_or(0),
                records: entry
                    .get::<String>("records")
                    .unwrap_or_else(|| "[]".to_owned()),
                cursor: entry.id,
            })
            .collect())
    }

    /// Deletes the results stream up to and including `cursor` (a stream id); returns the
    /// entries removed.
    pub async fn trim_results(&self, cursor: String) -> QueueResult<u64> {
        let cursor = stream_id(&cursor)?;
        // XTRIM MINID keeps ids >= MINID: the id just after the cursor.
        let next = cursor
            .split_once('-')
            .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)))
            .map(|(ms, seq)| match seq.checked_add(1) {
                Some(seq) => format!("{ms}-{seq}"),
                None => format!("{}-0", ms + 1),
            })
            .unwrap_or(cursor);
        self.trim_results_before(next).await
    }

    /// The job id and generation of the results entry at `cursor`, if the log has it.
    pub async fn results_entry(&self, cursor: String) -> QueueResult<Option<(String, u64)>> {
        let cursor = stream_id(&cursor)?;
        let mut command = redis::cmd("XRANGE");
        command
            .arg(format!("{}:results", self.base))
            .arg(&cursor)
            .arg(&cursor);
        let mut connection = self.connection.clone();
        let reply: redis::streams::StreamRangeReply =
            self.query("results", &command, &mut connection).await?;
        Ok(reply.ids.into_iter().next().map(|entry| {
            (
                entry.get::<String>("job").unwrap_or_default(),
                entry.get::<u64>("gen").unwrap_or(0),
            )
        }))
    }

    /// Jobs with `status`, paged (pending in claim order, finished newest first).
    pub async fn list(
        &self,
        status: JobStatus,
        offset: usize,
        limit: usize,
    ) -> QueueResult<Vec<QueueResult<Job>>> {
        let args = vec![
            status.as_str().to_owned(),
            offset.to_string(),
            limit.to_string(),
        ];
        let raw: Vec<Vec<Option<String>>> = self.run("list", &LIST, args).await?;
        Ok(raw.into_iter().map(job_from_values).collect())
    }

    /// Maintained counts (one round trip).
    pub async fn stats(&self) -> QueueResult<QueueStats> {
        let liveness = duration_ms(self.options.worker_liveness).to_string();
        let horizon = duration_ms(self.options.runnable_horizon).to_string();
        let (counts, total_workers, active_workers, runnable, totals, paced_keys, waiting_keys): StatsReply =
            self.run("stats", &STATS, vec![liveness, horizon]).await?;
        let mut stats = QueueStats {
            active_workers,
            total_workers,
            runnable,
            paced_keys,
            waiting_keys,
            totals: QueueTotals::from_pairs(totals.iter().map(|(k, v)| (k.as_str(), *v))),
            ..QueueStats::default()
        };
        for status in JobStatus::ALL {
            let n = u64::try_from(counts.get(status.as_str()).copied().unwrap_or(0)).unwrap_or(0);
            stats.by_status.push((status, n));
            stats.total += n;
        }
        Ok(stats)
    }

    /// Counts by reading every job record (SCAN): to check the maintained counts.
    pub async fn recount_by_scan(&self) -> QueueResult<Vec<(JobStatus, u64)>> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}:job:*", self.base);
        let mut counts: HashMap<JobStatus, u64> = HashMap::new();
        let mut cursor = 0_u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = match &mut connection {
                // On a cluster: the node serving the queue's slot.
                Connection::Cluster(cluster, _) => cluster
                    .route_command(scan, cluster::queue_node(&self.base))
                    .await
                    .and_then(redis::Value::extract_error)
                    .and_then(|value| redis::from_redis_value(value).map_err(Into::into)),
                Connection::Single(_) => scan.query_async(&mut connection).await,
            }
            .map_err(|e| self.error("recount", &e))?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.hget(key, "status");
                }
                let statuses: Vec<Option<String>> = pipe
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.error("recount", &e))?;
                for status in statuses.into_iter().flatten() {
                    if let Some(status) = JobStatus::parse(&status) {
                        *counts.entry(status).or_default() += 1;
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(JobStatus::ALL
            .into_iter()
            .map(|s| (s, counts.get(&s).copied().unwrap_or(0)))
            .collect())
    }

    /// Registers (or re-registers, clearing the drain flag) a worker. With a `session` (one
    /// per run), the run takes the id over: jobs still leased under it go back to pending
    /// (counted as expired leases) and an earlier session's heartbeats report it superseded.
    /// Returns the jobs given back.
    pub async fn register_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<u64> {
        self.run(
            "register_worker",
            &WORKERS,
            vec![
                "register".to_owned(),
                worker,
                session.unwrap_or_default(),
                self.options.max_lease_expiries.to_string(),
            ],
        )
        .await
    }

    /// Renews the worker's liveness and the leases of the jobs it holds: with `held`, exactly
    /// those (id, token) claims (the others under its id are given back); without, every job
    /// leased under its id. With a `session` another run has since replaced, does nothing
    /// and says superseded.
    pub async fn heartbeat(
        &self,
        worker: String,
        held: Option<Vec<(String, u64)>>,
        session: Option<String>,
        count_unlisted: bool,
    ) -> QueueResult<Heartbeat> {
        let mode = match (&held, count_unlisted) {
            (None, _) => "all",
            (Some(_), true) => "held",
            (Some(_), false) => "held_outage",
        };
        let mut args = vec![
            worker,
            self.options.lease_ms().to_string(),
            mode.to_owned(),
            session.unwrap_or_default(),
            self.options.max_lease_expiries.to_string(),
        ];
        for (id, token) in held.unwrap_or_default() {
            args.push(id);
            args.push(token.to_string());
        }
        let (renewed, draining, lost, released, superseded): (u64, i64, Vec<String>, u64, i64) =
            self.run("heartbeat", &HEARTBEAT, args).await?;
        let lost = lost
            .chunks(2)
            .filter_map(|pair| match pair {
                [id, token] => Some((id.clone(), token.parse().ok()?)),
                _ => None,
            })
            .collect();
        Ok(Heartbeat {
            renewed,
            draining: draining == 1,
            lost,
            released,
            superseded: superseded == 1,
        })
    }

    /// Sets or clears a worker's drain flag; false when the worker is unknown.
    pub async fn set_draining(&self, worker: String, draining: bool) -> QueueResult<bool> {
        let flag = if draining { "1" } else { "0" };
        let found: i64 = self
            .run(
                "set_draining",
                &WORKERS,
                vec!["drain".to_owned(), worker, flag.to_owned()],
            )
            .await?;
        Ok(found == 1)
    }

    /// Removes a worker; its held jobs go back to pending. Returns how many — `None` when
    /// `session` is given and another run has registered the id since (nothing is done).
    pub async fn unregister_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<Option<u64>> {
        let released: i64 = self
            .run(
                "unregister_worker",
                &WORKERS,
                vec!["unregister".to_owned(), worker, session.unwrap_or_default()],
            )
            .await?;
        Ok(u64::try_from(released).ok())
    }

    /// Every registered worker with the jobs it holds.
    pub async fn workers(&self) -> QueueResult<Vec<WorkerInfo>> {
        let (now, raw): (i64, Vec<WorkerRow>) = self
            .run(
                "workers",
                &WORKERS_READ,
                vec!["list".to_owned(), String::new()],
            )
            .await?;
        let live_since = now - duration_ms(self.options.worker_liveness);
        Ok(raw
            .into_iter()
            .map(
                |(id, registered_at, last_heartbeat, draining, jobs)| WorkerInfo {
                    id,
                    registered_at,
                    last_heartbeat,
                    draining: draining == "1",
                    jobs,
                    state: if last_heartbeat >= live_since {
                        "active"
                    } else {
                        "stale"
                    }
                    .to_owned(),
                },
            )
            .collect())
    }

    /// Requeues expired leases (at most `limit`), removes dead workers and deletes finished
    /// jobs past retention.
    pub async fn reap(&self, limit: usize) -> QueueResult<ReapReport> {
        let (requeued, failed, purged, workers_expired): (u64, u64, u64, u64) = self
            .run(
                "reap",
                &REAP,
                vec![
                    limit.to_string(),
                    duration_ms(self.options.retention).to_string(),
                    self.options.max_lease_expiries.to_string(),
                    duration_ms(self.options.worker_expiry).to_string(),
                    duration_ms(self.options.domain_idle).to_string(),
                ],
            )
            .await?;
        if let Some(max_len) = self.options.results_max_len {
            self.bound_results(max_len).await?;
        }
        Ok(ReapReport {
            requeued,
            failed,
            purged,
            workers_expired,
        })
    }

    /// Deletes finished jobs older than `older_than_ms`, in bounded script calls.
    pub async fn purge(&self, older_than_ms: i64) -> QueueResult<u64> {
        let mut purged = 0;
        loop {
            let batch: u64 = self
                .run(
                    "purge",
                    &PURGE,
                    vec![older_than_ms.to_string(), PURGE_CHUNK.to_string()],
                )
                .await?;
            purged += batch;
            if batch == 0 {
                return Ok(purged);
            }
        }
    }
}

/// A request that only reads (so it may be sent twice): a command or a pipeline.
trait Read {
    fn send<T: redis::FromRedisValue>(
        &self,
        connection: &mut Connection,
    ) -> impl std::future::Future<Output = redis::RedisResult<T>>;
}

impl Read for redis::Cmd {
    fn send<T: redis::FromRedisValue>(
        &self,
        connection: &mut Connection,
    ) -> impl std::future::Future<Output = redis::RedisResult<T>> {
        self.query_async(connection)
    }
}

impl Read for redis::Pipeline {
    fn send<T: redis::FromRedisValue>(
        &self,
        connection: &mut Connection,
    ) -> impl std::future::Future<Output = redis::RedisResult<T>> {
        self.query_async(connection)
    }
}

/// Warns when the server may evict keys under memory pressure: an evicted job record is a
/// lost job (the queue needs `maxmemory-policy noeviction`, which makes writes fail instead).
/// Servers that refuse `CONFIG` (managed Redis) are not checked.
async fn warn_if_evicting(connection: &mut Connection, url: &str) {
    let answer: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(connection)
        .await;
    if let Ok(pair) = answer
        && let [_, policy] = pair.as_slice()
        && policy != "noeviction"
    {
        tracing::warn!(
            queue = url,
            policy,
            "this Redis evicts keys when it runs out of memory (maxmemory-policy {policy}): \
             job records could vanish with their jobs; set maxmemory-policy noeviction"
        );
    }
}

/// Blocks the asynchronous signals on the current thread until dropped (the previous mask is
/// restored); pending signals are delivered then, or to another thread meanwhile.
struct SignalsHeld(Option<nix::sys::signal::SigSet>);

impl SignalsHeld {
    fn new() -> Self {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        let mut blocked = SigSet::all();
        // Faults are delivered to the thread that caused them: never block those.
        for fault in [
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGFPE,
            Signal::SIGILL,
        ] {
            blocked.remove(fault);
        }
        let mut previous = SigSet::empty();
        let held = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous));
        Self(held.ok().map(|()| previous))
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&previous),
                None,
            );
        }
    }
}

/// Server replies that say "not now" rather than "no": the server is loading its data,
/// was demoted to a replica by a failover, is running a slow script, is out of memory, cannot
/// persist, or its cluster is failing over. Callers wait and try again instead of giving up.
const TRANSIENT_CODES: [&str; 9] = [
    "LOADING",
    "READONLY",
    "BUSY",
    "OOM",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MISCONF",
];

/// What `stats.lua` returns.
type StatsReply = (
    HashMap<String, i64>,
    u64,
    u64,
    u64,
    HashMap<String, i64>,
    u64,
    u64,
);

/// A results cursor: a stream id `<ms>-<seq>`, or why not.
fn stream_id(cursor: &str) -> QueueResult<String> {
    let valid = cursor
        .split_once('-')
        .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok());
    if valid {
        Ok(cursor.to_owned())
    } else {
        Err(QueueError::Config(crate::config::ConfigError::invalid(
            "results cursor",
            cursor,
            "a stream id returned by this queue",
        )))
    }
}

/// One worker as `workers.lua` lists it: id, registered at, last heartbeat, drain flag, jobs.
type WorkerRow = (String, i64, i64, String, Vec<String>);

/// Removes the URL (with its password) from a driver message that might echo it.
fn scrub(message: &str, url: &str) -> String {
    message.replace(url, &redact(url))
}

fn ack(code: i64, id: &str, status: &str, token: u64) -> QueueResult<Ack> {
    match code {
        1 => Ok(Ack::Accepted),
        -1 => Ok(Ack::NotFound),
        _ => JobStatus::parse(status)
            .map(|status| Ack::Stale { status, token })
            .ok_or_else(|| QueueError::CorruptJob {
                job_id: id.to_owned(),
                detail: format!("unknown status {status:?}"),
            }),
    }
}

/// The fields of a job's hash in the order scripts return them (after the id); keep in step
/// with `FIELDS` in `lua/prelude.lua`.
const JOB_FIELDS: [&str; 17] = [
    "spec",
    "status",
    "attempt",
    "max_retries",
    "retry_count",
    "assigned_worker",
    "created_at",
    "started_at",
    "completed_at",
    "lease_deadline",
    "not_before",
    "error",
    "result",
    "token",
    "lease_expiries",
    "pkey",
    "ikey",
];

/// The immutable part of a job, stored as one JSON field. A config shared by reference
/// (`queue/shared_config.rs`) puts `config_carrier` or `config_ref` first: the scripts
/// recognise them by the spec's first bytes.
#[derive(serde::Serialize)]
struct SpecOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    config_carrier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_ref: Option<&'a str>,
    name: &'a str,
    template_id: &'a str,
    target_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a serde_json::value::RawValue>,
    priority: i64,
    crawl_id: Option<&'a str>,
    depth: u32,
    parent_id: Option<&'a str>,
}

#[derive(serde::Deserialize)]
pub(super) struct SpecIn {
    /// The hash of the config this job refers to, stored apart (`None`: in `config`).
    #[serde(default)]
    config_ref: Option<String>,
    name: String,
    template_id: String,
    target_url: String,
    #[serde(default)]
    config: Option<Box<serde_json::value::RawValue>>,
    priority: i64,
    #[serde(default)]
    crawl_id: Option<String>,
    #[serde(default)]
    depth: u32,
    #[serde(default)]
    parent_id: Option<String>,
}

/// The 5 arguments `submit_jobs` in the Lua prelude takes per job; `shared`: how it stores
/// its config ([`shared_config::roles`]).
fn submit_args(
    job: &NewJob,
    mode: KeyMode,
    shared: Option<&(String, bool)>,
) -> QueueResult<[String; 5]> {
    Ok([
        job.id().to_owned(),
        encode_spec(job, shared)?,
        job.max_retries.to_string(),
        (PRIORITY_LIMIT - job.priority).to_string(),
        politeness::key_of(&job.target_url, job.politeness_key.as_deref(), mode),
    ])
}

fn encode_spec(job: &NewJob, shared: Option<&(String, bool)>) -> QueueResult<String> {
    let invalid = |reason: String| QueueError::InvalidJob {
        job_id: job.id().to_owned(),
        reason,
    };
    let config: &serde_json::value::RawValue = serde_json::from_str(&job.config)
        .map_err(|e| invalid(format!("config is not valid JSON: {e}")))?;
    let (carrier, reference) = match shared {
        Some((hash, true)) => (Some(hash.as_str()), None),
        Some((hash, false)) => (None, Some(hash.as_str())),
        None => (None, None),
    };
    serde_json::to_string(&SpecOut {
        config_carrier: carrier,
        config_ref: reference,
        name: &job.name,
        template_id: &job.template_id,
        target_url: &job.target_url,
        config: reference.is_none().then_some(config),
        priority: job.priority,
        crawl_id: job.crawl_id.as_deref(),
        depth: job.depth,
        parent_id: job.parent_id.as_deref(),
    })
    .map_err(|e| invalid(format!("cannot encode the job: {e}")))
}

/// A stored numeric field, or why it is not one.
fn number<T: std::str::FromStr>(value: Option<String>, name: &str) -> Result<Option<T>, String> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| format!("field {name} is not a number: {v:?}"))
        })
        .transpose()
}

/// A job from `[id, JOB_FIELDS..., carrier]` (`carrier`: the stored spec carrying its
/// config, for a job that refers to one); a field that cannot be read is a `CorruptJob`
/// naming it.
fn job_from_values(values: Vec<Option<String>>) -> QueueResult<Job> {
    let mut values = values.into_iter();
    let id = values
        .next()
        .flatten()
        .unwrap_or_else(|| "<unknown>".to_owned());
    let mut next = || values.next().flatten();
    let mut build = || -> Result<Job, String> {
        let spec_text = next().ok_or("field spec is missing")?;
        let spec: SpecIn = serde_json::from_str(&spec_text)
            .map_err(|e| format!("field spec is not valid: {e}"))?;
        let status_text = next().ok_or("field status is missing")?;
        let status = JobStatus::parse(&status_text)
            .ok_or_else(|| format!("unknown status {status_text:?}"))?;
        let config = spec.config.as_ref().map(|c| c.get().to_owned());
        let mut job = Job {
            id: id.clone(),
            name: spec.name,
            template_id: spec.template_id,
            target_url: spec.target_url,
            config: config.unwrap_or_default(),
            priority: spec.priority,
            status,
            attempt: number(next(), "attempt")?.unwrap_or(0),
            max_retries: number(next(), "max_retries")?.unwrap_or(0),
            retry_count: number(next(), "retry_count")?.unwrap_or(0),
            assigned_worker: next(),
            created_at: number(next(), "created_at")?.unwrap_or(0),
            started_at: number(next(), "started_at")?,
            completed_at: number(next(), "completed_at")?,
            lease_deadline: number(next(), "lease_deadline")?,
            not_before: number(next(), "not_before")?,
            error: next(),
            result: next(),
            token: number(next(), "token")?.unwrap_or(0),
            lease_expiries: number(next(), "lease_expiries")?.unwrap_or(0),
            politeness_key: next().unwrap_or_default(),
            paced: next().is_some_and(|key| !key.is_empty()),
            crawl_id: spec.crawl_id,
            depth: spec.depth,
            parent_id: spec.parent_id,
        };
        if let Some(hash) = spec.config_ref {
            let carrier = next().ok_or_else(|| format!("its config {hash} is missing"))?;
            // The stored spec must be the one that carried this very config.
            if shared_config::hash_after(&carrier, shared_config::CARRIER) != Some(hash.as_str()) {
                return Err(format!("its config {hash} is stored as another one"));
            }
            let carrier: SpecIn = serde_json::from_str(&carrier)
                .map_err(|e| format!("its config {hash} is not valid: {e}"))?;
            let config = carrier
                .config
                .ok_or_else(|| format!("its config {hash} is not stored"))?;
            config.get().clone_into(&mut job.config);
        } else if spec.config.is_none() {
            return Err("field spec has no config".to_owned());
        }
        Ok(job)
    };
    build().map_err(|detail| QueueError::CorruptJob {
        job_id: id.clone(),
        detail,
    })
}

/// `FUNCTION LOAD` of the queue's library.
fn load_command() -> redis::Cmd {
    let mut command = redis::cmd("FUNCTION");
    command.arg("LOAD").arg(LIBRARY.code());
    command
}
