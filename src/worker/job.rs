//! One claimed job: fetch, extract off the async threads, hand the outcome to the finisher or
//! record the failure — and whatever happens to the task (an error, a timeout, an abort, a
//! panic), the worker stops listing the claim as held, so its next heartbeat gives the job
//! back if it is still leased under the worker's id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use super::crawl::{self, JobSettings};
use super::pool::{Claim, Worker};
use crate::extract::{LimitError, Limits};
use crate::fetch::{FetchError, FetchErrorKind, RequestOptions};
use crate::queue::{Ack, FailOutcome, Feedback, Finished, Job, JobStatus};

/// Why a job did not produce a result.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) retryable: bool,
    /// What it says about the site, for the queue's politeness.
    pub(super) feedback: Option<Feedback>,
    /// Not a failure: the job goes back to the queue as it is (its site's robots.txt delay
    /// had not passed; the queue paces it now).
    pub(super) give_back: bool,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            feedback: None,
            give_back: false,
        }
    }
}

/// What a failed fetch says about its site: 429 and 503 ask us to slow down (with their
/// `Retry-After`); timeouts and refused or cut connections suggest an overloaded server.
fn feedback_of(error: &FetchError) -> Option<Feedback> {
    match (error.kind, error.status) {
        (FetchErrorKind::HttpStatus, Some(429 | 503)) => Some(Feedback::Throttled {
            retry_after: error.retry_after,
        }),
        (FetchErrorKind::Timeout | FetchErrorKind::Connect, _) => Some(Feedback::Error),
        _ => None,
    }
}

/// A job's outcome on its way to the queue (the finisher settles the claim).
pub(super) struct Done {
    pub(super) finished: Finished,
    pub(super) items: u64,
    pub(super) started: Instant,
}

/// Drops the claim from the worker's held set when the job's task ends without handing it
/// to the finisher — including when the task is aborted or panics.
struct ClaimGuard {
    worker: Arc<Worker>,
    claim: Option<Claim>,
}

impl ClaimGuard {
    /// The finisher owns the claim now.
    fn hand_over(&mut self) {
        self.claim = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.worker.let_go(&claim);
        }
    }
}

