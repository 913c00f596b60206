//! The decision engine's rules, one scenario per test.

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
        second.reason.contains(
            "limited to 3 by the rate limit (6 workers at the start of the 60 s period, -3 allowed)"
        ),
        "{}",
        second.reason
    );
    let held = policy.decide(seen(2.0, 0, 3), None);
    assert_eq!(held.action, Action::None);
    assert!(
        held.reason
            .contains("rate limit reached (6 workers at the start of the 60 s period, -3 allowed)"),
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
        held.reason
            .contains("rate limit reached (2 workers at the start of the 60 s period, +2 allowed)"),
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
        up.reason.contains(
            "limited to 8 by the rate limit (4 workers at the start of the 60 s period, +4 allowed)"
        ),
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
