//! What a crawl adds to a job: stable ids for URLs, the job's settings, the jobs a page
//! discovers and the item records it produces.
//!
//! A job's id inside a crawl is derived from the crawl id and the URL's fingerprint, so the
//! queue's idempotent submit is the crawl's URL dedup: a URL discovered twice (by two pages,
//! by two workers at once, or again after a crash) maps to the same id and is queued once.
//! The dedup lasts as long as the queue keeps the job, i.e. the queue's retention, which
//! bounds the memory it takes.

use serde_json::{Map, Value};

use crate::extract::{Item, PageOutput, Template};
use crate::fetch::RequestOptions;
use crate::queue::{Job, NewJob};

/// Key in a job's config holding its page number in a pagination chain (1 for a seed).
pub const PAGE_KEY: &str = "_page";

/// The id of the job that scrapes `url` in `crawl_id`: the same URL always gets the same id.
///
/// The fingerprint is the 128-bit xxh3 of the URL with its fragment removed (URLs that
/// differ only by `#...` are one page).
pub fn job_id(crawl_id: &str, url: &str) -> String {
    let canonical = match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    };
    format!(
        "{crawl_id}:{:032x}",
        xxhash_rust::xxh3::xxh3_128(canonical.as_bytes())
    )
}

/// The crawl id of seed `urls` submitted with `template_id` when no crawl id is given:
/// `crawl-` and 12 hex digits of the SHA-256 of the template id and the distinct URLs,
/// sorted. Submitting the same seeds again (from the CLI or the HTTP API) names the same
/// crawl, whose job ids are the same: nothing is queued twice.
pub fn default_crawl_id<'a>(template_id: &str, urls: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut urls: Vec<&str> = urls.into_iter().collect();
    urls.sort_unstable();
    urls.dedup();
    let mut digest = Sha256::new();
    digest.update(template_id.as_bytes());
    for url in urls {
        digest.update(b"\0");
        digest.update(url.as_bytes());
    }
    let hash = digest.finalize();
    hash[..6]
        .iter()
        .fold(String::from("crawl-"), |mut id, byte| {
            use std::fmt::Write;
            let _ = write!(id, "{byte:02x}");
            id
        })
}

/// The keys a job's config may set (`_page`, the pagination counter, is the worker's own).
pub const CONFIG_KEYS: [&str; 4] = ["timeout", "delay_range", "respect_robots", "revisit"];

/// The longest `timeout` a job's config may ask for, seconds (a day).
pub const MAX_JOB_TIMEOUT: f64 = 86_400.0;

/// Checks the settings a job's config carries, as submitting does (the coordinator, the
/// Python API and the CLI), so a bad value is refused with the job instead of failing it
/// later — or, like `{"timeout": 1e20}` did, panicking the worker's task. Blank is `{}`.
pub fn check_config(config: &str) -> Result<(), String> {
    if config.trim().is_empty() {
        return Ok(());
    }
    JobSettings::of(config).map(|_| ())
}

/// Settings a job's config may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Longest time for the whole job (`timeout`, seconds).
    pub timeout: Option<std::time::Duration>,
    /// Page number in a pagination chain.
    pub page: u32,
    /// `delay_range` and `respect_robots` from the job's config, over the fetcher's.
    pub request: RequestOptions,
    /// Keys of the config that are none of [`CONFIG_KEYS`] (kept for the submitter's own
    /// use, ignored by the worker: the worker says so once per key).
    pub unknown: Vec<String>,
}

impl JobSettings {
    /// Reads `timeout`, `delay_range`, `respect_robots` and `_page` from a job's config (a
    /// JSON object as text). A missing value takes the default; a wrong one is an error (the
    /// job fails for good with it rather than run with settings it did not ask for).
    pub fn of(config: &str) -> Result<Self, String> {
        let value: Map<String, Value> = serde_json::from_str(config)
            .map_err(|e| format!("the job's config is not a JSON object: {e}"))?;
        let timeout = match value.get("timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(seconds) if seconds > 0.0 && seconds <= MAX_JOB_TIMEOUT => {
                    std::time::Duration::try_from_secs_f64(seconds).ok()
                }
                _ => {
                    return Err(format!(
                        "config timeout {n} must be a positive number of seconds, at most \
                         {MAX_JOB_TIMEOUT}"
                    ));
                }
            },
            Some(other) => {
                return Err(format!(
                    "config timeout {other} must be a number of seconds"
                ));
            }
        };
        let page = match value.get(PAGE_KEY) {
            None | Some(Value::Null) => 1,
            Some(number) => number
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p >= 1)
                .ok_or_else(|| format!("config {PAGE_KEY} {number} must be a page number >= 1"))?,
        };
        let delay_range = match value.get("delay_range") {
            None | Some(Value::Null) => None,
            Some(range) => Some(delay_range(range)?),
        };
        let respect_robots = match value.get("respect_robots") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(flag)) => Some(*flag),
            Some(other) => {
                return Err(format!(
                    "config respect_robots {other} must be true or false"
                ));
            }
        };
        let unknown = value
            .keys()
            .filter(|key| *key != PAGE_KEY && !CONFIG_KEYS.contains(&key.as_str()))
            .cloned()
            .collect();
        Ok(Self {
            timeout,
            page,
            request: RequestOptions {
                delay_range,
                respect_robots,
                ..RequestOptions::default()
            },
            unknown,
        })
    }
}

