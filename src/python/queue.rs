//! Bindings of [`crate::queue`]: the `JobQueue` handle, `Job` records and `Ack` answers.
//!
//! Every operation has a sync method (GIL released while it runs) and an async twin named
//! `<op>_async` returning an awaitable. Times cross as float seconds since the epoch (what
//! `time.time()` returns); config and result cross as JSON text, which the Python layer
//! encodes and decodes.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::bridge::{block_on, into_awaitable};
use super::domains::{self, Domain, Domains, PolicyDict};
use crate::config::ConfigError;
use crate::queue::dedup::{DedupOptions, default_ignored_params};
use crate::queue::{
    Ack, FailOutcome, Heartbeat, Job, JobQueue, JobStatus, KeyMode, NewJob, Policy, QueueError,
    QueueOptions, QueueStats, ReapReport, WorkerInfo,
};

fn seconds(ms: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let seconds = ms as f64 / 1000.0;
    seconds
}

fn duration(setting: &str, seconds: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| ConfigError::invalid(setting, seconds, "a finite number of seconds >= 0"))
}

fn status(name: &str) -> Result<JobStatus, QueueError> {
    JobStatus::parse(name).ok_or_else(|| {
        ConfigError::invalid(
            "job status",
            name,
            "one of pending, assigned, running, completed, failed, retrying, cancelled",
        )
        .into()
    })
}

/// A job record (immutable snapshot; times in seconds since the epoch).
#[pyclass(frozen, name = "JobRecord", module = "scraperv4._core")]
pub(crate) struct PyJob {
    job: Job,
}

#[pymethods]
impl PyJob {
    #[getter]
    fn id(&self) -> &str {
        &self.job.id
    }
    #[getter]
    fn name(&self) -> &str {
        &self.job.name
    }
    #[getter]
    fn template_id(&self) -> &str {
        &self.job.template_id
    }
    #[getter]
    fn target_url(&self) -> &str {
        &self.job.target_url
    }
    #[getter]
    fn config_json(&self) -> &str {
        &self.job.config
    }
    #[getter]
    fn priority(&self) -> i64 {
        self.job.priority
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.job.status.as_str()
    }
    #[getter]
    fn assigned_worker(&self) -> Option<&str> {
        self.job.assigned_worker.as_deref()
    }
    #[getter]
    fn created_at(&self) -> f64 {
        seconds(self.job.created_at)
    }
    #[getter]
    fn started_at(&self) -> Option<f64> {
        self.job.started_at.map(seconds)
    }
    #[getter]
    fn completed_at(&self) -> Option<f64> {
        self.job.completed_at.map(seconds)
    }
    #[getter]
    fn retry_count(&self) -> u32 {
        self.job.retry_count
    }
    #[getter]
    fn max_retries(&self) -> u32 {
        self.job.max_retries
    }
    #[getter]
    fn result_json(&self) -> Option<&str> {
        self.job.result.as_deref()
    }
    #[getter]
    fn error(&self) -> Option<&str> {
        self.job.error.as_deref()
    }
    #[getter]
    fn attempt(&self) -> u64 {
        self.job.attempt
    }
    #[getter]
    fn token(&self) -> u64 {
        self.job.token
    }
    #[getter]
    fn lease_expiries(&self) -> u32 {
        self.job.lease_expiries
    }
    #[getter]
    fn lease_deadline(&self) -> Option<f64> {
        self.job.lease_deadline.map(seconds)
    }
    #[getter]
    fn not_before(&self) -> Option<f64> {
        self.job.not_before.map(seconds)
    }
    #[getter]
    fn crawl_id(&self) -> Option<&str> {
        self.job.crawl_id.as_deref()
    }
    #[getter]
    fn depth(&self) -> u32 {
        self.job.depth
    }
    #[getter]
    fn parent_id(&self) -> Option<&str> {
        self.job.parent_id.as_deref()
    }
}

