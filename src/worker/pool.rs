//! The worker loop: claim, run jobs concurrently, stop — and what the worker holds.
//!
//! The worker keeps the set of claims it holds, `(job id, fencing token)`: a claim enters it
//! with the claim (under a gate the heartbeat takes too, so a heartbeat never sees a claim
//! half-recorded) and leaves it when the job is settled, dropped or stopped, whatever path
//! the job took. The heartbeat renews exactly that set; the queue gives back any other job
//! leased under the worker's id. A run that is cancelled (its future dropped) still gives its
//! jobs back and unregisters, from a cleanup task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use super::config::WorkerConfig;
use super::job::Done;
use super::metrics::WorkerMetrics;
use super::progress::{Counters, Progress};
use super::{ItemHook, WorkerError, WorkerResult};
use crate::extract::TemplateRegistry;
use crate::fetch::Fetcher;
use crate::queue::{Ack, Job, JobQueue, JobStatus, QueueError};
use crate::sink::JsonlSink;

/// A claim the worker holds: the job's id and the fencing token of the claim.
pub(super) type Claim = (String, u64);

/// A held claim: the task working on it (once spawned), and whether the task has handed
/// its result to the finisher (which then settles the claim and counts its outcome).
#[derive(Default)]
struct Slot {
    task: Option<AbortHandle>,
    handed: bool,
}

/// How far a stop request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    Running,
    /// Claim nothing more; in-flight jobs get the grace period, then are released.
    Graceful,
    /// Claim nothing more; release in-flight jobs at once.
    Immediate,
}

/// A scraping worker. Build with [`Worker::new`], drive with [`Worker::run`], stop from any
/// thread with [`Worker::stop`].
pub struct Worker {
    pub(super) queue: Arc<JobQueue>,
    pub(super) fetcher: Arc<Fetcher>,
    pub(super) templates: Arc<TemplateRegistry>,
    pub(super) config: WorkerConfig,
    pub(super) hook: Option<Arc<dyn ItemHook>>,
    pub(super) metrics: Arc<WorkerMetrics>,
    pub(super) counters: Counters,
    pub(super) started: Instant,
    pub(super) stop: watch::Sender<Stop>,
    /// The claims held: a job's task (to stop it) once it is spawned.
    held: Mutex<HashMap<Claim, Slot>>,
    /// Taken by a claim until its jobs are recorded as held, and by the heartbeat while it
    /// reads the held set and sends it.
    pub(super) claim_gate: tokio::sync::Mutex<()>,
    metrics_addr: Mutex<Option<std::net::SocketAddr>>,
    running: AtomicBool,
    /// The cleanup of a run that was cancelled, which the next run waits for.
    cleanup: Mutex<Option<JoinHandle<()>>>,
    /// Set once every job of the run is settled or released (the exporter's last pass).
    pub(super) settled: AtomicBool,
    /// Set when another run registered this worker's id: this run stops.
    pub(super) superseded: AtomicBool,
    /// The current run's session: registering with it takes the worker id over from any
    /// earlier run (see [`JobQueue::register_worker`]).
    pub(super) session: Mutex<String>,
    /// Jobs allowed at once now (see [`super::throttle`]).
    pub(super) limit: AtomicUsize,
    /// Whether the claim loop found the limit reached since the last adjustment.
    pub(super) limit_reached: AtomicBool,
    /// The robots.txt crawl delays handed to the queue.
    pub(super) crawl_delays: super::robots::CrawlDelays,
    /// Set when a call to the queue failed since the last heartbeat: the next heartbeat
    /// gives back what the worker dropped without counting expiries (see
    /// [`JobQueue::heartbeat_after_outage`]).
    pub(super) queue_trouble: AtomicBool,
    /// When a call to the queue last failed: this worker's reaper waits a while after it, so
    /// that after an outage the holders give their jobs back (uncounted) before a reaper
    /// counts their expired leases.
    last_trouble: Mutex<Option<Instant>>,
    /// Whether the "`on_item` dropped every item" warning was given.
    pub(super) drop_warned: AtomicBool,
    /// Unknown job config keys already warned about.
    pub(super) config_keys_warned: Mutex<std::collections::HashSet<String>>,
}

/// How long a worker's reaper waits after the worker's last failed call to the queue.
const REAP_HOLD_AFTER_TROUBLE: Duration = Duration::from_secs(10);

