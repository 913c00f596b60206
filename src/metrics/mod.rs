//! Cluster metrics: what the whole fleet is doing, read from the queue, as the scaling guide's
//! `ScalingMetrics` and as Prometheus series.
//!
//! Every number is real: status counts are the queue's maintained counters, rates and the
//! error rate come from differences of the queue's monotonic totals between two samples
//! (so any number of collectors agree, and a collector that restarts loses nothing but one
//! interval), and job durations come from the histogram the queue keeps as jobs complete.
//! [`derive`] is pure; [`ClusterMetrics`] keeps the previous sample, the history and the
//! Prometheus registry; [`serve`] exposes `/metrics` over HTTP.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use serde::Serialize;

use crate::queue::{DURATION_BUCKETS_MS, JobStatus, QueueStats};

/// One reading of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// What the queue said.
    pub stats: QueueStats,
}

/// The scaling guide's `ScalingMetrics`, plus the runnable backlog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingMetrics {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// Jobs stored (finished ones until the retention purges them).
    pub total_jobs: u64,
    /// Jobs waiting to be claimed.
    pub pending_jobs: u64,
    /// Jobs held by workers (assigned or running).
    pub running_jobs: u64,
    /// Completed jobs stored.
    pub completed_jobs: u64,
    /// Failed jobs stored.
    pub failed_jobs: u64,
    /// Retries waiting for their backoff.
    pub retrying_jobs: u64,
    /// The runnable backlog: what workers could start within the queue's
    /// `runnable_horizon` — pending jobs and due retries of keys that need no pacing, and per
    /// paced key what its delay and fleet-wide limit let through in that time (the queue
    /// length the autoscaler and the HPA read; `QueueStats::runnable`).
    pub queue_length: u64,
    /// Politeness keys with their own queue (paced, limited or throttled).
    pub paced_keys: u64,
    /// Of those, keys waiting for their next allowed time.
    pub waiting_keys: u64,
    /// Workers with a recent heartbeat.
    pub active_workers: u64,
    /// Registered workers.
    pub total_workers: u64,
    /// Jobs completed per second since the previous sample.
    pub jobs_per_second: f64,
    /// Mean duration of the jobs completed since the previous sample (seconds); with none,
    /// the mean over the queue's life; 0 when nothing ever completed.
    pub avg_job_duration: f64,
    /// Failed / (completed + failed) since the previous sample (0 with neither).
    pub error_rate: f64,
    /// Monotonic totals: completed, failed, retried.
    pub completed_total: u64,
    /// Jobs that failed for good, in the queue's life.
    pub failed_total: u64,
    /// Retries scheduled, in the queue's life.
    pub retried_total: u64,
}

/// A count as a float (counts stay far below 2^52, where `f64` is exact).
#[allow(clippy::cast_precision_loss)]
fn float(n: u64) -> f64 {
    n as f64
}

/// Metrics at `current`, with rates over the time since `previous`.
pub fn derive(previous: Option<&Sample>, current: &Sample) -> ScalingMetrics {
    let stats = &current.stats;
    let totals = &stats.totals;
    let (mut jobs_per_second, mut error_rate, mut avg_job_duration) = (0.0, 0.0, 0.0);
    if totals.duration_count > 0 {
        avg_job_duration = float(totals.duration_ms_sum) / float(totals.duration_count) / 1000.0;
    }
    if let Some(previous) = previous {
        let before = &previous.stats.totals;
        let elapsed = current.timestamp - previous.timestamp;
        let completed = totals.completed.saturating_sub(before.completed);
        let failed = totals.failed.saturating_sub(before.failed);
        if elapsed > 0.0 {
            jobs_per_second = float(completed) / elapsed;
        }
        if completed + failed > 0 {
            error_rate = float(failed) / float(completed + failed);
        }
        let timed = totals.duration_count.saturating_sub(before.duration_count);
        if timed > 0 {
            let spent = totals
                .duration_ms_sum
                .saturating_sub(before.duration_ms_sum);
            avg_job_duration = float(spent) / float(timed) / 1000.0;
        }
    }
    ScalingMetrics {
        timestamp: current.timestamp,
        total_jobs: stats.total,
        pending_jobs: stats.count(JobStatus::Pending),
        running_jobs: stats.count(JobStatus::Assigned) + stats.count(JobStatus::Running),
        completed_jobs: stats.count(JobStatus::Completed),
        failed_jobs: stats.count(JobStatus::Failed),
        retrying_jobs: stats.count(JobStatus::Retrying),
        queue_length: stats.runnable,
        paced_keys: stats.paced_keys,
        waiting_keys: stats.waiting_keys,
        active_workers: stats.active_workers,
        total_workers: stats.total_workers,
        jobs_per_second,
        avg_job_duration,
        error_rate,
        completed_total: totals.completed,
        failed_total: totals.failed,
        retried_total: totals.retried,
    }
}

