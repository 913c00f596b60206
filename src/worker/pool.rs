//! The worker loop: claim, run jobs concurrently, finish them in batches, heartbeat, stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::config::WorkerConfig;
use super::crawl::{self, JobSettings};
use super::metrics::WorkerMetrics;
use super::{ItemHook, WorkerError, WorkerResult};
use crate::extract::TemplateRegistry;
use crate::fetch::Fetcher;
use crate::queue::{Ack, FailOutcome, Finished, Job, JobQueue, JobStatus, QueueError};
use crate::resources::sampler::ResourceConfig;
use crate::resources::{ResourceManager, Thresholds};
use crate::sink::JsonlSink;

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

/// Counters a caller can read while the worker runs.
#[derive(Debug, Default)]
struct Counters {
    claimed: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    released: AtomicU64,
    stale: AtomicU64,
    abandoned: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    in_flight: AtomicU64,
    discovered: AtomicU64,
    exported: AtomicU64,
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
}

/// Why a job did not produce a result.
struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A job's outcome on its way to the queue.
struct Done {
    finished: Finished,
    items: u64,
    started: Instant,
}

/// A scraping worker. Build with [`Worker::new`], drive with [`Worker::run`], stop from any
/// thread with [`Worker::stop`].
pub struct Worker {
    queue: Arc<JobQueue>,
    fetcher: Arc<Fetcher>,
    templates: Arc<TemplateRegistry>,
    config: WorkerConfig,
    hook: Option<Arc<dyn ItemHook>>,
    metrics: Arc<WorkerMetrics>,
    counters: Counters,
    started: Instant,
    stop: watch::Sender<Stop>,
    /// Bumped each time the worker could not renew its leases before they ran out.
    lease_generation: watch::Sender<u64>,
    /// Jobs claimed and not yet settled: id to fencing token.
    held: Mutex<HashMap<String, u64>>,
    /// Jobs dropped after their lease could not be renewed, to give back (fenced) as soon as
    /// the queue answers: the queue still lists them under this worker, and the next
    /// heartbeat would otherwise renew leases nobody works on.
    abandoned: Mutex<Vec<(String, u64)>>,
    metrics_addr: Mutex<Option<std::net::SocketAddr>>,
    running: AtomicBool,
    /// Set once every job of the run is settled or released (the exporter's last pass).
    settled: AtomicBool,
    /// Jobs allowed at once now (see [`super::throttle`]).
    limit: AtomicUsize,
    /// Whether the claim loop found the limit reached since the last adjustment.
    limit_reached: AtomicBool,
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
            lease_generation: watch::channel(0).0,
            held: Mutex::new(HashMap::new()),
            abandoned: Mutex::new(Vec::new()),
            metrics_addr: Mutex::new(None),
            running: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            limit: AtomicUsize::new(config.concurrency),
            limit_reached: AtomicBool::new(false),
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

    /// The progress so far.
    pub fn progress(&self) -> Progress {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Progress {
            claimed: get(&c.claimed),
            completed: get(&c.completed),
            failed: get(&c.failed),
            retried: get(&c.retried),
            released: get(&c.released),
            stale: get(&c.stale),
            abandoned: get(&c.abandoned),
            items: get(&c.items),
            bytes: get(&c.bytes),
            in_flight: get(&c.in_flight),
            discovered: get(&c.discovered),
            exported: get(&c.exported),
            elapsed: self.started.elapsed().as_secs_f64(),
            stopping: *self.stop.borrow() != Stop::Running,
            concurrency_limit: self.limit.load(Ordering::Relaxed),
        }
    }

