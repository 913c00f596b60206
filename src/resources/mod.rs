//! What this machine (or container) can still take: CPU, memory, disk and load.
//!
//! Owns the scaling guide's `ResourceManager` logic without its flaws: readings come from a
//! background [`sampler`] (the seed blocked every call for a second to read the CPU), limits
//! come from the cgroup when there is one ([`cgroup`]; the seed read host totals inside a
//! container), and the disk checked is configurable. The decisions — can this machine take
//! another worker, how many workers fit — are pure functions of a [`Snapshot`], unit-tested
//! without a machine.

pub mod cgroup;
pub mod sampler;

use serde::Serialize;

use crate::config::{ConfigError, ConfigResult};

pub use sampler::ResourceManager;

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// CPU busy, in percent of the CPU this process may use (the cgroup quota if any).
    pub cpu_usage: f64,
    /// Memory in use, in percent of the memory this process may use (the cgroup limit if
    /// any; the working set, not counting droppable page cache).
    pub memory_usage: f64,
    /// Disk space used on the filesystem of the checked path, in percent.
    pub disk_usage: f64,
    /// One-minute load average of the host.
    pub load_average: f64,
    /// CPUs available: the cgroup quota in cores, else the logical CPU count.
    pub cpu_cores: f64,
    /// Memory this process may use in all, in bytes.
    pub memory_total_bytes: u64,
    /// Memory still available, in bytes.
    pub memory_available_bytes: u64,
    /// Free space on the checked filesystem, in bytes.
    pub disk_free_bytes: u64,
    /// `"cgroup v1"`, `"cgroup v2"` or `"host"`: where the limits came from.
    pub limits_source: String,
}

/// The seed's thresholds: above any of them, the machine takes no more workers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Maximum CPU usage, percent (seed default 80).
    pub cpu_max: f64,
    /// Maximum memory usage, percent (seed default 85).
    pub memory_max: f64,
    /// Maximum disk usage, percent (seed default 90).
    pub disk_max: f64,
    /// Maximum one-minute load average (seed default 4.0).
    pub load_max: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu_max: 80.0,
            memory_max: 85.0,
            disk_max: 90.0,
            load_max: 4.0,
        }
    }
}

impl Thresholds {
    /// The accepted names.
    pub const NAMES: &'static str = "cpu_max, memory_max, disk_max, load_max";

    /// Sets one threshold by its seed name.
    pub fn set(&mut self, name: &str, value: f64) -> ConfigResult<()> {
        let slot = match name {
            "cpu_max" => &mut self.cpu_max,
            "memory_max" => &mut self.memory_max,
            "disk_max" => &mut self.disk_max,
            "load_max" => &mut self.load_max,
            _ => {
                return Err(ConfigError::UnknownOption {
                    component: "resource threshold".to_owned(),
                    name: name.to_owned(),
                    known: Self::NAMES.to_owned(),
                });
            }
        };
        *slot = value;
        self.validate()
    }

    /// Percentages within (0, 100]; the load limit finite and > 0.
    pub fn validate(&self) -> ConfigResult<()> {
        for (name, value) in [
            ("cpu_max", self.cpu_max),
            ("memory_max", self.memory_max),
            ("disk_max", self.disk_max),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(ConfigError::invalid(
                    name,
                    value,
                    "a percentage in (0, 100]",
                ));
            }
        }
        if !(self.load_max.is_finite() && self.load_max > 0.0) {
            return Err(ConfigError::invalid(
                "load_max",
                self.load_max,
                "a finite load average > 0",
            ));
        }
        Ok(())
    }
}

/// How big a worker is, for [`optimal_worker_count`] (the seed's constants, configurable).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorkerSizing {
    /// CPU cores one worker needs (seed: 2).
    pub cores_per_worker: f64,
    /// Memory one worker needs, in bytes (seed: 512 MiB).
    pub memory_per_worker_bytes: u64,
    /// Pending jobs one worker is expected to absorb (seed: 5).
    pub jobs_per_worker: u64,
    /// Never recommend fewer workers than this.
    pub min_workers: u64,
    /// Never recommend more workers than this (`None`: only resources limit it).
    pub max_workers: Option<u64>,
}

impl Default for WorkerSizing {
    fn default() -> Self {
        Self {
            cores_per_worker: 2.0,
            memory_per_worker_bytes: 512 * 1024 * 1024,
            jobs_per_worker: 5,
            min_workers: 1,
            max_workers: None,
        }
    }
}

impl WorkerSizing {
    /// Positive sizes; `min_workers <= max_workers`.
    pub fn validate(&self) -> ConfigResult<()> {
        if !(self.cores_per_worker.is_finite() && self.cores_per_worker > 0.0) {
            return Err(ConfigError::invalid(
                "cores_per_worker",
                self.cores_per_worker,
                "a number of cores > 0",
            ));
        }
        if self.memory_per_worker_bytes == 0 {
            return Err(ConfigError::invalid("memory_per_worker", 0, "> 0 bytes"));
        }
        if self.jobs_per_worker == 0 {
            return Err(ConfigError::invalid("jobs_per_worker", 0, "at least 1"));
        }
        if let Some(max) = self.max_workers
            && max < self.min_workers
        {
            return Err(ConfigError::invalid(
                "min_workers",
                self.min_workers,
                format!("at most max_workers ({max})"),
            ));
        }
        Ok(())
    }
}

/// Whether the machine can take more work, and what stops it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// No threshold is exceeded.
    pub can_scale_up: bool,
    /// One sentence per exceeded threshold (the seed's wording).
    pub limiting_factors: Vec<String>,
}

