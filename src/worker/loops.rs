//! The worker's background loops: the finisher (finished jobs to the queue in batches), the
//! heartbeat (leases of exactly what is held; lost claims stopped; the drain flag), the
//! throttle (concurrency under memory or CPU pressure) and the exporter (the results log to
//! a JSON Lines file).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::WorkerResult;
use super::job::Done;
use super::pool::{Stop, Worker};
use crate::queue::{Ack, Finished, JobStatus};
use crate::resources::sampler::ResourceConfig;
use crate::resources::{ResourceManager, Thresholds};
use crate::sink::JsonlSink;

impl Worker {
    /// Settles finished jobs in batches: whatever has arrived while the last batch was in
    /// flight goes in the next one.
    pub(super) async fn finisher(self: Arc<Self>, mut finished: mpsc::Receiver<Done>) {
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
                        token,
                    }) => Some(*token == done.finished.token),
                    Some(_) => Some(false),
                    None => None,
                };
                match completed {
                    Some(true) => {
                        self.counters.completed.fetch_add(1, Ordering::Relaxed);
                        self.counters.items.fetch_add(done.items, Ordering::Relaxed);
                        self.counters
                            .dropped
                            .fetch_add(done.dropped, Ordering::Relaxed);
                        self.metrics.items_dropped.inc_by(done.dropped);
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
                self.let_go(&(id.clone(), done.finished.token));
            }
        }
    }

    /// `finish_many`, retried while the queue is unreachable, for at most one lease (after
    /// that the jobs belong to someone else anyway). `None` per job when it gave up: the
    /// claims are let go, and the next heartbeat gives back what is still leased to us.
    /// (Every error is retried: some outages are not reported as `Unavailable`, a full
    /// SQLite disk or a clock that jumped twice.)
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
                    self.queue_trouble_if_unreachable(&error);
                    return vec![None; jobs.len()];
                }
            }
        }
    }

    /// Renews the leases of exactly the claims the worker holds (the queue gives back what
    /// is leased under its id and not held, and says which held claims are no longer ours:
    /// those jobs are stopped); sees the drain flag; when no renewal succeeds for a whole
    /// lease, stops every job (another worker may own them by now).
    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
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
            let beat = {
                // No claim is in flight while the held set is read and sent: a job claimed
                // but not yet recorded as held would be given back.
                let _gate = self.claim_gate.lock().await;
                let held = self.held_claims();
                let session = self.session();
                // Read after the held set: a claim dropped for a failed call was flagged
                // before it was let go, so it is given back uncounted.
                let outage = self.queue_trouble.swap(false, Ordering::SeqCst);
                let worker = &self.config.worker_id;
                let beat = if outage {
                    self.queue
                        .heartbeat_after_outage(worker, held, Some(&session))
                        .await
                } else {
                    self.queue
                        .heartbeat(worker, Some(held), Some(&session))
                        .await
                };
                if let Err(error) = &beat {
                    self.queue_trouble_if_unreachable(error);
                }
                beat
            };
            match beat {
                Ok(beat) if beat.superseded => {
                    tracing::error!(
                        worker = self.config.worker_id,
                        "another run registered this worker id (do two workers share it?): \
                         stopping; its jobs are that run's now"
                    );
                    self.superseded.store(true, Ordering::SeqCst);
                    for claim in self.held_claims() {
                        if self.abandon(&claim) {
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            self.metrics.outcome("stale");
                        }
                    }
                    self.stop(Stop::Immediate);
                    return;
                }
                Ok(beat) => {
                    last_renewal = Instant::now();
                    lost = false;
                    for claim in beat.lost {
                        if self.abandon(&claim) {
                            tracing::warn!(
                                job_id = claim.0,
                                "the job is no longer ours (its lease expired or it was cancelled): stopped"
                            );
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            self.metrics.outcome("stale");
                        }
                    }
                    if beat.released > 0 {
                        tracing::info!(
                            released = beat.released,
                            "gave back jobs leased under this worker's id that it does not hold"
                        );
                    }
                    if beat.draining && *self.stop.borrow() == Stop::Running {
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
                        tracing::warn!("leases could not be renewed in time: abandoning every job");
                        for claim in self.held_claims() {
                            if self.abandon(&claim) {
                                self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                                self.metrics.outcome("abandoned");
                            }
                        }
                    }
                }
            }
        }
    }

    pub(super) async fn throttle_loop(self: Arc<Self>) {
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
        let mut own = super::throttle::OwnUsage::new();
        // The state logged last: the resource under pressure, or none. A change of state is
        // logged once; the limit moving within a state is a debug detail.
        let mut last_state: Option<&'static str> = None;
        loop {
            tokio::time::sleep(throttle.interval).await;
            let reader = Arc::clone(&resources);
            let Ok(snapshot) = tokio::task::spawn_blocking(move || reader.snapshot()).await else {
                continue;
            };
            let usage = own.read(throttle.scope, &snapshot);
            let pressure = throttle.pressure(&usage);
            let saturated = self.limit_reached.swap(false, Ordering::Relaxed);
            let limit = self.limit.load(Ordering::Relaxed);
            let next = super::throttle::next_limit(
                limit,
                throttle.min_concurrency,
                self.config.concurrency,
                pressure.is_some(),
                saturated,
            );
            if next != limit {
                self.limit.store(next, Ordering::Relaxed);
                self.metrics
                    .concurrency
                    .set(i64::try_from(next).unwrap_or(i64::MAX));
                tracing::debug!(limit = next, "concurrency limit changed");
            }
            let state = pressure.as_ref().map(|(resource, _)| *resource);
            if state != last_state {
                if let Some((_, why)) = &pressure {
                    tracing::warn!(
                        "{why}: lowering concurrency (now {next}; said once until the \
                         pressure is gone)"
                    );
                } else {
                    tracing::info!(
                        "pressure gone: raising concurrency again (now {next} of {})",
                        self.config.concurrency
                    );
                }
                last_state = state;
            }
        }
    }

    /// Copies the results log to the JSON Lines file every `export_interval`, and once more
    /// after the worker stops — that last pass retried for up to a lease while it fails (the
    /// run then fails with its error: the file lacks the last results).
    pub(super) async fn export_loop(self: Arc<Self>, mut sink: JsonlSink) -> WorkerResult<()> {
        let mut stop = self.stop.subscribe();
        let mut final_deadline: Option<Instant> = None;
        let mut wait = Duration::from_millis(100);
        loop {
            // Read before the pass: a pass that starts after everything settled is the last.
            let last_pass = self.settled.load(Ordering::SeqCst);
            stop.borrow_and_update();
            match sink.export(&self.queue).await {
                Ok(written) => {
                    self.counters.exported.fetch_add(written, Ordering::Relaxed);
                    if last_pass {
                        return Ok(());
                    }
                }
                Err(error) if !last_pass => {
                    tracing::warn!(%error, "results export failed; trying again");
                }
                Err(error) => {
                    let deadline = *final_deadline
                        .get_or_insert_with(|| Instant::now() + self.queue.options().lease);
                    if Instant::now() + wait >= deadline {
                        return Err(error.into());
                    }
                    tracing::warn!(%error, ?wait, "last results export failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.export_interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
