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

/// The Python exception classes, by their name in `scraperv4.exceptions`.
#[derive(Clone, Copy)]
pub(crate) enum PyErrorClass {
    Config,
}

impl PyErrorClass {
    fn name(self) -> &'static str {
        match self {
            Self::Config => "ConfigError",
        }
    }

    fn cell(self) -> &'static PyOnceLock<Py<PyType>> {
        static CONFIG: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        match self {
            Self::Config => &CONFIG,
        }
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
