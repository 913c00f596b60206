//! ScraperV4 Scale: the Rust core behind the `scraperv4` Python package.
//!
//! # Layout
//!
//! Every concern lives in its own module and returns its own error type; none of them touches
//! Python. The [`python`] module is the only place that knows about `PyO3`: it converts
//! arguments, releases the GIL, and maps each subsystem's error onto the Python exception tree
//! (`scraperv4.exceptions`).
//!
//! - [`config`]: validation of user-supplied settings and the [`config::ConfigError`] they raise.
//! - [`runtime`]: the process's single tokio runtime, created lazily and re-created after `fork`.
//! - [`queue`]: the job queue (Redis and SQLite backends) with leases and fencing tokens.
//! - [`partition`]: splitting URL lists among workers.
//! - [`resources`]: CPU, memory, disk and load of this machine or container.
//! - [`fetch`] / [`extract`]: polite, guarded HTTP and CSS-template extraction.
//! - [`worker`]: the runtime that turns queued jobs into recorded items.
//! - [`metrics`] / [`autoscale`]: what the fleet is doing, and how many workers it should have.
//! - [`coordinator`]: the HTTP API, live stats `WebSocket` and dashboard over a queue.
//! - [`http`]: the hardened listener every HTTP server of the package runs on.
//! - [`sink`]: copying the results log out (JSON Lines).
//! - [`tls`]: the process's TLS crypto provider.
//! - [`python`]: the `scraperv4._core` extension module (bindings only, no logic).
//!
//! See `docs/architecture.md` for how a job's data flows through the modules.

pub mod autoscale;
pub mod config;
pub mod coordinator;
pub mod extract;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod partition;
pub mod python;
pub mod queue;
pub mod resources;
pub mod runtime;
pub mod sink;
pub mod tls;
pub mod worker;
