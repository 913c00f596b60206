//! Adaptive concurrency: how many jobs the worker lets run at once while the machine is
//! under memory or CPU pressure.
//!
//! The worker's `concurrency` is a ceiling. Every `adapt_interval` the worker reads the
//! resource manager's latest snapshot and moves its limit the way TCP congestion control
//! (and Crawlee's `AutoscaledPool`, inside one process) does: multiplicative decrease while
//! memory or CPU is past its threshold, additive increase while it is not and the worker is
//! actually using its whole limit. The decision is a pure function of a snapshot so it is
//! unit-tested without a machine.
//!
//! Whose usage counts ([`ThrottleScope`]): by default what the worker can influence — its
//! container's share when the container has a CPU quota or a memory limit, otherwise this
//! process's own share of the machine — so a build or a browser running next to a worker
//! does not slow it down. The whole machine's usage is an opt-in.

use std::time::Duration;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::config::{ConfigError, ConfigResult};
use crate::resources::Snapshot;
use crate::resources::cgroup::{self, CgroupPaths, CgroupReading};

/// Whose CPU and memory use lowers the concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleScope {
    /// What the worker can influence: its container's quota and limit when it has them,
    /// else this process's own share of the machine.
    Own,
    /// The whole machine (cgroup-aware): other programs' load lowers the concurrency too.
    Machine,
}

impl ThrottleScope {
    /// `own` or `machine`.
    pub fn parse(text: &str) -> ConfigResult<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "own" => Ok(Self::Own),
            "machine" | "host" => Ok(Self::Machine),
            _ => Err(ConfigError::invalid("adapt_scope", text, "own or machine")),
        }
    }
}

/// CPU and memory use in percent, and what each is a share of.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// CPU busy, percent.
    pub cpu: f64,
    /// What `cpu` measures (`"this process"`, `"the container's CPU quota"`, ...).
    pub cpu_of: &'static str,
    /// Memory in use, percent.
    pub memory: f64,
    /// What `memory` measures.
    pub memory_of: &'static str,
}

impl Usage {
    /// The whole machine's figures from a snapshot (cgroup-aware).
    pub fn machine(snapshot: &Snapshot) -> Self {
        Self {
            cpu: snapshot.cpu_usage,
            cpu_of: "the machine",
            memory: snapshot.memory_usage,
            memory_of: "the machine",
        }
    }

    /// What the worker can influence: the container's figures where it is limited, this
    /// process's share of the machine elsewhere (`process`: CPU in percent of one core, as
    /// the OS counts it, and resident bytes).
    pub fn own(
        snapshot: &Snapshot,
        group: Option<&CgroupReading>,
        host_memory: u64,
        process: Option<(f64, u64)>,
    ) -> Self {
        let cpu_quota = group.is_some_and(|g| g.cpu_limit_cores.is_some());
        let memory_limited = group
            .and_then(|g| g.memory_limit_bytes)
            .is_some_and(|limit| limit < host_memory);
        let (cpu, cpu_of) = match process {
            _ if cpu_quota => (snapshot.cpu_usage, "the container's CPU quota"),
            Some((cpu, _)) => (
                (cpu / snapshot.cpu_cores.max(1.0)).clamp(0.0, 100.0),
                "this process",
            ),
            None => (snapshot.cpu_usage, "the machine"),
        };
        #[allow(clippy::cast_precision_loss)]
        let (memory, memory_of) = match process {
            _ if memory_limited => (snapshot.memory_usage, "the container's memory limit"),
            Some((_, resident)) if host_memory > 0 => (
                (resident as f64 / host_memory as f64 * 100.0).clamp(0.0, 100.0),
                "this process",
            ),
            _ => (snapshot.memory_usage, "the machine"),
        };
        Self {
            cpu,
            cpu_of,
            memory,
            memory_of,
        }
    }
}

/// Reads this process's CPU and memory use, and its cgroup, for [`ThrottleScope::Own`].
pub(super) struct OwnUsage {
    system: System,
    pid: Option<Pid>,
    cgroup: CgroupPaths,
}

impl OwnUsage {
    pub(super) fn new() -> Self {
        let mut reader = Self {
            system: System::new(),
            pid: sysinfo::get_current_pid().ok(),
            cgroup: CgroupPaths::default(),
        };
        // CPU use is a difference between two readings: take the first now.
        reader.process();
        reader
    }

    fn process(&mut self) -> Option<(f64, u64)> {
        let pid = self.pid?;
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.system
            .process(pid)
            .map(|p| (f64::from(p.cpu_usage()), p.memory()))
    }

