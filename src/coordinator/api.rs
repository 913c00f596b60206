//! The routes, their JSON shapes and errors, and the stats sampler behind `/ws`.
//!
//! Errors always have the shape `{"error": {"status": 404, "code": "not_found", "message":
//! "..."}}` with a stable `code`. Messages never contain the queue's URL (it may hold a
//! password): an unreachable queue is reported as such, with details only in the log.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{AppState, DASHBOARD_HTML, OPENAPI_JSON};
use crate::metrics::Sample;
use crate::queue::{Ack, Job, JobStatus, NewJob, QueueError, QueueStats};
use crate::worker::{crawl, error_kind};

/// Most jobs one `POST /api/scraping/start` may submit.
pub const MAX_BATCH: usize = 1000;
/// Most jobs one page of `GET /api/jobs` lists.
pub const MAX_PAGE_SIZE: usize = 500;
/// Longest the health probe waits for the queue.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An answer with `status`, a stable `code` and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: wrong token.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": {
                "status": self.status.as_u16(),
                "code": self.code,
                "message": self.message,
            }})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::InvalidJob { .. } | QueueError::Config(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_job", error.to_string())
            }
            QueueError::JobNotFound(_) => Self::not_found(error.to_string()),
            // Logged without the queue's URL (the brief: never in answers or logs).
            QueueError::Unavailable { operation, .. } => {
                tracing::warn!(error = without_location(&error), "queue unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    format!("the queue did not answer ({operation}); try again"),
                )
            }
            QueueError::CorruptJob { .. } | QueueError::Backend { .. } => {
                tracing::error!(error = without_location(&error), "queue error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "queue_error",
                    "the queue failed; see the coordinator's log",
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// An error's text without the queue's URL (for logs; answers carry less still).
fn without_location(error: &QueueError) -> String {
    match error {
        QueueError::Unavailable {
            operation, detail, ..
        } => format!("queue unavailable during {operation}: {detail}"),
        QueueError::Backend {
            operation, detail, ..
        } => format!("queue failed during {operation}: {detail}"),
        other => other.to_string(),
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Jobs per status as a JSON object.
fn by_status_json(stats: &QueueStats) -> Value {
    stats
        .by_status
        .iter()
        .map(|(status, n)| (status.as_str().to_owned(), Value::from(*n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A job as the API shows it: the stored fields, the result parsed, times in seconds since
/// the epoch (as in Python and the CLI).
fn job_json(job: &Job) -> Value {
    let mut value = serde_json::to_value(job).unwrap_or_default();
    for key in [
        "created_at",
        "started_at",
        "completed_at",
        "lease_deadline",
        "not_before",
    ] {
        if let Some(ms) = value[key].as_i64() {
            #[allow(clippy::cast_precision_loss)]
            let seconds = ms as f64 / 1000.0;
            value[key] = Value::from(seconds);
        }
    }
    if let Some(result) = job.result.as_deref() {
        value["result"] = serde_json::from_str(result).unwrap_or_else(|_| Value::from(result));
    }
    if let Ok(config) = serde_json::from_str::<Value>(&job.config) {
        value["config"] = config;
    }
    value["items_scraped"] = value["result"]["items"].clone();
    value
}

pub(super) async fn dashboard() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            super::guard::dashboard_policy(),
        )],
        Html(DASHBOARD_HTML),
    )
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see /api/openapi.json)")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method (see /api/openapi.json)",
    )
}

/// Liveness: this process serves HTTP. Never asks the queue, so a Redis outage does not get
/// every coordinator restarted by its liveness probe (`/api/health` is the readiness probe).
pub(super) async fn live(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
    }))
}

pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let reachable = matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, state.queue.stats()).await,
        Ok(Ok(_))
    );
    let body = json!({
        "status": if reachable { "ok" } else { "unavailable" },
        "queue": if reachable { "reachable" } else { "unreachable" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
    });
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// A job as submitted through the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiJob {
    target_url: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    priority: i64,
    #[serde(default = "default_retries")]
    max_retries: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    crawl_id: Option<String>,
}

fn default_retries() -> u32 {
    3
}

impl ApiJob {
    /// The job to queue. Without an id, as `scraperv4 submit` does: the job belongs to the
    /// crawl given, or to the default crawl of its template and the batch's URLs
    /// (`default_crawl`), and its id derives from the crawl and the URL — so posting the
    /// same URLs again queues nothing twice.
    fn into_new_job(self, default_crawl: Option<String>) -> NewJob {
        let (id, crawl_id) = match (self.id, self.crawl_id.or(default_crawl)) {
            (Some(id), crawl) => (Some(id), crawl),
            (None, Some(crawl)) => (Some(crawl::job_id(&crawl, &self.target_url)), Some(crawl)),
            (None, None) => (None, None),
        };
        NewJob {
            id,
            name: self.name,
            template_id: self.template_id,
            target_url: self.target_url,
            config: self
                .config
                .map_or_else(|| "{}".to_owned(), |c| Value::Object(c).to_string()),
            priority: self.priority,
            max_retries: self.max_retries,
            crawl_id,
            depth: 0,
            parent_id: None,
            politeness_key: None,
            revisit: None,
        }
    }
}

