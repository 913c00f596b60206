//! Bindings of [`crate::resources`]: the `ResourceManager` handle.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::config::ConfigError;
use crate::resources::sampler::ResourceConfig;
use crate::resources::{ResourceManager, Snapshot, Thresholds, WorkerSizing, cgroup::CgroupPaths};

/// A background sampler of this machine's (or container's) resources.
#[pyclass(frozen, name = "ResourceManager", module = "scraperv4._core")]
pub(crate) struct PyResourceManager {
    inner: ResourceManager,
}

#[pymethods]
impl PyResourceManager {
    #[new]
    #[pyo3(signature = (
        thresholds = None,
        *,
        disk_path = None,
        sample_interval = 1.0,
        history_size = 600,
        cores_per_worker = 2.0,
        memory_per_worker_mb = 512.0,
        jobs_per_worker = 5,
        min_workers = 1,
        max_workers = None,
        cgroup_root = None,
        cgroup_membership = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        thresholds: Option<Vec<(String, f64)>>,
        disk_path: Option<PathBuf>,
        sample_interval: f64,
        history_size: usize,
        cores_per_worker: f64,
        memory_per_worker_mb: f64,
        jobs_per_worker: u64,
        min_workers: u64,
        max_workers: Option<u64>,
        cgroup_root: Option<PathBuf>,
        cgroup_membership: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut checked = Thresholds::default();
        for (name, value) in thresholds.unwrap_or_default() {
            checked.set(&name, value)?;
        }
        if !(memory_per_worker_mb.is_finite() && memory_per_worker_mb > 0.0) {
            return Err(ConfigError::invalid(
                "memory_per_worker_mb",
                memory_per_worker_mb,
                "a size in MiB > 0",
            )
            .into());
        }
        let interval = Duration::try_from_secs_f64(sample_interval).map_err(|_| {
            ConfigError::invalid("sample_interval", sample_interval, "seconds >= 0.2")
        })?;
        let defaults = CgroupPaths::default();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let config = ResourceConfig {
            thresholds: checked,
            sizing: WorkerSizing {
                cores_per_worker,
                memory_per_worker_bytes: (memory_per_worker_mb * 1024.0 * 1024.0) as u64,
                jobs_per_worker,
                min_workers,
                max_workers,
            },
            disk_path: disk_path.unwrap_or_else(|| PathBuf::from("/")),
            interval,
            history_len: history_size,
            cgroup: CgroupPaths {
                root: cgroup_root.unwrap_or(defaults.root),
                membership: cgroup_membership.unwrap_or(defaults.membership),
            },
        };
        let inner = py.detach(|| ResourceManager::start(config))?;
        Ok(Self { inner })
    }

    /// The thresholds in use, by their seed names.
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = &self.inner.config().thresholds;
        let dict = PyDict::new(py);
        dict.set_item("cpu_max", t.cpu_max)?;
        dict.set_item("memory_max", t.memory_max)?;
        dict.set_item("disk_max", t.disk_max)?;
        dict.set_item("load_max", t.load_max)?;
        Ok(dict)
    }

    /// The latest reading plus the seed's `can_scale_up` and `limiting_factors`.
    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (snapshot, availability) = py.detach(|| self.inner.availability());
        let dict = snapshot_dict(py, &snapshot)?;
        dict.set_item("can_scale_up", availability.can_scale_up)?;
        dict.set_item("limiting_factors", availability.limiting_factors)?;
        Ok(dict)
    }

    /// The seed's optimal worker count for this machine and backlog.
    fn optimal_worker_count(&self, py: Python<'_>, current_workers: u64, pending_jobs: u64) -> u64 {
        py.detach(|| {
            self.inner
                .optimal_worker_count(current_workers, pending_jobs)
        })
    }

    /// The history as columns of native-endian float64 bytes, oldest first.
    fn history_columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let history = py.detach(|| self.inner.history());
        let dict = PyDict::new(py);
        let columns: [(&str, Column); 5] = [
            ("timestamp", |s| s.timestamp),
            ("cpu_usage", |s| s.cpu_usage),
            ("memory_usage", |s| s.memory_usage),
            ("disk_usage", |s| s.disk_usage),
            ("load_average", |s| s.load_average),
        ];
        for (name, column) in columns {
            let bytes: Vec<u8> = history
                .iter()
                .flat_map(|s| column(s).to_ne_bytes())
                .collect();
            dict.set_item(name, PyBytes::new(py, &bytes))?;
        }
        Ok(dict)
    }

    /// Stops the sampler thread (the manager keeps its last readings).
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop());
    }
}

/// Reads one numeric column of a snapshot.
type Column = fn(&Snapshot) -> f64;

fn snapshot_dict<'py>(py: Python<'py>, snapshot: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("timestamp", snapshot.timestamp)?;
    dict.set_item("cpu_usage", snapshot.cpu_usage)?;
    dict.set_item("memory_usage", snapshot.memory_usage)?;
    dict.set_item("disk_usage", snapshot.disk_usage)?;
    dict.set_item("load_average", snapshot.load_average)?;
    dict.set_item("cpu_cores", snapshot.cpu_cores)?;
    dict.set_item("memory_total_bytes", snapshot.memory_total_bytes)?;
    dict.set_item("memory_available_bytes", snapshot.memory_available_bytes)?;
    dict.set_item("disk_free_bytes", snapshot.disk_free_bytes)?;
    dict.set_item("limits_source", &snapshot.limits_source)?;
    Ok(dict)
}