    /// The usage the throttle reacts to, given the latest machine snapshot.
    pub(super) fn read(&mut self, scope: ThrottleScope, snapshot: &Snapshot) -> Usage {
        match scope {
            ThrottleScope::Machine => Usage::machine(snapshot),
            ThrottleScope::Own => {
                let group = cgroup::read(&self.cgroup);
                self.system
                    .refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
                let host_memory = self.system.total_memory();
                let process = self.process();
                Usage::own(snapshot, group.as_ref(), host_memory, process)
            }
        }
    }
}

/// When and how far the limit moves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThrottleConfig {
    /// Off: the limit stays at the worker's `concurrency`.
    pub enabled: bool,
    /// The limit never goes below this.
    pub min_concurrency: usize,
    /// CPU usage (percent of what this process may use) above which the limit shrinks.
    pub cpu_max: f64,
    /// Memory usage (percent of what this process may use) above which the limit shrinks.
    pub memory_max: f64,
    /// Time between adjustments.
    pub interval: Duration,
    /// Whose usage counts.
    pub scope: ThrottleScope,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_concurrency: 1,
            // Crawlee's default for CPU: a worker fetching over a network is rarely CPU bound,
            // and at 100 % more concurrency only queues work on the event loop.
            cpu_max: 95.0,
            memory_max: 85.0,
            interval: Duration::from_secs(2),
            scope: ThrottleScope::Own,
        }
    }
}

impl ThrottleConfig {
    /// Thresholds are percentages in (0, 100]; the floor is within [1, `concurrency`].
    pub fn validate(&self, concurrency: usize) -> ConfigResult<()> {
        for (name, value) in [("cpu_max", self.cpu_max), ("memory_max", self.memory_max)] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(ConfigError::invalid(
                    name,
                    value,
                    "a percentage in (0, 100]",
                ));
            }
        }
        if !(1..=concurrency).contains(&self.min_concurrency) {
            return Err(ConfigError::invalid(
                "min_concurrency",
                self.min_concurrency,
                format!("between 1 and concurrency ({concurrency})"),
            ));
        }
        if self.interval < Duration::from_millis(200) {
            return Err(ConfigError::invalid(
                "adapt_interval",
                format!("{:?}", self.interval),
                "at least 0.2 s",
            ));
        }
        Ok(())
    }

    /// The resource under pressure in `usage` (`"memory"` or `"CPU"`), and why, if any.
    pub fn pressure(&self, usage: &Usage) -> Option<(&'static str, String)> {
        if usage.memory > self.memory_max {
            return Some((
                "memory",
                format!(
                    "memory of {} at {:.1}% > {:.1}%",
                    usage.memory_of, usage.memory, self.memory_max
                ),
            ));
        }
        if usage.cpu > self.cpu_max {
            return Some((
                "CPU",
                format!(
                    "CPU of {} at {:.1}% > {:.1}%",
                    usage.cpu_of, usage.cpu, self.cpu_max
                ),
            ));
        }
        None
    }
}

