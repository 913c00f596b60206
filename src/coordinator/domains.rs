//! The politeness keys over HTTP: `GET /api/domains` (paged), `GET /api/domains/{key}`,
//! `PUT /api/domains/{key}` (a key's own delay and concurrency), and the summary of the
//! busiest and throttled keys the dashboard shows. Thin: the queue does the work
//! (`JobQueue::domains` / `domain` / `set_domain`); a key is shown with the fields and units
//! of the Python `DomainState` (seconds, `null` for a time that is not set).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::api::ApiError;
use crate::queue::politeness::check_key;
use crate::queue::{Change, DomainInfo, JobQueue, QueueError};

/// Most keys one page of `GET /api/domains` lists.
pub const MAX_PAGE_SIZE: usize = 500;
/// Largest `offset` accepted.
pub const MAX_OFFSET: usize = 1_000_000_000;
/// Largest per-key delay accepted, seconds (the queue-wide delay has the same bound).
pub const MAX_DELAY_SECONDS: f64 = 86_400.0;
/// Keys the dashboard's summary reads each sample: the most recently changed ones (a key
/// that is claimed, throttled or changed moves to the front), so its cost does not grow with
/// the number of keys.
pub const SUMMARY_SCAN: usize = 200;
/// Keys per list in the dashboard's summary.
pub const SUMMARY_SIZE: usize = 10;

#[allow(clippy::cast_precision_loss)]
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn seconds_u(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A time in ms since the epoch, `null` when not set (0).
fn time(ms: i64) -> Value {
    if ms > 0 {
        Value::from(seconds(ms))
    } else {
        Value::Null
    }
}

/// A key as the API shows it: the Python `DomainState`'s fields and units.
pub fn domain_json(d: &DomainInfo) -> Value {
    json!({
        "key": d.key,
        "waiting": d.waiting,
        "inflight": d.inflight,
        "delay": seconds_u(d.delay_ms),
        "concurrency": d.concurrency,
        "ready_at": time(d.ready_at),
        "throttled": d.throttled,
        "errors": d.errors,
        "last_throttled": time(d.last_throttled),
        "last_error": time(d.last_error),
        "paced": d.parked,
        "delay_override": d.delay_override_ms.map(seconds_u),
        "concurrency_override": d.concurrency_override,
        "crawl_delay": seconds_u(d.crawl_delay_ms),
        "paused_until": time(d.paused_until),
        "now": seconds(d.now),
    })
}

/// `offset` and `limit`, or `page` and `per_page`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
    page: Option<usize>,
    per_page: Option<usize>,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if (query.offset.is_some() || query.limit.is_some())
        && (query.page.is_some() || query.per_page.is_some())
    {
        return Err(ApiError::bad_request(
            "page with offset and limit, or with page and per_page, not both",
        ));
    }
    let limit = query.limit.or(query.per_page).unwrap_or(50);
    let page = query.page.unwrap_or(1);
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "page starts at 1; limit (per_page) is 1 to {MAX_PAGE_SIZE}"
        )));
    }
    let offset = query
        .offset
        .unwrap_or_else(|| (page - 1).saturating_mul(limit));
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_request(format!(
            "offset is at most {MAX_OFFSET}"
        )));
    }
    let domains = state.queue.domains(offset, limit).await?;
    let more = domains.len() == limit;
    Ok(Json(json!({
        "offset": offset,
        "limit": limit,
        "page": offset / limit + 1,
        "per_page": limit,
        "more": more,
        "domains": domains.iter().map(domain_json).collect::<Vec<_>>(),
    })))
}

/// A key from the path, checked as the queue checks it (400, not a queue error).
fn key_from(key: &str) -> Result<&str, ApiError> {
    check_key(key).map_err(ApiError::bad_request)?;
    Ok(key)
}

fn no_record(key: &str) -> ApiError {
    ApiError::not_found(format!(
        "the queue keeps no record of {key:?}: it has no override, no delay or limit, nothing \
         in flight and was never throttled (its jobs flow freely)"
    ))
}

pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = key_from(&key)?;
    match state.queue.domain(key).await? {
        Some(d) => Ok(Json(domain_json(&d))),
        None => Err(no_record(key)),
    }
}

/// One field of a `PUT` body: absent keeps the override, `null` removes it, a value sets it.
fn change<T>(
    body: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<Change<T>, ApiError> {
    match body.get(name) {
        None => Ok(Change::Keep),
        Some(Value::Null) => Ok(Change::Clear),
        Some(value) => parse(value).map(Change::Set).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"{name}\" must be {expected}, or null to remove the override (got {value})"
            ))
        }),
    }
}