/// `[min, max]` seconds, 0 <= min <= max <= 3600.
fn delay_range(value: &Value) -> Result<(f64, f64), String> {
    let bounds: Option<Vec<f64>> = value
        .as_array()
        .map(|items| items.iter().map(Value::as_f64).collect::<Option<_>>())
        .unwrap_or_default();
    match bounds.as_deref() {
        Some(&[low, high]) if (0.0..=high).contains(&low) && high <= 3600.0 => Ok((low, high)),
        _ => Err(format!(
            "config delay_range {value} must be [min, max] seconds with 0 <= min <= max <= 3600"
        )),
    }
}

/// The crawl a job belongs to: its own id when it was submitted without one.
pub fn crawl_of(job: &Job) -> &str {
    job.crawl_id.as_deref().unwrap_or(&job.id)
}

/// The jobs a page discovered: links (one level deeper, while the template's `max_depth`
/// allows) and the next page (same depth, while `max_pages` allows).
pub fn discovered(
    job: &Job,
    template: &Template,
    page: &PageOutput,
    page_number: u32,
) -> Vec<NewJob> {
    let crawl = crawl_of(job);
    let mut jobs = Vec::new();
    let child = |url: &str, depth: u32, page: Option<u32>| -> NewJob {
        let mut config: Map<String, Value> = serde_json::from_str(&job.config).unwrap_or_default();
        match page {
            Some(number) => {
                config.insert(PAGE_KEY.to_owned(), Value::from(number));
            }
            None => {
                config.remove(PAGE_KEY);
            }
        }
        NewJob {
            id: Some(job_id(crawl, url)),
            name: job.name.clone(),
            template_id: job.template_id.clone(),
            target_url: url.to_owned(),
            config: Value::Object(config).to_string(),
            priority: job.priority,
            max_retries: job.max_retries,
            crawl_id: Some(crawl.to_owned()),
            depth,
            parent_id: Some(job.id.clone()),
            politeness_key: None,
            revisit: None,
        }
    };
    if let Some(links) = &template.links {
        let depth = job.depth + 1;
        if links.max_depth.is_none_or(|max| depth <= max) {
            jobs.extend(page.links.iter().map(|url| child(url, depth, None)));
        }
    }
    if let (Some(pagination), Some(next)) = (&template.pagination, &page.next_page) {
        let number = page_number + 1;
        if pagination.max_pages.is_none_or(|max| number <= max) {
            jobs.push(child(next, job.depth, Some(number)));
        }
    }
    jobs
}

