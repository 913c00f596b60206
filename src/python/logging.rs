//! Bridges Rust log events to Python's `logging`.
//!
//! Core modules emit `tracing` events; with tracing's `log-always` feature each event is also
//! a `log` record, which `pyo3-log` hands to the Python logger named after the Rust module
//! (`scraperv4::queue` becomes `scraperv4.queue`, a child of `scraperv4`). Python decides
//! what is shown: the `scraperv4` logger's level, set from Python or from the
//! `SCRAPERV4_LOG_LEVEL` environment variable (read by `scraperv4/_logging.py`).

use std::sync::OnceLock;

use pyo3::prelude::*;

use crate::config::parse_log_level;

static RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// The target parser libraries' records are logged under (html5ever writes warnings such as
/// "foster parenting not implemented" about ordinary pages: they are debug details here).
const PARSER_TARGET: &str = "scraperv4::extract::html5ever";

/// Hands records to `pyo3-log`, with the HTML parser's own records lowered to debug and the
/// debug chatter of other libraries dropped before any Python logger is looked up (the
/// `selectors` crate logs every selector match at debug level).
struct Bridge(pyo3_log::Logger);

fn is_dependency_detail(metadata: &log::Metadata<'_>) -> bool {
    metadata.level() > log::Level::Info && !metadata.target().starts_with("scraperv4")
}

fn is_parser(target: &str) -> bool {
    target.starts_with("html5ever") || target.starts_with("markup5ever")
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        if is_dependency_detail(metadata) {
            return false;
        }
        if is_parser(metadata.target()) {
            let lowered = log::Metadata::builder()
                .level(log::Level::Debug)
                .target(PARSER_TARGET)
                .build();
            return self.0.enabled(&lowered);
        }
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if is_dependency_detail(record.metadata()) {
            return;
        }
        if !is_parser(record.target()) {
            self.0.log(record);
            return;
        }
        self.0.log(
            &log::Record::builder()
                .level(log::Level::Debug)
                .target(PARSER_TARGET)
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the bridge once per process; later calls (sub-interpreters, reloads) keep it.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    if RESET.get().is_some() {
        return Ok(());
    }
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)?
        .filter(log::LevelFilter::Trace);
    let handle = logger.reset_handle();
    if log::set_boxed_logger(Box::new(Bridge(logger))).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
        let _ = RESET.set(handle);
    }
    Ok(())
}

/// Sets the level of the `scraperv4` Python logger (and so of every Rust module's events).
///
/// Raises `ConfigError` for a name that is not a log level.
#[pyfunction]
pub(crate) fn set_log_level(py: Python<'_>, level: &str) -> PyResult<()> {
    let filter = parse_log_level(level)?;
    let python_level = match filter {
        log::LevelFilter::Off => 100, // above CRITICAL: nothing passes
        log::LevelFilter::Error => 40,
        log::LevelFilter::Warn => 30,
        log::LevelFilter::Info => 20,
        log::LevelFilter::Debug => 10,
        log::LevelFilter::Trace => 5,
    };
    py.import("logging")?
        .call_method1("getLogger", ("scraperv4",))?
        .call_method1("setLevel", (python_level,))?;
    // pyo3-log caches each logger's effective level; forget it so the change takes effect.
    if let Some(handle) = RESET.get() {
        handle.reset();
    }
    Ok(())
}
