//! The one mapping from core errors to the Python exception tree.
//!
//! The exception classes are defined in Python (`scraperv4/exceptions.py`) so that they can
//! also subclass builtins (`ConfigError` is a `ValueError`); this module looks each class up
//! once and raises it. Every subsystem error gets exactly one `From<...> for PyErr` here.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::config::ConfigError;
use crate::queue::QueueError;

/// The Python exception classes, by their name in `scraperv4.exceptions`.
#[derive(Clone, Copy)]
pub(crate) enum PyErrorClass {
    Config,
    Queue,
    QueueUnavailable,
    InvalidJob,
    JobNotFound,
    CorruptJob,
    Fetch,
    Template,
    Worker,
    Results,
    ExtractionLimit,
}

impl PyErrorClass {
    fn name(self) -> &'static str {
        match self {
            Self::Config => "ConfigError",
            Self::Queue => "QueueError",
            Self::QueueUnavailable => "QueueUnavailableError",
            Self::InvalidJob => "InvalidJobError",
            Self::JobNotFound => "JobNotFoundError",
            Self::CorruptJob => "CorruptJobError",
            Self::Fetch => "FetchError",
            Self::Template => "TemplateError",
            Self::Worker => "WorkerError",
            Self::Results => "ResultsError",
            Self::ExtractionLimit => "ExtractionLimitError",
        }
    }

    fn cell(self) -> &'static PyOnceLock<Py<PyType>> {
        static CELLS: [PyOnceLock<Py<PyType>>; 11] = [
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
        ];
        &CELLS[self as usize]
    }

    /// Builds the exception with `args` passed to the class's constructor.
    pub(crate) fn raise<A>(self, args: A) -> PyErr
    where
        A: for<'py> IntoPyObject<'py> + Send + Sync + 'static,
    {
        Python::attach(|py| {
            match self.cell().import(py, "scraperv4.exceptions", self.name()) {
                Ok(class) => PyErr::from_type(class.clone(), args),
                // Only possible if the package is broken; say so instead of hiding the error.
                Err(import_error) => PyRuntimeError::new_err(format!(
                    "scraperv4.exceptions.{} could not be imported: {import_error}",
                    self.name()
                )),
            }
        })
    }
}

impl From<ConfigError> for PyErr {
    fn from(error: ConfigError) -> Self {
        PyErrorClass::Config.raise((error.to_string(),))
    }
}

impl From<QueueError> for PyErr {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::Config(config) => config.into(),
            QueueError::InvalidJob { job_id, .. } => {
                PyErrorClass::InvalidJob.raise((message, Some(job_id)))
            }
            QueueError::JobNotFound(job_id) => {
                PyErrorClass::JobNotFound.raise((message, Some(job_id)))
            }
            QueueError::CorruptJob { job_id, .. } => {
                PyErrorClass::CorruptJob.raise((message, Some(job_id)))
            }
            QueueError::Unavailable { .. } => {
                PyErrorClass::QueueUnavailable.raise((message, None::<String>))
            }
            QueueError::Backend { .. } => PyErrorClass::Queue.raise((message, None::<String>)),
        }
    }
}

impl From<crate::sink::SinkError> for PyErr {
    fn from(error: crate::sink::SinkError) -> Self {
        match error {
            crate::sink::SinkError::Queue(queue) => queue.into(),
            io @ crate::sink::SinkError::Io { .. } => {
                PyErrorClass::Results.raise((io.to_string(),))
            }
        }
    }
}

impl From<crate::worker::WorkerError> for PyErr {
    fn from(error: crate::worker::WorkerError) -> Self {
        use crate::worker::WorkerError;
        match error {
            WorkerError::Config(config) => config.into(),
            WorkerError::Queue(queue) => queue.into(),
            WorkerError::Sink(sink) => sink.into(),
            other @ (WorkerError::Server { .. }
            | WorkerError::Superseded { .. }
            | WorkerError::AlreadyRunning) => PyErrorClass::Worker.raise((other.to_string(),)),
        }
    }
}
