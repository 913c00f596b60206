//! The process's one tokio runtime.
//!
//! Owns the multi-threaded runtime every subsystem spawns its work on. It is built on first
//! use, not at import, so importing `scraperv4` starts no threads. A forked child (Python's
//! `multiprocessing` with the `fork` start method) inherits the parent's runtime memory but
//! none of its threads, so a runtime is only ever used by the process that built it: the
//! first call in a new process builds a fresh one and the inherited one is left untouched
//! (dropping it would try to join threads that do not exist in the child).

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};

use tokio::runtime::{Builder, Runtime};

/// A runtime and the process that built it.
struct Owned {
    pid: u32,
    runtime: Runtime,
}

/// Points at a leaked [`Owned`]; never freed, because a child may still hold the parent's.
static CURRENT: AtomicPtr<Owned> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime of this process, building it on first use (and again after a `fork`).
///
/// # Panics
/// If the operating system refuses to start the runtime's threads, which leaves the process
/// unable to do any work at all.
pub fn handle() -> &'static Runtime {
    let pid = std::process::id();
    let current = CURRENT.load(Ordering::Acquire);
    if let Some(owned) = leaked(current)
        && owned.pid == pid
    {
        return &owned.runtime;
    }
    let fresh = Box::into_raw(Box::new(Owned {
        pid,
        runtime: build(),
    }));
    match CURRENT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            tracing::debug!(pid, "started the tokio runtime");
            &leaked(fresh).expect("just stored").runtime
        }
        Err(winner) => {
            // Another thread of this process built one first: use theirs, drop ours.
            drop(reclaim(fresh));
            &leaked(winner).expect("set by the winning thread").runtime
        }
    }
}

thread_local! {
    static MAY_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Drives `fut` to completion on the calling thread, which must not be a runtime thread.
///
/// While it runs, [`caller_may_block`] is true on this thread: code polled directly by this
/// call may use blocking I/O (it only blocks the caller, who is waiting anyway), which skips
/// the hand-offs to runtime threads that an async round trip costs.
pub fn block_on_here<F: std::future::Future>(fut: F) -> F::Output {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MAY_BLOCK.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(MAY_BLOCK.with(|flag| flag.replace(true)));
    handle().block_on(fut)
}

/// True inside [`block_on_here`] on the thread that called it (never on runtime threads).
pub fn caller_may_block() -> bool {
    MAY_BLOCK.with(Cell::get)
}

fn build() -> Runtime {
    Builder::new_multi_thread()
        .enable_all()
        .thread_name("scraperv4-rt")
        .build()
        .expect("the operating system refused to start the tokio runtime's threads")
}

#[allow(unsafe_code)]
fn leaked(ptr: *mut Owned) -> Option<&'static Owned> {
    // SAFETY: non-null values of CURRENT come from Box::into_raw and are never freed once
    // published, so they are valid for 'static.
    unsafe { ptr.as_ref() }
}

#[allow(unsafe_code)]
fn reclaim(ptr: *mut Owned) -> Owned {
    // SAFETY: `ptr` came from Box::into_raw in this call of `handle` and was never published.
    *unsafe { Box::from_raw(ptr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_runtime_is_returned_within_a_process() {
        let first: *const Runtime = handle();
        let second: *const Runtime = handle();
        assert_eq!(first, second);
        assert_eq!(handle().block_on(async { 40 + 2 }), 42);
    }

    #[test]
    fn concurrent_first_calls_agree_on_one_runtime() {
        let pointers: Vec<usize> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| std::ptr::from_ref(handle()) as usize))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(pointers.windows(2).all(|w| w[0] == w[1]));
    }
}
