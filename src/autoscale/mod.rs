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
mod tests {
    use super::*;

    fn config() -> ScalingConfig {
        ScalingConfig {
            min_workers: 1,
            max_workers: 6,
            scale_up_threshold: 10.0,
            scale_down_threshold: 2.0,
            scale_up_cooldown: 0.0,
            scale_down_cooldown: 0.0,
            evaluation_interval: 1.0,
            scale_up_stabilization: 0.0,
            scale_down_stabilization: 0.0,
            rate_period: 60.0,
            scale_up_max_percent: 1000.0,
            scale_up_max_workers: 100,
            scale_down_max_percent: 100.0,
            scale_down_max_workers: 100,
        }
    }

    fn seen(now: f64, runnable: u64, workers: u32) -> Observation {
        Observation {
            now,
            runnable,
            workers,
        }
    }

    #[test]
    fn thresholds_and_bounds() {
        // (runnable, workers) -> (action, target)
        let table = [
            ((0, 0), (Action::ScaleUp, 1)),      // below min: back to min
            ((600, 1), (Action::ScaleUp, 6)),    // 600/10+1 = 61, capped at max
            ((35, 1), (Action::ScaleUp, 4)),     // 35/10+1
            ((10, 1), (Action::None, 1)),        // exactly the threshold: no change
            ((20, 4), (Action::None, 4)),        // 5 per worker: within thresholds
            ((3, 4), (Action::ScaleDown, 2)),    // 0.75 per worker: 3/2+1
            ((0, 6), (Action::ScaleDown, 1)),    // idle: down to min
            ((0, 1), (Action::None, 1)),         // at min already
            ((1000, 8), (Action::ScaleDown, 6)), // above max: back inside
        ];
        for ((runnable, workers), (action, target)) in table {
            let mut policy = Policy::new(config()).unwrap();
            let decision = policy.decide(seen(0.0, runnable, workers), None);
            assert_eq!(
                (decision.action, decision.target_workers),
                (action, target),
                "{runnable} runnable, {workers} workers: {}",
                decision.reason
            );
            assert!(!decision.reason.is_empty());
            assert!((1..=6).contains(&decision.target_workers));
        }
    }

    #[test]
    fn cooldown_holds_the_next_action() {
        let mut policy = Policy::new(ScalingConfig {
            scale_up_cooldown: 30.0,
            ..config()
        })
        .unwrap();
        assert_eq!(policy.decide(seen(0.0, 25, 1), None).target_workers, 3);
        let held = policy.decide(seen(10.0, 100, 3), None);
        assert_eq!(held.action, Action::None);
        assert!(held.reason.contains("cooldown"), "{}", held.reason);
        assert_eq!(
            policy.decide(seen(31.0, 100, 3), None).action,
            Action::ScaleUp
        );
    }

    #[test]
    fn scale_down_stabilization_uses_the_highest_recent_recommendation() {
        let mut policy = Policy::new(ScalingConfig {
            scale_down_stabilization: 60.0,
            ..config()
        })
        .unwrap();
        // Busy at t=0 (wants 6), idle afterwards: no scale-down until t=0 leaves the window.
        assert_eq!(policy.decide(seen(0.0, 100, 6), None).action, Action::None);
        let held = policy.decide(seen(30.0, 0, 6), None);
        assert_eq!(held.action, Action::None);
        assert!(held.reason.contains("stabilization"), "{}", held.reason);
        let down = policy.decide(seen(61.0, 0, 6), None);
        assert_eq!((down.action, down.target_workers), (Action::ScaleDown, 1));
    }

    #[test]
    fn scale_up_stabilization_uses_the_lowest_recent_recommendation() {
        let mut policy = Policy::new(ScalingConfig {
            scale_up_stabilization: 20.0,
            ..config()
        })
        .unwrap();
        assert_eq!(policy.decide(seen(0.0, 5, 1), None).action, Action::None);
        // A spike 10 s later: the window still holds the quiet recommendation (1).
        assert_eq!(policy.decide(seen(10.0, 60, 1), None).action, Action::None);
        // 15 s and 21 s: the window now holds {6 (t=10), 6 (t=15)} then {6, 6, 6}.
        policy.decide(seen(15.0, 60, 1), None);
        let up = policy.decide(seen(21.0, 60, 1), None);
        assert_eq!((up.action, up.target_workers), (Action::ScaleUp, 6));
    }