    /// Runs until stopped (or, with `exit_when_done`, until the queue has nothing left), then
    /// lets in-flight jobs finish within the grace period, releases the rest and unregisters.
    pub async fn run(self: Arc<Self>) -> WorkerResult<Progress> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(WorkerError::AlreadyRunning);
        }
        let id = self.config.worker_id.clone();
        // A previous run under this id that was killed may still hold leases: give them back
        // now instead of waiting for them to expire.
        let released = self.queue.unregister_worker(&id).await?;
        if released > 0 {
            tracing::info!(worker = id, released, "released the jobs of a previous run");
        }
        self.queue.register_worker(&id).await?;
        let server = match self.config.metrics_addr {
            Some(addr) => {
                let (bound, handle) = super::server::serve(addr, Arc::clone(&self)).await?;
                *self
                    .metrics_addr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(bound);
                Some(handle)
            }
            None => None,
        };
        let mut sink = match &self.config.jsonl_path {
            Some(path) => Some(JsonlSink::open(path)?),
            None => None,
        };
        let (finish_tx, finish_rx) = mpsc::channel::<Done>(4 * self.config.concurrency);
        let finisher = tokio::spawn(Arc::clone(&self).finisher(finish_rx));
        let heartbeat = tokio::spawn(Arc::clone(&self).heartbeat_loop());
        let throttle = self
            .config
            .throttle
            .enabled
            .then(|| tokio::spawn(Arc::clone(&self).throttle_loop()));
        let exporter = sink
            .take()
            .map(|sink| tokio::spawn(Arc::clone(&self).export_loop(sink)));
        tracing::info!(
            worker = id,
            queue = self.queue.location(),
            concurrency = self.config.concurrency,
            "worker started"
        );

        let loop_outcome = Arc::clone(&self).claim_loop(finish_tx).await;

        // Everything sent to the finisher is settled before leftovers are released.
        let _ = finisher.await;
        let leftovers: Vec<(String, u64)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, attempt)| (id.clone(), *attempt))
            .collect();
        for (job_id, attempt) in leftovers {
            self.settle(&job_id);
            match self.queue.release(&job_id, attempt).await {
                Ok(Ack::Accepted) => {
                    self.counters.released.fetch_add(1, Ordering::Relaxed);
                    self.metrics.outcome("released");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(job_id, %error, "could not release a job"),
            }
        }
        heartbeat.abort();
        self.release_abandoned().await;
        if let Some(throttle) = throttle {
            throttle.abort();
        }
        self.settled.store(true, Ordering::SeqCst);
        if let Some(exporter) = exporter {
            // The exporter copies what is left when it sees the stop.
            self.stop(Stop::Graceful);
            match exporter.await {
                Ok(Err(error)) => tracing::error!(%error, "results export failed"),
                Err(error) => tracing::error!(%error, "results export stopped"),
                Ok(Ok(())) => {}
            }
        }
        if let Err(error) = self.queue.unregister_worker(&id).await {
            tracing::warn!(worker = id, %error, "could not unregister");
        }
        if let Some(server) = server {
            server.abort();
        }
        let progress = self.progress();
        // Ready for another run.
        self.stop.send_replace(Stop::Running);
        self.settled.store(false, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
        tracing::info!(
            worker = id,
            completed = progress.completed,
            failed = progress.failed,
            items = progress.items,
            "worker stopped"
        );
        loop_outcome.map(|()| progress)
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
            if last_reap.is_none_or(|at| at.elapsed() >= self.config.reap_interval) {
                last_reap = Some(Instant::now());
                if let Err(error) = self.queue.reap(1000).await {
                    tracing::warn!(%error, "reaper pass failed");
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
            let jobs = match self
                .queue
                .claim(&self.config.worker_id, free.min(self.config.claim_batch))
                .await
            {
                Ok(jobs) => {
                    outage_wait = Duration::from_millis(100);
                    jobs
                }
                Err(QueueError::Unavailable { .. }) => {
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
                if self.config.exit_when_done && tasks.is_empty() && self.queue_is_done().await? {
                    break Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(idle_wait) => {}
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
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Cannot happen (we claimed at most the free permits); never lose the job.
                    let _ = self.queue.release(&job.id, job.attempt).await;
                    continue;
                };
                self.hold(&job);
                let worker = Arc::clone(&self);
                let finish_tx = finish_tx.clone();
                tasks.spawn(async move {
                    worker.run_job(job, finish_tx).await;
                    drop(permit);
                });
            }
        };
        drop(finish_tx);
        self.wind_down(&mut tasks, &mut stop).await;
        outcome
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

    fn hold(&self, job: &Job) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.id.clone(), job.attempt);
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
    }

    fn settle(&self, job_id: &str) {
        let removed = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_id);
        if removed.is_some() {
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.metrics.in_flight.dec();
        }
    }

    /// Nothing pending, delayed or leased is left.
    async fn queue_is_done(&self) -> WorkerResult<bool> {
        let stats = self.queue.stats().await?;
        Ok([
            JobStatus::Pending,
            JobStatus::Retrying,
            JobStatus::Assigned,
            JobStatus::Running,
        ]
        .into_iter()
        .all(|status| stats.count(status) == 0))
    }

    async fn run_job(self: Arc<Self>, job: Job, finish_tx: mpsc::Sender<Done>) {
        let started = Instant::now();
        let mut lease = self.lease_generation.subscribe();
        lease.borrow_and_update();
        let settings = JobSettings::of(&job.config);
        let timeout = settings
            .as_ref()
            .ok()
            .and_then(|s| s.timeout)
            .unwrap_or(self.config.job_timeout);
        let work = async {
            let settings = settings.map_err(Failure::permanent)?;
            self.work(&job, &settings).await
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, work) => outcome,
            _ = lease.changed() => {
                tracing::warn!(job_id = job.id, "lease could not be renewed in time: abandoning the job");
                self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                self.metrics.outcome("abandoned");
                self.abandoned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((job.id.clone(), job.attempt));
                self.settle(&job.id);
                return;
            }
        };
        let failure = match outcome {
            Ok(Ok(done)) => {
                let done = Done {
                    finished: done.0,
                    items: done.1,
                    started,
                };
                // The finisher settles the job once the queue has it.
                if finish_tx.send(done).await.is_err() {
                    self.settle(&job.id);
                }
                return;
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure {
                message: format!("the job did not finish within {timeout:?}"),
                retryable: true,
            },
        };
        self.record_failure(&job, &failure).await;
        self.metrics
            .job_duration
            .observe(started.elapsed().as_secs_f64());
        self.settle(&job.id);
    }

    async fn record_failure(&self, job: &Job, failure: &Failure) {
        match self
            .queue
            .fail(&job.id, job.attempt, &failure.message, failure.retryable)
            .await
        {
            Ok((Ack::Accepted, Some(FailOutcome::Retrying { .. }))) => {
                tracing::info!(job_id = job.id, error = failure.message, "job will retry");
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                self.metrics.outcome("retried");
            }
            Ok((Ack::Accepted, _)) => {
                tracing::warn!(job_id = job.id, error = failure.message, "job failed");
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.metrics.outcome("failed");
            }
            Ok(_) => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                self.metrics.outcome("stale");
            }
            // The lease runs out and the job comes back: nothing is lost.
            Err(error) => tracing::warn!(job_id = job.id, %error, "could not record a failure"),
        }
    }

    /// Fetch, extract, discover: the job's result, or why not.
    async fn work(&self, job: &Job, settings: &JobSettings) -> Result<(Finished, u64), Failure> {
        let template = self
            .templates
            .get(&job.template_id)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        let fetch_started = Instant::now();
        let page = match self
            .fetcher
            .fetch_with(&job.target_url, settings.request)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                self.metrics
                    .fetch_errors
                    .with_label_values(&[error.kind.as_str()])
                    .inc();
                if let Some(status) = error.status {
                    self.metrics
                        .responses
                        .with_label_values(&[&status.to_string()])
                        .inc();
                }
                return Err(Failure {
                    message: format!("fetch failed ({}): {error}", error.kind),
                    retryable: error.is_retryable(),
                });
            }
        };
        self.metrics
            .fetch_duration
            .observe(fetch_started.elapsed().as_secs_f64());
        self.metrics
            .responses
            .with_label_values(&[&page.status.to_string()])
            .inc();
        self.metrics.bytes.inc_by(page.wire_bytes);
        self.counters
            .bytes
            .fetch_add(page.wire_bytes, Ordering::Relaxed);
        let fetched_at = jiff::Timestamp::now().to_string();
        let (status, final_url) = (page.status, page.final_url.clone());
        let (text, _encoding) = page.into_text();
        let (output, engine) = template.analyse_counted(&text, &final_url);
        self.metrics
            .pages_parsed
            .with_label_values(&<[&str; 2]>::from(engine.labels()))
            .inc();
        let discovered = crawl::discovered(job, &template, &output, settings.page);
        let mut records = Vec::with_capacity(output.items.len());
        for (index, fields) in output.items.into_iter().enumerate() {
            let record = crawl::record(job, &fetched_at, index, fields);
            let kept = match &self.hook {
                Some(hook) => hook.process(record).map_err(|message| Failure {
                    message: format!("the item callback failed: {message}"),
                    retryable: true,
                })?,
                None => Some(record),
            };
            records.extend(kept);
        }
        let items = records.len() as u64;
        let result = serde_json::json!({
            "status": status,
            "final_url": final_url,
            "items": items,
            "discovered": discovered.len(),
        });
        let finished = Finished {
            id: job.id.clone(),
            attempt: job.attempt,
            result: Some(result.to_string()),
            records: (!records.is_empty()).then(|| Value::Array(records).to_string()),
            discovered,
        };
        Ok((finished, items))
    }

    /// Settles finished jobs in batches: whatever has arrived while the last batch was in
    /// flight goes in the next one.
    async fn finisher(self: Arc<Self>, mut finished: mpsc::Receiver<Done>) {
        let mut batch: Vec<Done> = Vec::new();
        while finished.recv_many(&mut batch, 200).await > 0 {
            let jobs: Vec<Finished> = batch.iter().map(|d| d.finished.clone()).collect();
            let acks = self.finish_with_retries(jobs).await;
            for (done, ack) in batch.drain(..).zip(acks) {
                let id = &done.finished.id;
                // Stale with our own token and `completed`: an earlier try that timed out
                // had gone through.
                let completed = match &ack {
                    Some(Ack::Accepted) => Some(true),
                    Some(Ack::Stale {
                        status: JobStatus::Completed,
                        attempt,
                    }) => Some(*attempt == done.finished.attempt),
                    Some(_) => Some(false),
                    None => None,
                };
                match completed {
                    Some(true) => {
                        self.counters.completed.fetch_add(1, Ordering::Relaxed);
                        self.counters.items.fetch_add(done.items, Ordering::Relaxed);
                        self.counters
                            .discovered
                            .fetch_add(done.finished.discovered.len() as u64, Ordering::Relaxed);
                        self.metrics.outcome("completed");
                        self.metrics.items.inc_by(done.items);
                    }
                    Some(false) => {
                        tracing::warn!(
                            job_id = id,
                            "result refused: the lease had been taken over"
                        );
                        self.counters.stale.fetch_add(1, Ordering::Relaxed);
                        self.metrics.outcome("stale");
                    }
                    None => {
                        self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                        self.metrics.outcome("abandoned");
                    }
                }
                self.metrics
                    .job_duration
                    .observe(done.started.elapsed().as_secs_f64());
                self.settle(id);
            }
        }
    }

    /// `finish_many`, retried while the queue is unreachable, for at most one lease (after
    /// that the jobs belong to someone else anyway). `None` per job when it gave up.
    async fn finish_with_retries(&self, jobs: Vec<Finished>) -> Vec<Option<Ack>> {
        let deadline = Instant::now() + self.queue.options().lease;
        let mut wait = Duration::from_millis(100);
        loop {
            match self.queue.finish_many(jobs.clone()).await {
                Ok(acks) => return acks.into_iter().map(Some).collect(),
                Err(error) if Instant::now() + wait < deadline => {
                    tracing::warn!(%error, jobs = jobs.len(), "could not record finished jobs; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    tracing::error!(%error, jobs = jobs.len(), "gave up recording finished jobs: they will run again");
                    return vec![None; jobs.len()];
                }
            }
        }
    }

    /// Renews liveness and leases; sees the drain flag; notices when leases ran out.
    async fn heartbeat_loop(self: Arc<Self>) {
        let lease = self.queue.options().lease;
        let mut last_renewal = Instant::now();
        let mut lost = false;
        loop {
            let wait = if lost || last_renewal.elapsed() > self.config.heartbeat {
                self.config.heartbeat.min(Duration::from_secs(1))
            } else {
                self.config.heartbeat
            };
            tokio::time::sleep(wait).await;
            self.release_abandoned().await;
            match self.queue.heartbeat(&self.config.worker_id).await {
                Ok((_renewed, draining)) => {
                    last_renewal = Instant::now();
                    lost = false;
                    if draining && *self.stop.borrow() == Stop::Running {
                        tracing::info!(
                            "drain requested: finishing in-flight jobs, claiming no more"
                        );
                        self.stop(Stop::Graceful);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed");
                    if !lost && last_renewal.elapsed() >= lease {
                        lost = true;
                        self.lease_generation.send_modify(|g| *g += 1);
                    }
                }
            }
        }
    }

    /// Moves the concurrency limit with the machine's pressure (see [`super::throttle`]).
    async fn throttle_loop(self: Arc<Self>) {
        let throttle = self.config.throttle;
        let resources = match ResourceManager::start(ResourceConfig {
            thresholds: Thresholds {
                cpu_max: throttle.cpu_max,
                memory_max: throttle.memory_max,
                ..Thresholds::default()
            },
            interval: (throttle.interval / 2).max(Duration::from_millis(200)),
            history_len: 4,
            ..ResourceConfig::default()
        }) {
            Ok(resources) => Arc::new(resources),
            Err(error) => {
                tracing::warn!(%error, "cannot watch this machine's resources: concurrency stays fixed");
                return;
            }
        };
        let mut last_reason: Option<String> = None;
        loop {
            tokio::time::sleep(throttle.interval).await;
            let reader = Arc::clone(&resources);
            let Ok(snapshot) = tokio::task::spawn_blocking(move || reader.snapshot()).await else {
                continue;
            };
            let reason = throttle.pressure(&snapshot);
            let saturated = self.limit_reached.swap(false, Ordering::Relaxed);
            let limit = self.limit.load(Ordering::Relaxed);
            let next = super::throttle::next_limit(
                limit,
                throttle.min_concurrency,
                self.config.concurrency,
                reason.is_some(),
                saturated,
            );
            if next != limit {
                self.limit.store(next, Ordering::Relaxed);
                self.metrics
                    .concurrency
                    .set(i64::try_from(next).unwrap_or(i64::MAX));
            }
            if reason != last_reason {
                match &reason {
                    Some(why) => tracing::warn!(limit = next, "{why}: lowering concurrency"),
                    None => {
                        tracing::info!(limit = next, "pressure gone: raising concurrency again");
                    }
                }
                last_reason = reason;
            }
        }
    }

    /// Gives back the jobs abandoned for want of a lease, if the queue answers (those that
    /// someone else took over already are refused by their fencing token, as they should).
    async fn release_abandoned(&self) {
        let jobs = std::mem::take(
            &mut *self
                .abandoned
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut unreachable = Vec::new();
        for (job_id, attempt) in jobs {
            if !unreachable.is_empty() {
                unreachable.push((job_id, attempt));
                continue;
            }
            match self.queue.release(&job_id, attempt).await {
                Ok(_) => tracing::debug!(job_id, "abandoned job given back"),
                Err(error) => {
                    tracing::debug!(job_id, %error, "abandoned job not given back yet");
                    unreachable.push((job_id, attempt));
                }
            }
        }
        self.abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(unreachable);
    }

    /// Copies the results log to the JSON Lines file every `export_interval`, and once more
    /// after the worker stops.
    async fn export_loop(self: Arc<Self>, mut sink: JsonlSink) -> WorkerResult<()> {
        let mut stop = self.stop.subscribe();
        loop {
            // Read before the pass: a pass that starts after everything settled is the last.
            let last_pass = self.settled.load(Ordering::SeqCst);
            let stopping = *stop.borrow_and_update() != Stop::Running;
            match sink.export(&self.queue).await {
                Ok(written) => {
                    self.counters.exported.fetch_add(written, Ordering::Relaxed);
                }
                Err(error) if !stopping => {
                    tracing::warn!(%error, "results export failed; trying again");
                }
                Err(error) => return Err(error.into()),
            }
            if last_pass {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.export_interval) => {}
                _ = stop.changed() => {}
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
