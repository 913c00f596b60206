//! Bindings of [`crate::worker`]: the `Worker` handle and the per-item Python callback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use super::bridge::{block_on, into_awaitable};
use super::extract::{PyTemplate, to_python};
use super::queue::PyJobQueue;
use crate::config::ConfigError;
use crate::extract::TemplateRegistry;
use crate::fetch::{FetchConfig, Fetcher};
use crate::worker::throttle::ThrottleScope;
use crate::worker::{ItemHook, Progress, Stop, ThrottleConfig, Worker, WorkerConfig};

fn duration(setting: &str, seconds: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| ConfigError::invalid(setting, seconds, "a finite number of seconds >= 0"))
}

/// A Python callable applied to each record; the GIL is taken for that call only.
struct PythonHook {
    callable: Py<PyAny>,
}

impl ItemHook for PythonHook {
    fn process(&self, record: Value) -> Result<Option<Value>, String> {
        Python::attach(|py| {
            let argument = to_python(py, &record).map_err(|e| e.to_string())?;
            let returned = self
                .callable
                .call1(py, (argument,))
                .map_err(|e| format!("{e}"))?;
            if returned.is_none(py) {
                return Ok(None);
            }
            let json = py
                .import("json")
                .and_then(|json| json.call_method1("dumps", (returned,)))
                .and_then(|text| text.extract::<String>())
                .map_err(|e| {
                    format!("the callback must return a JSON-serialisable dict or None: {e}")
                })?;
            let value: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
            if !value.is_object() {
                return Err("the callback must return a dict or None".to_owned());
            }
            Ok(Some(value))
        })
    }
}

fn progress_dict<'py>(py: Python<'py>, progress: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let value = serde_json::to_value(progress).unwrap_or_default();
    to_python(py, &value)?
        .cast_into::<PyDict>()
        .map_err(Into::into)
}

/// A scraping worker (see `scraperv4.worker.Worker` for the documented surface).
#[pyclass(frozen, name = "Worker", module = "scraperv4._core")]
pub(crate) struct PyWorker {
    worker: Arc<Worker>,
}

