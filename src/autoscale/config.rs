//! The autoscaler's rules as the user sets them, and their validation.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigResult};

/// The rules (seed names; times in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingConfig {
    /// Fewest workers.
    pub min_workers: u32,
    /// Most workers.
    pub max_workers: u32,
    /// Scale up above this many runnable jobs per worker.
    pub scale_up_threshold: f64,
    /// Scale down below this many runnable jobs per worker.
    pub scale_down_threshold: f64,
    /// No scale-up sooner than this after the last scaling action.
    pub scale_up_cooldown: f64,
    /// No scale-down sooner than this after the last scaling action.
    pub scale_down_cooldown: f64,
    /// Time between evaluations (used by the loop that calls [`Policy::decide`]).
    pub evaluation_interval: f64,
    /// Scale up only to the lowest recommendation of this window (0: act at once).
    pub scale_up_stabilization: f64,
    /// Scale down only to the highest recommendation of this window.
    pub scale_down_stabilization: f64,
    /// The period the rate limits count changes over.
    pub rate_period: f64,
    /// Scale up by at most this percent of the workers at the start of the period ...
    pub scale_up_max_percent: f64,
    /// ... or by this many workers, whichever allows more.
    pub scale_up_max_workers: u32,
    /// Scale down by at most this percent of the workers at the start of the period ...
    pub scale_down_max_percent: f64,
    /// ... or by this many workers, whichever allows more.
    pub scale_down_max_workers: u32,
}

impl Default for ScalingConfig {
    /// The scaling guide's values; HPA's defaults for the rest (no up-stabilization, 300 s
    /// down-stabilization, up by 100 % or 4 workers and down by 100 % per 15 s... here per
    /// 60 s, matching the guide's slower cadence).
    fn default() -> Self {
        Self {
            min_workers: 2,
            max_workers: 20,
            scale_up_threshold: 10.0,
            scale_down_threshold: 2.0,
            scale_up_cooldown: 60.0,
            scale_down_cooldown: 300.0,
            evaluation_interval: 30.0,
            scale_up_stabilization: 0.0,
            scale_down_stabilization: 300.0,
            rate_period: 60.0,
            scale_up_max_percent: 100.0,
            scale_up_max_workers: 4,
            scale_down_max_percent: 100.0,
            scale_down_max_workers: 0,
        }
    }
}

impl ScalingConfig {
    /// Every value in range, and the thresholds in order.
    pub fn validate(&self) -> ConfigResult<()> {
        if self.max_workers == 0 || self.min_workers > self.max_workers {
            return Err(ConfigError::invalid(
                "max_workers",
                self.max_workers,
                format!("at least 1 and at least min_workers ({})", self.min_workers),
            ));
        }
        for (name, value) in [
            ("scale_up_threshold", self.scale_up_threshold),
            ("scale_down_threshold", self.scale_down_threshold),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::invalid(
                    name,
                    value,
                    "a number of jobs per worker >= 0",
                ));
            }
        }
        if self.scale_down_threshold >= self.scale_up_threshold {
            return Err(ConfigError::invalid(
                "scale_down_threshold",
                self.scale_down_threshold,
                format!(
                    "below scale_up_threshold ({}), or the fleet flaps",
                    self.scale_up_threshold
                ),
            ));
        }
        for (name, value) in [
            ("scale_up_cooldown", self.scale_up_cooldown),
            ("scale_down_cooldown", self.scale_down_cooldown),
            ("scale_up_stabilization", self.scale_up_stabilization),
            ("scale_down_stabilization", self.scale_down_stabilization),
            ("scale_up_max_percent", self.scale_up_max_percent),
            ("scale_down_max_percent", self.scale_down_max_percent),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::invalid(name, value, "a finite number >= 0"));
            }
        }
        for (name, value) in [
            ("evaluation_interval", self.evaluation_interval),
            ("rate_period", self.rate_period),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::invalid(name, value, "a number of seconds > 0"));
            }
        }
        if self.scale_up_max_percent == 0.0 && self.scale_up_max_workers == 0 {
            return Err(ConfigError::invalid(
                "scale_up_max_workers",
                0,
                "above 0 when scale_up_max_percent is 0 (the fleet could never grow)",
            ));
        }
        if self.scale_down_max_percent == 0.0 && self.scale_down_max_workers == 0 {
            return Err(ConfigError::invalid(
                "scale_down_max_workers",
                0,
                "above 0 when scale_down_max_percent is 0 (the fleet could never shrink)",
            ));
        }
        Ok(())
    }
}
