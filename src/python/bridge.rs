//! Running core futures from Python, the two ways Python calls them.
//!
//! - [`block_on`] serves the sync API: the calling thread drives the future on the process
//!   runtime *without* the GIL, waking every 100 ms to let Python deliver signals, so Ctrl-C
//!   interrupts a long call (and cancels the Rust work).
//! - [`into_awaitable`] serves the asyncio API: it returns an `asyncio.Future` driven by the
//!   same runtime; cancelling the Python future drops the Rust future.
//!
//! Both map the core error type to Python through the `From<...> for PyErr` impls in
//! [`super::errors`]. Inputs must be owned Rust values before they get here: nothing
//! borrowed from Python crosses into the runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};

use crate::config::ConfigError;
use crate::runtime;

/// How often a blocked sync call wakes up to check for `KeyboardInterrupt`.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `fut` on the process runtime and waits for it with the GIL released.
///
/// The calling thread drives the future itself (`Runtime::block_on`), which saves a thread
/// hand-off per call (tens of microseconds on a busy machine); it wakes every 100 ms to let
/// Python deliver signals, and dropping the future on `KeyboardInterrupt` cancels the work.
/// From a thread that is already inside the runtime (a Python callback called from Rust),
/// where `block_on` is not allowed, the future is spawned and waited for instead.
pub(crate) fn block_on<F, T, E>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return block_on_spawned(py, fut);
    }
    let runtime = runtime::handle();
    let mut fut = Box::pin(fut);
    // Most calls finish in their first poll (the blocking Redis path always does): try that
    // before arming the signal-check timer.
    let first = py.detach(|| {
        runtime::block_on_here(std::future::poll_fn(|cx| {
            std::task::Poll::Ready(fut.as_mut().poll(cx))
        }))
    });
    if let std::task::Poll::Ready(result) = first {
        return result.map_err(Into::into);
    }
    loop {
        let outcome = py.detach(|| {
            // The timer must be created inside the runtime's context, hence the async block.
            runtime
                .block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, fut.as_mut()).await })
        });
        match outcome {
            Ok(result) => return result.map_err(Into::into),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// [`block_on`] for threads inside the runtime: spawn, then wait on a channel.
fn block_on_spawned<F, T, E>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    let (sender, receiver) = mpsc::sync_channel(1);
    let task = runtime::handle().spawn(async move {
        // The receiver is gone only if the caller was interrupted; nobody wants the result.
        let _ = sender.send(fut.await);
    });
    let mut receiver = receiver;
    loop {
        // The receiver is moved through `detach` (it is Send but not Sync).
        let (outcome, returned) = py.detach(move || {
            let outcome = receiver.recv_timeout(SIGNAL_CHECK_INTERVAL);
            (outcome, receiver)
        });
        receiver = returned;
        match outcome {
            Ok(result) => return result.map_err(Into::into),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    task.abort();
                    return Err(interrupt);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "scraperv4 internal error: a background task ended without a result \
                     (it panicked; the log has the details)",
                ));
            }
        }
    }
}

/// Wraps `fut` as an awaitable for the running asyncio event loop.
pub(crate) fn into_awaitable<'py, F, T, E>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<CoreRuntime, _, T>(py, async move {
        fut.await.map_err(Into::into)
    })
}

/// Tells `pyo3-async-runtimes` to use our fork-aware runtime instead of its own static one,
/// so that the process has exactly one runtime.
struct CoreRuntime;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<TaskLocals>;
}

impl Runtime for CoreRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime::handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime::handle().spawn_blocking(f)
    }
}

impl ContextExt for CoreRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|cell| cell.get().cloned())
            .unwrap_or_default()
    }
}

fn checked_duration(seconds: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| ConfigError::invalid("seconds", seconds, "a finite number >= 0"))
}

/// Waits `seconds` on the runtime with the GIL released (self-test of the sync bridge).
#[pyfunction]
pub(crate) fn _block_for(py: Python<'_>, seconds: f64) -> PyResult<f64> {
    let duration = checked_duration(seconds)?;
    block_on(py, async move {
        let started = tokio::time::Instant::now();
        tokio::time::sleep(duration).await;
        Ok::<_, ConfigError>(started.elapsed().as_secs_f64())
    })
}

/// Returns an awaitable that sleeps `seconds` on the runtime (self-test of the async bridge).
#[pyfunction]
pub(crate) fn _sleep_async(py: Python<'_>, seconds: f64) -> PyResult<Bound<'_, PyAny>> {
    let duration = checked_duration(seconds)?;
    into_awaitable(py, async move {
        let started = tokio::time::Instant::now();
        tokio::time::sleep(duration).await;
        Ok::<_, ConfigError>(started.elapsed().as_secs_f64())
    })
}