pub(super) async fn put(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = key_from(&key)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "the body is an object: {\"delay\": seconds, \"concurrency\": n} (null removes one)",
        ));
    };
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "delay" | "concurrency"))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field {unknown:?}: a key has \"delay\" and \"concurrency\""
        )));
    }
    let delay = change(
        &body,
        "delay",
        |v| {
            v.as_f64()
                .filter(|s| s.is_finite() && (0.0..=MAX_DELAY_SECONDS).contains(s))
                .map(Duration::from_secs_f64)
        },
        "a number of seconds from 0 to 86400",
    )?;
    let concurrency = change(
        &body,
        "concurrency",
        |v| v.as_u64().and_then(|n| u32::try_from(n).ok()),
        "a whole number >= 0 (0: no limit)",
    )?;
    if delay == Change::Keep && concurrency == Change::Keep {
        return Err(ApiError::bad_request(
            "nothing to change: give \"delay\" and/or \"concurrency\" (null removes one)",
        ));
    }
    let d = state.queue.set_domain(key, delay, concurrency).await?;
    Ok(Json(domain_json(&d)))
}

/// The dashboard's view: among the most recently changed keys, the busiest (most jobs
/// waiting and in flight) and the throttled ones (429/503 answers or failed requests,
/// most recent first).
pub(super) async fn summary(queue: &JobQueue) -> Result<Value, QueueError> {
    let mut keys = queue.domains(0, SUMMARY_SCAN).await?;
    let scanned = keys.len();
    let busy = |d: &DomainInfo| d.waiting + d.inflight;
    keys.sort_by(|a, b| busy(b).cmp(&busy(a)).then_with(|| a.key.cmp(&b.key)));
    let busiest: Vec<Value> = keys
        .iter()
        .filter(|d| busy(d) > 0)
        .take(SUMMARY_SIZE)
        .map(domain_json)
        .collect();
    let last_trouble = |d: &DomainInfo| d.last_throttled.max(d.last_error);
    keys.sort_by(|a, b| {
        last_trouble(b)
            .cmp(&last_trouble(a))
            .then_with(|| a.key.cmp(&b.key))
    });
    let throttled: Vec<Value> = keys
        .iter()
        .filter(|d| d.throttled + d.errors > 0)
        .take(SUMMARY_SIZE)
        .map(domain_json)
        .collect();
    Ok(json!({"scanned": scanned, "busiest": busiest, "throttled": throttled}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DomainInfo {
        DomainInfo {
            key: "example.com".to_owned(),
            waiting: 7,
            inflight: 1,
            delay_ms: 2500,
            concurrency: 1,
            ready_at: 1_700_000_001_500,
            throttled: 2,
            errors: 0,
            last_throttled: 1_700_000_000_000,
            last_error: 0,
            parked: true,
            delay_override_ms: Some(2000),
            concurrency_override: None,
            crawl_delay_ms: 0,
            paused_until: 0,
            now: 1_700_000_000_250,
        }
    }

    #[test]
    fn a_key_has_the_python_fields_in_seconds_and_null_for_unset_times() {
        let value = domain_json(&info());
        assert_eq!(value["delay"], 2.5);
        assert_eq!(value["ready_at"], 1_700_000_001.5);
        assert_eq!(value["last_error"], Value::Null);
        assert_eq!(value["paused_until"], Value::Null);
        assert_eq!(value["delay_override"], 2.0);
        assert_eq!(value["concurrency_override"], Value::Null);
        assert_eq!(value["paced"], true);
        let names: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 16, "{names:?}");
    }

    #[test]
    fn put_fields_keep_clear_or_set() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"delay": null, "concurrency": 3}"#).unwrap();
        let parse = |v: &Value| v.as_u64();
        assert_eq!(
            change(&body, "delay", Value::as_f64, "").unwrap(),
            Change::Clear
        );
        assert_eq!(
            change(&body, "concurrency", parse, "").unwrap(),
            Change::Set(3)
        );
        assert_eq!(change(&body, "other", parse, "").unwrap(), Change::Keep);
        let bad: Map<String, Value> = serde_json::from_str(r#"{"concurrency": -1}"#).unwrap();
        assert!(change(&bad, "concurrency", parse, "n").is_err());
    }
}
