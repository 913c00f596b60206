//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/health` (the process is alive) and
//! `/ready` (the queue answers), for scrapers and Kubernetes probes.

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
) -> WorkerResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WorkerError::server(addr, &e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| WorkerError::server(addr, &e))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(worker);
    let handle = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    tracing::info!(%bound, "metrics on http://{bound}/metrics");
    Ok((bound, handle))
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
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queue unavailable: {error}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queue did not answer within {READY_TIMEOUT:?}\n"),
        ),
    }
}