impl Worker {
    pub(super) async fn run_job(self: Arc<Self>, job: Job, finish_tx: mpsc::Sender<Done>) {
        let mut guard = ClaimGuard {
            worker: Arc::clone(&self),
            claim: Some((job.id.clone(), job.token)),
        };
        let started = Instant::now();
        let settings = JobSettings::of(&job.config);
        let timeout = settings
            .as_ref()
            .ok()
            .and_then(|s| s.timeout)
            .unwrap_or(self.config.job_timeout);
        let deadline = started.checked_add(timeout);
        let work = async {
            let settings = settings.map_err(Failure::permanent)?;
            self.work(&job, &settings, deadline).await
        };
        let failure = match tokio::time::timeout(timeout, work).await {
            Ok(Ok((finished, items))) => {
                let done = Done {
                    finished,
                    items,
                    started,
                };
                // Marked before it is sent: a heartbeat that finds the claim lost meanwhile
                // leaves it to the finisher, which counts its one outcome.
                self.hand_over(&(job.id.clone(), job.token));
                if finish_tx.send(done).await.is_ok() {
                    guard.hand_over();
                }
                return;
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure {
                message: format!("the job did not finish within {timeout:?}"),
                retryable: true,
                feedback: None,
                give_back: false,
            },
        };
        self.record_failure(&job, &failure).await;
        self.metrics
            .job_duration
            .observe(started.elapsed().as_secs_f64());
    }

    async fn record_failure(&self, job: &Job, failure: &Failure) {
        if failure.give_back {
            match self.queue.release(&job.id, job.token).await {
                Ok(Ack::Accepted) => {
                    tracing::debug!(job_id = job.id, reason = failure.message, "job given back");
                    self.metrics.outcome("paced");
                }
                Ok(_) => {}
                Err(error) => {
                    self.queue_trouble();
                    tracing::warn!(job_id = job.id, %error, "could not give a job back");
                }
            }
            return;
        }
        let answer = self
            .queue
            .fail(
                &job.id,
                job.token,
                &failure.message,
                failure.retryable,
                failure.feedback,
            )
            .await;
        let outcome = match answer {
            Ok((Ack::Accepted, Some(FailOutcome::Retrying { .. }))) => "retried",
            Ok((Ack::Accepted, _)) => "failed",
            // Our own token and the status a failure leads to: an earlier try of this call,
            // whose answer was lost, had gone through.
            Ok((
                Ack::Stale {
                    status: JobStatus::Retrying,
                    token,
                },
                _,
            )) if token == job.token => "retried",
            Ok((
                Ack::Stale {
                    status: JobStatus::Failed,
                    token,
                },
                _,
            )) if token == job.token => "failed",
            Ok(_) => "stale",
            // The claim is let go: the next heartbeat gives the job back, nothing is lost.
            Err(error) => {
                self.queue_trouble();
                tracing::warn!(job_id = job.id, %error, "could not record a failure");
                return;
            }
        };
        match outcome {
            "retried" => {
                tracing::info!(job_id = job.id, error = failure.message, "job will retry");
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
            }
            "failed" => {
                tracing::warn!(job_id = job.id, error = failure.message, "job failed");
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.metrics.outcome(outcome);
    }

    /// Hands the `Crawl-delay` robots.txt asks for on this job's site to the queue, which
    /// holds it for the whole fleet (once per key and robots TTL per worker).
    async fn share_crawl_delay(&self, job: &Job) {
        let Some(delay) = self.fetcher.crawl_delay(&job.target_url) else {
            return;
        };
        let ttl = crate::fetch::FetchConfig::seconds(self.fetcher.config().robots_ttl);
        if job.politeness_key.is_empty() || !self.crawl_delays.due(&job.politeness_key, delay, ttl)
        {
            return;
        }
        if let Err(error) = self
            .queue
            .set_crawl_delay(&job.politeness_key, delay, ttl)
            .await
        {
            tracing::warn!(key = job.politeness_key, %error, "could not share a Crawl-delay");
        }
    }

    /// Fetch, extract, discover: the job's result, or why not. Extraction runs within the
    /// page caps and stops by itself at the earlier of the job's deadline and
    /// `extract_timeout` from its start (the job's timeout alone cannot stop a blocking task).
    async fn work(
        &self,
        job: &Job,
        settings: &JobSettings,
        job_deadline: Option<Instant>,
    ) -> Result<(Finished, u64), Failure> {
        let template = self
            .templates
            .get(&job.template_id)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        let fetch_started = Instant::now();
        // The queue paces the fleet: 429/503 and Crawl-delay are its business, not this
        // process's (see crate::queue::politeness).
        let request = RequestOptions {
            retry_throttled: Some(false),
            wait_for_crawl_delay: Some(false),
            ..settings.request
        };
        let fetched = self.fetcher.fetch_with(&job.target_url, request).await;
        self.share_crawl_delay(job).await;
        let page = match fetched {
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
                    feedback: feedback_of(&error),
                    give_back: error.kind == FetchErrorKind::Paced,
                });
            }
        };
        let latency = fetch_started.elapsed();
        self.metrics.fetch_duration.observe(latency.as_secs_f64());
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
        // Parsing and the item callback are CPU work (and the callback may block): they run
        // on the blocking pool, so heartbeats and fetches on the async threads never wait
        // for them.
        let hook = self.hook.clone();
        let owned_job = job.clone();
        let page_number = settings.page;
        let mut limits = Limits::within(self.config.extract_timeout);
        limits.deadline = match (limits.deadline, job_deadline) {
            (Some(own), Some(job)) => Some(own.min(job)),
            (own, job) => own.or(job),
        };
        let blocking = tokio::task::spawn_blocking(move || {
            let (output, engine) = template
                .analyse_within(&text, &final_url, &limits)
                .map_err(|error| extraction_refused(&error))?;
            let discovered = crawl::discovered(&owned_job, &template, &output, page_number);
            let mut records = Vec::with_capacity(output.items.len());
            for (index, fields) in output.items.into_iter().enumerate() {
                let record = crawl::record(&owned_job, &fetched_at, index, fields);
                let kept = match &hook {
                    Some(hook) => hook.process(record).map_err(|message| Failure {
                        message: format!("the item callback failed: {message}"),
                        retryable: true,
                        feedback: None,
                        give_back: false,
                    })?,
                    None => Some(record),
                };
                records.extend(kept);
            }
            Ok((engine, records, discovered, final_url))
        });
        let (engine, records, discovered, final_url) = blocking.await.map_err(|error| {
            Failure::permanent(format!("extraction stopped unexpectedly: {error}"))
        })??;
        self.metrics
            .pages_parsed
            .with_label_values(&<[&str; 2]>::from(engine.labels()))
            .inc();
        let items = records.len() as u64;
        let result = serde_json::json!({
            "status": status,
            "final_url": final_url,
            "items": items,
            "discovered": discovered.len(),
        });
        let finished = Finished {
            id: job.id.clone(),
            token: job.token,
            result: Some(result.to_string()),
            records: (!records.is_empty()).then(|| Value::Array(records).to_string()),
            latency: Some(latency),
            discovered,
        };
        Ok((finished, items))
    }
}

/// A page over its caps fails for good: the next worker would meet the same page. (When the
/// job's own deadline stops extraction, the job's timeout has fired already and this failure
/// is not the one recorded.)
fn extraction_refused(error: &LimitError) -> Failure {
    Failure::permanent(format!("extraction refused: {error}"))
}
