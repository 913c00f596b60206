//! The coordinator: an HTTP API, a WebSocket of live stats and a dashboard over one queue.
//!
//! Stateless by design — every answer comes from the queue (Redis for a fleet), so any number
//! of replicas can sit behind a load balancer (`docker/nginx/nginx-scale.conf`) and give the
//! same answers. Owns: the routes ([`api`]; the politeness keys in [`domains`]), the
//! bearer-token check ([`auth`]), the checks every request passes before it reaches a
//! route — Host, Origin, content type — and the security headers of every answer
//! ([`guard`]), the access log with request ids ([`access`]), the capped stats `WebSocket`
//! ([`ws`]), the stats feed for `/ws` and `/metrics` (a sampler task per process), the
//! embedded dashboard and the `OpenAPI` document. Connections are served by the shared
//! hardened listener ([`crate::http`]); the request body limit, the request timeout and CORS
//! come from `tower-http`.
//!
//! Secure by default: without a token it listens only on a loopback address (unless told
//! `insecure_no_auth`), and with a token reads need it too (`protect_reads`).

pub mod access;
pub mod api;
pub mod auth;
pub mod domains;
pub mod guard;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::{ConfigError, ConfigResult};
use crate::http::{self, Limits};
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
    /// Bearer token required for mutating routes (and for reads with `protect_reads`);
    /// `None`: open, which is allowed on a loopback address only (or with
    /// `insecure_no_auth`).
    pub token: Option<String>,
    /// With a token, require it for reads too (everything except `/api/health`, `/metrics`,
    /// `/api/openapi.json` and the dashboard's page).
    pub protect_reads: bool,
    /// Serve without a token on a non-loopback address anyway (anyone who reaches it can
    /// submit jobs and drain workers).
    pub insecure_no_auth: bool,
    /// Host names the `Host` header may carry (besides IP literals and `localhost`); empty:
    /// any name when a token is set, none otherwise (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Largest request body accepted, bytes.
    pub body_limit: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Most connections open at once (`WebSocket`s apart).
    pub max_connections: usize,
    /// Most `/ws` connections open at once.
    pub ws_max_connections: usize,
    /// A `/ws` client that answers nothing (not even the server's pings) for this long, or
    /// does not take a message within it, is disconnected.
    pub ws_idle_timeout: Duration,
    /// Origins allowed by CORS (empty: no CORS headers at all); they may also send writes
    /// and open `/ws`.
    pub cors_origins: Vec<String>,
    /// Time between two stats samples pushed to `/ws` (and rates of `/metrics`).
    pub stats_interval: Duration,
}

