//! The coordinator: an HTTP API, a WebSocket of live stats and a dashboard over one queue.
//!
//! Stateless by design — every answer comes from the queue (Redis for a fleet), so any number
//! of replicas can sit behind a load balancer (`docker/nginx/nginx-scale.conf`) and give the
//! same answers. Owns: the routes ([`api`]; the politeness keys in [`domains`]), the
//! bearer-token check ([`auth`]), the stats
//! feed for `/ws` and `/metrics` (a sampler task per process), the embedded dashboard and the
//! `OpenAPI` document, and the access log ([`access`]). The request body limit, the request timeout and CORS come from
//! `tower-http`; the server stops gracefully (in-flight requests finish) when the shutdown
//! signal fires.

pub mod access;
pub mod api;
pub mod auth;
pub mod domains;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::watch;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::{ConfigError, ConfigResult};
use crate::metrics::ClusterMetrics;
use crate::queue::JobQueue;

/// The dashboard page (no build step: plain HTML, CSS and JavaScript, embedded).
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");
/// The `OpenAPI` 3 document of the routes.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Where to listen (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Bearer token required for mutating routes (and for all routes when
    /// `protect_reads`); `None`: open (bind to loopback or a private network then).
    pub token: Option<String>,
    /// Also require the token for reads (everything except `/api/health` and `/metrics`).
    pub protect_reads: bool,
    /// Largest request body accepted, bytes.
    pub body_limit: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Origins allowed by CORS (empty: no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Time between two stats samples pushed to `/ws` (and rates of `/metrics`).
    pub stats_interval: Duration,
}

impl CoordinatorConfig {
    /// Defaults: port 8080 on all interfaces, no token, 1 MiB bodies, 30 s requests,
    /// no CORS, stats every second.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            protect_reads: false,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            stats_interval: Duration::from_secs(1),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> ConfigResult<()> {
        if let Some(token) = &self.token
            && (token.len() < 16 || token.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::invalid(
                "api token",
                "<hidden>",
                "at least 16 characters without whitespace",
            ));
        }
        if self.protect_reads && self.token.is_none() {
            return Err(ConfigError::invalid(
                "protect_reads",
                true,
                "a token (SCRAPERV4_API_TOKEN) to protect reads with",
            ));
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::invalid(
                "body_limit",
                self.body_limit,
                "at least 1024 bytes",
            ));
        }
        if self.request_timeout.is_zero()
            || self.header_timeout.is_zero()
            || self.stats_interval < Duration::from_millis(100)
        {
            return Err(ConfigError::invalid(
                "request_timeout / stats_interval",
                format!("{:?} / {:?}", self.request_timeout, self.stats_interval),
                "a request timeout above 0 and a stats interval of at least 0.1 s",
            ));
        }
        for origin in &self.cors_origins {
            HeaderValue::from_str(origin)
                .map_err(|_| ConfigError::invalid("cors_origins", origin, "an origin"))?;
        }
        Ok(())
    }
}

/// What every handler shares.
pub struct AppState {
    /// The queue.
    pub queue: Arc<JobQueue>,
    /// The settings.
    pub config: CoordinatorConfig,
    /// When this process started serving.
    pub started: Instant,
    /// Cluster metrics of this process's sampler.
    pub metrics: ClusterMetrics,
    /// The latest stats snapshot (`None` until the first sample).
    pub stats: watch::Receiver<Option<Arc<Value>>>,
}

/// The router with every route and layer (the server is [`serve`]).
pub fn router(state: Arc<AppState>) -> Router {
    let config = &state.config;
    let mut app = Router::new()
        .route("/", get(api::dashboard))
        .route("/api/health", get(api::health))
        .route("/api/live", get(api::live))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/scraping/start", post(api::start))
        .route("/api/scraping/status/{id}", get(api::status))
        .route("/api/jobs", get(api::list_jobs))
        .route("/api/jobs/{id}/retry", post(api::retry))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/queue/stats", get(api::queue_stats))
        .route("/api/workers", get(api::workers))
        .route("/api/workers/{id}/drain", post(api::drain))
        .route("/api/domains", get(domains::list))
        .route("/api/domains/{key}", get(domains::get).put(domains::put))
        .route("/metrics", get(api::metrics))
        .route("/ws", get(api::websocket))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    if !config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PUT])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app.layer(axum::middleware::from_fn(access::log))
        .with_state(state)
}

/// A running coordinator: its address, and how to stop it.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (within the request timeout), stops.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        let outcome = self
            .server
            .await
            .map_err(|error| std::io::Error::other(error.to_string()));
        self.sampler.abort();
        outcome
    }
}

/// Binds and serves in the background.
pub async fn serve(config: CoordinatorConfig, queue: Arc<JobQueue>) -> ConfigResult<Running> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| ConfigError::invalid("coordinator address", config.addr, e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConfigError::invalid("coordinator address", config.addr, e.to_string()))?;
    let (stats_tx, stats_rx) = watch::channel(None);
    let state = Arc::new(AppState {
        queue,
        config,
        started: Instant::now(),
        metrics: ClusterMetrics::new(600),
        stats: stats_rx,
    });
    let sampler = tokio::spawn(api::sample_loop(Arc::clone(&state), stats_tx));
    let (shutdown, stopping) = watch::channel(false);
    let app = router(Arc::clone(&state));
    let server = tokio::spawn(accept_loop(listener, app, state, stopping));
    tracing::info!(%addr, "coordinator listening");
    Ok(Running {
        addr,
        shutdown,
        server,
        sampler,
    })
}

async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Serves connections until `stopping` turns true, then waits for in-flight requests (at
/// most one request timeout).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    state: Arc<AppState>,
    mut stopping: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_requested(&mut stopping) => break,
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(access::Peer(peer));
                request
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(state.config.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the request timeout: closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_api_route() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = document["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/api/health", "get"),
            ("/api/live", "get"),
            ("/api/scraping/start", "post"),
            ("/api/scraping/status/{id}", "get"),
            ("/api/jobs", "get"),
            ("/api/jobs/{id}/retry", "post"),
            ("/api/jobs/{id}/cancel", "post"),
            ("/api/queue/stats", "get"),
            ("/api/workers", "get"),
            ("/api/workers/{id}/drain", "post"),
            ("/api/domains", "get"),
            ("/api/domains/{key}", "get"),
            ("/api/domains/{key}", "put"),
            ("/metrics", "get"),
            ("/ws", "get"),
            ("/api/openapi.json", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing from openapi.json"
            );
        }
        assert_eq!(paths.len(), 15, "no route documented that does not exist");
    }

    #[test]
    fn weak_tokens_and_bad_limits_are_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = CoordinatorConfig::new(addr);
        assert!(config.validate().is_ok());
        config.token = Some("short".to_owned());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("16 characters") && !error.contains("short"));
        config.token = None;
        config.protect_reads = true;
        assert!(config.validate().is_err());
        config.protect_reads = false;
        config.body_limit = 10;
        assert!(config.validate().is_err());
    }
}
