//! What one client knows of each shard's health: when claims may skip it (nothing ready, or
//! no answer), whether a call of this client went unanswered since its last heartbeat, and
//! when its leases were last renewed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::queue::error::QueueError;

/// One shard's health, as this client saw it.
#[derive(Debug, Default)]
struct Shard {
    /// Claims skip the shard until this time (ms since `epoch`): it had nothing ready.
    idle_until: AtomicU64,
    /// Calls that can wait (claims, forwarding) skip it until this time: it did not answer.
    down_until: AtomicU64,
    /// A call of this client got no answer since the shard's last heartbeat: a claim whose
    /// answer was lost may have leased jobs to the worker that it does not know of.
    troubled: AtomicBool,
    /// The shard's last heartbeat answer (ms since `epoch`).
    renewed_at: AtomicU64,
}

/// The health of every shard.
#[derive(Debug)]
pub(super) struct Health {
    shards: Vec<Shard>,
    epoch: Instant,
    /// How long a shard that did not answer is left alone: the calls' own timeout, so a
    /// shard that hangs costs one timeout per this long, not one per call.
    down_for: Duration,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Health {
    pub(super) fn new(shards: usize, operation_timeout: Duration) -> Self {
        Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            epoch: Instant::now(),
            down_for: operation_timeout.max(Duration::from_secs(1)),
        }
    }

    fn now(&self) -> u64 {
        ms(self.epoch.elapsed())
    }

    /// How long claims should skip `shard`, if they should.
    pub(super) fn skip(&self, shard: usize) -> Option<Duration> {
        let s = &self.shards[shard];
        let until = s
            .idle_until
            .load(Ordering::Relaxed)
            .max(s.down_until.load(Ordering::Relaxed));
        let now = self.now();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Whether `shard` did not answer lately (calls that can wait leave it alone).
    pub(super) fn down(&self, shard: usize) -> bool {
        self.shards[shard].down_until.load(Ordering::Relaxed) > self.now()
    }

    /// `shard` had nothing ready: claims skip it for `skip`, or ask it next time (`None`).
    pub(super) fn idle(&self, shard: usize, skip: Option<Duration>) {
        let until = skip.map_or(0, |d| self.now().saturating_add(ms(d)));
        self.shards[shard]
            .idle_until
            .store(until, Ordering::Relaxed);
    }

    /// A call on `shard` failed with `error`: when the shard did not answer, it is left alone
    /// a while and its next heartbeat does not count what it gives back.
    pub(super) fn failed(&self, shard: usize, error: &QueueError) {
        if matches!(error, QueueError::Unavailable { .. }) {
            let s = &self.shards[shard];
            s.troubled.store(true, Ordering::Relaxed);
            let until = self.now().saturating_add(ms(self.down_for));
            s.down_until.store(until, Ordering::Relaxed);
        }
    }

    /// Takes `shard`'s trouble flag for a heartbeat (given back with [`Health::failed`] when
    /// the heartbeat fails too).
    pub(super) fn take_trouble(&self, shard: usize) -> bool {
        self.shards[shard].troubled.swap(false, Ordering::Relaxed)
    }

    /// Sets `shard`'s trouble flag again (a heartbeat that took it failed).
    pub(super) fn keep_trouble(&self, shard: usize) {
        self.shards[shard].troubled.store(true, Ordering::Relaxed);
    }

    /// `shard` answered a heartbeat.
    pub(super) fn renewed(&self, shard: usize) {
        let s = &self.shards[shard];
        s.renewed_at.store(self.now(), Ordering::Relaxed);
        s.down_until.store(0, Ordering::Relaxed);
    }

    /// Whether `shard` has renewed no lease of this client for `lease`: the claims held
    /// there are to be given up (another worker may hold them by now).
    pub(super) fn expired(&self, shard: usize, lease: Duration) -> bool {
        self.now()
            .saturating_sub(self.shards[shard].renewed_at.load(Ordering::Relaxed))
            > ms(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> QueueError {
        QueueError::Unavailable {
            url: "redis://h".to_owned(),
            operation: "claim",
            detail: "no answer".to_owned(),
        }
    }

    #[test]
    fn a_shard_that_did_not_answer_is_left_alone_for_a_timeout() {
        let health = Health::new(3, Duration::from_secs(10));
        assert_eq!(health.skip(1), None);
        health.failed(1, &unavailable());
        assert!(health.down(1) && !health.down(0));
        let skip = health.skip(1).expect("skipped");
        assert!(skip > Duration::from_secs(9), "{skip:?}");
        // An error that is an answer (the shard is there) leaves it to the claims.
        let answered = QueueError::Backend {
            url: String::new(),
            operation: "claim",
            detail: "WRONGTYPE".to_owned(),
        };
        health.failed(2, &answered);
        assert!(!health.down(2) && !health.take_trouble(2));
        // A heartbeat it answers brings it back.
        health.renewed(1);
        assert!(!health.down(1));
    }

    #[test]
    fn trouble_is_taken_by_one_heartbeat_and_kept_when_it_fails() {
        let health = Health::new(2, Duration::from_millis(10));
        health.failed(0, &unavailable());
        assert!(health.take_trouble(0));
        assert!(!health.take_trouble(0), "taken once");
        health.keep_trouble(0);
        assert!(health.take_trouble(0));
    }

    #[test]
    fn leases_expire_after_a_lease_without_an_answer() {
        let health = Health::new(1, Duration::from_millis(10));
        assert!(!health.expired(0, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(health.expired(0, Duration::from_millis(20)));
        health.renewed(0);
        assert!(!health.expired(0, Duration::from_millis(20)));
    }

    #[test]
    fn an_idle_shard_is_skipped_until_its_wake_up() {
        let health = Health::new(1, Duration::from_secs(1));
        health.idle(0, Some(Duration::from_secs(5)));
        assert!(health.skip(0).is_some() && !health.down(0));
        health.idle(0, None);
        assert_eq!(health.skip(0), None);
    }
}
