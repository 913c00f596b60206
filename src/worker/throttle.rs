//! Adaptive concurrency: how many jobs the worker lets run at once while the machine is
//! under memory or CPU pressure.
//!
//! The worker's `concurrency` is a ceiling. Every `adapt_interval` the worker reads the
//! resource manager's latest snapshot and moves its limit the way TCP congestion control
//! (and Crawlee's `AutoscaledPool`, inside one process) does: multiplicative decrease while
//! memory or CPU is past its threshold, additive increase while it is not and the worker is
//! actually using its whole limit. The decision is a pure function of a snapshot so it is
//! unit-tested without a machine.

use std::time::Duration;

use serde::Serialize;

use crate::config::{ConfigError, ConfigResult};
use crate::resources::Snapshot;

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

    /// Why the machine is under pressure in `snapshot`, if it is.
    pub fn pressure(&self, snapshot: &Snapshot) -> Option<String> {
        if snapshot.memory_usage > self.memory_max {
            return Some(format!(
                "memory at {:.1}% > {:.1}%",
                snapshot.memory_usage, self.memory_max
            ));
        }
        if snapshot.cpu_usage > self.cpu_max {
            return Some(format!(
                "CPU at {:.1}% > {:.1}%",
                snapshot.cpu_usage, self.cpu_max
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
        assert_eq!(config.pressure(&snapshot(50.0, 50.0)), None);
        assert!(
            config
                .pressure(&snapshot(50.0, 90.0))
                .unwrap()
                .starts_with("memory at 90.0%")
        );
        assert!(
            config
                .pressure(&snapshot(99.0, 10.0))
                .unwrap()
                .starts_with("CPU at 99.0%")
        );
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
