//! The bearer-token check: every mutating route needs `Authorization: Bearer <token>` when a
//! token is configured, and every route (but the health probes, `/metrics` and the static
//! dashboard page) when reads are protected too. Compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::AppState;
use super::api::ApiError;

/// Paths anyone may read even when reads are protected: probes, scrapes, the page shell.
const ALWAYS_OPEN: [&str; 5] = [
    "/api/health",
    "/api/live",
    "/metrics",
    "/",
    "/api/openapi.json",
];

/// Whether `offered` is the token (constant time in the token's length).
pub fn token_matches(expected: &str, offered: &str) -> bool {
    expected.as_bytes().ct_eq(offered.as_bytes()).into()
}

/// The middleware.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.config.token.as_deref() else {
        return Ok(next.run(request).await);
    };
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD);
    let path = request.uri().path();
    let needs_token = mutating || (state.config.protect_reads && !ALWAYS_OPEN.contains(&path));
    if !needs_token {
        return Ok(next.run(request).await);
    }
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        // Browsers cannot set headers on a WebSocket: `/ws?token=...` instead.
        .or_else(|| {
            (path == "/ws")
                .then(|| request.uri().query())
                .flatten()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("token=").map(str::to_owned))
                })
        });
    match offered {
        None => Err(ApiError::unauthorized(
            "this route needs Authorization: Bearer <token>",
        )),
        Some(offered) if token_matches(expected, &offered) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::forbidden("the token is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_token_matches() {
        let token = "0123456789abcdef-secret";
        assert!(token_matches(token, token));
        assert!(!token_matches(token, "0123456789abcdef-secreT"));
        assert!(!token_matches(token, "0123456789abcdef"));
        assert!(!token_matches(token, ""));
    }
}