/// Compares a snapshot with the thresholds.
pub fn availability(snapshot: &Snapshot, thresholds: &Thresholds) -> Availability {
    let mut limiting_factors = Vec::new();
    if snapshot.cpu_usage > thresholds.cpu_max {
        limiting_factors.push(format!("CPU usage too high: {:.1}%", snapshot.cpu_usage));
    }
    if snapshot.memory_usage > thresholds.memory_max {
        limiting_factors.push(format!(
            "Memory usage too high: {:.1}%",
            snapshot.memory_usage
        ));
    }
    if snapshot.disk_usage > thresholds.disk_max {
        limiting_factors.push(format!("Disk usage too high: {:.1}%", snapshot.disk_usage));
    }
    if snapshot.load_average > thresholds.load_max {
        limiting_factors.push(format!(
            "Load average too high: {:.2}",
            snapshot.load_average
        ));
    }
    Availability {
        can_scale_up: limiting_factors.is_empty(),
        limiting_factors,
    }
}

/// The seed's worker count rule, on container-aware numbers.
///
/// When a threshold is exceeded, keep `current_workers`. Otherwise the machine fits
/// `cores / cores_per_worker` workers by CPU and `available memory / memory_per_worker` by
/// memory (each at least 1); the backlog wants `pending_jobs / jobs_per_worker + 1`; the
/// answer is the smallest of those, within `[min_workers, max_workers]`.
pub fn optimal_worker_count(
    snapshot: &Snapshot,
    thresholds: &Thresholds,
    sizing: &WorkerSizing,
    current_workers: u64,
    pending_jobs: u64,
) -> u64 {
    let clamp = |n: u64| {
        let n = n.max(sizing.min_workers);
        sizing.max_workers.map_or(n, |max| n.min(max))
    };
    if !availability(snapshot, thresholds).can_scale_up {
        return clamp(current_workers);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let by_cpu = ((snapshot.cpu_cores / sizing.cores_per_worker).floor() as u64).max(1);
    let by_memory = (snapshot.memory_available_bytes / sizing.memory_per_worker_bytes).max(1);
    let for_jobs = pending_jobs / sizing.jobs_per_worker + 1;
    clamp(by_cpu.min(by_memory).min(for_jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Snapshot {
        Snapshot {
            timestamp: 0.0,
            cpu_usage: 10.0,
            memory_usage: 20.0,
            disk_usage: 30.0,
            load_average: 0.5,
            cpu_cores: 8.0,
            memory_total_bytes: 16 << 30,
            memory_available_bytes: 12 << 30,
            disk_free_bytes: 100 << 30,
            limits_source: "host".to_owned(),
        }
    }

    type Stress = fn(&mut Snapshot);

    #[test]
    fn each_threshold_produces_its_limiting_factor() {
        let thresholds = Thresholds::default();
        let cases: [(Stress, &str); 4] = [
            (|s| s.cpu_usage = 95.0, "CPU usage too high: 95.0%"),
            (|s| s.memory_usage = 90.0, "Memory usage too high: 90.0%"),
            (|s| s.disk_usage = 91.5, "Disk usage too high: 91.5%"),
            (|s| s.load_average = 7.25, "Load average too high: 7.25"),
        ];
        for (stress, expected) in cases {
            let mut snapshot = calm();
            stress(&mut snapshot);
            let result = availability(&snapshot, &thresholds);
            assert!(!result.can_scale_up);
            assert_eq!(result.limiting_factors, vec![expected.to_owned()]);
        }
        assert!(availability(&calm(), &thresholds).can_scale_up);
    }

    #[test]
    fn worker_count_follows_the_seed_rule() {
        let (t, sizing) = (Thresholds::default(), WorkerSizing::default());
        // 8 cores / 2 = 4 by CPU; 12 GiB / 512 MiB = 24 by memory; 50 jobs / 5 + 1 = 11.
        assert_eq!(optimal_worker_count(&calm(), &t, &sizing, 3, 50), 4);
        assert_eq!(optimal_worker_count(&calm(), &t, &sizing, 3, 7), 2);
        let mut tight = calm();
        tight.memory_available_bytes = 1 << 30;
        assert_eq!(optimal_worker_count(&tight, &t, &sizing, 3, 50), 2);
        let mut busy = calm();
        busy.cpu_usage = 99.0;
        assert_eq!(optimal_worker_count(&busy, &t, &sizing, 3, 500), 3);
    }

    #[test]
    fn worker_count_stays_within_configured_bounds() {
        let t = Thresholds::default();
        let sizing = WorkerSizing {
            min_workers: 2,
            max_workers: Some(3),
            ..WorkerSizing::default()
        };
        assert_eq!(optimal_worker_count(&calm(), &t, &sizing, 1, 0), 2);
        let mut big = calm();
        big.cpu_cores = 64.0;
        assert_eq!(optimal_worker_count(&big, &t, &sizing, 1, 1000), 3);
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let mut t = Thresholds::default();
        assert!(t.set("cpu_max", -1.0).is_err());
        assert!(t.set("memory_max", 101.0).is_err());
        assert!(t.set("disk_max", f64::NAN).is_err());
        assert!(t.set("load_max", 0.0).is_err());
        assert!(matches!(
            t.set("cpu", 50.0),
            Err(ConfigError::UnknownOption { .. })
        ));
        let sizing = WorkerSizing {
            min_workers: 5,
            max_workers: Some(2),
            ..WorkerSizing::default()
        };
        assert!(
            sizing
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_workers")
        );
    }
}
