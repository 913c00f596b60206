//! The worker's settings and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::throttle::ThrottleConfig;
use crate::config::{ConfigError, ConfigResult};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's id in the queue (unique in the fleet).
    pub worker_id: String,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Most jobs claimed in one call.
    pub claim_batch: usize,
    /// How often the worker renews its liveness and its leases (must be below the lease).
    pub heartbeat: Duration,
    /// On stop, how long in-flight jobs may take to finish before they are released.
    pub grace_period: Duration,
    /// Longest time for one job unless its config says `timeout`.
    pub job_timeout: Duration,
    /// Longest time extracting one page may take (it also stops at the job's deadline); a
    /// page that takes longer fails for good.
    pub extract_timeout: Duration,
    /// Longest wait between claims while the queue is empty.
    pub idle_poll: Duration,
    /// Stop once the queue has nothing pending, delayed or leased (a one-machine crawl).
    pub exit_when_done: bool,
    /// How often the worker runs the queue's reaper (expired leases back to pending).
    pub reap_interval: Duration,
    /// Where to serve `/metrics`, `/health` and `/ready` (`None`: no server).
    pub metrics_addr: Option<SocketAddr>,
    /// Copy the results log to this JSON Lines file as jobs complete.
    pub jsonl_path: Option<PathBuf>,
    /// How often the JSON Lines copy catches up.
    pub export_interval: Duration,
    /// Lowering the concurrency under memory or CPU pressure.
    pub throttle: ThrottleConfig,
    /// How often a stats line is logged (`None`: never).
    pub log_stats_interval: Option<Duration>,
}

impl WorkerConfig {
    /// Defaults for a worker named `worker_id`.
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            concurrency: 32,
            claim_batch: 32,
            heartbeat: Duration::from_secs(30),
            grace_period: Duration::from_secs(30),
            job_timeout: Duration::from_secs(3600),
            extract_timeout: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            exit_when_done: false,
            reap_interval: Duration::from_secs(5),
            metrics_addr: None,
            jsonl_path: None,
            export_interval: Duration::from_secs(1),
            throttle: ThrottleConfig::default(),
            log_stats_interval: None,
        }
    }

    /// Checks the settings against each other and the queue's lease.
    pub fn validate(&self, lease: Duration) -> ConfigResult<()> {
        if self.worker_id.is_empty()
            || self.worker_id.len() > 200
            || self.worker_id.chars().any(char::is_control)
        {
            return Err(ConfigError::invalid(
                "worker_id",
                &self.worker_id,
                "1 to 200 printable characters",
            ));
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(ConfigError::invalid(
                "concurrency",
                self.concurrency,
                "between 1 and 10000",
            ));
        }
        if !(1..=1000).contains(&self.claim_batch) {
            return Err(ConfigError::invalid(
                "claim_batch",
                self.claim_batch,
                "between 1 and 1000",
            ));
        }
        if self.heartbeat.is_zero() || self.heartbeat >= lease {
            return Err(ConfigError::invalid(
                "heartbeat",
                format!("{:?}", self.heartbeat),
                format!(
                    "above zero and below the queue's lease ({lease:?}), or leases expire between heartbeats"
                ),
            ));
        }
        for (name, value) in [
            ("job_timeout", self.job_timeout),
            ("extract_timeout", self.extract_timeout),
            ("idle_poll", self.idle_poll),
            ("reap_interval", self.reap_interval),
            ("export_interval", self.export_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(name, "0", "above zero"));
            }
        }
        self.throttle.validate(self.concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_must_beat_the_lease() {
        let lease = Duration::from_secs(60);
        assert!(WorkerConfig::new("w").validate(lease).is_ok());
        let mut config = WorkerConfig::new("w");
        config.heartbeat = lease;
        assert!(
            config
                .validate(lease)
                .unwrap_err()
                .to_string()
                .contains("below the queue's lease")
        );
        let mut config = WorkerConfig::new("w");
        config.concurrency = 0;
        assert!(config.validate(lease).is_err());
        assert!(WorkerConfig::new("").validate(lease).is_err());
    }
}