impl CoordinatorConfig {
    /// Defaults: no token (so loopback only), reads protected once a token is set, 1 MiB
    /// bodies, 30 s requests, 1024 connections, 64 `WebSocket`s idle for at most 60 s, no
    /// CORS, stats every second.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            protect_reads: true,
            insecure_no_auth: false,
            allowed_hosts: Vec::new(),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            ws_max_connections: 64,
            ws_idle_timeout: Duration::from_secs(60),
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
        if self.token.is_none() && !self.addr.ip().is_loopback() && !self.insecure_no_auth {
            return Err(ConfigError::invalid(
                "coordinator address",
                self.addr,
                "a loopback address (e.g. 127.0.0.1:8080) when no API token is set: anyone who \
                 can reach it could submit jobs and drain the workers. Set \
                 SCRAPERV4_API_TOKEN (or SCRAPERV4_API_TOKEN_FILE), or listen on 127.0.0.1, \
                 or pass --insecure-no-auth to serve it open anyway",
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
            || self.ws_idle_timeout < Duration::from_millis(300)
            || self.stats_interval < Duration::from_millis(100)
        {
            return Err(ConfigError::invalid(
                "request_timeout / header_timeout / ws_idle_timeout / stats_interval",
                format!(
                    "{:?} / {:?} / {:?} / {:?}",
                    self.request_timeout,
                    self.header_timeout,
                    self.ws_idle_timeout,
                    self.stats_interval
                ),
                "timeouts above 0, a WebSocket idle timeout of at least 0.3 s and a stats \
                 interval of at least 0.1 s",
            ));
        }
        if self.max_connections == 0 || self.ws_max_connections == 0 {
            return Err(ConfigError::invalid(
                "max_connections / ws_max_connections",
                format!("{} / {}", self.max_connections, self.ws_max_connections),
                "at least 1",
            ));
        }
        for origin in &self.cors_origins {
            HeaderValue::from_str(origin)
                .map_err(|_| ConfigError::invalid("cors_origins", origin, "an origin"))?;
        }
        for host in &self.allowed_hosts {
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                return Err(ConfigError::invalid(
                    "allowed_hosts",
                    host,
                    "host names like scraper.example.com (no scheme, no port)",
                ));
            }
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
    /// One permit per `/ws` connection that may still open.
    pub ws_slots: Arc<Semaphore>,
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
        .route("/ws", get(ws::websocket))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::check_request,
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    app = guard::security_headers(app);
    app = app.layer(axum::middleware::from_fn(access::log_request));
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
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([access::REQUEST_ID.clone()]),
        );
    }
    app.with_state(state)
}

/// A running coordinator: its address, and how to stop it.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    server: http::Server,
    sampler: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (within the request timeout), stops.
    pub async fn stop(self) -> std::io::Result<()> {
        let outcome = self.server.stop().await;
        self.sampler.abort();
        outcome
    }
}

/// Binds and serves in the background.
pub async fn serve(config: CoordinatorConfig, queue: Arc<JobQueue>) -> ConfigResult<Running> {
    config.validate()?;
    let (stats_tx, stats_rx) = watch::channel(None);
    let limits = Limits {
        header_timeout: config.header_timeout,
        drain_timeout: config.request_timeout,
        max_connections: config.max_connections,
        max_header_bytes: 64 * 1024,
    };
    let state = Arc::new(AppState {
        queue,
        ws_slots: Arc::new(Semaphore::new(config.ws_max_connections)),
        config,
        started: Instant::now(),
        metrics: ClusterMetrics::new(600),
        stats: stats_rx,
    });
    let addr = state.config.addr;
    let server = http::serve(addr, router(Arc::clone(&state)), limits)
        .await
        .map_err(|e| ConfigError::invalid("coordinator address", addr, e.to_string()))?;
    let sampler = tokio::spawn(api::sample_loop(Arc::clone(&state), stats_tx));
    let addr = server.addr;
    if state.config.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "coordinator serving without an API token (insecure_no_auth): anyone who reaches \
             it may submit jobs and drain workers"
        );
    }
    tracing::info!(%addr, "coordinator listening");
    Ok(Running {
        addr,
        server,
        sampler,
    })
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
        config.body_limit = 10;
        assert!(config.validate().is_err());
        config.body_limit = 1 << 20;
        config.ws_max_connections = 0;
        assert!(config.validate().is_err());
        config.ws_max_connections = 1;
        config.allowed_hosts = vec!["https://scraper.example.com".to_owned()];
        assert!(config.validate().is_err());
    }

    #[test]
    fn no_token_means_loopback_only_unless_insecure_is_explicit() {
        for open in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.1.2.3:8080",
            "192.168.0.5:80",
        ] {
            let mut config = CoordinatorConfig::new(open.parse().unwrap());
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("SCRAPERV4_API_TOKEN") && error.contains("--insecure-no-auth"),
                "{error}"
            );
            config.insecure_no_auth = true;
            assert!(config.validate().is_ok(), "{open}: explicit opt-in");
            config.insecure_no_auth = false;
            config.token = Some("0123456789abcdef-token".to_owned());
            assert!(config.validate().is_ok(), "{open}: with a token");
        }
        for loopback in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8080"] {
            assert!(
                CoordinatorConfig::new(loopback.parse().unwrap())
                    .validate()
                    .is_ok()
            );
        }
    }
}