    #[test]
    fn rate_limits_take_the_larger_policy_per_period() {
        let mut policy = Policy::new(ScalingConfig {
            max_workers: 50,
            scale_up_max_percent: 50.0,
            scale_up_max_workers: 2,
            ..config()
        })
        .unwrap();
        // 2 workers: 50 % is 1, 2 workers is more: +2.
        let first = policy.decide(seen(0.0, 1000, 2), None);
        assert_eq!((first.action, first.target_workers), (Action::ScaleUp, 4));
        assert!(first.reason.contains("rate limit"), "{}", first.reason);
        // Same period, budget spent.
        let held = policy.decide(seen(10.0, 1000, 4), None);
        assert_eq!(held.action, Action::None);
        assert!(
            held.reason.contains("rate limit reached"),
            "{}",
            held.reason
        );
        // Next period: 50 % of 4 = 2 (= N): +2.
        assert_eq!(policy.decide(seen(61.0, 1000, 4), None).target_workers, 6);
        // Later with 20 workers: 50 % = 10 beats N = 2.
        let mut big = policy.clone();
        assert_eq!(big.decide(seen(200.0, 10_000, 20), None).target_workers, 30);
    }

    #[test]
    fn scale_down_rate_limit_counts_from_the_fleet_at_the_period_start() {
        // 100 % per period, no fixed allowance, no cooldown: the whole fleet may go at once,
        // in as many steps as the load asks for.
        let mut policy = Policy::new(ScalingConfig {
            scale_down_max_workers: 0,
            ..config()
        })
        .unwrap();
        // A few jobs left: 1 per worker, 6 / 2 + 1 = 4 wanted.
        let first = policy.decide(seen(0.0, 6, 6), None);
        assert_eq!((first.action, first.target_workers), (Action::ScaleDown, 4));
        // Idle, same period: the period started with 6, 2 of its 6 removed, room for 4 more.
        let second = policy.decide(seen(1.0, 0, 4), None);
        assert_eq!(
            (second.action, second.target_workers),
            (Action::ScaleDown, 1),
            "{}",
            second.reason
        );
        assert!(!second.reason.contains("rate limit"), "{}", second.reason);
    }

    #[test]
    fn scale_down_rate_limit_still_holds_within_the_period() {
        let mut policy = Policy::new(ScalingConfig {
            scale_down_max_percent: 50.0,
            scale_down_max_workers: 0,
            ..config()
        })
        .unwrap();
        // 50 % of 6 = 3 per period, used in two steps: 6 -> 4, then 4 -> 3, then held.
        assert_eq!(policy.decide(seen(0.0, 6, 6), None).target_workers, 4);
        let second = policy.decide(seen(1.0, 0, 4), None);
        assert_eq!(
            (second.action, second.target_workers),
            (Action::ScaleDown, 3)
        );
        assert!(
            second
                .reason
                .contains("limited to 3 by the rate limit (6 workers at the start of the 60 s period, -3 allowed)"),
            "{}",
            second.reason
        );
        let held = policy.decide(seen(2.0, 0, 3), None);
        assert_eq!(held.action, Action::None);
        assert!(
            held.reason.contains(
                "rate limit reached (6 workers at the start of the 60 s period, -3 allowed)"
            ),
            "{}",
            held.reason
        );
        // A new period starts from 3: 50 % of 3 rounds up to 2.
        let next = policy.decide(seen(61.0, 0, 3), None);
        assert_eq!((next.action, next.target_workers), (Action::ScaleDown, 1));
    }

