//! The HTTP listener every server of the package shares: the coordinator, a worker's
//! `/metrics` `/health` `/ready`, and the cluster metrics of the autoscaler.
//!
//! `axum::serve` sets no timer and no limit: a client may open connections without end and
//! take as long as it likes to send its headers. This accept loop (hyper-util's, as the
//! coordinator always had) adds what a listener facing a network needs:
//!
//! - a **header-read timeout**, also for a connection that stays idle between requests (a
//!   slow-header or idle client is cut off),
//! - a **connection cap**: once `max_connections` are open, the loop stops accepting until
//!   one closes (the kernel's backlog holds the rest; nothing is accepted to be dropped),
//! - a **bound on a request head** (`max_header_bytes`),
//! - the peer address in each request's extensions (`ConnectInfo`), for the access log,
//! - a **graceful stop**: no new connections, in-flight requests get `drain_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a client may take to send a request's headers (and to start the next request
    /// on a kept-alive connection).
    pub header_timeout: Duration,
    /// Longest in-flight requests get to finish after a stop.
    pub drain_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes (at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Limits {
    /// The limits of a metrics or probe endpoint: few, small, quick requests.
    pub const PROBES: Self = Self {
        header_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        max_connections: 64,
        max_header_bytes: 16 * 1024,
    };
}

/// A listener serving in the background.
pub struct Server {
    /// The bound address (port 0 asked for any free port).
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish (at most the drain timeout), returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.task
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))
    }

    /// A handle that stops accepting at once when aborted (for owners that keep only task
    /// handles; dropping the `Server` itself does not stop it).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }
}

/// Binds `addr` and serves `app` on it with `limits`.
pub async fn serve(addr: SocketAddr, app: Router, limits: Limits) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopping) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, app, limits, stopping));
    Ok(Server {
        addr,
        shutdown,
        task,
    })
}

async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here. A dropped `Server` (its
    // sender gone) is no request to stop: such a server runs until its task is aborted.
    if stopping.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves connections until `stopping` turns true, then waits for in-flight requests (at
/// most `limits.drain_timeout`).
///
/// HTTP/1.1 only, through hyper's own connection: hyper-util's automatic version detection
/// reads the first bytes with no timer, so a client that connects and sends nothing would
/// hold its slot for ever; hyper's header-read timeout runs from the moment the connection
/// waits for a request head.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let capacity = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(capacity));
    loop {
        // A free slot first: at the cap, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stop_requested(&mut stopping) => break,
        };
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
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stop = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = stop_requested(&mut stop) => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the drain timeout: closing them");
    }
}
