//! What every request passes before a route sees it, and the headers every answer carries.
//!
//! - **Host** (DNS rebinding): a page on `evil.example` whose name is made to resolve to
//!   127.0.0.1 reaches a loopback coordinator with `Host: evil.example`. Accepted hosts: IP
//!   literals, `localhost` (and `*.localhost`), the names in `allowed_hosts` — and, when a
//!   token guards the API and no list is given, any name (a rebound page has no token).
//! - **Origin** (cross-site requests): a browser sends `Origin` with every cross-origin
//!   write and every `WebSocket` handshake. Writes and `/ws` are refused unless the origin is
//!   the coordinator's own (same host, and port when the `Host` names one) or listed in
//!   `cors_origins`; `Origin: null` (sandboxed frames, files) is refused. Clients that send no
//!   `Origin` (curl, the CLI, workers) are not browsers and pass.
//! - **Content type**: a write with a body must say `application/json` (415 otherwise), so an
//!   HTML form (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`)
//!   can never be one.
//! - **Security headers** on every answer: `nosniff`, no framing (`X-Frame-Options: DENY`
//!   and `frame-ancestors 'none'`: the dashboard's buttons cannot be clickjacked), no
//!   referrer, `no-store`, and a Content-Security-Policy — `default-src 'none'` for the API,
//!   the dashboard's inline script and style named by their SHA-256 for the page.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use tower_http::set_header::SetResponseHeaderLayer;

use super::api::ApiError;
use super::{AppState, CoordinatorConfig, DASHBOARD_HTML};

/// The policy of every answer but the dashboard's page.
const API_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The middleware: Host, then Origin (writes and `/ws`), then the content type of writes.
pub async fn check_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let host = host_of(headers)?;
    if !host_allowed(&state.config, &host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "Host {:?} is not served here: add the name to allowed_hosts \
                 (SCRAPERV4_ALLOWED_HOSTS), or use the IP address",
                host.host()
            ),
        ));
    }
    let method = request.method();
    let writes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if (writes || request.uri().path() == "/ws")
        && let Some(origin) = headers.get(header::ORIGIN)
        && !origin_allowed(&state.config, origin, &host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "requests from another site's page are refused (list its origin in cors_origins \
             to allow it)",
        ));
    }
    if writes && !json_or_bodiless(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    Ok(next.run(request).await)
}

/// The `Host` header as an authority (required by HTTP/1.1).
fn host_of(headers: &HeaderMap) -> Result<Authority, ApiError> {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<Authority>().ok())
        .filter(|authority| !authority.host().is_empty() && !authority.as_str().contains('@'))
        .ok_or_else(|| ApiError::bad_request("the request needs a valid Host header"))
}