    #[test]
    fn scale_up_rate_limit_counts_from_the_fleet_at_the_period_start() {
        let mut policy = Policy::new(ScalingConfig {
            max_workers: 50,
            scale_up_max_percent: 100.0,
            scale_up_max_workers: 0,
            ..config()
        })
        .unwrap();
        // 100 % of 2: +2.
        let first = policy.decide(seen(0.0, 1000, 2), None);
        assert_eq!((first.action, first.target_workers), (Action::ScaleUp, 4));
        // Same period: it started with 2 and grew by 2, the whole allowance. (Counting 100 %
        // of the 4 present now would allow 2 more, and 4 more after that: growth compounding
        // within one period.)
        let held = policy.decide(seen(10.0, 1000, 4), None);
        assert_eq!(held.action, Action::None, "{}", held.reason);
        assert!(
            held.reason.contains(
                "rate limit reached (2 workers at the start of the 60 s period, +2 allowed)"
            ),
            "{}",
            held.reason
        );
        // The next period starts from 4: +4.
        let next = policy.decide(seen(61.0, 1000, 4), None);
        assert_eq!((next.action, next.target_workers), (Action::ScaleUp, 8));
        // Idle: down to 1 in the same period; busy again: the period still started from 4,
        // so 1 -> 8 is within 100 % of it.
        let down = policy.decide(seen(62.0, 0, 8), None);
        assert_eq!((down.action, down.target_workers), (Action::ScaleDown, 1));
        let up = policy.decide(seen(63.0, 1000, 1), None);
        assert_eq!(
            (up.action, up.target_workers),
            (Action::ScaleUp, 8),
            "{}",
            up.reason
        );
        assert!(
            up.reason
                .contains("limited to 8 by the rate limit (4 workers at the start of the 60 s period, +4 allowed)"),
            "{}",
            up.reason
        );
    }

    #[test]
    fn reasons_name_the_stabilization_window_that_holds_the_target() {
        // The local fleet test's shape: a 3 s down-window evaluated every second while the
        // backlog runs out; one evaluation sees a few jobs left.
        let mut policy = Policy::new(ScalingConfig {
            scale_down_stabilization: 3.0,
            scale_down_max_workers: 0,
            ..config()
        })
        .unwrap();
        assert_eq!(policy.decide(seen(0.0, 600, 6), None).action, Action::None);
        let held = policy.decide(seen(1.0, 6, 6), None);
        assert_eq!(held.action, Action::None);
        assert!(
            held.reason
                .contains("held by the 3 s stabilization window (recommended 6 within it)"),
            "{}",
            held.reason
        );
        for now in [2.0, 3.0] {
            assert_eq!(policy.decide(seen(now, 0, 6), None).action, Action::None);
        }
        // t=0 has left the window; its highest is now the 4 recommended at t=1.
        let partial = policy.decide(seen(4.0, 0, 6), None);
        assert_eq!(
            (partial.action, partial.target_workers),
            (Action::ScaleDown, 4)
        );
        assert!(
            partial.reason.contains(
                "the 3 s stabilization window allows 4 (the highest recommendation within it)"
            ),
            "{}",
            partial.reason
        );
        // t=1 leaves too: down to the minimum in the same rate period.
        let down = policy.decide(seen(5.0, 0, 4), None);
        assert_eq!(
            (down.action, down.target_workers),
            (Action::ScaleDown, 1),
            "{}",
            down.reason
        );
        assert!(!down.reason.contains("stabilization"), "{}", down.reason);
    }

    #[test]
    fn a_veto_blocks_scale_up_only() {
        let mut policy = Policy::new(config()).unwrap();
        let vetoed = policy.decide(seen(0.0, 100, 1), Some("memory at 91%"));
        assert_eq!(vetoed.action, Action::None);
        assert!(vetoed.reason.contains("vetoed: memory at 91%"));
        let down = policy.decide(seen(1.0, 0, 4), Some("memory at 91%"));
        assert_eq!(down.action, Action::ScaleDown);
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            ScalingConfig {
                min_workers: 5,
                max_workers: 4,
                ..config()
            },
            ScalingConfig {
                scale_down_threshold: 10.0,
                ..config()
            },
            ScalingConfig {
                evaluation_interval: 0.0,
                ..config()
            },
            ScalingConfig {
                scale_up_max_percent: 0.0,
                scale_up_max_workers: 0,
                ..config()
            },
        ] {
            assert!(Policy::new(bad).is_err(), "{bad:?}");
        }
        assert!(Policy::new(ScalingConfig::default()).is_ok());
    }
}
