//! The autoscaler's decision engine: how many workers a fleet should have now, and why.
//!
//! Pure: [`Policy::decide`] takes an [`Observation`] (time, runnable backlog, workers) and
//! returns a [`Decision`] with its reason; it keeps only the little history the rules need
//! (recent recommendations for the stabilization windows, recent changes for the rate
//! limits, the last action for the cooldowns). Acting on a decision — spawning processes,
//! `docker service scale`, `kubectl scale`, draining — is the executors' business (Python,
//! `scraperv4.autoscale`).
//!
//! The rules are the scaling guide's (`min_workers`, `max_workers`, `scale_up_threshold` and
//! `scale_down_threshold` in runnable jobs per worker, cooldowns, evaluation interval) plus
//! what the Kubernetes `HorizontalPodAutoscaler` adds to avoid flapping: a stabilization window
//! per direction (scale up to the *lowest* recommendation of the window, down to the
//! *highest*) and rate limits per period (at most P percent of the fleet at the start of the
//! period, or N workers, whichever allows more). The backlog is what can run now: pending
//! jobs plus retries whose backoff passed — a pile of delayed retries does not buy workers.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

mod config;

pub use config::ScalingConfig;

use crate::config::ConfigResult;

/// What the autoscaler sees at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds on a monotonic clock.
    pub now: f64,
    /// Jobs that can run now (pending plus retries whose backoff has passed).
    pub runnable: u64,
    /// Workers the fleet has now (the executor's count, drained ones excluded).
    pub workers: u32,
}

/// Which way, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the fleet as it is.
    None,
    /// Add workers.
    ScaleUp,
    /// Remove workers (gracefully).
    ScaleDown,
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Which way.
    pub action: Action,
    /// Workers now.
    pub current_workers: u32,
    /// Workers wanted after this decision (always within `[min_workers, max_workers]`).
    pub target_workers: u32,
    /// What the load alone asks for, before windows, cooldowns and rate limits.
    pub desired_workers: u32,
    /// Runnable jobs per worker seen.
    pub jobs_per_worker: f64,
    /// Why, in words.
    pub reason: String,
}

/// The decision engine with the history its rules need.
#[derive(Debug, Clone)]
pub struct Policy {
    config: ScalingConfig,
    recommendations: VecDeque<(f64, u32)>,
    changes: VecDeque<(f64, i64)>,
    last_action: Option<f64>,
}

impl Policy {
    /// A policy with `config` (checked).
    pub fn new(config: ScalingConfig) -> ConfigResult<Self> {
        config.validate()?;
        Ok(Self {
            config,
            recommendations: VecDeque::new(),
            changes: VecDeque::new(),
            last_action: None,
        })
    }

    /// The rules.
    pub fn config(&self) -> &ScalingConfig {
        &self.config
    }

    /// What the load asks for, by the scaling guide's formulas, within the bounds.
    fn desired(&self, seen: &Observation) -> (u32, f64, String) {
        let c = &self.config;
        #[allow(clippy::cast_precision_loss)] // backlogs stay far below 2^52
        let runnable = seen.runnable as f64;
        if seen.workers == 0 {
            let wanted = u32::from(seen.runnable > 0);
            return (
                wanted.max(c.min_workers).min(c.max_workers),
                runnable,
                "no workers".to_owned(),
            );
        }
        let per_worker = runnable / f64::from(seen.workers);
        let wanted = if per_worker > c.scale_up_threshold {
            let by_load = (runnable / c.scale_up_threshold.max(f64::MIN_POSITIVE)).floor() + 1.0;
            let reason = format!(
                "high load: {per_worker:.1} runnable jobs per worker > {}",
                c.scale_up_threshold
            );
            (clamp_workers(by_load), reason)
        } else if per_worker < c.scale_down_threshold {
            let by_load = (runnable / c.scale_down_threshold.max(1.0)).floor() + 1.0;
            let reason = format!(
                "low load: {per_worker:.1} runnable jobs per worker < {}",
                c.scale_down_threshold
            );
            (clamp_workers(by_load).min(seen.workers), reason)
        } else {
            (
                seen.workers,
                format!("load within thresholds: {per_worker:.1} runnable jobs per worker"),
            )
        };
        (
            wanted.0.clamp(c.min_workers, c.max_workers),
            per_worker,
            wanted.1,
        )
    }