/// The next limit, from the current one.
///
/// Under pressure: three quarters of it (at least `min`). Otherwise, when the worker used its
/// whole limit since the last step (`saturated`): up by a sixteenth of the ceiling (at least
/// one), so the way back from the floor takes about sixteen steps. Never outside
/// `[min, max]`.
pub fn next_limit(limit: usize, min: usize, max: usize, pressure: bool, saturated: bool) -> usize {
    let next = if pressure {
        limit * 3 / 4
    } else if saturated {
        limit + (max / 16).max(1)
    } else {
        limit
    };
    next.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(cpu: f64, memory: f64) -> Snapshot {
        Snapshot {
            timestamp: 0.0,
            cpu_usage: cpu,
            memory_usage: memory,
            disk_usage: 10.0,
            load_average: 0.1,
            cpu_cores: 2.0,
            memory_total_bytes: 1 << 30,
            memory_available_bytes: 1 << 29,
            disk_free_bytes: 1 << 30,
            limits_source: "host".to_owned(),
        }
    }

    #[test]
    fn limit_moves_within_its_bounds() {
        // (limit, min, max, pressure, saturated) -> next
        let table = [
            ((64, 1, 64, true, true), 48),
            ((48, 1, 64, true, false), 36),
            ((1, 1, 64, true, true), 1),
            ((5, 4, 64, true, true), 4),
            ((36, 1, 64, false, true), 40),
            ((62, 1, 64, false, true), 64),
            ((64, 1, 64, false, true), 64),
            ((36, 1, 64, false, false), 36),
            ((3, 1, 8, false, true), 4),
            ((1, 1, 1, false, true), 1),
        ];
        for ((limit, min, max, pressure, saturated), expected) in table {
            assert_eq!(
                next_limit(limit, min, max, pressure, saturated),
                expected,
                "{limit} {min} {max} {pressure} {saturated}"
            );
        }
    }

    #[test]
    fn repeated_pressure_reaches_the_floor_and_recovery_the_ceiling() {
        let mut limit = 64;
        let mut steps = 0;
        while limit > 1 {
            limit = next_limit(limit, 1, 64, true, true);
            steps += 1;
        }
        assert!(steps <= 15, "{steps} steps down");
        steps = 0;
        while limit < 64 {
            limit = next_limit(limit, 1, 64, false, true);
            steps += 1;
        }
        assert_eq!(steps, 16);
    }

    #[test]
    fn pressure_names_the_resource() {
        let config = ThrottleConfig::default();
        let machine = |cpu, memory| Usage::machine(&snapshot(cpu, memory));
        assert_eq!(config.pressure(&machine(50.0, 50.0)), None);
        let (resource, why) = config.pressure(&machine(50.0, 90.0)).unwrap();
        assert_eq!(resource, "memory");
        assert!(why.starts_with("memory of the machine at 90.0%"), "{why}");
        let (resource, why) = config.pressure(&machine(99.0, 10.0)).unwrap();
        assert_eq!(resource, "CPU");
        assert!(why.starts_with("CPU of the machine at 99.0%"), "{why}");
    }

    #[test]
    fn own_usage_ignores_other_programs_outside_a_limited_container() {
        // A busy machine (a build alongside): 99 % CPU, 90 % memory. This process uses half
        // a core of two and 100 MiB of 1 GiB.
        let busy = snapshot(99.0, 90.0);
        let process = Some((50.0, 100 << 20));
        let usage = Usage::own(&busy, None, 1 << 30, process);
        assert_eq!(usage.cpu_of, "this process");
        assert!((usage.cpu - 25.0).abs() < 1e-9, "{usage:?}");
        assert_eq!(usage.memory_of, "this process");
        assert!(
            (usage.memory - 100.0 / 1024.0 * 100.0).abs() < 1e-9,
            "{usage:?}"
        );
        assert_eq!(ThrottleConfig::default().pressure(&usage), None);
        // A cgroup without limits (a desktop session's slice) changes nothing.
        let unlimited = CgroupReading {
            version: 2,
            ..CgroupReading::default()
        };
        assert_eq!(Usage::own(&busy, Some(&unlimited), 1 << 30, process), usage);
        // The same machine seen whole is under pressure.
        assert!(
            ThrottleConfig::default()
                .pressure(&Usage::machine(&busy))
                .is_some()
        );
    }

    #[test]
    fn own_usage_is_the_containers_where_it_is_limited() {
        let snapshot = snapshot(97.0, 88.0); // the sampler's figures for the group
        let limited = CgroupReading {
            version: 2,
            cpu_limit_cores: Some(1.0),
            memory_limit_bytes: Some(512 << 20),
            ..CgroupReading::default()
        };
        let usage = Usage::own(&snapshot, Some(&limited), 1 << 30, Some((5.0, 1 << 20)));
        assert_eq!(
            (usage.cpu, usage.cpu_of, usage.memory, usage.memory_of),
            (
                97.0,
                "the container's CPU quota",
                88.0,
                "the container's memory limit"
            )
        );
        // A memory limit above the machine's memory is no limit.
        let loose = CgroupReading {
            memory_limit_bytes: Some(2 << 30),
            cpu_limit_cores: None,
            ..limited
        };
        let usage = Usage::own(&snapshot, Some(&loose), 1 << 30, Some((5.0, 1 << 20)));
        assert_eq!(
            (usage.cpu_of, usage.memory_of),
            ("this process", "this process")
        );
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(ThrottleScope::parse("own").unwrap(), ThrottleScope::Own);
        assert_eq!(
            ThrottleScope::parse("Machine").unwrap(),
            ThrottleScope::Machine
        );
        assert!(ThrottleScope::parse("everything").is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(ThrottleConfig::default().validate(8).is_ok());
        let floor_above_ceiling = ThrottleConfig {
            min_concurrency: 9,
            ..ThrottleConfig::default()
        };
        assert!(floor_above_ceiling.validate(8).is_err());
        let no_threshold = ThrottleConfig {
            memory_max: 0.0,
            ..ThrottleConfig::default()
        };
        assert!(no_threshold.validate(8).is_err());
    }
}
