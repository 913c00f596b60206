//! Politeness keys and the queue's policy as Python values (the methods are on `JobQueue`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::config::ConfigError;
use crate::queue::{Change, DomainInfo, Feedback, PolicyState};

fn seconds(ms: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let seconds = ms as f64 / 1000.0;
    seconds
}

fn seconds_u(ms: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let seconds = ms as f64 / 1000.0;
    seconds
}

fn dict(py: Python<'_>, d: DomainInfo) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    let time = |ms: i64| (ms > 0).then(|| seconds(ms));
    out.set_item("key", d.key)?;
    out.set_item("waiting", d.waiting)?;
    out.set_item("inflight", d.inflight)?;
    out.set_item("delay", seconds_u(d.delay_ms))?;
    out.set_item("concurrency", d.concurrency)?;
    out.set_item("ready_at", time(d.ready_at))?;
    out.set_item("throttled", d.throttled)?;
    out.set_item("errors", d.errors)?;
    out.set_item("last_throttled", time(d.last_throttled))?;
    out.set_item("last_error", time(d.last_error))?;
    out.set_item("paced", d.parked)?;
    out.set_item("delay_override", d.delay_override_ms.map(seconds_u))?;
    out.set_item("concurrency_override", d.concurrency_override)?;
    out.set_item("crawl_delay", seconds_u(d.crawl_delay_ms))?;
    out.set_item("paused_until", time(d.paused_until))?;
    out.set_item("now", seconds(d.now))?;
    Ok(out)
}

/// A key as a dict (times in seconds since the epoch, delays in seconds).
pub(super) struct Domain(pub(super) DomainInfo);

impl<'py> IntoPyObject<'py> for Domain {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        dict(py, self.0)
    }
}

/// Keys as a list of dicts.
pub(super) struct Domains(pub(super) Vec<DomainInfo>);

impl<'py> IntoPyObject<'py> for Domains {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let list = PyList::empty(py);
        for d in self.0 {
            list.append(dict(py, d)?)?;
        }
        Ok(list)
    }
}

/// The policy as a dict (seconds).
pub(super) struct PolicyDict(pub(super) PolicyState);

impl<'py> IntoPyObject<'py> for PolicyDict {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let p = self.0;
        let out = PyDict::new(py);
        out.set_item("domain_delay", seconds_u(p.delay_ms))?;
        out.set_item("domain_concurrency", p.concurrency)?;
        out.set_item("autothrottle", p.autothrottle)?;
        out.set_item("max_domain_delay", seconds_u(p.max_delay_ms))?;
        out.set_item("max_domain_pause", seconds_u(p.max_pause_ms))?;
        Ok(out)
    }
}

/// A delay override change from Python: a number of seconds sets it, `clear` removes it.
pub(super) fn delay_change(
    seconds: Option<f64>,
    clear: bool,
) -> Result<Change<std::time::Duration>, ConfigError> {
    match (seconds, clear) {
        (_, true) => Ok(Change::Clear),
        (Some(value), false) => std::time::Duration::try_from_secs_f64(value)
            .map(Change::Set)
            .map_err(|_| ConfigError::invalid("delay", value, "a finite number of seconds >= 0")),
        (None, false) => Ok(Change::Keep),
    }
}

/// A concurrency override change from Python.
pub(super) fn concurrency_change(value: Option<u32>, clear: bool) -> Change<u32> {
    match (value, clear) {
        (_, true) => Change::Clear,
        (Some(value), false) => Change::Set(value),
        (None, false) => Change::Keep,
    }
}

/// `feedback` ("throttled" or "error") and `retry_after` seconds as the queue takes them.
pub(super) fn feedback(
    kind: Option<&str>,
    retry_after: Option<f64>,
) -> Result<Option<Feedback>, ConfigError> {
    let retry_after = retry_after
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s).map_err(|_| {
                ConfigError::invalid("retry_after", s, "a finite number of seconds >= 0")
            })
        })
        .transpose()?;
    match kind {
        None => Ok(None),
        Some("throttled") => Ok(Some(Feedback::Throttled { retry_after })),
        Some("error") => Ok(Some(Feedback::Error)),
        Some(other) => Err(ConfigError::invalid(
            "feedback",
            other,
            "\"throttled\" (a 429/503 answer) or \"error\" (a timeout or connection failure)",
        )),
    }
}
