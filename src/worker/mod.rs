//! The worker runtime: turns queued jobs into recorded items.
//!
//! Owns what happens to a claimed job: fetch ([`crate::fetch`]), extract with the job's
//! template ([`crate::extract`]), optional per-item processing ([`ItemHook`]), and one atomic
//! finish in the queue that completes the job, appends its items to the results log and
//! submits the links and next pages it discovered ([`crawl`] derives their ids, which makes
//! the crawl's URL dedup). Around that: claiming in batches up to a concurrency limit,
//! heartbeats that renew leases (jobs whose lease could not be renewed are abandoned, not
//! recorded), per-job timeouts, the drain flag, graceful stop with a grace period, a
//! concurrency limit that backs off under memory or CPU pressure ([`throttle`]), Prometheus
//! metrics and health probes ([`server`]).

pub mod config;
pub mod crawl;
mod job;
mod loops;
pub mod metrics;
pub mod pool;
mod progress;
mod robots;
pub mod server;
pub mod throttle;

pub use config::WorkerConfig;
pub use job::{FAILURE_KINDS, error_kind};
pub use pool::{Stop, Worker};
pub use progress::Progress;
pub use throttle::ThrottleConfig;

use crate::config::ConfigError;
use crate::queue::QueueError;
use crate::sink::SinkError;

/// Post-processing of each item record before it is recorded.
pub trait ItemHook: Send + Sync {
    /// The record to keep (possibly changed), `None` to drop it (counted as `dropped`), or
    /// an error that fails the job (it is retried like any failure).
    fn process(&self, record: serde_json::Value) -> Result<Option<serde_json::Value>, String>;
}

/// What can stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The queue failed in a way retrying does not fix.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The results file could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The metrics server could not start.
    #[error("cannot serve metrics on {addr}: {detail}")]
    Server {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What failed.
        detail: String,
    },
    /// Another run registered this worker's id while this one ran (two workers share an
    /// id): this run stopped; the id and its jobs are the other run's.
    #[error(
        "worker id {worker:?} was taken over by another run (two workers share this id?): \
         this run stopped"
    )]
    Superseded {
        /// The worker id.
        worker: String,
    },
    /// `run` was called while the worker was already running.
    #[error("this worker is already running")]
    AlreadyRunning,
}

impl WorkerError {
    /// The metrics server could not listen on `addr`: why, and what to do.
    pub(crate) fn server(addr: std::net::SocketAddr, error: &std::io::Error) -> Self {
        let port = addr.port().saturating_add(1);
        let ip = addr.ip();
        let detail = match error.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "the port is already in use (another worker on this host?); give each \
                 worker its own port with --metrics-addr {ip}:{port} (port 0 picks a free \
                 one, off serves none)"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied (ports below 1024 need privileges); use \
                 --metrics-addr {ip}:9100 or another port above 1023"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{ip} is not an address of this machine; use --metrics-addr 0.0.0.0:{} \
                 or 127.0.0.1:{}",
                addr.port(),
                addr.port()
            ),
            _ => error.to_string(),
        };
        Self::Server { addr, detail }
    }
}

/// Result alias of this module.
pub type WorkerResult<T> = Result<T, WorkerError>;
