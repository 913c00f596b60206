//! Bindings of [`crate::fetch::stream`]: the `FetchStream` handle.
//!
//! The Python wrapper (`scraperv4.fetch.FetchStream`) pulls URLs from the caller's iterable
//! while there is room, `push`es them, and `take`s finished results. Every method holds the
//! stream's mutex only for one poll, never across a wait.
//!
//! `take_async` does not use `into_awaitable`: a runtime task that hands a result to asyncio
//! still holds the GIL (or waits for it) for a moment after the awaiting coroutine has
//! resumed, and a program that ends right after its last result (the usual end of a stream)
//! began finalizing under that thread: `Fatal Python error: PyGILState_Release`, one run in
//! three in the benchmark. Here every hand-over is counted, and `close()` (which the Python
//! stream calls when it ends, breaks, fails or is cancelled) waits with the GIL released
//! until the last one has let go of Python.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use tokio::sync::Notify;

use super::bridge::block_on;
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
        Ok(PyList::new(py, pairs?)?.into_any())
    }
}

impl Taken {
    fn len(&self) -> usize {
        match self {
            Self::Fetched(results) => results.len(),
            Self::Extracted(results) => results.len(),
        }
    }

    fn extend(&mut self, more: Self) {
        match (self, more) {
            (Self::Fetched(results), Self::Fetched(more)) => results.extend(more),
            (Self::Extracted(results), Self::Extracted(more)) => results.extend(more),
            // One stream is of one kind.
            _ => {}
        }
    }
}

impl Inner {
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

    fn try_take(&mut self, max: usize) -> Taken {
        match self {
            Self::Fetch(s) => Taken::Fetched(s.try_take(max)),
            Self::Extract(s) => Taken::Extracted(s.try_take(max)),
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

/// The hand-overs of `take_async` in progress, and the signal that stops them.
#[derive(Default)]
struct Handovers {
    closed: AtomicBool,
    closing: Notify,
    running: AtomicUsize,
    idle: Notify,
}

impl Handovers {
    /// Ready once `close()` was called.
    async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    fn done(&self) {
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Ready once no hand-over is in progress.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Results of a streaming fetch, in the order they complete (see `scraperv4.fetch`).
#[pyclass(frozen, name = "FetchStream", module = "scraperv4._core")]
pub(crate) struct PyFetchStream {
    inner: Arc<Mutex<Inner>>,
    handovers: Arc<Handovers>,
}

impl PyFetchStream {
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(Mutex::new(inner)),
            handovers: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while the lock was held leaves a JoinSet that is still consistent.
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn take_future(
    inner: Arc<Mutex<Inner>>,
    max: usize,
) -> impl Future<Output = Result<Taken, FetchError>> + Send + 'static {
    std::future::poll_fn(move |cx| lock(&inner).poll_take(cx, max).map(Ok))
}

#[pymethods]
impl PyFetchStream {
    /// URLs pushed whose result has not been taken yet.
    fn pending(&self) -> usize {
        self.lock().pending()
    }

    /// Starts fetching `urls` (the caller keeps to its window).
    fn push(&self, urls: Vec<String>) {
        let mut inner = self.lock();
        for url in urls {
            inner.push(url);
        }
    }

    /// The `(url, result)` pairs already finished, up to `max`, without waiting.
    fn try_take<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        let taken = self.lock().try_take(max);
        taken.into_pyobject(py)
    }

    /// Waits (GIL released) for at least one result, and returns up to `max` `(url, result)`
    /// pairs; an empty list when nothing is pending. When fewer than `want` were finished,
    /// waits `linger` seconds once more and adds those finished by then: on a busy machine a
    /// wake-up of the calling thread per page costs more than the page (and the stream's
    /// buffer keeps every connection busy meanwhile).
    fn take<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        want: usize,
        linger: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        let linger = std::time::Duration::try_from_secs_f64(linger).unwrap_or_default();
        let taken = block_on(py, async move {
            let mut taken = take_future(Arc::clone(&inner), max).await?;
            let pending = lock(&inner).pending();
            if taken.len() < want.min(max) && pending > 0 && !linger.is_zero() {
                tokio::time::sleep(linger).await;
                let more = lock(&inner).try_take(max - taken.len());
                taken.extend(more);
            }
            Ok::<_, FetchError>(taken)
        })?;
        taken.into_pyobject(py)
    }

    /// The asyncio side of `take`: once at least one result is finished (or the stream is
    /// closed: an empty list), calls `schedule(deliver, results)` from a runtime thread —
    /// `schedule` is the event loop's `call_soon_threadsafe`.
    fn take_async(&self, max: usize, schedule: Py<PyAny>, deliver: Py<PyAny>) {
        let inner = Arc::clone(&self.inner);
        let handovers = Arc::clone(&self.handovers);
        handovers.running.fetch_add(1, Ordering::SeqCst);
        crate::runtime::handle().spawn(async move {
            let taken = tokio::select! {
                taken = take_future(inner, max) => taken.ok(),
                () = handovers.closed() => None,
            };
            // Python is called from the blocking pool: the async threads never wait for the GIL.
            let handed = tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let results = match taken {
                        Some(taken) => taken.into_pyobject(py),
                        None => Ok(PyList::empty(py).into_any()),
                    };
                    let scheduled =
                        results.and_then(|results| schedule.call1(py, (deliver, results)));
                    if let Err(error) = scheduled {
                        // The event loop is closed: nobody waits for these results.
                        tracing::debug!(%error, "a stream's results could not be handed over");
                    }
                });
                handovers.done();
            });
            drop(handed);
        });
    }

    /// Aborts the work still running and waits (GIL released) until it has ended and no
    /// result is being handed to asyncio.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handovers.closed.store(true, Ordering::SeqCst);
        self.handovers.closing.notify_waiters();
        self.lock().abort();
        let inner = Arc::clone(&self.inner);
        let handovers = Arc::clone(&self.handovers);
        block_on(py, async move {
            std::future::poll_fn(|cx| lock(&inner).poll_closed(cx)).await;
            handovers.idle().await;
            Ok::<_, FetchError>(())
        })
    }
}
