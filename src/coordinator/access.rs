//! The access log: one record per request on the `scraperv4.coordinator.access` logger,
//! with a request id that the answer carries too (`X-Request-Id`). Refusals (401, 403) and
//! server errors are warnings, successful probes and scrapes (`/api/health`, `/api/live`,
//! `/metrics`) debug, the rest info.
//!
//! A request id sent by the client (nginx's `$request_id`, a caller's trace id) is kept when
//! it is 1 to 128 characters among `A-Z a-z 0-9 - _ . :` — anything else (a line break
//! forging a log line, a megabyte of text) is replaced by a fresh one. The record names the
//! peer, the method, the path **without its query** (`/ws?token=...` carries the token),
//! the status and the time taken; never a header or a body.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's request id when it is acceptable, else a new one.
pub fn request_id(offered: Option<&HeaderValue>) -> HeaderValue {
    offered
        .filter(|value| {
            let bytes = value.as_bytes();
            (1..=128).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        })
}

/// Routes polled by machines: their successful answers are logged at debug.
const POLLED: [&str; 3] = ["/api/health", "/api/live", "/metrics"];

/// The middleware.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers().get(&REQUEST_ID));
    request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.to_string())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(REQUEST_ID.clone(), id.clone());
    let status = response.status();
    let millis = started.elapsed().as_millis();
    let request_id = id.to_str().unwrap_or("-");
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "scraperv4::coordinator::access",
                request_id,
                peer,
                method = %method,
                path,
                status = status.as_u16(),
                millis,
                "{peer} {method} {path} {} {millis} ms id={request_id}",
                status.as_u16()
            )
        };
    }
    // Refusals and server errors show at the default level (a misconfigured client, a
    // scanner, a failing queue); probes and scrapes that succeed, every few seconds from an
    // orchestrator or Prometheus, only at debug.
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        || status.is_server_error()
    {
        line!(warn);
    } else if status.is_success() && POLLED.contains(&path.as_str()) {
        line!(debug);
    } else {
        line!(info);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_request_ids_are_replaced() {
        let keep = HeaderValue::from_static("4f6c1a2b3c4d5e6f7a8b9c0d1e2f3a4b");
        assert_eq!(request_id(Some(&keep)), keep);
        let trace = HeaderValue::from_static("trace-1.2:3_x");
        assert_eq!(request_id(Some(&trace)), trace);
        for hostile in [
            HeaderValue::from_static("a b"),
            HeaderValue::from_static("x\tINFO forged line"),
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
            HeaderValue::from_static(""),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ] {
            let replaced = request_id(Some(&hostile));
            assert_ne!(replaced, hostile);
            assert_eq!(replaced.len(), 32, "a fresh uuid");
        }
        assert_eq!(request_id(None).len(), 32);
    }
}
