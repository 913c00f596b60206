//! The worker's Prometheus metrics. Label values come from small fixed sets (outcomes,
//! status codes, error kinds), never from URLs, so the series count stays bounded.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Counters, gauges and histograms of one worker, in their own registry.
pub struct WorkerMetrics {
    registry: Registry,
    /// Jobs by outcome: completed, failed, retried, released, stale, abandoned.
    pub jobs: IntCounterVec,
    /// Time from claim to outcome.
    pub job_duration: Histogram,
    /// Time to fetch a page (retries and politeness waits included).
    pub fetch_duration: Histogram,
    /// Responses by HTTP status code.
    pub responses: IntCounterVec,
    /// Fetch errors by kind.
    pub fetch_errors: IntCounterVec,
    /// Bytes received for bodies (compressed, as on the wire).
    pub bytes: IntCounter,
    /// Jobs being worked on now.
    pub in_flight: IntGauge,
    /// The concurrency the worker allows itself now (lowered under memory or CPU pressure).
    pub concurrency: IntGauge,
    /// Items recorded (in completed jobs).
    pub items: IntCounter,
    /// Items the `on_item` callback dropped (in completed jobs).
    pub items_dropped: IntCounter,
    /// Pages parsed, by engine (`fast`, `dom`) and the reason a page went to the DOM engine.
    pub pages_parsed: IntCounterVec,
}

fn buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
}

impl WorkerMetrics {
    /// Metrics labelled with `worker` as a constant label.
    ///
    /// # Panics
    ///
    /// Never: the metric names and options are constants known to be valid.
    pub fn new(worker: &str) -> Self {
        let registry = Registry::new_custom(
            Some("scraperv4_worker".to_owned()),
            Some(std::iter::once(("worker".to_owned(), worker.to_owned())).collect()),
        )
        .unwrap_or_default();
        let jobs = IntCounterVec::new(Opts::new("jobs_total", "Jobs by outcome"), &["outcome"])
            .expect("valid metric");
        let job_duration = Histogram::with_opts(
            HistogramOpts::new("job_duration_seconds", "Time from claim to outcome")
                .buckets(buckets()),
        )
        .expect("valid metric");
        let fetch_duration = Histogram::with_opts(
            HistogramOpts::new("fetch_duration_seconds", "Time to fetch a page").buckets(buckets()),
        )
        .expect("valid metric");
        let responses = IntCounterVec::new(
            Opts::new("http_responses_total", "Responses by HTTP status code"),
            &["code"],
        )
        .expect("valid metric");
        let fetch_errors = IntCounterVec::new(
            Opts::new("fetch_errors_total", "Fetch errors by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let bytes = IntCounter::new("downloaded_bytes_total", "Body bytes received on the wire")
            .expect("valid metric");
        let in_flight =
            IntGauge::new("jobs_in_flight", "Jobs being worked on").expect("valid metric");
        let concurrency =
            IntGauge::new("concurrency_limit", "Jobs allowed at once now").expect("valid metric");
        let items = IntCounter::new("items_total", "Items recorded").expect("valid metric");
        let items_dropped = IntCounter::new(
            "items_dropped_total",
            "Items the on_item callback dropped (returned None)",
        )
        .expect("valid metric");
        let pages_parsed = IntCounterVec::new(
            Opts::new(
                "pages_parsed_total",
                "Pages parsed, by engine and the reason a page went to html5ever",
            ),
            &["engine", "reason"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(job_duration.clone()),
            Box::new(fetch_duration.clone()),
            Box::new(responses.clone()),
            Box::new(fetch_errors.clone()),
            Box::new(bytes.clone()),
            Box::new(in_flight.clone()),
            Box::new(concurrency.clone()),
            Box::new(items.clone()),
            Box::new(items_dropped.clone()),
            Box::new(pages_parsed.clone()),
        ] {
            // Names are distinct constants: registration cannot collide.
            let _ = registry.register(collector);
        }
        Self {
            registry,
            jobs,
            job_duration,
            fetch_duration,
            responses,
            fetch_errors,
            bytes,
            in_flight,
            concurrency,
            items,
            items_dropped,
            pages_parsed,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Counts one job outcome.
    pub fn outcome(&self, outcome: &str) {
        self.jobs.with_label_values(&[outcome]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_worker_label_and_bounded_series() {
        let metrics = WorkerMetrics::new("w1");
        metrics.outcome("completed");
        metrics.outcome("completed");
        metrics.responses.with_label_values(&["200"]).inc();
        let text = metrics.render();
        assert!(
            text.contains(r#"scraperv4_worker_jobs_total{outcome="completed",worker="w1"} 2"#),
            "{text}"
        );
        assert!(text.contains("scraperv4_worker_job_duration_seconds_bucket"));
    }
}
