//! Bindings of [`crate::fetch::stream`]: the `FetchStream` handle.
//!
//! The Python wrapper (`scraperv4.fetch.FetchStream`) pulls URLs from the caller's iterable
//! while `room()` allows, `push`es them, and `take`s finished results. Every method holds the
//! stream's mutex only for one poll, never across a wait.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::bridge::{block_on, into_awaitable};
use super::fetch::PyResponse;
use crate::fetch::stream::{Fetched, Stream};
use crate::fetch::{Extracted, FetchError};

/// The stream behind a handle: plain fetches, or fetch + extract.
pub(crate) enum Inner {
    Fetch(Stream<Fetched>),
    Extract(Stream<Extracted>),
}

/// Results taken from a stream, converted to Python `(url, result)` tuples.
enum Taken {
    Fetched(Vec<(String, Fetched)>),
    Extracted(Vec<(String, Extracted)>),
}

impl<'py> IntoPyObject<'py> for Taken {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let pair = |url: String, result: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyAny>> {
            Ok(PyTuple::new(py, [url.into_pyobject(py)?.into_any(), result])?.into_any())
        };
        let error = |e: PyErr| e.into_value(py).into_bound(py).into_any();
        let pairs: PyResult<Vec<Bound<'py, PyAny>>> = match self {
            Self::Fetched(results) => results
                .into_iter()
                .map(|(url, result)| {
                    let value = match result {
                        Ok(page) => Bound::new(py, PyResponse::from(page))?.into_any(),
                        Err(e) => error(e.into()),
                    };
                    pair(url, value)
                })
                .collect(),
            Self::Extracted(results) => results
                .into_iter()
                .map(|(url, result)| {
                    let value = match result {
                        Extracted::Items(items) => {
                            super::extract::items_to_python(py, &items)?.into_any()
                        }
                        Extracted::Failed(e) => error(e.into()),
                        Extracted::Refused(e) => error(e.into()),
                    };
                    pair(url, value)
                })
                .collect(),
        };
        Ok(pyo3::types::PyList::new(py, pairs?)?.into_any())
    }
}

impl Inner {
    fn room(&self) -> usize {
        match self {
            Self::Fetch(s) => s.room(),
            Self::Extract(s) => s.room(),
        }
    }

    fn pending(&self) -> usize {
        match self {
            Self::Fetch(s) => s.pending(),
            Self::Extract(s) => s.pending(),
        }
    }

    fn push(&mut self, url: String) {
        match self {
            Self::Fetch(s) => s.push(url),
            Self::Extract(s) => s.push(url),
        }
    }

    fn poll_take(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Taken> {
        match self {
            Self::Fetch(s) => s.poll_take(cx, max).map(Taken::Fetched),
            Self::Extract(s) => s.poll_take(cx, max).map(Taken::Extracted),
        }
    }

    fn abort(&mut self) {
        match self {
            Self::Fetch(s) => s.abort(),
            Self::Extract(s) => s.abort(),
        }
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Self::Fetch(s) => s.poll_closed(cx),
            Self::Extract(s) => s.poll_closed(cx),
        }
    }
}

/// Results of a streaming fetch, in the order they complete (see `scraperv4.fetch`).
#[pyclass(frozen, name = "FetchStream", module = "scraperv4._core")]
pub(crate) struct PyFetchStream {
    inner: Arc<Mutex<Inner>>,
}

impl PyFetchStream {
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held leaves a JoinSet that is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn take_future(
    inner: Arc<Mutex<Inner>>,
    max: usize,
) -> impl Future<Output = Result<Taken, FetchError>> + Send + 'static {
    std::future::poll_fn(move |cx| {
        inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .poll_take(cx, max)
            .map(Ok)
    })
}

#[pymethods]
impl PyFetchStream {
    /// How many more URLs may be pushed now.
    fn room(&self) -> usize {
        self.lock().room()
    }

    /// URLs pushed whose result has not been taken yet.
    fn pending(&self) -> usize {
        self.lock().pending()
    }

    /// Starts fetching `urls` (keep to `room()`).
    fn push(&self, urls: Vec<String>) {
        let mut inner = self.lock();
        for url in urls {
            inner.push(url);
        }
    }

    /// Waits (GIL released) for at least one result, and returns up to `max` `(url, result)`
    /// pairs; an empty list when nothing is pending.
    fn take<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        let taken = block_on(py, take_future(Arc::clone(&self.inner), max))?;
        taken.into_pyobject(py)
    }

    /// The asyncio twin of `take`.
    fn take_async<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        into_awaitable(py, take_future(Arc::clone(&self.inner), max))
    }

    /// Aborts the work still running and waits (GIL released) until it has ended.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.lock().abort();
        let inner = Arc::clone(&self.inner);
        block_on(py, async move {
            std::future::poll_fn(|cx| {
                inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .poll_closed(cx)
            })
            .await;
            Ok::<_, FetchError>(())
        })
    }
}