/// The Prometheus series (the scaling guide's names, prefix `scraperv4_`).
struct Series {
    registry: Registry,
    total_jobs: IntGauge,
    pending_jobs: IntGauge,
    queue_length: IntGauge,
    queue_runnable: IntGauge,
    domains_paced: IntGauge,
    domains_waiting: IntGauge,
    active_workers: IntGauge,
    total_workers: IntGauge,
    jobs_per_second: Gauge,
    error_rate: Gauge,
    avg_job_duration: Gauge,
    jobs: IntGaugeVec,
    completed: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
}

/// Adds `metric` to `registry` and returns it.
///
/// # Panics
///
/// Never: names and options are constants, each registered once.
fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Series {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("scraperv4".to_owned()), None).unwrap_or_default();
        let int_gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let gauge = |name: &str, help: &str| register(&registry, Gauge::new(name, help));
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let jobs = register(
            &registry,
            IntGaugeVec::new(Opts::new("jobs", "Jobs stored, by status"), &["status"]),
        );
        Self {
            total_jobs: int_gauge("total_jobs", "Total jobs in the queue"),
            pending_jobs: int_gauge("pending_jobs", "Jobs waiting to be claimed"),
            queue_length: int_gauge(
                "queue_length",
                "Jobs workers could start within the runnable horizon, politeness-aware \
                 (the guide's name; equal to scraperv4_queue_runnable)",
            ),
            queue_runnable: int_gauge(
                "queue_runnable",
                "Jobs workers could start within the runnable horizon: unpaced pending jobs \
                 and due retries, plus what each paced key's delay and limit let through",
            ),
            domains_paced: int_gauge(
                "domains_paced",
                "Politeness keys with their own queue (paced, limited or throttled)",
            ),
            domains_waiting: int_gauge(
                "domains_waiting",
                "Paced politeness keys waiting for their next allowed time",
            ),
            active_workers: int_gauge("active_workers", "Workers with a recent heartbeat"),
            total_workers: int_gauge("total_workers", "Registered workers"),
            jobs_per_second: gauge("jobs_per_second", "Jobs completed per second"),
            error_rate: gauge(
                "error_rate",
                "Failed / (completed + failed) over the last interval",
            ),
            avg_job_duration: gauge(
                "avg_job_duration_seconds",
                "Mean duration of recently completed jobs",
            ),
            completed: counter("jobs_completed_total", "Jobs completed"),
            failed: counter("jobs_failed_total", "Jobs failed for good"),
            retried: counter("jobs_retried_total", "Retries scheduled"),
            jobs,
            registry,
        }
    }

    fn update(&self, metrics: &ScalingMetrics, stats: &QueueStats) {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.total_jobs.set(int(metrics.total_jobs));
        self.pending_jobs.set(int(metrics.pending_jobs));
        self.queue_length.set(int(metrics.queue_length));
        self.queue_runnable.set(int(metrics.queue_length));
        self.domains_paced.set(int(metrics.paced_keys));
        self.domains_waiting.set(int(metrics.waiting_keys));
        self.active_workers.set(int(metrics.active_workers));
        self.total_workers.set(int(metrics.total_workers));
        self.jobs_per_second.set(metrics.jobs_per_second);
        self.error_rate.set(metrics.error_rate);
        self.avg_job_duration.set(metrics.avg_job_duration);
        for (status, n) in &stats.by_status {
            self.jobs.with_label_values(&[status.as_str()]).set(int(*n));
        }
        // The queue's totals only grow: the counters follow them.
        for (counter, total) in [
            (&self.completed, metrics.completed_total),
            (&self.failed, metrics.failed_total),
            (&self.retried, metrics.retried_total),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}

/// A collector's state: the last sample, a bounded history and the Prometheus series.
pub struct ClusterMetrics {
    series: Series,
    state: Mutex<State>,
    history_len: usize,
}

struct State {
    last: Option<Sample>,
    history: VecDeque<ScalingMetrics>,
}

impl ClusterMetrics {
    /// Keeps at most `history_len` snapshots.
    pub fn new(history_len: usize) -> Self {
        Self {
            series: Series::new(),
            state: Mutex::new(State {
                last: None,
                history: VecDeque::new(),
            }),
            history_len: history_len.max(1),
        }
    }

    /// Records a sample; returns its metrics.
    pub fn observe(&self, sample: Sample) -> ScalingMetrics {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = derive(state.last.as_ref(), &sample);
        self.series.update(&metrics, &sample.stats);
        if state.history.len() == self.history_len {
            state.history.pop_front();
        }
        state.history.push_back(metrics.clone());
        state.last = Some(sample);
        metrics
    }

    /// The snapshots kept, oldest first.
    pub fn history(&self) -> Vec<ScalingMetrics> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.history.iter().cloned().collect()
    }

    /// The Prometheus text exposition, with the job duration histogram the queue keeps.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.series.registry.gather(), &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = &state.last {
            let totals = &last.stats.totals;
            text.push_str(
                "# HELP scraperv4_job_duration_seconds Duration of completed jobs (claim to completion)\n\
                 # TYPE scraperv4_job_duration_seconds histogram\n",
            );
            let mut cumulative = 0;
            for (bound, count) in DURATION_BUCKETS_MS.iter().zip(&totals.duration_buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "scraperv4_job_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                    float(*bound) / 1000.0
                );
            }
            let _ = writeln!(
                text,
                "scraperv4_job_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 scraperv4_job_duration_seconds_sum {}\n\
                 scraperv4_job_duration_seconds_count {}",
                totals.duration_count,
                float(totals.duration_ms_sum) / 1000.0,
                totals.duration_count
            );
        }
        text
    }
}