/// The answer to a fenced or administrative operation.
#[pyclass(frozen, name = "Ack", module = "scraperv4._core")]
pub(crate) struct PyAck {
    /// `accepted`, `stale` or `not_found`.
    #[pyo3(get)]
    reason: &'static str,
    /// The job's status after the call (`None` when not found).
    #[pyo3(get)]
    status: Option<&'static str>,
    /// The job's current fencing token (when refused as stale).
    #[pyo3(get)]
    token: Option<u64>,
    /// For `fail`: `retrying` or `failed`.
    #[pyo3(get)]
    outcome: Option<&'static str>,
    /// For `fail` with `retrying`: when it becomes claimable (seconds since the epoch).
    #[pyo3(get)]
    not_before: Option<f64>,
}

impl PyAck {
    fn new(ack: &Ack, accepted_status: Option<JobStatus>, outcome: Option<FailOutcome>) -> Self {
        let (reason, status, token) = match ack {
            Ack::Accepted => ("accepted", accepted_status.map(JobStatus::as_str), None),
            Ack::Stale { status, token } => ("stale", Some(status.as_str()), Some(*token)),
            Ack::NotFound => ("not_found", None, None),
        };
        let (outcome, not_before, status) = match outcome {
            Some(FailOutcome::Retrying { not_before }) => (
                Some("retrying"),
                Some(seconds(not_before)),
                Some("retrying"),
            ),
            Some(FailOutcome::Failed) => (Some("failed"), None, Some("failed")),
            None => (None, None, status),
        };
        Self {
            reason,
            status,
            token,
            outcome,
            not_before,
        }
    }
}

#[pymethods]
impl PyAck {
    /// True when the operation was done.
    #[getter]
    fn accepted(&self) -> bool {
        self.reason == "accepted"
    }

    fn __bool__(&self) -> bool {
        self.accepted()
    }

    fn __repr__(&self) -> String {
        let mut parts = vec![format!("reason={:?}", self.reason)];
        if let Some(status) = self.status {
            parts.push(format!("status={status:?}"));
        }
        if let Some(token) = self.token {
            parts.push(format!("token={token}"));
        }
        if let Some(not_before) = self.not_before {
            parts.push(format!("not_before={not_before:.3}"));
        }
        format!("Ack({})", parts.join(", ").replace('"', "'"))
    }
}

/// A heartbeat's answer as a tuple: `(renewed, draining, lost (id, token) claims, released)`.
type Beat = (u64, bool, Vec<(String, u64)>, u64, bool);

fn beat(heartbeat: Heartbeat) -> Beat {
    (
        heartbeat.renewed,
        heartbeat.draining,
        heartbeat.lost,
        heartbeat.released,
        heartbeat.superseded,
    )
}

fn completed_acks(acks: Vec<Ack>) -> Vec<PyAck> {
    acks.iter()
        .map(|ack| PyAck::new(ack, Some(JobStatus::Completed), None))
        .collect()
}

fn jobs(jobs: Vec<Job>) -> Vec<PyJob> {
    jobs.into_iter().map(|job| PyJob { job }).collect()
}

/// `list` results: jobs, and `(id, message)` for records that cannot be read.
type Listed = (Vec<PyJob>, Vec<(String, String)>);

fn listed(results: Vec<Result<Job, QueueError>>) -> Listed {
    let mut ok = Vec::new();
    let mut corrupt = Vec::new();
    for result in results {
        match result {
            Ok(job) => ok.push(PyJob { job }),
            Err(error) => {
                let id = match &error {
                    QueueError::CorruptJob { job_id, .. } => job_id.clone(),
                    _ => String::new(),
                };
                corrupt.push((id, error.to_string()));
            }
        }
    }
    (ok, corrupt)
}

/// Stats as plain data, converted to a dict with the GIL.
struct Stats(QueueStats);

