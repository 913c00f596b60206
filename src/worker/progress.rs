//! What a worker has done so far: the counters its tasks bump, the snapshot callers read
//! ([`Progress`]), and the periodic stats line in the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

use super::pool::{Stop, Worker};

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) claimed: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) items: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) discovered: AtomicU64,
    pub(super) exported: AtomicU64,
    /// Responses by HTTP status (a small set: status codes).
    pub(super) statuses: Mutex<BTreeMap<u16, u64>>,
    /// Final failures by kind (`connect`, `http_status`, ..., see `job::FAILURE_KINDS`).
    pub(super) failure_kinds: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// Counts a response with `status`.
    pub(super) fn response(&self, status: u16) {
        *self
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(status)
            .or_default() += 1;
    }

    /// Counts a job that failed for good, by kind.
    pub(super) fn failure(&self, kind: &'static str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .failure_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }
}

/// A snapshot of the worker's progress.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Progress {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed (their items recorded).
    pub completed: u64,
    /// Jobs that failed for good.
    pub failed: u64,
    /// Failed attempts scheduled to retry.
    pub retried: u64,
    /// Jobs given back unfinished at shutdown.
    pub released: u64,
    /// Outcomes refused because the lease had been taken over.
    pub stale: u64,
    /// Jobs dropped because the lease could not be renewed in time.
    pub abandoned: u64,
    /// Items recorded.
    pub items: u64,
    /// Items the `on_item` callback dropped (it returned `None`).
    pub dropped: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Jobs being worked on.
    pub in_flight: u64,
    /// Links and next pages submitted (new or already known).
    pub discovered: u64,
    /// Records copied to the JSON Lines file.
    pub exported: u64,
    /// Seconds since the worker started.
    pub elapsed: f64,
    /// Whether the worker is stopping.
    pub stopping: bool,
    /// Jobs allowed at once now (below `concurrency` while the machine is under pressure).
    pub concurrency_limit: usize,
    /// Responses by HTTP status code (as text: `"200"`, `"404"`, ...).
    pub statuses: BTreeMap<String, u64>,
    /// Jobs that failed for good, by the kind in front of their error.
    pub failure_kinds: BTreeMap<String, u64>,
}

impl Worker {
    /// The progress so far.
    pub fn progress(&self) -> Progress {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let statuses = c
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect();
        let failure_kinds = c
            .failure_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(kind, n)| ((*kind).to_owned(), *n))
            .collect();
        Progress {
            claimed: get(&c.claimed),
            completed: get(&c.completed),
            failed: get(&c.failed),
            retried: get(&c.retried),
            released: get(&c.released),
            stale: get(&c.stale),
            abandoned: get(&c.abandoned),
            items: get(&c.items),
            dropped: get(&c.dropped),
            bytes: get(&c.bytes),
            in_flight: get(&c.in_flight),
            discovered: get(&c.discovered),
            exported: get(&c.exported),
            elapsed: self.started.elapsed().as_secs_f64(),
            stopping: *self.stop.borrow() != Stop::Running,
            concurrency_limit: self.limit.load(std::sync::atomic::Ordering::Relaxed),
            statuses,
            failure_kinds,
        }
    }

    /// Logs a stats line every `log_stats_interval` (Scrapy's "Crawled N pages (at M
    /// pages/min)"): what was done since the last line, and the totals.
    pub(super) async fn stats_log_loop(self: Arc<Self>) {
        let Some(interval) = self.config.log_stats_interval else {
            return;
        };
        let mut last = (Instant::now(), self.progress());
        loop {
            tokio::time::sleep(interval).await;
            let now = self.progress();
            let minutes = last.0.elapsed().as_secs_f64() / 60.0;
            #[allow(clippy::cast_precision_loss)]
            let per_minute = |new: u64, old: u64| new.saturating_sub(old) as f64 / minutes;
            tracing::info!(
                "crawled {} pages (at {:.0} pages/min), scraped {} items (at {:.0} items/min); \
                 {} failed, {} retried, {} in flight, concurrency limit {}",
                now.completed,
                per_minute(now.completed, last.1.completed),
                now.items,
                per_minute(now.items, last.1.items),
                now.failed,
                now.retried,
                now.in_flight,
                now.concurrency_limit,
            );
            last = (Instant::now(), now);
        }
    }
}