pub(super) async fn start(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let specs: Vec<Value> = match value {
        Value::Object(mut object) if object.contains_key("jobs") => {
            if object.len() != 1 {
                return Err(ApiError::bad_request(
                    "a batch is {\"jobs\": [...]} and nothing else",
                ));
            }
            match object.remove("jobs") {
                Some(Value::Array(jobs)) => jobs,
                _ => return Err(ApiError::bad_request("\"jobs\" must be an array of jobs")),
            }
        }
        job @ Value::Object(_) => vec![job],
        _ => {
            return Err(ApiError::bad_request(
                "the body must be a job object or {\"jobs\": [...]}",
            ));
        }
    };
    if specs.is_empty() || specs.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "submit between 1 and {MAX_BATCH} jobs per request (got {})",
            specs.len()
        )));
    }
    let mut parsed = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let job: ApiJob = serde_json::from_value(spec)
            .map_err(|e| ApiError::bad_request(format!("job {index}: {e}")))?;
        parsed.push(job);
    }
    let default_crawl = |template: &str| {
        let urls = parsed
            .iter()
            .filter(|j| j.template_id == template && j.id.is_none() && j.crawl_id.is_none())
            .map(|j| j.target_url.as_str());
        crawl::default_crawl_id(template, urls)
    };
    let crawls: Vec<Option<String>> = parsed
        .iter()
        .map(|j| (j.id.is_none() && j.crawl_id.is_none()).then(|| default_crawl(&j.template_id)))
        .collect();
    let jobs: Vec<NewJob> = parsed
        .into_iter()
        .zip(crawls)
        .map(|(job, crawl)| job.into_new_job(crawl))
        .collect();
    for (index, job) in jobs.iter().enumerate() {
        crawl::check_config(&job.config).map_err(|reason| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_job",
                format!("job {index}: {reason}"),
            )
        })?;
    }
    let created = state.queue.submit(jobs).await?;
    let new = created.iter().filter(|(_, created)| *created).count();
    let ids: Vec<&str> = created.iter().map(|(id, _)| id.as_str()).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"ids": ids, "created": new, "existing": ids.len() - new})),
    )
        .into_response())
}

pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match state.queue.get(&id).await? {
        Some(job) => Ok(Json(job_json(&job))),
        None => Err(ApiError::not_found(format!("no job {id:?}"))),
    }
}

/// `offset` and `limit` as in `scraperv4 jobs list` (or `page` and `per_page`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    page: Option<usize>,
    per_page: Option<usize>,
}

pub(super) async fn list_jobs(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status_name = query.status.as_deref().unwrap_or("pending");
    let status = JobStatus::parse(status_name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown status {status_name:?}; one of: {}",
            JobStatus::ALL.map(JobStatus::as_str).join(", ")
        ))
    })?;
    let per_page = query.limit.or(query.per_page).unwrap_or(50);
    let page = query.page.unwrap_or(1);
    if (query.offset.is_some() || query.limit.is_some())
        && (query.page.is_some() || query.per_page.is_some())
    {
        return Err(ApiError::bad_request(
            "page with offset and limit, or with page and per_page, not both",
        ));
    }
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&per_page) {
        return Err(ApiError::bad_request(format!(
            "page starts at 1; limit (per_page) is 1 to {MAX_PAGE_SIZE}"
        )));
    }
    let offset = query
        .offset
        .unwrap_or_else(|| (page - 1).saturating_mul(per_page));
    let jobs = state.queue.list(status, offset, per_page).await?;
    let total = state.queue.stats().await?.count(status);
    let jobs: Vec<Value> = jobs
        .into_iter()
        .map(|job| match job {
            Ok(job) => job_json(&job),
            Err(error) => json!({"error": error.to_string()}),
        })
        .collect();
    Ok(Json(json!({
        "status": status.as_str(),
        "total": total,
        "offset": offset,
        "limit": per_page,
        "page": offset / per_page + 1,
        "per_page": per_page,
        "jobs": jobs,
    })))
}

fn ack_response(id: &str, action: &str, ack: Ack) -> ApiResult<Json<Value>> {
    match ack {
        Ack::Accepted => Ok(Json(json!({"id": id, "action": action, "accepted": true}))),
        Ack::NotFound => Err(ApiError::not_found(format!("no job {id:?}"))),
        Ack::Stale { status, .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("cannot {action} job {id:?}: it is {status}"),
        )),
    }
}

