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

/// Why a job did not produce a result. It is stored as the job's error in one line,
/// `<kind>: <what happened, where, why; what to do>`, so people can read it and programs
/// (the dashboard, `scraperv4 run`'s summary) can group failures by the kind in front.
pub(super) struct Failure {
    /// A fetch error's kind (`connect`, `http_status`, ...) or one of [`FAILURE_KINDS`].
    pub(super) kind: &'static str,
    pub(super) message: String,
    pub(super) retryable: bool,
    /// What it says about the site, for the queue's politeness.
    pub(super) feedback: Option<Feedback>,
    /// Not a failure: the job goes back to the queue as it is (its site's robots.txt delay
    /// had not passed; the queue paces it now).
    pub(super) give_back: bool,
}

/// The kinds of failure that are not fetch errors: no such template, an unusable job
/// config, the job's time limit, the item callback raised, extraction stopped, a bug (the
/// job's task panicked).
pub const FAILURE_KINDS: [&str; 6] = [
    "template",
    "config",
    "job_timeout",
    "on_item",
    "extract",
    "panic",
];

/// The kind in front of a job's stored error (`connect: fetching ...` gives `connect`), or
/// `other` for errors written another way (by hand, by older versions, by the seed API).
pub fn error_kind(error: &str) -> &str {
    match error.split_once(": ") {
        Some((kind, _))
            if (1..=24).contains(&kind.len())
                && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            kind
        }
        _ => "other",
    }
}

impl Failure {
    fn permanent(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: false,
            feedback: None,
            give_back: false,
        }
    }

    /// The job's stored error: the kind, then the message.
    fn line(&self) -> String {
        format!("{}: {}", self.kind, self.message)
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
    /// Items the `on_item` callback dropped.
    pub(super) dropped: u64,
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
            let settings = settings.map_err(|e| Failure::permanent("config", e))?;
            self.warn_unknown_config(&settings.unknown);
            self.work(&job, &settings, deadline).await
        };
        let failure = match tokio::time::timeout(timeout, catching_panics(work)).await {
            Ok(Ok((finished, items, dropped))) => {
                let done = Done {
                    finished,
                    items,
                    dropped,
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
                kind: "job_timeout",
                message: format!(
                    "{} did not finish within {timeout:?}; raise --job-timeout or the \
                     job's config timeout if such pages are expected",
                    job.target_url
                ),
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
                    self.queue_trouble_if_unreachable(&error);
                    tracing::warn!(job_id = job.id, %error, "could not give a job back");
                }
            }
            return;
        }
        let line = failure.line();
        let answer = self
            .queue
            .fail(
                &job.id,
                job.token,
                &line,
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
                self.queue_trouble_if_unreachable(&error);
                tracing::warn!(job_id = job.id, %error, "could not record a failure");
                return;
            }
        };
        match outcome {
            "retried" => {
                tracing::info!(job_id = job.id, error = line, "job will retry");
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
            }
            "failed" => {
                tracing::warn!(job_id = job.id, error = line, "job failed");
                self.counters.failure(failure.kind);
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
            self.crawl_delays.forget(&job.politeness_key);
            tracing::warn!(key = job.politeness_key, %error, "could not share a Crawl-delay");
        }
    }

    /// A fetch that failed, counted (its status too, when the site answered one), as the
    /// job's failure.
    fn fetch_failed(&self, error: &FetchError) -> Failure {
        self.metrics
            .fetch_errors
            .with_label_values(&[error.kind.as_str()])
            .inc();
        if let Some(status) = error.status {
            self.metrics
                .responses
                .with_label_values(&[&status.to_string()])
                .inc();
            self.counters.response(status);
        }
        Failure {
            kind: error.kind.as_str(),
            message: error.to_string(),
            retryable: error.is_retryable(),
            feedback: feedback_of(error),
            give_back: error.kind == FetchErrorKind::Paced,
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
    ) -> Result<(Finished, u64, u64), Failure> {
        let template = self
            .templates
            .get(&job.template_id)
            .map_err(|e| Failure::permanent("template", e.to_string()))?;
        let fetch_started = Instant::now();
        // The queue paces the fleet: 429/503 and Crawl-delay are its business, not this
        // process's (see crate::queue::politeness).
        let request = RequestOptions {
            retry_throttled: Some(false),
            wait_for_crawl_delay: Some(false),
            // A job without a key (nothing to pace it by) is never held back for this.
            queue_paced: Some(job.paced || job.politeness_key.is_empty()),
            ..settings.request
        };
        let fetched = self.fetcher.fetch_with(&job.target_url, request).await;
        self.share_crawl_delay(job).await;
        let page = fetched.map_err(|error| self.fetch_failed(&error))?;
        let latency = fetch_started.elapsed();
        self.metrics.fetch_duration.observe(latency.as_secs_f64());
        self.metrics
            .responses
            .with_label_values(&[&page.status.to_string()])
            .inc();
        self.counters.response(page.status);
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
            let found = output.items.len();
            let mut records = Vec::with_capacity(found);
            for (index, fields) in output.items.into_iter().enumerate() {
                let record = crawl::record(&owned_job, &fetched_at, index, fields);
                let kept = match &hook {
                    Some(hook) => hook.process(record).map_err(|message| Failure {
                        kind: "on_item",
                        message: format!("the on_item callback raised: {message}"),
                        retryable: true,
                        feedback: None,
                        give_back: false,
                    })?,
                    None => Some(record),
                };
                records.extend(kept);
            }
            Ok((engine, records, found, discovered, final_url))
        });
        let (engine, records, found, discovered, final_url) =
            blocking.await.map_err(|error| {
                Failure::permanent(
                    "extract",
                    format!(
                        "extraction of {} stopped unexpectedly: {error}",
                        job.target_url
                    ),
                )
            })??;
        self.metrics
            .pages_parsed
            .with_label_values(&<[&str; 2]>::from(engine.labels()))
            .inc();
        let items = records.len() as u64;
        let dropped = found as u64 - items;
        let counts = (items, dropped, discovered.len());
        self.page_done(job, status, &final_url, counts, fetch_started.elapsed());
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
        Ok((finished, items, dropped))
    }

    /// A scraped page in the log (a line per page at info, Scrapy's "Crawled (200) <GET
    /// ...>"), and the warning when the item callback dropped every item of it.
    fn page_done(
        &self,
        job: &Job,
        status: u16,
        final_url: &str,
        (items, dropped, links): (u64, u64, usize),
        took: std::time::Duration,
    ) {
        if dropped > 0 && items == 0 {
            self.warn_all_dropped(job, dropped);
        }
        let from = if final_url == job.target_url {
            String::new()
        } else {
            format!(" (from {})", job.target_url)
        };
        let dropped = if dropped > 0 {
            format!(", {dropped} dropped by on_item")
        } else {
            String::new()
        };
        tracing::info!(
            target: "scraperv4::pages",
            "Crawled ({status}) <GET {final_url}>{from} ({items} items{dropped}, {links} links, \
             {} ms)",
            took.as_millis()
        );
    }

    /// Config keys the worker does not read: each said once (a typo such as `delay_rang`
    /// would otherwise go unnoticed; other keys may be the submitter's own data).
    fn warn_unknown_config(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let mut warned = self
            .config_keys_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys {
            // Bounded: a few dozen distinct keys are enough to make the point.
            if warned.len() < 64 && warned.insert(key.clone()) {
                tracing::warn!(
                    "job config key {key:?} is not a worker setting and is ignored (the \
                     settings: {}); said once per key",
                    crawl::CONFIG_KEYS.join(", ")
                );
            }
        }
    }

    /// Every item of a page was dropped by the `on_item` callback: said once per run as a
    /// warning with the contract (the usual cause is a callback that returns nothing, such
    /// as `items.append`), then at debug level.
    fn warn_all_dropped(&self, job: &Job, found: u64) {
        if self.drop_warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                url = job.target_url,
                found,
                "on_item dropped every item of the page"
            );
        } else {
            tracing::warn!(
                "on_item dropped all {found} items of {}: the callback must return the record \
                 to keep it (None drops it); a callback such as items.append returns None. \
                 Dropped items are counted as `dropped` in the progress (said once)",
                job.target_url
            );
        }
    }
}

