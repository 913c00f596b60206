//! Bindings of [`crate::autoscale`] (the decision engine) and [`crate::metrics`] (cluster
//! metrics).

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;
use serde::Serialize;

use super::bridge::block_on;
use super::extract::to_python;
use super::queue::PyJobQueue;
use crate::autoscale::{Observation, Policy, ScalingConfig};
use crate::config::ConfigError;
use crate::metrics::{ClusterMetrics, Sample};

fn to_dict<'py>(py: Python<'py>, value: &impl Serialize) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &serde_json::to_value(value).unwrap_or_default())
}

/// The autoscaler's decision engine (see `scraperv4.autoscale`).
#[pyclass(name = "ScalingPolicy", module = "scraperv4._core")]
pub(crate) struct PyScalingPolicy {
    policy: Mutex<Policy>,
}

#[pymethods]
impl PyScalingPolicy {
    /// A policy from a JSON object of `ScalingConfig` fields (missing ones take defaults).
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config: ScalingConfig = serde_json::from_str(config_json)
            .map_err(|e| ConfigError::invalid("scaling_config", config_json, e.to_string()))?;
        Ok(Self {
            policy: Mutex::new(Policy::new(config)?),
        })
    }

    /// The rules in use, as a dict.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let policy = self.policy.lock().unwrap_or_else(PoisonError::into_inner);
        to_dict(py, policy.config())
    }

    /// The decision at `now` (monotonic seconds) for `runnable` jobs and `workers` workers.
    #[pyo3(signature = (now, runnable, workers, veto = None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        now: f64,
        runnable: u64,
        workers: u32,
        veto: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let decision = self
            .policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(
                Observation {
                    now,
                    runnable,
                    workers,
                },
                veto,
            );
        to_dict(py, &decision)
    }
}

/// Cluster metrics of one queue (see `scraperv4.scaling.metrics`).
#[pyclass(frozen, name = "ClusterMetrics", module = "scraperv4._core")]
pub(crate) struct PyClusterMetrics {
    metrics: Arc<ClusterMetrics>,
    server: Mutex<Option<(String, tokio::task::AbortHandle)>>,
}

#[pymethods]
impl PyClusterMetrics {
    #[new]
    #[pyo3(signature = (history_len = 2880))]
    fn new(history_len: usize) -> Self {
        Self {
            metrics: Arc::new(ClusterMetrics::new(history_len)),
            server: Mutex::new(None),
        }
    }

    /// Reads `queue` now (GIL released) and records the sample; returns its metrics.
    fn sample<'py>(
        &self,
        py: Python<'py>,
        queue: PyRef<'_, PyJobQueue>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let queue = queue.shared();
        let stats = block_on(py, async move { queue.stats().await })?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let metrics = self.metrics.observe(Sample { timestamp, stats });
        to_dict(py, &metrics)
    }

    /// The snapshots kept, oldest first.
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_dict(py, &self.metrics.history())
    }

    /// The Prometheus text exposition.
    fn render(&self) -> String {
        self.metrics.render()
    }

    /// Serves `/metrics` on `addr` ("host:port", port 0 picks one) until `stop_serving`;
    /// returns the bound address.
    fn serve(&self, py: Python<'_>, addr: &str) -> PyResult<String> {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((bound, _)) = server.as_ref() {
            return Ok(bound.clone());
        }
        let parsed = addr
            .parse()
            .map_err(|_| ConfigError::invalid("metrics_addr", addr, "host:port"))?;
        let metrics = Arc::clone(&self.metrics);
        let (bound, handle) = block_on(py, async move {
            crate::metrics::serve(parsed, metrics)
                .await
                .map_err(|e| ConfigError::invalid("metrics_addr", parsed, e.to_string()))
        })?;
        let bound = bound.to_string();
        *server = Some((bound.clone(), handle));
        Ok(bound)
    }

    /// Stops the server started by `serve`.
    fn stop_serving(&self) {
        if let Some((_, handle)) = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            handle.abort();
        }
    }
}