/// One item as recorded: where it came from, and its fields.
pub fn record(job: &Job, fetched_at: &str, index: usize, fields: Item) -> Value {
    let mut record = Map::with_capacity(7);
    record.insert("job_id".to_owned(), Value::from(job.id.as_str()));
    record.insert("crawl_id".to_owned(), Value::from(crawl_of(job)));
    record.insert("url".to_owned(), Value::from(job.target_url.as_str()));
    record.insert(
        "template_id".to_owned(),
        Value::from(job.template_id.as_str()),
    );
    record.insert("fetched_at".to_owned(), Value::from(fetched_at));
    record.insert("index".to_owned(), Value::from(index));
    record.insert("fields".to_owned(), Value::Object(fields));
    Value::Object(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::JobStatus;

    fn job(config: &str, depth: u32) -> Job {
        Job {
            id: "c1:seed".to_owned(),
            name: "n".to_owned(),
            template_id: "t".to_owned(),
            target_url: "http://127.0.0.1:1/list".to_owned(),
            config: config.to_owned(),
            priority: 0,
            status: JobStatus::Assigned,
            assigned_worker: None,
            created_at: 0,
            started_at: None,
            completed_at: None,
            retry_count: 0,
            max_retries: 2,
            result: None,
            error: None,
            attempt: 1,
            token: 1,
            lease_expiries: 0,
            lease_deadline: None,
            not_before: None,
            crawl_id: Some("c1".to_owned()),
            depth,
            parent_id: None,
            politeness_key: "127.0.0.1".to_owned(),
            paced: false,
        }
    }

    fn template() -> Template {
        Template::from_json(
            r#"{"id": "t", "item": "div", "fields": [{"name": "a", "selector": "b"}],
                "links": {"selector": "a.p", "max_depth": 1},
                "pagination": {"next": "a.next", "max_pages": 2}}"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn ids_are_stable_per_crawl_and_ignore_fragments() {
        assert_eq!(
            job_id("c", "http://x.org/a#top"),
            job_id("c", "http://x.org/a")
        );
        assert_ne!(job_id("c", "http://x.org/a"), job_id("d", "http://x.org/a"));
        assert_ne!(job_id("c", "http://x.org/a"), job_id("c", "http://x.org/b"));
        assert!(job_id("c", "http://x.org/a").starts_with("c:"));
    }

    #[test]
    fn default_crawl_ids_match_earlier_versions() {
        // The ids earlier versions derived in Python (hashlib.sha256): crawls started before
        // an upgrade resume under the same id.
        assert_eq!(
            default_crawl_id("shop", ["http://127.0.0.1:1/", "http://127.0.0.1:1/b"]),
            default_crawl_id(
                "shop",
                [
                    "http://127.0.0.1:1/b",
                    "http://127.0.0.1:1/",
                    "http://127.0.0.1:1/"
                ]
            )
        );
        assert_eq!(
            default_crawl_id("t", ["https://a.example/"]),
            "crawl-14a4e72d2a02"
        );
        assert_ne!(
            default_crawl_id("t", ["https://a.example/"]),
            default_crawl_id("u", ["https://a.example/"])
        );
    }

    #[test]
    fn settings_read_timeout_and_page() {
        let settings = JobSettings::of(r#"{"timeout": 2.5, "_page": 3}"#).unwrap();
        assert_eq!(
            settings.timeout,
            Some(std::time::Duration::from_millis(2500))
        );
        assert_eq!(settings.page, 3);
        assert_eq!(JobSettings::of("{}").unwrap().page, 1);
        assert_eq!(
            JobSettings::of(r#"{"delay_rang": [1, 2], "_page": 2, "timeout": 1}"#)
                .unwrap()
                .unknown,
            ["delay_rang"]
        );
        assert!(
            JobSettings::of(r#"{"timeout": -1}"#)
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            JobSettings::of(r#"{"timeout": "x"}"#)
                .unwrap_err()
                .contains("seconds")
        );
    }

    #[test]
    fn hostile_configs_are_refused_without_a_panic() {
        // 1e20 seconds made Duration::from_secs_f64 panic the job's task.
        for bad in [
            r#"{"timeout": 1e20}"#,
            r#"{"timeout": 1.7976931348623157e308}"#,
            r#"{"timeout": 86400.5}"#,
            r#"{"timeout": 0}"#,
            r#"{"timeout": -0.0}"#,
            r#"{"_page": 0}"#,
            r#"{"_page": -1}"#,
            r#"{"_page": 1e12}"#,
            r#"{"_page": "2"}"#,
            r#"{"delay_range": [0, 1e300]}"#,
            "[]",
            "not json",
        ] {
            assert!(check_config(bad).is_err(), "{bad}");
        }
        for good in [
            "",
            "  ",
            "{}",
            r#"{"timeout": 86400, "_page": 7, "anything": [1]}"#,
        ] {
            assert!(check_config(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn settings_read_request_overrides() {
        let settings =
            JobSettings::of(r#"{"delay_range": [0.5, 2], "respect_robots": false}"#).unwrap();
        assert_eq!(settings.request.delay_range, Some((0.5, 2.0)));
        assert_eq!(settings.request.respect_robots, Some(false));
        assert_eq!(
            JobSettings::of("{}").unwrap().request,
            RequestOptions::default()
        );
        for bad in [
            r#"{"delay_range": [2, 1]}"#,
            r#"{"delay_range": [-1, 1]}"#,
            r#"{"delay_range": [1]}"#,
            r#"{"delay_range": "1-3"}"#,
            r#"{"delay_range": [0, 7200]}"#,
        ] {
            assert!(
                JobSettings::of(bad).unwrap_err().contains("delay_range"),
                "{bad}"
            );
        }
        assert!(
            JobSettings::of(r#"{"respect_robots": "no"}"#)
                .unwrap_err()
                .contains("true or false")
        );
    }

    #[test]
    fn discovery_respects_depth_and_page_limits() {
        let page = PageOutput {
            items: Vec::new(),
            links: vec!["http://127.0.0.1:1/p/1".to_owned()],
            next_page: Some("http://127.0.0.1:1/list?page=2".to_owned()),
        };
        let found = discovered(&job(r#"{"k": 1}"#, 0), &template(), &page, 1);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].depth, 1);
        assert_eq!(found[0].config, r#"{"k":1}"#);
        assert_eq!(found[1].depth, 0);
        assert_eq!(found[1].config, r#"{"k":1,"_page":2}"#);
        assert_eq!(found[1].parent_id.as_deref(), Some("c1:seed"));
        assert_eq!(
            found[1].id.as_deref(),
            Some(job_id("c1", "http://127.0.0.1:1/list?page=2").as_str())
        );
        // At the depth limit no links, at the page limit no next page.
        assert!(discovered(&job("{}", 1), &template(), &page, 2).is_empty());
    }
}
