//! Bindings of [`crate::coordinator`]: start and stop a coordinator from Python.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;

use super::bridge::block_on;
use super::queue::PyJobQueue;
use crate::config::ConfigError;
use crate::coordinator::{CoordinatorConfig, Running, serve};

/// A coordinator server (see `scraperv4.coordinator`).
#[pyclass(frozen, name = "Coordinator", module = "scraperv4._core")]
pub(crate) struct PyCoordinator {
    queue: Py<PyJobQueue>,
    config: CoordinatorConfig,
    running: Mutex<Option<Running>>,
}

fn seconds(name: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| ConfigError::invalid(name, value, "a finite number of seconds >= 0"))
}

#[pymethods]
impl PyCoordinator {
    #[new]
    #[pyo3(signature = (queue, addr, *, token = None, protect_reads = true,
        insecure_no_auth = false, allowed_hosts = Vec::new(), body_limit = 1_048_576,
        request_timeout = 30.0, header_timeout = 10.0, max_connections = 1024,
        ws_max_connections = 64, ws_idle_timeout = 60.0, cors_origins = Vec::new(),
        stats_interval = 1.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        queue: Py<PyJobQueue>,
        addr: &str,
        token: Option<String>,
        protect_reads: bool,
        insecure_no_auth: bool,
        allowed_hosts: Vec<String>,
        body_limit: usize,
        request_timeout: f64,
        header_timeout: f64,
        max_connections: usize,
        ws_max_connections: usize,
        ws_idle_timeout: f64,
        cors_origins: Vec<String>,
        stats_interval: f64,
    ) -> PyResult<Self> {
        let addr = addr.parse().map_err(|_| {
            ConfigError::invalid("coordinator address", addr, "host:port, e.g. 0.0.0.0:8080")
        })?;
        let mut config = CoordinatorConfig::new(addr);
        config.token = token.filter(|t| !t.is_empty());
        config.protect_reads = protect_reads;
        config.insecure_no_auth = insecure_no_auth;
        config.allowed_hosts = allowed_hosts;
        config.body_limit = body_limit;
        config.request_timeout = seconds("request_timeout", request_timeout)?;
        config.header_timeout = seconds("header_timeout", header_timeout)?;
        config.max_connections = max_connections;
        config.ws_max_connections = ws_max_connections;
        config.ws_idle_timeout = seconds("ws_idle_timeout", ws_idle_timeout)?;
        config.cors_origins = cors_origins;
        config.stats_interval = seconds("stats_interval", stats_interval)?;
        config.validate()?;
        Ok(Self {
            queue,
            config,
            running: Mutex::new(None),
        })
    }

    /// Binds and serves in the background; returns the bound `host:port`.
    fn start(&self, py: Python<'_>) -> PyResult<String> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = running.as_ref() {
            return Ok(server.addr.to_string());
        }
        let queue = self.queue.borrow(py).shared();
        let config = self.config.clone();
        let server = block_on(py, async move { serve(config, queue).await })?;
        let addr = server.addr.to_string();
        *running = Some(server);
        Ok(addr)
    }

    /// Stops gracefully: no new connections, in-flight requests finish.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let server = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            block_on(py, async move {
                server
                    .stop()
                    .await
                    .map_err(|e| ConfigError::invalid("coordinator", "stop", e.to_string()))
            })?;
        }
        Ok(())
    }

    /// The bound `host:port` while running.
    #[getter]
    fn address(&self) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|server| server.addr.to_string())
    }
}