#[pymethods]
impl PyWorker {
    #[new]
    #[pyo3(signature = (queue, *, worker_id, templates_dir = None, templates = Vec::new(),
        fetch_config_json = "{}", concurrency = 32, claim_batch = None, heartbeat = 30.0,
        grace_period = 30.0, job_timeout = 3600.0, extract_timeout = 60.0, idle_poll = 0.5, exit_when_done = false,
        reap_interval = 5.0, metrics_addr = None, jsonl_path = None, export_interval = 1.0,
        on_item = None, adaptive_concurrency = true, min_concurrency = 1, cpu_max = 95.0,
        memory_max = 85.0, adapt_interval = 2.0, adapt_scope = "own", log_stats_interval = 0.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        queue: PyRef<'_, PyJobQueue>,
        worker_id: String,
        templates_dir: Option<PathBuf>,
        templates: Vec<PyRef<'_, PyTemplate>>,
        fetch_config_json: &str,
        concurrency: usize,
        claim_batch: Option<usize>,
        heartbeat: f64,
        grace_period: f64,
        job_timeout: f64,
        extract_timeout: f64,
        idle_poll: f64,
        exit_when_done: bool,
        reap_interval: f64,
        metrics_addr: Option<String>,
        jsonl_path: Option<PathBuf>,
        export_interval: f64,
        on_item: Option<Py<PyAny>>,
        adaptive_concurrency: bool,
        min_concurrency: usize,
        cpu_max: f64,
        memory_max: f64,
        adapt_interval: f64,
        adapt_scope: &str,
        log_stats_interval: f64,
    ) -> PyResult<Self> {
        let mut registry = match &templates_dir {
            Some(dir) => TemplateRegistry::load(dir)?,
            None => TemplateRegistry::default(),
        };
        for template in templates {
            let template = template.shared();
            let origin = format!("template {:?}", template.id);
            registry.insert((*template).clone(), &origin)?;
        }
        let fetch_config: FetchConfig = serde_json::from_str(fetch_config_json)
            .map_err(|e| ConfigError::invalid("fetch config", fetch_config_json, e.to_string()))?;
        let metrics_addr = metrics_addr
            .map(|text| {
                text.parse().map_err(|_| {
                    ConfigError::invalid("metrics_addr", &text, "host:port, e.g. 0.0.0.0:9100")
                })
            })
            .transpose()?;
        let mut config = WorkerConfig::new(worker_id);
        config.concurrency = concurrency;
        config.claim_batch = claim_batch.unwrap_or_else(|| concurrency.min(100));
        config.heartbeat = duration("heartbeat", heartbeat)?;
        config.grace_period = duration("grace_period", grace_period)?;
        config.job_timeout = duration("job_timeout", job_timeout)?;
        config.extract_timeout = duration("extract_timeout", extract_timeout)?;
        config.idle_poll = duration("idle_poll", idle_poll)?;
        config.exit_when_done = exit_when_done;
        config.reap_interval = duration("reap_interval", reap_interval)?;
        config.metrics_addr = metrics_addr;
        config.jsonl_path = jsonl_path;
        config.export_interval = duration("export_interval", export_interval)?;
        config.throttle = ThrottleConfig {
            enabled: adaptive_concurrency,
            min_concurrency,
            cpu_max,
            memory_max,
            interval: duration("adapt_interval", adapt_interval)?,
            scope: ThrottleScope::parse(adapt_scope)?,
        };
        let log_stats_interval = duration("log_stats_interval", log_stats_interval)?;
        config.log_stats_interval = (!log_stats_interval.is_zero()).then_some(log_stats_interval);
        let hook = on_item.map(|callable| Arc::new(PythonHook { callable }) as Arc<dyn ItemHook>);
        let worker = Worker::new(
            queue.shared(),
            Arc::new(Fetcher::new(fetch_config)?),
            Arc::new(registry),
            config,
            hook,
        )?;
        Ok(Self {
            worker: Arc::new(worker),
        })
    }

    /// Runs until stopped or (with `exit_when_done`) until the queue is drained; returns the
    /// final progress. The GIL is released throughout.
    fn run<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let worker = Arc::clone(&self.worker);
        let progress = block_on(py, worker.run())?;
        progress_dict(py, &progress)
    }

    /// `run` as an awaitable (the final progress as a JSON string).
    fn run_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let worker = Arc::clone(&self.worker);
        into_awaitable(py, async move {
            let progress = worker.run().await?;
            Ok::<_, crate::worker::WorkerError>(
                serde_json::to_string(&progress).unwrap_or_default(),
            )
        })
    }

    /// Asks the worker to stop: gracefully (grace period), or at once (`immediate`).
    #[pyo3(signature = (immediate = false))]
    fn stop(&self, immediate: bool) {
        self.worker.stop(if immediate {
            Stop::Immediate
        } else {
            Stop::Graceful
        });
    }

    /// Counters so far (claimed, completed, failed, retried, items, `in_flight`, ...).
    fn progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        progress_dict(py, &self.worker.progress())
    }

    /// `host:port` of the metrics server once it listens.
    #[getter]
    fn metrics_address(&self) -> Option<String> {
        self.worker.metrics_address().map(|a| a.to_string())
    }

    /// The Prometheus exposition of the worker's metrics.
    fn metrics_text(&self) -> String {
        self.worker.metrics().render()
    }

    #[getter]
    fn worker_id(&self) -> &str {
        &self.worker.config().worker_id
    }
}

/// The id of the job that scrapes `url` in crawl `crawl_id` (the crawl's URL dedup key).
#[pyfunction]
pub(crate) fn crawl_job_id(crawl_id: &str, url: &str) -> String {
    crate::worker::crawl::job_id(crawl_id, url)
}

/// The crawl id of seed `urls` submitted with `template_id` when none is given.
#[pyfunction]
pub(crate) fn default_crawl_id(template_id: &str, urls: Vec<String>) -> String {
    crate::worker::crawl::default_crawl_id(template_id, urls.iter().map(String::as_str))
}

/// The kind in front of a job's stored error (`other` when there is none).
#[pyfunction]
pub(crate) fn error_kind(error: &str) -> &str {
    crate::worker::error_kind(error)
}

/// Copies the queue's results log to a JSON Lines file (resumable); returns records written
/// and log entries trimmed (with `trim`, everything the file now holds leaves the log).
#[pyfunction]
#[pyo3(signature = (queue, path, trim = false))]
pub(crate) fn export_jsonl(
    py: Python<'_>,
    queue: PyRef<'_, PyJobQueue>,
    path: PathBuf,
    trim: bool,
) -> PyResult<(u64, u64)> {
    let queue = queue.shared();
    block_on(py, async move {
        let mut sink = crate::sink::JsonlSink::open(&path)?;
        let written = sink.export(&queue).await?;
        let trimmed = match sink.cursor() {
            Some(cursor) if trim => queue.trim_results(cursor).await?,
            _ => 0,
        };
        Ok::<_, crate::worker::WorkerError>((written, trimmed))
    })
}

/// Records a results file holds, from its checkpoint (0 when it has none).
#[pyfunction]
pub(crate) fn results_file_records(path: PathBuf) -> u64 {
    crate::sink::records_in(&path)
}