/// Stops a run's background tasks when the run ends — and when its future is dropped
/// before that (the Python task was cancelled, Ctrl-C) or the run failed, also gives its
/// jobs back and unregisters the worker from a cleanup task, so nothing stays leased or
/// registered.
struct RunGuard {
    worker: Arc<Worker>,
    tasks: Vec<AbortHandle>,
    finished: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if self.finished {
            return;
        }
        let worker = Arc::clone(&self.worker);
        let cleanup = crate::runtime::handle().spawn(async move {
            let id = worker.config.worker_id.clone();
            tracing::warn!(worker = id, "run cancelled or failed: giving its jobs back");
            // The finisher is gone too: handed claims are let go as well.
            for claim in worker.held_claims() {
                if !worker.abandon(&claim) {
                    worker.let_go(&claim);
                }
            }
            // Releases every job still leased under the worker's id — unless a newer run
            // has taken the id over (they are that run's).
            let session = worker.session();
            match worker.queue.unregister_worker(&id, Some(&session)).await {
                Ok(Some(released)) => tracing::info!(worker = id, released, "unregistered"),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(worker = id, %error, "could not unregister: its leases will expire");
                }
            }
            worker.reset_after_run();
        });
        *self
            .worker
            .cleanup
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cleanup);
    }
}