impl<'py> IntoPyObject<'py> for Stats {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let stats = self.0;
        let dict = PyDict::new(py);
        let by_status = PyDict::new(py);
        for (status, n) in &stats.by_status {
            by_status.set_item(status.as_str(), n)?;
        }
        dict.set_item("by_status", by_status)?;
        dict.set_item("total", stats.total)?;
        dict.set_item("active_workers", stats.active_workers)?;
        dict.set_item("total_workers", stats.total_workers)?;
        dict.set_item("runnable", stats.runnable)?;
        dict.set_item("paced_keys", stats.paced_keys)?;
        dict.set_item("waiting_keys", stats.waiting_keys)?;
        let totals = PyDict::new(py);
        totals.set_item("completed", stats.totals.completed)?;
        totals.set_item("failed", stats.totals.failed)?;
        totals.set_item("cancelled", stats.totals.cancelled)?;
        totals.set_item("retried", stats.totals.retried)?;
        totals.set_item("expired", stats.totals.expired)?;
        totals.set_item("replayed", stats.totals.replayed)?;
        totals.set_item("duration_ms_sum", stats.totals.duration_ms_sum)?;
        totals.set_item("duration_count", stats.totals.duration_count)?;
        totals.set_item("duration_buckets", stats.totals.duration_buckets)?;
        totals.set_item(
            "duration_bounds_ms",
            crate::queue::DURATION_BUCKETS_MS.to_vec(),
        )?;
        dict.set_item("totals", totals)?;
        Ok(dict)
    }
}

struct Workers(Vec<WorkerInfo>);

impl<'py> IntoPyObject<'py> for Workers {
    type Target = pyo3::types::PyList;
    type Output = Bound<'py, pyo3::types::PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let list = pyo3::types::PyList::empty(py);
        for worker in self.0 {
            let dict = PyDict::new(py);
            dict.set_item("id", worker.id)?;
            dict.set_item("registered_at", seconds(worker.registered_at))?;
            dict.set_item("last_heartbeat", seconds(worker.last_heartbeat))?;
            dict.set_item("draining", worker.draining)?;
            dict.set_item("jobs", worker.jobs)?;
            dict.set_item("state", worker.state)?;
            list.append(dict)?;
        }
        Ok(list)
    }
}

struct Reaped(ReapReport);

impl<'py> IntoPyObject<'py> for Reaped {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let dict = PyDict::new(py);
        dict.set_item("requeued", self.0.requeued)?;
        dict.set_item("failed", self.0.failed)?;
        dict.set_item("purged", self.0.purged)?;
        dict.set_item("workers_expired", self.0.workers_expired)?;
        Ok(dict)
    }
}

/// One submission as the Python layer passes it (config already JSON text).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct Submission {
    id: Option<String>,
    name: String,
    template_id: String,
    target_url: String,
    config_json: String,
    priority: i64,
    max_retries: u32,
    crawl_id: Option<String>,
    depth: u32,
    parent_id: Option<String>,
}

impl From<Submission> for NewJob {
    fn from(s: Submission) -> Self {
        Self {
            id: s.id,
            name: s.name,
            template_id: s.template_id,
            target_url: s.target_url,
            config: s.config_json,
            priority: s.priority,
            max_retries: s.max_retries,
            crawl_id: s.crawl_id,
            depth: s.depth,
            parent_id: s.parent_id,
            politeness_key: None,
            revisit: None,
        }
    }
}

/// The submissions as jobs, each config's settings checked first (`InvalidJobError`).
fn checked(jobs: Vec<Submission>) -> Result<Vec<NewJob>, QueueError> {
    jobs.into_iter()
        .map(|submission| {
            crate::worker::crawl::check_config(&submission.config_json).map_err(|reason| {
                QueueError::InvalidJob {
                    job_id: submission.id.clone().unwrap_or_else(|| "<new>".to_owned()),
                    reason,
                }
            })?;
            Ok(NewJob::from(submission))
        })
        .collect()
}

/// A connection to a queue backend.
#[pyclass(frozen, name = "JobQueue", module = "scraperv4._core")]
pub(crate) struct PyJobQueue {
    queue: Arc<JobQueue>,
}

/// Generates the `(sync, async)` pair of methods body: `$op` is an async block using `queue`.
macro_rules! run {
    (sync $py:expr, $self:ident, |$queue:ident| $op:expr) => {{
        let $queue = Arc::clone(&$self.queue);
        block_on($py, async move { $op })
    }};
    (async $py:expr, $self:ident, |$queue:ident| $op:expr) => {{
        let $queue = Arc::clone(&$self.queue);
        into_awaitable($py, async move { $op })
    }};
}

impl PyJobQueue {
    /// The queue, shared with the worker that serves it.
    pub(crate) fn shared(&self) -> Arc<JobQueue> {
        Arc::clone(&self.queue)
    }
}

