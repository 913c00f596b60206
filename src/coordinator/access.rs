//! The access log: one line per request (logger `scraperv4.access`) with the client, the
//! request, the status, the body size, the time taken and a request id, which the answer
//! carries back in `X-Request-Id` (so a user can quote it, and a proxy's id is kept).
//!
//! Refusals (401, 403) and server errors are warnings — visible at the default level, where a
//! misconfigured client or a scanner shows up; probes and scrapes that succeed (`/api/health`,
//! `/api/live`, `/metrics`, every few seconds from an orchestrator or Prometheus) are debug;
//! everything else is info. A `/ws?token=...` query never reaches the log.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// The header that carries the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The address of the connection a request came on (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Routes polled by machines: successful answers are logged at debug only.
const POLLED: [&str; 3] = ["/api/health", "/api/live", "/metrics"];

/// The id a client or a proxy sent (nginx's `$request_id`, a tracing id), when it is a
/// plausible one: 1 to 128 characters of letters, digits, `-`, `_`, `.`, `:`.
fn offered_id(request: &Request) -> Option<String> {
    let value = request.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let plausible = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plausible.then(|| value.to_owned())
}

/// The request target as logged: the path, and the query with any `token` value hidden.
fn logged_target(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("token") => format!("{name}=<hidden>"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// The middleware (outermost: it also sees what the token check, the body limit, the
/// timeout and CORS answer by themselves).
pub async fn log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = offered_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let Ok(header) = HeaderValue::from_str(&id) else {
        return next.run(request).await; // not reached: ids are visible ASCII
    };
    request.headers_mut().insert(REQUEST_ID, header.clone());
    let client = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "-".to_owned(), |peer| peer.0.to_string());
    let method = request.method().clone();
    let target = logged_target(request.uri());
    let version = request.version();
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, header);
    let status = response.status();
    let size = response
        .body()
        .size_hint()
        .exact()
        .map_or_else(|| "-".to_owned(), |bytes| bytes.to_string());
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let polled = status.is_success() && POLLED.contains(&target.split('?').next().unwrap_or(""));
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "scraperv4::access",
                "{client} \"{method} {target} {version:?}\" {} {size} {took:.1} ms id={id}",
                status.as_u16()
            )
        };
    }
    if refused || status.is_server_error() {
        line!(warn);
    } else if polled {
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
    fn a_token_in_the_query_is_hidden() {
        let uri: Uri = "/ws?token=secret-value&x=1".parse().unwrap();
        assert_eq!(logged_target(&uri), "/ws?token=<hidden>&x=1");
        let uri: Uri = "/api/jobs?status=failed&limit=5".parse().unwrap();
        assert_eq!(logged_target(&uri), "/api/jobs?status=failed&limit=5");
        assert_eq!(logged_target(&"/api/live".parse().unwrap()), "/api/live");
    }

    #[test]
    fn only_plausible_ids_are_kept() {
        let with = |value: &str| {
            let mut request = Request::new(axum::body::Body::empty());
            request
                .headers_mut()
                .insert(REQUEST_ID, HeaderValue::from_str(value).unwrap());
            offered_id(&request)
        };
        assert_eq!(
            with("4f1c2b9e0d7a4e6f8a1b2c3d4e5f6a7b").as_deref(),
            Some("4f1c2b9e0d7a4e6f8a1b2c3d4e5f6a7b")
        );
        assert_eq!(with("a b"), None);
        assert_eq!(with("x\"; rm"), None);
        assert_eq!(with(&"a".repeat(129)), None);
    }
}