impl Worker {
    /// A worker over `queue` with `fetcher` and `templates`.
    pub fn new(
        queue: Arc<JobQueue>,
        fetcher: Arc<Fetcher>,
        templates: Arc<TemplateRegistry>,
        config: WorkerConfig,
        hook: Option<Arc<dyn ItemHook>>,
    ) -> WorkerResult<Self> {
        config.validate(queue.options().lease)?;
        fetcher.share_robots(Arc::new(super::robots::QueueRobots(Arc::clone(&queue))));
        let metrics = Arc::new(WorkerMetrics::new(&config.worker_id));
        metrics
            .concurrency
            .set(i64::try_from(config.concurrency).unwrap_or(i64::MAX));
        Ok(Self {
            queue,
            fetcher,
            templates,
            hook,
            metrics,
            counters: Counters::default(),
            started: Instant::now(),
            stop: watch::channel(Stop::Running).0,
            held: Mutex::new(HashMap::new()),
            claim_gate: tokio::sync::Mutex::new(()),
            metrics_addr: Mutex::new(None),
            running: AtomicBool::new(false),
            cleanup: Mutex::new(None),
            settled: AtomicBool::new(false),
            session: Mutex::new(String::new()),
            superseded: AtomicBool::new(false),
            limit: AtomicUsize::new(config.concurrency),
            limit_reached: AtomicBool::new(false),
            crawl_delays: super::robots::CrawlDelays::default(),
            queue_trouble: AtomicBool::new(false),
            last_trouble: Mutex::new(None),
            drop_warned: AtomicBool::new(false),
            config_keys_warned: Mutex::default(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The queue the worker serves.
    pub fn queue(&self) -> &Arc<JobQueue> {
        &self.queue
    }

    /// The metrics.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// Where the metrics server listens, once it does.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        *self
            .metrics_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the worker to stop (a later, stronger request wins). Safe from any thread.
    pub fn stop(&self, how: Stop) {
        self.stop.send_if_modified(|current| {
            if how > *current {
                *current = how;
                true
            } else {
                false
            }
        });
    }

    /// Runs until stopped (or, with `exit_when_done`, until the queue has nothing left), then
    /// lets in-flight jobs finish within the grace period, releases the rest and unregisters.
    pub async fn run(self: Arc<Self>) -> WorkerResult<Progress> {
        let pending_cleanup = self
            .cleanup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(cleanup) = pending_cleanup {
            let _ = cleanup.await;
        }
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(WorkerError::AlreadyRunning);
        }
        let mut guard = RunGuard {
            worker: Arc::clone(&self),
            tasks: Vec::new(),
            finished: false,
        };
        let outcome = Arc::clone(&self).run_inner(&mut guard.tasks).await;
        // A failed run (the queue refused to register, the sink would not open, the queue
        // failed for good) is cleaned up like a cancelled one: nothing may stay leased or
        // registered under this id. The next run waits for that cleanup.
        guard.finished = outcome.is_ok();
        drop(guard);
        if outcome.is_ok() {
            self.reset_after_run();
        }
        outcome
    }

    /// The current run's session.
    pub(super) fn session(&self) -> String {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ready for another run.
    fn reset_after_run(&self) {
        self.stop.send_replace(Stop::Running);
        self.settled.store(false, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
    }

    async fn run_inner(self: Arc<Self>, tasks: &mut Vec<AbortHandle>) -> WorkerResult<Progress> {
        let id = self.config.worker_id.clone();
        let session = uuid::Uuid::new_v4().simple().to_string();
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&session);
        self.superseded.store(false, Ordering::SeqCst);
        // The metrics port first: a worker that cannot serve it stops before it registers
        // (a second worker on a host's default port must not leave a ghost in the registry).
        if let Some(addr) = self.config.metrics_addr {
            let (bound, handle) = super::server::serve(addr, Arc::clone(&self)).await?;
            *self
                .metrics_addr
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(bound);
            tasks.push(handle);
        }
        // Registering with a new session takes the id over: an earlier run under this id
        // that was killed may still hold leases — they go back now instead of expiring.
        let released = self.queue.register_worker(&id, Some(&session)).await?;
        if released > 0 {
            tracing::info!(
                worker = id,
                released,
                "gave back the jobs of an earlier run under this id"
            );
        }
        let sink = match &self.config.jsonl_path {
            Some(path) => Some(JsonlSink::open(path)?),
            None => None,
        };
        let (finish_tx, finish_rx) = mpsc::channel::<Done>(4 * self.config.concurrency);
        let finisher = tokio::spawn(Arc::clone(&self).finisher(finish_rx));
        tasks.push(finisher.abort_handle());
        let heartbeat = tokio::spawn(Arc::clone(&self).heartbeat_loop());
        tasks.push(heartbeat.abort_handle());
        if self.config.throttle.enabled {
            tasks.push(tokio::spawn(Arc::clone(&self).throttle_loop()).abort_handle());
        }
        if self.config.log_stats_interval.is_some() {
            tasks.push(tokio::spawn(Arc::clone(&self).stats_log_loop()).abort_handle());
        }
        let exporter = sink.map(|sink| tokio::spawn(Arc::clone(&self).export_loop(sink)));
        if let Some(exporter) = &exporter {
            tasks.push(exporter.abort_handle());
        }
        tracing::info!(
            worker = id,
            queue = self.queue.location(),
            concurrency = self.config.concurrency,
            "worker started"
        );

        let loop_outcome = Arc::clone(&self).claim_loop(finish_tx).await;

        // Everything sent to the finisher is settled before leftovers are released.
        let _ = finisher.await;
        for (job_id, token) in self.held_claims() {
            // Released while still held: a heartbeat in between must list it (a claim it
            // does not list is given back as an expired lease, and the release refused).
            let released = self.queue.release(&job_id, token).await;
            self.let_go(&(job_id.clone(), token));
            match released {
                Ok(Ack::Accepted) => {
                    self.counters.released.fetch_add(1, Ordering::Relaxed);
                    self.metrics.outcome("released");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(job_id, %error, "could not release a job"),
            }
        }
        self.settled.store(true, Ordering::SeqCst);
        let mut export_outcome = Ok(());
        if let Some(exporter) = exporter {
            // The exporter copies what is left when it sees the stop (woken even when the
            // stop was asked for before).
            self.stop(Stop::Graceful);
            self.stop.send_modify(|_| {});
            export_outcome = match exporter.await {
                Ok(outcome) => outcome,
                Err(error) if error.is_cancelled() => Ok(()),
                Err(error) => {
                    tracing::error!(%error, "results export stopped");
                    Ok(())
                }
            };
            if let Err(error) = &export_outcome {
                tracing::error!(%error, "results export failed: the file lacks the last results");
            }
        }
        // No heartbeat after the unregistration (a late one would register the id again: a
        // ghost worker in the registry until it expires). One already sent is ahead of the
        // unregistration on the queue's connection.
        heartbeat.abort();
        let _ = heartbeat.await;
        if let Err(error) = self.queue.unregister_worker(&id, Some(&session)).await {
            tracing::warn!(worker = id, %error, "could not unregister");
        }
        let progress = self.progress();
        tracing::info!(
            worker = id,
            completed = progress.completed,
            failed = progress.failed,
            items = progress.items,
            "worker stopped"
        );
        if self.superseded.load(Ordering::SeqCst) {
            return Err(WorkerError::Superseded { worker: id });
        }
        loop_outcome.and(export_outcome).map(|()| progress)
    }

    async fn claim_loop(self: Arc<Self>, finish_tx: mpsc::Sender<Done>) -> WorkerResult<()> {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks = JoinSet::new();
        let mut stop = self.stop.subscribe();
        let mut idle_wait = Duration::from_millis(10);
        let mut last_reap: Option<Instant> = None;
        let mut outage_wait = Duration::from_millis(100);
        let outcome = loop {
            if *stop.borrow_and_update() != Stop::Running {
                break Ok(());
            }
            // Held back a while after a failed call (see REAP_HOLD_AFTER_TROUBLE), but never
            // for long: a queue with frequent transient errors still gets reaped.
            let since = last_reap.map(|at| at.elapsed());
            if since.is_none_or(|s| s >= self.config.reap_interval)
                && (!self.troubled_within(REAP_HOLD_AFTER_TROUBLE)
                    || since.is_some_and(|s| s >= REAP_HOLD_AFTER_TROUBLE * 3))
            {
                last_reap = Some(Instant::now());
                if let Err(error) = self.queue.reap(1000).await {
                    tracing::warn!(%error, "reaper pass failed");
                    self.queue_trouble_if_unreachable(&error);
                }
            }
            while let Some(joined) = tasks.try_join_next() {
                log_panic(joined);
            }
            let available = permits.available_permits();
            let in_flight = self.config.concurrency - available;
            let free = available.min(self.limit.load(Ordering::Relaxed).saturating_sub(in_flight));
            if free == 0 {
                self.limit_reached.store(true, Ordering::Relaxed);
                tokio::select! {
                    joined = tasks.join_next() => { if let Some(joined) = joined { log_panic(joined); } }
                    _ = stop.changed() => {}
                }
                continue;
            }
            let claimed = self.claim_some(free).await;
            let (jobs, wake) = match claimed {
                Ok(claimed) => {
                    outage_wait = Duration::from_millis(100);
                    claimed
                }
                Err(QueueError::Unavailable { .. }) => {
                    // The claim may have gone through with its reply lost: the jobs are
                    // leased to us, unknown; the next heartbeat gives them back.
                    self.queue_trouble();
                    tracing::warn!(wait = ?outage_wait, "queue unreachable; claiming again later");
                    tokio::select! {
                        () = tokio::time::sleep(outage_wait) => {}
                        _ = stop.changed() => {}
                    }
                    outage_wait = (outage_wait * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(error) => break Err(error.into()),
            };
            if jobs.is_empty() {
                if self.config.exit_when_done && tasks.is_empty() && self.queue_is_done().await {
                    break Ok(());
                }
                // A paced key or a retry that becomes ready before the next poll: ask then.
                let wait = wake.map_or(idle_wait, |w| {
                    idle_wait.min(w.max(Duration::from_millis(1)))
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_panic(joined),
                    _ = stop.changed() => {}
                }
                idle_wait = (idle_wait * 2).min(self.config.idle_poll);
                continue;
            }
            idle_wait = Duration::from_millis(10);
            self.counters
                .claimed
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            for job in jobs {
                let claim = (job.id.clone(), job.token);
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Cannot happen (we claimed at most the free permits); never lose the job.
                    self.let_go(&claim);
                    let _ = self.queue.release(&job.id, job.token).await;
                    continue;
                };
                let worker = Arc::clone(&self);
                let finish_tx = finish_tx.clone();
                let task = tasks.spawn(async move {
                    worker.run_job(job, finish_tx).await;
                    drop(permit);
                });
                self.attach(&claim, task);
            }
        };
        drop(finish_tx);
        self.wind_down(&mut tasks, &mut stop).await;
        outcome
    }

    /// Claims up to `free` jobs (at most a batch) and records them as held before the
    /// heartbeat may look (the claim gate).
    async fn claim_some(&self, free: usize) -> Result<(Vec<Job>, Option<Duration>), QueueError> {
        let _gate = self.claim_gate.lock().await;
        let claimed = self
            .queue
            .claim_with_wake(
                &self.config.worker_id,
                free.min(self.config.claim_batch),
                true,
            )
            .await;
        if let Ok((jobs, _)) = &claimed {
            for job in jobs {
                self.hold(job);
            }
        }
        claimed
    }

    /// In-flight jobs get the grace period (none after an immediate stop), then are aborted;
    /// the caller releases what they held.
    async fn wind_down(&self, tasks: &mut JoinSet<()>, stop: &mut watch::Receiver<Stop>) {
        if tasks.is_empty() {
            return;
        }
        let grace = if *stop.borrow() == Stop::Immediate {
            Duration::ZERO
        } else {
            self.config.grace_period
        };
        tracing::info!(
            in_flight = tasks.len(),
            ?grace,
            "stopping: finishing in-flight jobs"
        );
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(joined) => log_panic(joined),
                    None => return,
                },
                () = &mut deadline => break,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() == Stop::Immediate { break; }
                }
            }
        }
        tracing::info!(
            left = tasks.len(),
            "grace period over: releasing unfinished jobs"
        );
        tasks.abort_all();
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined
                && error.is_panic()
            {
                tracing::error!(%error, "a job task panicked");
            }
        }
    }

    /// Records a claim as held.
    fn hold(&self, job: &Job) {
        let fresh = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((job.id.clone(), job.token), Slot::default())
            .is_none();
        if fresh {
            self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            self.metrics.in_flight.inc();
        }
    }

    /// Remembers the task working on a held claim (to stop it if the claim is lost); a claim
    /// lost before its task started (a heartbeat came in between) stops the task now.
    fn attach(&self, claim: &Claim, task: AbortHandle) {
        match self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(claim)
        {
            Some(slot) => slot.task = Some(task),
            None => task.abort(),
        }
    }

    /// The claims held now.
    pub(super) fn held_claims(&self) -> Vec<Claim> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Stops holding a claim (its job is settled, or dropped: if the job is still leased
    /// under this worker's id, the next heartbeat gives it back); true when it was held.
    fn take(&self, claim: &Claim) -> bool {
        let removed = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(claim)
            .is_some();
        if removed {
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.metrics.in_flight.dec();
        }
        removed
    }

    /// Records that a call to the queue failed (see `queue_trouble`). Called before the
    /// claims it concerns are let go.
    pub(super) fn queue_trouble(&self) {
        self.queue_trouble.store(true, Ordering::SeqCst);
        *self
            .last_trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// [`Worker::queue_trouble`] when `error` says the queue could not be reached (a refusal
    /// is not an outage: what it drops is counted as usual).
    pub(super) fn queue_trouble_if_unreachable(&self, error: &QueueError) {
        if matches!(error, QueueError::Unavailable { .. }) {
            self.queue_trouble();
        }
    }

    /// Whether a call to the queue failed within `window`.
    fn troubled_within(&self, window: Duration) -> bool {
        self.last_trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Records that the task of a held claim hands its result to the finisher: from now on
    /// the finisher settles the claim and counts its one outcome (the heartbeat leaves it).
    pub(super) fn hand_over(&self, claim: &Claim) {
        if let Some(slot) = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(claim)
        {
            slot.handed = true;
        }
    }

    /// Stops holding a claim whose job is settled or dropped.
    pub(super) fn let_go(&self, claim: &Claim) {
        self.take(claim);
    }

    /// Stops the job of a claim that is no longer ours and lets the claim go; true when the
    /// claim was held.
    pub(super) fn abandon(&self, claim: &Claim) -> bool {
        let task = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            match held.get(claim) {
                // With the finisher: it settles the claim and counts the outcome, once.
                Some(slot) if slot.handed => return false,
                Some(_) => held.remove(claim).and_then(|slot| slot.task),
                None => return false,
            }
        };
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.dec();
        if let Some(task) = task {
            task.abort();
        }
        true
    }

    /// Nothing pending, delayed or leased is left (false when the queue cannot say: the
    /// claim loop goes on and asks again).
    async fn queue_is_done(&self) -> bool {
        match self.queue.stats().await {
            Ok(stats) => [
                JobStatus::Pending,
                JobStatus::Retrying,
                JobStatus::Assigned,
                JobStatus::Running,
            ]
            .into_iter()
            .all(|status| stats.count(status) == 0),
            Err(error) => {
                tracing::warn!(%error, "could not read the queue's counts");
                false
            }
        }
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(%error, "a job task panicked; its lease will expire and it will run again");
    }
}
