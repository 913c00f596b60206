//! A canary HTTP server on a loopback address: answers every request from a routing function
//! and records each request's head, so a test can assert what was (or was not) sent to it.
//! It also serves as an HTTP proxy (it records the absolute-form request line).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One answer: status, extra headers, body.
pub(crate) type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// The running canary.
pub(crate) struct Canary {
    pub(crate) addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Serves on `ip` (a loopback address), port 0, answering with `route(head)`.
    pub(crate) async fn start(
        ip: &str,
        route: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        let route = Arc::new(route);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                let route = Arc::clone(&route);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0_u8; 1];
                    // One request per connection, a head of 64 KiB at most.
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    seen.lock().unwrap().push(head.clone());
                    let (status, headers, body) = route(&head);
                    let mut answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        let _ = write!(answer, "{name}: {value}\r\n");
                    }
                    answer.push_str("\r\n");
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, heads, task }
    }

    /// `http://ip:port`.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads received so far.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request line's target (`/path` or `http://host/path` through a proxy).
pub(crate) fn target(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}