/// Serves `GET /metrics` (and `/health`) for `metrics` on `addr` in the background, on the
/// shared hardened listener ([`crate::http`]); returns the bound address (port 0 picks one)
/// and the handle that stops it.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<ClusterMetrics>,
) -> std::io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    use axum::http::header;
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(metrics): axum::extract::State<Arc<ClusterMetrics>>| async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                },
            ),
        )
        .route("/health", get(|| async { "ok\n" }))
        .with_state(metrics);
    let server = crate::http::serve(addr, app, crate::http::Limits::PROBES).await?;
    Ok((server.addr, server.abort_handle()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueTotals;

    fn sample(at: f64, completed: u64, failed: u64, ms_sum: u64) -> Sample {
        let mut buckets = vec![0; DURATION_BUCKETS_MS.len() + 1];
        buckets[3] = completed;
        Sample {
            timestamp: at,
            stats: QueueStats {
                by_status: vec![
                    (JobStatus::Pending, 7),
                    (JobStatus::Assigned, 2),
                    (JobStatus::Running, 1),
                    (JobStatus::Completed, completed),
                    (JobStatus::Failed, failed),
                ],
                total: 10 + completed + failed,
                active_workers: 3,
                total_workers: 4,
                // Two of the 7 pending jobs wait for a paced key's next slot.
                runnable: 5,
                paced_keys: 2,
                waiting_keys: 1,
                totals: QueueTotals {
                    completed,
                    failed,
                    duration_ms_sum: ms_sum,
                    duration_count: completed,
                    duration_buckets: buckets,
                    ..QueueTotals::default()
                },
            },
        }
    }

    #[test]
    fn rates_come_from_differences_of_totals() {
        let first = sample(100.0, 10, 0, 5_000);
        let second = sample(110.0, 30, 5, 5_000 + 20 * 300);
        let alone = derive(None, &first);
        assert!(alone.jobs_per_second.abs() < f64::EPSILON);
        assert!((alone.avg_job_duration - 0.5).abs() < 1e-9, "lifetime mean");
        let metrics = derive(Some(&first), &second);
        assert!((metrics.jobs_per_second - 2.0).abs() < 1e-9);
        assert!((metrics.error_rate - 0.2).abs() < 1e-9);
        assert!((metrics.avg_job_duration - 0.3).abs() < 1e-9, "window mean");
        assert_eq!(metrics.running_jobs, 3);
        assert_eq!(
            metrics.queue_length, 5,
            "the runnable backlog, not the pending count"
        );
        assert_eq!((metrics.paced_keys, metrics.waiting_keys), (2, 1));
    }

    #[test]
    fn exposition_has_the_guides_names_and_the_histogram() {
        let metrics = ClusterMetrics::new(10);
        metrics.observe(sample(100.0, 10, 0, 5_000));
        metrics.observe(sample(110.0, 30, 5, 11_000));
        let text = metrics.render();
        for line in [
            "scraperv4_total_jobs 45",
            "scraperv4_pending_jobs 7",
            "scraperv4_queue_length 5",
            "scraperv4_queue_runnable 5",
            "# TYPE scraperv4_queue_runnable gauge",
            "scraperv4_domains_paced 2",
            "scraperv4_domains_waiting 1",
            "scraperv4_active_workers 3",
            "scraperv4_jobs_per_second 2",
            "scraperv4_error_rate 0.2",
            "scraperv4_jobs_completed_total 30",
            "scraperv4_jobs_failed_total 5",
            "scraperv4_jobs{status=\"running\"} 1",
            "scraperv4_job_duration_seconds_bucket{le=\"0.5\"} 30",
            "scraperv4_job_duration_seconds_bucket{le=\"+Inf\"} 30",
            "scraperv4_job_duration_seconds_count 30",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(metrics.history().len(), 2);
    }
}
