//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/health` (the process is alive) and
//! `/ready` (the queue answers), for scrapers and Kubernetes probes. Served on the shared
//! hardened listener ([`crate::http`]: header-read timeout, connection cap); `/ready` says
//! whether the queue answered, never where the queue is (the details go to the log).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{Worker, WorkerError, WorkerResult};

/// Longest a readiness probe waits for the queue.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `addr` and serves in the background; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    worker: Arc<Worker>,
) -> WorkerResult<(SocketAddr, tokio::task::AbortHandle)> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(worker);
    let server = crate::http::serve(addr, app, crate::http::Limits::PROBES)
        .await
        .map_err(|e| WorkerError::server(addr, &e))?;
    let bound = server.addr;
    tracing::info!(%bound, "metrics on http://{bound}/metrics");
    Ok((bound, server.abort_handle()))
}

async fn metrics(State(worker): State<Arc<Worker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        worker.metrics().render(),
    )
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn ready(State(worker): State<Arc<Worker>>) -> impl IntoResponse {
    match tokio::time::timeout(READY_TIMEOUT, worker.queue().stats()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n"),
        Ok(Err(error)) => {
            // The error names the queue's host (and user): the log may see it, a prober not.
            tracing::warn!(%error, "readiness: the queue failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the queue failed\n",
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the queue did not answer in time\n",
        ),
    }
}
