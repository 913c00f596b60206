//! Errors of the fetcher, each with a machine-readable kind.

use std::fmt;

/// What went wrong, for programs (`FetchError.kind` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    /// A timeout: connect, between bytes, or the whole request.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection could not be made or broke.
    Connect,
    /// TLS failed (certificate, handshake).
    Tls,
    /// The body is over the size limit (declared or counted after decoding), or decompresses
    /// by more than the allowed ratio.
    TooLarge,
    /// robots.txt forbids the URL (or could not be fetched: RFC 9309 then means "disallow").
    RobotsDenied,
    /// The SSRF guard refused the address.
    BlockedAddress,
    /// The server answered with an error status (after retries).
    HttpStatus,
    /// More redirects than allowed, or a redirect loop.
    TooManyRedirects,
    /// The body could not be decoded (bad compression, unusable URL in a redirect, ...).
    Decode,
    /// Not sent: robots.txt asks for a delay between requests to this host that has not
    /// passed, and the caller asked not to wait (a worker gives the job back to its queue,
    /// which paces the fleet).
    Paced,
}

impl FetchErrorKind {
    /// Every kind.
    pub const ALL: [Self; 11] = [
        Self::Timeout,
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::TooLarge,
        Self::RobotsDenied,
        Self::BlockedAddress,
        Self::HttpStatus,
        Self::TooManyRedirects,
        Self::Decode,
        Self::Paced,
    ];

    /// The name used in Python and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::TooLarge => "too_large",
            Self::RobotsDenied => "robots_denied",
            Self::BlockedAddress => "blocked_address",
            Self::HttpStatus => "http_status",
            Self::TooManyRedirects => "too_many_redirects",
            Self::Decode => "decode",
            Self::Paced => "paced",
        }
    }
}

impl fmt::Display for FetchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fetch that did not produce a page.
///
/// Shown as one line for people — what failed, where, why, and what to do about it:
/// `fetching http://127.0.0.1:9/p: connection refused (nothing listens on 127.0.0.1:9);
/// check that the site is up and the URL's host and port`. Programs read [`FetchError::kind`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("fetching {url}: {message}{}", self.hint().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct FetchError {
    /// Machine-readable reason.
    pub kind: FetchErrorKind,
    /// The URL that failed (the redirect hop, when it failed there).
    pub url: String,
    /// What happened, for people.
    pub message: String,
    /// The HTTP status, for `HttpStatus`.
    pub status: Option<u16>,
    /// The server's `Retry-After`, for a 429 or 5xx answer that gave one.
    pub retry_after: Option<std::time::Duration>,
}

impl FetchError {
    /// A new error.
    pub fn new(kind: FetchErrorKind, url: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            url: url.to_owned(),
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind {
            FetchErrorKind::Timeout => {
                "the site is slow or unreachable: try again later, or raise --total-timeout"
            }
            FetchErrorKind::Dns => "check the host name in the URL",
            FetchErrorKind::Connect => "check that the site is up and the URL's host and port",
            FetchErrorKind::Tls => {
                "check the site's certificate (for an internal CA pass --ca-file FILE)"
            }
            FetchErrorKind::TooLarge => "raise --max-body-bytes if pages this big are expected",
            FetchErrorKind::RobotsDenied => {
                "the site asks crawlers not to fetch it (--ignore-robots only for sites you \
                 may crawl regardless)"
            }
            FetchErrorKind::BlockedAddress => {
                "to fetch private or local sites pass --allow-private-networks, or \
                 --allowed-networks CIDR for some (Python: allow_private_networks=True)"
            }
            FetchErrorKind::HttpStatus => match self.status? {
                404 | 410 => "the page does not exist: check the URL or the template's links",
                401 | 403 => "the server refused the request (blocked, or a login is needed)",
                429 => "the site is rate limiting: slow down with --delay MIN,MAX",
                500..=599 => "the server had an error: try again later",
                _ => return None,
            },
            FetchErrorKind::TooManyRedirects => "check the URL (or raise --max-redirects)",
            FetchErrorKind::Decode => return None,
            FetchErrorKind::Paced => {
                "nothing to do: a worker gives the job back to its queue, which spaces the \
                 fleet's requests to the host"
            }
        })
    }

    /// True for failures a retry may cure (timeouts, connection trouble, 429 and 5xx). A
    /// request refused for politeness ([`FetchErrorKind::Paced`]) is not a failure: it is
    /// given back to the queue as it is, never retried in-process nor counted as a retry.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            FetchErrorKind::Timeout | FetchErrorKind::Connect => true,
            FetchErrorKind::HttpStatus => {
                matches!(self.status, Some(429 | 500..=599))
            }
            _ => false,
        }
    }
}

/// Result alias of the fetcher.
pub type FetchResult<T> = Result<T, FetchError>;