fn bare_host(authority: &Authority) -> String {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether the coordinator answers to `host` (see the module's documentation).
pub fn host_allowed(config: &CoordinatorConfig, host: &Authority) -> bool {
    let name = bare_host(host);
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.trim_end_matches('.').eq_ignore_ascii_case(&name))
        || (config.token.is_some() && config.allowed_hosts.is_empty())
}

/// Whether a browser page of `origin` may write or open `/ws` on the coordinator reached
/// as `host`.
pub fn origin_allowed(config: &CoordinatorConfig, origin: &HeaderValue, host: &Authority) -> bool {
    let Ok(text) = origin.to_str() else {
        return false;
    };
    if config.cors_origins.iter().any(|allowed| allowed == text) {
        return true;
    }
    let Ok(url) = url::Url::parse(text) else {
        return false; // "null" and garbage
    };
    let same_host = url.host_str().is_some_and(|origin_host| {
        origin_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(&bare_host(host))
    });
    // Behind a proxy that drops the port from Host, the host alone is compared.
    same_host
        && host
            .port_u16()
            .is_none_or(|port| url.port_or_known_default() == Some(port))
}

/// A body is JSON, or there is no body and no content type (`curl -X POST .../drain`).
fn json_or_bodiless(headers: &HeaderMap) -> bool {
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        return value.to_str().is_ok_and(|text| {
            text.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.unwrap_or(0) == 0 && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// The security headers of every answer (a handler's own wins: the dashboard's policy).
pub fn security_headers(app: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, API_POLICY),
    ];
    fixed.into_iter().fold(app, |app, (name, value)| {
        app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// The dashboard page's Content-Security-Policy: its own inline script and style only (by
/// hash), connections to this origin only (the API and `/ws`), no framing.
pub fn dashboard_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            inline_hash("script"),
            inline_hash("style")
        )
    })
}

/// `sha256-<base64>` of the content of the page's one inline `<tag>` element.
fn inline_hash(tag: &str) -> String {
    let open = DASHBOARD_HTML
        .find(&format!("<{tag}>"))
        .map(|at| at + tag.len() + 2);
    let close = DASHBOARD_HTML.find(&format!("</{tag}>"));
    let content = match (open, close) {
        (Some(open), Some(close)) if open <= close => &DASHBOARD_HTML[open..close],
        _ => "",
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>, allowed_hosts: &[&str], cors: &[&str]) -> CoordinatorConfig {
        let mut config = CoordinatorConfig::new("127.0.0.1:8080".parse().unwrap());
        config.token = token.map(str::to_owned);
        config.allowed_hosts = allowed_hosts.iter().map(|h| (*h).to_owned()).collect();
        config.cors_origins = cors.iter().map(|o| (*o).to_owned()).collect();
        config
    }

    fn authority(text: &str) -> Authority {
        text.parse().unwrap()
    }

    #[test]
    fn rebound_names_are_refused_without_a_token() {
        let open = config(None, &[], &[]);
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
            "10.0.0.5",
        ] {
            assert!(host_allowed(&open, &authority(ok)), "{ok}");
        }
        for rebound in [
            "evil.example:8080",
            "attacker.test",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(&open, &authority(rebound)), "{rebound}");
        }
        let listed = config(None, &["scraper.internal"], &[]);
        assert!(host_allowed(&listed, &authority("Scraper.Internal.:8080")));
        assert!(!host_allowed(&listed, &authority("evil.example")));
        let tokened = config(Some("0123456789abcdef0"), &[], &[]);
        assert!(host_allowed(&tokened, &authority("scraper.example.com")));
        let tokened_listed = config(Some("0123456789abcdef0"), &["a.example"], &[]);
        assert!(!host_allowed(&tokened_listed, &authority("b.example")));
    }

    #[test]
    fn only_the_own_origin_or_a_listed_one_may_write() {
        let config = config(None, &[], &["https://dash.example"]);
        let host = authority("127.0.0.1:8080");
        let origin = |text: &str| HeaderValue::from_str(text).unwrap();
        assert!(origin_allowed(
            &config,
            &origin("http://127.0.0.1:8080"),
            &host
        ));
        assert!(origin_allowed(
            &config,
            &origin("https://dash.example"),
            &host
        ));
        for refused in [
            "http://127.0.0.1:3000",
            "http://localhost:8080",
            "https://evil.example",
            "null",
            "file://",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(
                !origin_allowed(&config, &origin(refused), &host),
                "{refused}"
            );
        }
        // A proxy that sets Host without the port: the host alone counts.
        let proxied = authority("scraper.example.com");
        assert!(origin_allowed(
            &config,
            &origin("https://scraper.example.com"),
            &proxied
        ));
        assert!(!origin_allowed(
            &config,
            &origin("https://evil.example"),
            &proxied
        ));
    }

    #[test]
    fn writes_with_a_body_must_be_json() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert!(json_or_bodiless(&headers(&[(
            "content-type",
            "application/json"
        )])));
        assert!(json_or_bodiless(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(json_or_bodiless(&headers(&[])));
        assert!(json_or_bodiless(&headers(&[("content-length", "0")])));
        for form in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(
                !json_or_bodiless(&headers(&[("content-type", form)])),
                "{form}"
            );
        }
        assert!(!json_or_bodiless(&headers(&[("content-length", "12")])));
        assert!(!json_or_bodiless(&headers(&[(
            "transfer-encoding",
            "chunked"
        )])));
    }

    #[test]
    fn the_dashboard_policy_names_its_inline_code() {
        let policy = dashboard_policy();
        assert!(
            policy.contains("script-src 'sha256-") && policy.contains("frame-ancestors 'none'")
        );
        assert!(!policy.contains("unsafe-inline"));
        assert_ne!(inline_hash("script"), inline_hash("style"));
    }
}
