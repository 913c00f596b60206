//! The `scraperv4._core` extension module: bindings only.
//!
//! Owns the translation between Python and the core modules: argument conversion, releasing
//! the GIL around Rust work ([`bridge`]), awaitables for asyncio ([`bridge`]), the error
//! mapping ([`errors`]) and the `tracing`/`log` to Python `logging` bridge ([`logging`]).
//! No scraping logic lives here.

pub(crate) mod autoscale;
pub(crate) mod bridge;
pub(crate) mod coordinator;
pub(crate) mod domains;
pub(crate) mod errors;
pub(crate) mod extract;
pub(crate) mod fetch;
pub(crate) mod logging;
pub(crate) mod partition;
pub(crate) mod queue;
pub(crate) mod resources;
pub(crate) mod stream;
pub(crate) mod worker;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
pub mod _core {
    #[pymodule_export]
    use super::autoscale::{PyClusterMetrics, PyScalingPolicy};
    #[pymodule_export]
    use super::bridge::{_block_for, _sleep_async};
    #[pymodule_export]
    use super::coordinator::PyCoordinator;
    #[pymodule_export]
    use super::extract::{_tree_dumps, PyTemplate, PyTemplateRegistry, extraction_stats};
    #[pymodule_export]
    use super::fetch::{PyFetcher, PyResponse};
    #[pymodule_export]
    use super::logging::set_log_level;
    #[pymodule_export]
    use super::partition::{optimize_partitions, partition_indices, partition_lists};
    #[pymodule_export]
    use super::queue::{PyAck, PyJob, PyJobQueue};
    #[pymodule_export]
    use super::resources::PyResourceManager;
    #[pymodule_export]
    use super::stream::PyFetchStream;
    #[pymodule_export]
    use super::worker::{
        PyWorker, crawl_job_id, default_crawl_id, error_kind, export_jsonl, results_file_records,
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add(
            "__version__",
            super::pep440_version(env!("CARGO_PKG_VERSION")),
        )?;
        m.add("TEXT_BLOCK_ELEMENTS", crate::extract::text::BLOCKS.to_vec())?;
        m.add(
            "TEXT_SKIPPED_ELEMENTS",
            crate::extract::text::SKIPPED.to_vec(),
        )?;
        m.add(
            "JOB_CONFIG_KEYS",
            crate::worker::crawl::CONFIG_KEYS.to_vec(),
        )?;
        m.add("FAILURE_KINDS", crate::worker::FAILURE_KINDS.to_vec())?;
        super::logging::install(m.py())?;
        Ok(())
    }
}

/// Cargo's `1.2.3-alpha.1` is Python's `1.2.3a1` (PEP 440).
fn pep440_version(cargo_version: &str) -> String {
    let Some((release, pre)) = cargo_version.split_once('-') else {
        return cargo_version.to_owned();
    };
    let (kind, number) = pre.split_once('.').unwrap_or((pre, "0"));
    let kind = match kind {
        "alpha" => "a",
        "beta" => "b",
        "rc" => "rc",
        _ => return format!("{release}+{}", pre.replace('-', ".")),
    };
    format!("{release}{kind}{number}")
}

#[cfg(test)]
mod tests {
    use super::pep440_version;

    #[test]
    fn cargo_prereleases_become_pep440() {
        assert_eq!(pep440_version("0.1.0"), "0.1.0");
        assert_eq!(pep440_version("1.2.0-alpha.1"), "1.2.0a1");
        assert_eq!(pep440_version("1.2.0-beta.3"), "1.2.0b3");
        assert_eq!(pep440_version("2.0.0-rc.2"), "2.0.0rc2");
    }
}
