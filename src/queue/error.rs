//! Errors of the job queue.

use crate::config::ConfigError;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A job that cannot be accepted as given (bad URL, config too big, ...).
    #[error("job {job_id}: {reason}")]
    InvalidJob {
        /// The job's id ("<new>" when it had none yet).
        job_id: String,
        /// What is wrong, for the user.
        reason: String,
    },
    /// No job with this id.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// The stored record of a job cannot be read (edited by hand, written by another
    /// version). Other jobs are unaffected.
    #[error("job {job_id}: stored record is corrupt: {detail}")]
    CorruptJob {
        /// The job's id.
        job_id: String,
        /// What could not be read.
        detail: String,
    },
    /// The backend could not be reached or did not answer in time.
    #[error("queue backend {url} unavailable during {operation}: {detail}")]
    Unavailable {
        /// The backend URL with any password removed.
        url: String,
        /// The operation that failed (e.g. `claim`).
        operation: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The backend answered with an error.
    #[error("queue backend {url} failed during {operation}: {detail}")]
    Backend {
        /// The backend URL with any password removed.
        url: String,
        /// The operation that failed.
        operation: &'static str,
        /// The backend's message.
        detail: String,
    },
    /// A setting of the queue is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Result alias of the queue.
pub type QueueResult<T> = Result<T, QueueError>;