#[pymethods]
impl PyJobQueue {
    /// Opens the queue at `url` (see `QueueOptions` for the settings).
    #[staticmethod]
    #[pyo3(signature = (url, *, name = "default", prefix = "scraperv4",
        lease = 60.0, max_config_bytes = 1_048_576, retry_base = 1.0, retry_cap = 300.0,
        retention = 604_800.0, worker_liveness = 120.0, worker_expiry = 3600.0,
        max_lease_expiries = 5, durable_commits = true, operation_timeout = 10.0,
        allow_insecure_tls = false, politeness_key = "domain", domain_delay = None,
        domain_concurrency = None, autothrottle = None, max_domain_delay = None,
        runnable_horizon = 10.0, dedup = false, dedup_capacity = 1_000_000,
        dedup_error_rate = 0.01, revisit = None, dedup_bucket = None,
        dedup_ignore_params = None, results_max_len = None, shards = None,
        shared_configs = true))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn open(
        py: Python<'_>,
        url: String,
        name: &str,
        prefix: &str,
        lease: f64,
        max_config_bytes: usize,
        retry_base: f64,
        retry_cap: f64,
        retention: f64,
        worker_liveness: f64,
        worker_expiry: f64,
        max_lease_expiries: u32,
        durable_commits: bool,
        operation_timeout: f64,
        allow_insecure_tls: bool,
        politeness_key: &str,
        domain_delay: Option<f64>,
        domain_concurrency: Option<u32>,
        autothrottle: Option<f64>,
        max_domain_delay: Option<f64>,
        runnable_horizon: f64,
        dedup: bool,
        dedup_capacity: u64,
        dedup_error_rate: f64,
        revisit: Option<f64>,
        dedup_bucket: Option<f64>,
        dedup_ignore_params: Option<Vec<String>>,
        results_max_len: Option<u64>,
        shards: Option<u32>,
        shared_configs: bool,
    ) -> PyResult<Self> {
        if !dedup {
            // Settings of the seen-URL filter without the filter: said, not ignored.
            let defaults = DedupOptions::default();
            let given = [
                ("revisit", revisit.is_some()),
                ("dedup_bucket", dedup_bucket.is_some()),
                ("dedup_ignore_params", dedup_ignore_params.is_some()),
                ("dedup_capacity", dedup_capacity != defaults.capacity),
                (
                    "dedup_error_rate",
                    dedup_error_rate.to_bits() != defaults.error_rate.to_bits(),
                ),
            ];
            if let Some((setting, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    *setting,
                    "set",
                    "dedup=True as well (it configures the seen-URL filter, which is off)",
                )
                .into());
            }
        }
        let dedup = dedup
            .then(|| -> PyResult<DedupOptions> {
                Ok(DedupOptions {
                    capacity: dedup_capacity,
                    error_rate: dedup_error_rate,
                    revisit: revisit.map(|r| duration("revisit", r)).transpose()?,
                    bucket: dedup_bucket
                        .map(|b| duration("dedup_bucket", b))
                        .transpose()?,
                    ignored_params: dedup_ignore_params.unwrap_or_else(default_ignored_params),
                })
            })
            .transpose()?;
        let options = QueueOptions {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            lease: duration("lease", lease)?,
            max_config_bytes,
            retry_base: duration("retry_base", retry_base)?,
            retry_cap: duration("retry_cap", retry_cap)?,
            retention: duration("retention", retention)?,
            worker_liveness: duration("worker_liveness", worker_liveness)?,
            worker_expiry: duration("worker_expiry", worker_expiry)?,
            max_lease_expiries,
            durable_commits,
            operation_timeout: duration("operation_timeout", operation_timeout)?,
            allow_insecure_tls,
            politeness_key: KeyMode::parse(politeness_key)?,
            policy: Policy {
                delay: domain_delay
                    .map(|d| duration("domain_delay", d))
                    .transpose()?,
                concurrency: domain_concurrency,
                autothrottle,
                max_delay: max_domain_delay
                    .map(|d| duration("max_domain_delay", d))
                    .transpose()?,
                max_pause: None,
            },
            runnable_horizon: duration("runnable_horizon", runnable_horizon)?,
            dedup,
            results_max_len,
            shards,
            shared_configs,
            ..QueueOptions::default()
        };
        let queue = block_on(py, async move { JobQueue::open(&url, options).await })?;
        Ok(Self {
            queue: Arc::new(queue),
        })
    }

    /// The backend URL without its password.
    #[getter]
    fn location(&self) -> &str {
        self.queue.location()
    }

    /// The number of shards the queue is spread over (1 but for a sharded Redis queue).
    #[getter]
    fn shards(&self) -> usize {
        self.queue.shards()
    }

    /// The lease length in seconds.
    #[getter]
    fn lease(&self) -> f64 {
        self.queue.options().lease.as_secs_f64()
    }

    fn submit(&self, py: Python<'_>, jobs: Vec<Submission>) -> PyResult<Vec<(String, bool)>> {
        let jobs = checked(jobs)?;
        run!(sync py, self, |q| q.submit(jobs).await)
    }

    fn submit_async<'py>(
        &self,
        py: Python<'py>,
        jobs: Vec<Submission>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let jobs = checked(jobs)?;
        run!(async py, self, |q| q.submit(jobs).await)
    }

    #[pyo3(signature = (worker, limit, start = false))]
    fn claim(
        &self,
        py: Python<'_>,
        worker: String,
        limit: usize,
        start: bool,
    ) -> PyResult<Vec<PyJob>> {
        run!(sync py, self, |q| q.claim(&worker, limit, start).await.map(jobs))
    }

    #[pyo3(signature = (worker, limit, start = false))]
    fn claim_async<'py>(
        &self,
        py: Python<'py>,
        worker: String,
        limit: usize,
        start: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.claim(&worker, limit, start).await.map(jobs))
    }

    fn mark_running(&self, py: Python<'_>, id: String, token: u64) -> PyResult<PyAck> {
        run!(sync py, self, |q| q.mark_running(&id, token).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Running), None)))
    }

    fn mark_running_async<'py>(
        &self,
        py: Python<'py>,
        id: String,
        token: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.mark_running(&id, token).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Running), None)))
    }

    #[pyo3(signature = (id, token, result_json = None))]
    fn complete(
        &self,
        py: Python<'_>,
        id: String,
        token: u64,
        result_json: Option<String>,
    ) -> PyResult<PyAck> {
        run!(sync py, self, |q| q.complete(&id, token, result_json).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Completed), None)))
    }

    #[pyo3(signature = (id, token, result_json = None))]
    fn complete_async<'py>(
        &self,
        py: Python<'py>,
        id: String,
        token: u64,
        result_json: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.complete(&id, token, result_json).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Completed), None)))
    }

    fn complete_many(
        &self,
        py: Python<'_>,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> PyResult<Vec<PyAck>> {
        run!(sync py, self, |q| q.complete_many(completions).await.map(completed_acks))
    }

    fn complete_many_async<'py>(
        &self,
        py: Python<'py>,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.complete_many(completions).await.map(completed_acks))
    }

    #[pyo3(signature = (id, token, error, retryable = true, feedback = None, retry_after = None))]
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        py: Python<'_>,
        id: String,
        token: u64,
        error: String,
        retryable: bool,
        feedback: Option<&str>,
        retry_after: Option<f64>,
    ) -> PyResult<PyAck> {
        let feedback = domains::feedback(feedback, retry_after)?;
        run!(sync py, self, |q| q.fail(&id, token, &error, retryable, feedback).await
            .map(|(a, outcome)| PyAck::new(&a, None, outcome)))
    }

    #[pyo3(signature = (id, token, error, retryable = true, feedback = None, retry_after = None))]
    #[allow(clippy::too_many_arguments)]
    fn fail_async<'py>(
        &self,
        py: Python<'py>,
        id: String,
        token: u64,
        error: String,
        retryable: bool,
        feedback: Option<&str>,
        retry_after: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let feedback = domains::feedback(feedback, retry_after)?;
        run!(async py, self, |q| q.fail(&id, token, &error, retryable, feedback).await
            .map(|(a, outcome)| PyAck::new(&a, None, outcome)))
    }

    #[pyo3(signature = (offset = 0, limit = 100))]
    fn domains(&self, py: Python<'_>, offset: usize, limit: usize) -> PyResult<Domains> {
        run!(sync py, self, |q| q.domains(offset, limit).await.map(Domains))
    }

    #[pyo3(signature = (offset = 0, limit = 100))]
    fn domains_async<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.domains(offset, limit).await.map(Domains))
    }

    fn domain(&self, py: Python<'_>, key: String) -> PyResult<Option<Domain>> {
        run!(sync py, self, |q| q.domain(&key).await.map(|d| d.map(Domain)))
    }

    fn domain_async<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.domain(&key).await.map(|d| d.map(Domain)))
    }

    #[pyo3(signature = (key, delay = None, concurrency = None, clear_delay = false,
        clear_concurrency = false))]
    fn set_domain(
        &self,
        py: Python<'_>,
        key: String,
        delay: Option<f64>,
        concurrency: Option<u32>,
        clear_delay: bool,
        clear_concurrency: bool,
    ) -> PyResult<Domain> {
        let delay = domains::delay_change(delay, clear_delay)?;
        let concurrency = domains::concurrency_change(concurrency, clear_concurrency);
        run!(sync py, self, |q| q.set_domain(&key, delay, concurrency).await.map(Domain))
    }

    #[pyo3(signature = (key, delay = None, concurrency = None, clear_delay = false,
        clear_concurrency = false))]
    fn set_domain_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        delay: Option<f64>,
        concurrency: Option<u32>,
        clear_delay: bool,
        clear_concurrency: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let delay = domains::delay_change(delay, clear_delay)?;
        let concurrency = domains::concurrency_change(concurrency, clear_concurrency);
        run!(async py, self, |q| q.set_domain(&key, delay, concurrency).await.map(Domain))
    }

    #[pyo3(signature = (domain_delay = None, domain_concurrency = None, autothrottle = None,
        max_domain_delay = None))]
    fn set_policy(
        &self,
        py: Python<'_>,
        domain_delay: Option<f64>,
        domain_concurrency: Option<u32>,
        autothrottle: Option<f64>,
        max_domain_delay: Option<f64>,
    ) -> PyResult<PolicyDict> {
        let policy = Policy {
            delay: domain_delay
                .map(|d| duration("domain_delay", d))
                .transpose()?,
            concurrency: domain_concurrency,
            autothrottle,
            max_delay: max_domain_delay
                .map(|d| duration("max_domain_delay", d))
                .transpose()?,
            max_pause: None,
        };
        run!(sync py, self, |q| q.set_policy(policy).await.map(PolicyDict))
    }

    fn policy(&self, py: Python<'_>) -> PyResult<PolicyDict> {
        run!(sync py, self, |q| q.policy().await.map(PolicyDict))
    }

    #[pyo3(signature = (url, override_key = None))]
    fn politeness_key(&self, url: &str, override_key: Option<&str>) -> String {
        self.queue.politeness_key(url, override_key)
    }

    fn release(&self, py: Python<'_>, id: String, token: u64) -> PyResult<PyAck> {
        run!(sync py, self, |q| q.release(&id, token).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Pending), None)))
    }

    fn release_async<'py>(
        &self,
        py: Python<'py>,
        id: String,
        token: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.release(&id, token).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Pending), None)))
    }

    fn cancel(&self, py: Python<'_>, id: String) -> PyResult<PyAck> {
        run!(sync py, self, |q| q.cancel(&id).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Cancelled), None)))
    }

    fn cancel_async<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.cancel(&id).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Cancelled), None)))
    }

    fn retry(&self, py: Python<'_>, id: String) -> PyResult<PyAck> {
        run!(sync py, self, |q| q.retry(&id).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Pending), None)))
    }

    fn retry_async<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.retry(&id).await
            .map(|a| PyAck::new(&a, Some(JobStatus::Pending), None)))
    }

    fn get(&self, py: Python<'_>, id: String) -> PyResult<Option<PyJob>> {
        run!(sync py, self, |q| q.get(&id).await.map(|job| job.map(|job| PyJob { job })))
    }

    fn get_async<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.get(&id).await.map(|job| job.map(|job| PyJob { job })))
    }

    #[pyo3(signature = (status, offset = 0, limit = 100))]
    fn list(&self, py: Python<'_>, status: &str, offset: usize, limit: usize) -> PyResult<Listed> {
        let status = self::status(status)?;
        run!(sync py, self, |q| q.list(status, offset, limit).await.map(listed))
    }

    #[pyo3(signature = (status, offset = 0, limit = 100))]
    fn list_async<'py>(
        &self,
        py: Python<'py>,
        status: &str,
        offset: usize,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let status = self::status(status)?;
        run!(async py, self, |q| q.list(status, offset, limit).await.map(listed))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = run!(sync py, self, |q| q.stats().await.map(Stats))?;
        stats.into_pyobject(py)
    }

    fn stats_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.stats().await.map(Stats))
    }

    fn recount_by_scan(&self, py: Python<'_>) -> PyResult<Vec<(&'static str, u64)>> {
        run!(sync py, self, |q| q.recount_by_scan().await
            .map(|counts| counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect::<Vec<_>>()))
    }

    #[pyo3(signature = (worker, session = None))]
    fn register_worker(
        &self,
        py: Python<'_>,
        worker: String,
        session: Option<String>,
    ) -> PyResult<u64> {
        run!(sync py, self, |q| q.register_worker(&worker, session.as_deref()).await)
    }

    #[pyo3(signature = (worker, session = None))]
    fn register_worker_async<'py>(
        &self,
        py: Python<'py>,
        worker: String,
        session: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.register_worker(&worker, session.as_deref()).await)
    }

    /// `(renewed, draining, lost claims, released, superseded)`.
    #[pyo3(signature = (worker, held = None, session = None))]
    fn heartbeat(
        &self,
        py: Python<'_>,
        worker: String,
        held: Option<Vec<(String, u64)>>,
        session: Option<String>,
    ) -> PyResult<Beat> {
        run!(sync py, self, |q| q.heartbeat(&worker, held, session.as_deref()).await.map(beat))
    }

    #[pyo3(signature = (worker, held = None, session = None))]
    fn heartbeat_async<'py>(
        &self,
        py: Python<'py>,
        worker: String,
        held: Option<Vec<(String, u64)>>,
        session: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.heartbeat(&worker, held, session.as_deref()).await.map(beat))
    }

    fn set_draining(&self, py: Python<'_>, worker: String, draining: bool) -> PyResult<bool> {
        run!(sync py, self, |q| q.set_draining(&worker, draining).await)
    }

    fn set_draining_async<'py>(
        &self,
        py: Python<'py>,
        worker: String,
        draining: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.set_draining(&worker, draining).await)
    }

    #[pyo3(signature = (worker, session = None))]
    fn unregister_worker(
        &self,
        py: Python<'_>,
        worker: String,
        session: Option<String>,
    ) -> PyResult<Option<u64>> {
        run!(sync py, self, |q| q.unregister_worker(&worker, session.as_deref()).await)
    }

    #[pyo3(signature = (worker, session = None))]
    fn unregister_worker_async<'py>(
        &self,
        py: Python<'py>,
        worker: String,
        session: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.unregister_worker(&worker, session.as_deref()).await)
    }

    fn workers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let workers = run!(sync py, self, |q| q.workers().await.map(Workers))?;
        workers.into_pyobject(py)
    }

    fn workers_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.workers().await.map(Workers))
    }

    #[pyo3(signature = (limit = 1000))]
    fn reap<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyDict>> {
        let reaped = run!(sync py, self, |q| q.reap(limit).await.map(Reaped))?;
        reaped.into_pyobject(py)
    }

    #[pyo3(signature = (limit = 1000))]
    fn reap_async<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        run!(async py, self, |q| q.reap(limit).await.map(Reaped))
    }

    fn purge(&self, py: Python<'_>, older_than: f64) -> PyResult<u64> {
        let older_than = duration("older_than", older_than)?;
        run!(sync py, self, |q| q.purge(older_than).await)
    }

    fn purge_async<'py>(&self, py: Python<'py>, older_than: f64) -> PyResult<Bound<'py, PyAny>> {
        let older_than = duration("older_than", older_than)?;
        run!(async py, self, |q| q.purge(older_than).await)
    }
}