/// A page over its caps fails for good: the next worker would meet the same page. (When the
/// job's own deadline stops extraction, the job's timeout has fired already and this failure
/// is not the one recorded.)
fn extraction_refused(error: &LimitError) -> Failure {
    Failure::permanent("extract", format!("extraction refused: {error}"))
}

/// `work`, with a panic inside it turned into a retryable failure of the job: recorded
/// with the claim still held, so it counts against the job's retries like any failure (a
/// task that died would instead leave its lease to be given back by the next heartbeat —
/// uncounted when that heartbeat follows an outage, so a job that kills its task could run
/// for ever on a flaky network).
async fn catching_panics<T>(
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(
                panic = what,
                "a job's task panicked: the job fails (retryable)"
            );
            Err(Failure {
                kind: "panic",
                message: format!(
                    "the worker hit a bug processing this job ({what}); please report it"
                ),
                retryable: true,
                feedback: None,
                give_back: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_is_read_back_from_the_stored_error() {
        let failure = Failure::permanent("template", "no template with this id");
        assert_eq!(error_kind(&failure.line()), "template");
        assert_eq!(
            error_kind("connect: fetching http://127.0.0.1:9/: refused"),
            "connect"
        );
        assert_eq!(error_kind("HTTP 500 from the site"), "other");
        assert_eq!(error_kind("Boom: x"), "other");
        assert_eq!(error_kind(""), "other");
    }

    #[test]
    fn a_panicking_job_is_a_retryable_failure_of_kind_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let failure = runtime
            .block_on(catching_panics(async {
                let items: Vec<u8> = Vec::new();
                let index = std::hint::black_box(3);
                Ok::<u8, Failure>(items[index])
            }))
            .unwrap_err();
        assert_eq!(failure.kind, "panic");
        assert!(failure.retryable && !failure.give_back);
        assert!(
            failure.message.contains("index out of bounds"),
            "{}",
            failure.message
        );
        assert_eq!(error_kind(&failure.line()), "panic");
        // An ordinary outcome passes through.
        let fine = runtime.block_on(catching_panics(async { Ok::<u8, Failure>(7) }));
        assert_eq!(fine.ok(), Some(7));
    }
}