pub(super) async fn retry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let ack = state.queue.retry(&id).await?;
    ack_response(&id, "retry", ack)
}

pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let ack = state.queue.cancel(&id).await?;
    ack_response(&id, "cancel", ack)
}

/// Counts straight from the queue (so every replica answers the same), rates from this
/// process's sampler.
pub(super) async fn queue_stats(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let counts = state.queue.stats().await?;
    let by_status = by_status_json(&counts);
    let rates = state.metrics.history().last().map_or_else(
        || json!({"jobs_per_second": 0.0, "error_rate": 0.0, "avg_job_duration": 0.0}),
        |m| {
            json!({
                "jobs_per_second": m.jobs_per_second,
                "error_rate": m.error_rate,
                "avg_job_duration": m.avg_job_duration,
            })
        },
    );
    Ok(Json(json!({
        "by_status": by_status,
        "total": counts.total,
        "runnable": counts.runnable,
        "paced_keys": counts.paced_keys,
        "waiting_keys": counts.waiting_keys,
        "active_workers": counts.active_workers,
        "total_workers": counts.total_workers,
        "totals": counts.totals,
        "rates": rates,
    })))
}

pub(super) async fn workers(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let workers = state.queue.workers().await?;
    Ok(Json(json!({ "workers": workers })))
}

pub(super) async fn drain(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.queue.set_draining(&id, true).await? {
        Ok(Json(json!({"id": id, "draining": true})))
    } else {
        Err(ApiError::not_found(format!("no registered worker {id:?}")))
    }
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Samples the queue every `stats_interval`: feeds `/metrics` and the `/ws` snapshots.
pub(super) async fn sample_loop(state: Arc<AppState>, stats_tx: watch::Sender<Option<Arc<Value>>>) {
    let mut tick = tokio::time::interval(state.config.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match snapshot(&state).await {
            Ok(snapshot) => {
                stats_tx.send_replace(Some(Arc::new(snapshot)));
            }
            Err(error) => {
                tracing::warn!(error = without_location(&error), "stats sample failed");
                stats_tx.send_replace(Some(Arc::new(json!({
                    "time": now_seconds(),
                    "error": "the queue did not answer",
                }))));
            }
        }
    }
}

async fn snapshot(state: &AppState) -> Result<Value, QueueError> {
    let counts = state.queue.stats().await?;
    let workers = state.queue.workers().await?;
    let failures = state
        .queue
        .list(JobStatus::Failed, 0, FAILURES_SCANNED)
        .await?;
    let domains = super::domains::summary(&state.queue).await?;
    let by_status = by_status_json(&counts);
    let metrics = state.metrics.observe(Sample {
        timestamp: now_seconds(),
        stats: counts,
    });
    let failures: Vec<Job> = failures.into_iter().filter_map(Result::ok).collect();
    let failure_kinds = failure_kinds(&failures);
    let failures: Vec<Value> = failures
        .iter()
        .take(10)
        .map(|job| {
            json!({
                "id": job.id,
                "target_url": job.target_url,
                "kind": error_kind(job.error.as_deref().unwrap_or_default()),
                "error": job.error,
                "completed_at": job.completed_at,
                "retry_count": job.retry_count,
            })
        })
        .collect();
    Ok(json!({
        "time": metrics.timestamp,
        "by_status": by_status,
        "runnable": metrics.queue_length,
        "paced_keys": metrics.paced_keys,
        "waiting_keys": metrics.waiting_keys,
        "total": metrics.total_jobs,
        "active_workers": metrics.active_workers,
        "jobs_per_second": metrics.jobs_per_second,
        "error_rate": metrics.error_rate,
        "avg_job_duration": metrics.avg_job_duration,
        "completed_total": metrics.completed_total,
        "failed_total": metrics.failed_total,
        "workers": workers,
        "failures": failures,
        "domains": domains,
        "failure_kinds": failure_kinds,
    }))
}

/// Most recent failed jobs the dashboard groups by kind.
const FAILURES_SCANNED: usize = 500;

/// The failures grouped by the kind in front of their error, most frequent first: kind,
/// count, and the latest error of that kind as an example.
fn failure_kinds(failures: &[Job]) -> Vec<Value> {
    let mut groups: Vec<(&str, usize, &str)> = Vec::new();
    for job in failures {
        let error = job.error.as_deref().unwrap_or_default();
        let kind = error_kind(error);
        match groups.iter_mut().find(|(k, _, _)| *k == kind) {
            Some(group) => group.1 += 1,
            None => groups.push((kind, 1, error)),
        }
    }
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    groups
        .into_iter()
        .map(|(kind, count, example)| json!({"kind": kind, "count": count, "example": example}))
        .collect()
}