    /// Decides at `seen.now`; a scale-up is refused with `veto` as the reason when given
    /// (e.g. the resource manager says this machine cannot take another worker).
    #[allow(clippy::too_many_lines)] // one rule after the other, in the order they apply
    pub fn decide(&mut self, seen: Observation, veto: Option<&str>) -> Decision {
        let c = self.config;
        let (desired, per_worker, load_reason) = self.desired(&seen);
        let now = seen.now;
        self.recommendations.push_back((now, desired));
        let keep = c.scale_up_stabilization.max(c.scale_down_stabilization);
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now - at > keep)
        {
            self.recommendations.pop_front();
        }
        while self
            .changes
            .front()
            .is_some_and(|(at, _)| now - at >= c.rate_period)
        {
            self.changes.pop_front();
        }
        let current = seen.workers;
        let mut decision = Decision {
            action: Action::None,
            current_workers: current,
            target_workers: current.clamp(c.min_workers, c.max_workers),
            desired_workers: desired,
            jobs_per_worker: per_worker,
            reason: load_reason,
        };
        // Out of bounds (a new min/max, workers that died): back inside first.
        if current < c.min_workers || current > c.max_workers {
            decision.action = if current < c.min_workers {
                Action::ScaleUp
            } else {
                Action::ScaleDown
            };
            decision.reason = format!(
                "{current} workers is outside [{}, {}]",
                c.min_workers, c.max_workers
            );
            return self.act(decision, now);
        }
        if desired == current {
            return decision;
        }
        let up = desired > current;
        // Stabilization: up to the lowest, down to the highest recommendation of the window.
        let window = if up {
            c.scale_up_stabilization
        } else {
            c.scale_down_stabilization
        };
        let in_window = self
            .recommendations
            .iter()
            .filter(|(at, _)| now - at <= window)
            .map(|(_, n)| *n);
        let stable = if up {
            in_window.min().unwrap_or(desired)
        } else {
            in_window.max().unwrap_or(desired)
        };
        if (up && stable <= current) || (!up && stable >= current) {
            decision.reason = format!(
                "{}; held by the {window:.0} s stabilization window (recommended {stable} within it)",
                decision.reason
            );
            return decision;
        }
        if stable != desired {
            decision.reason = format!(
                "{}; the {window:.0} s stabilization window allows {stable} (the {} recommendation within it)",
                decision.reason,
                if up { "lowest" } else { "highest" }
            );
        }
        let cooldown = if up {
            c.scale_up_cooldown
        } else {
            c.scale_down_cooldown
        };
        if let Some(last) = self.last_action
            && now - last < cooldown
        {
            decision.reason = format!(
                "{}; in cooldown ({:.0} s of {cooldown:.0} s since the last scaling)",
                decision.reason,
                now - last
            );
            return decision;
        }
        if up && let Some(veto) = veto {
            decision.reason = format!("{}; scale-up vetoed: {veto}", decision.reason);
            return decision;
        }
        // Rate limit, as the HPA computes it: the target may differ from the fleet at the
        // start of the period (the workers now, minus those added and plus those removed
        // within it) by at most the larger of P % of that fleet and N workers. Counting P % of
        // the workers *now* against the changes already made would shrink the allowance with
        // every step down (6 -> 4 -> 2 at 100 % left no room for 2 -> 1) and grow it with
        // every step up (100 % per period would compound).
        let (percent, workers) = if up {
            (c.scale_up_max_percent, c.scale_up_max_workers)
        } else {
            (c.scale_down_max_percent, c.scale_down_max_workers)
        };
        let (added, removed) = self
            .changes
            .iter()
            .fold((0_i64, 0_i64), |(added, removed), &(_, delta)| {
                (added + delta.max(0), removed - delta.min(0))
            });
        let period_start = (i64::from(current) - added + removed).max(0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        // a fleet size (far below 2^52) times a finite percent
        let allowed_per_period = ((period_start as f64 * percent / 100.0).ceil() as i64)
            .max(i64::from(workers))
            .max(1);
        let room = if up {
            period_start + allowed_per_period - i64::from(current)
        } else {
            i64::from(current) - (period_start - allowed_per_period)
        }
        .max(0);
        let step = (i64::from(stable) - i64::from(current)).abs().min(room);
        let limit = format!(
            "{period_start} workers at the start of the {:.0} s period, {}{allowed_per_period} allowed",
            c.rate_period,
            if up { "+" } else { "-" }
        );
        if step == 0 {
            decision.reason = format!("{}; rate limit reached ({limit})", decision.reason);
            return decision;
        }
        let step = u32::try_from(step).unwrap_or(u32::MAX);
        decision.target_workers = if up {
            current.saturating_add(step)
        } else {
            current.saturating_sub(step)
        };
        decision.action = if up {
            Action::ScaleUp
        } else {
            Action::ScaleDown
        };
        if decision.target_workers != stable {
            decision.reason = format!(
                "{}; limited to {} by the rate limit ({limit})",
                decision.reason, decision.target_workers
            );
        }
        self.act(decision, now)
    }

    fn act(&mut self, decision: Decision, now: f64) -> Decision {
        self.last_action = Some(now);
        self.changes.push_back((
            now,
            i64::from(decision.target_workers) - i64::from(decision.current_workers),
        ));
        decision
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
fn clamp_workers(value: f64) -> u32 {
    if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        value.max(0.0) as u32
    }
}

#[cfg(test)]
mod tests;
