//! Fetching pages: fast, polite and safe by default.
//!
//! Owns the HTTP side of a job: one shared client per [`Fetcher`] (connection pooling,
//! HTTP/1.1 and HTTP/2, rustls), global and per-host concurrency limits with a per-host
//! politeness delay, robots.txt ([`robots`]), retries with backoff on timeouts, connection
//! errors, 429 and 5xx (`Retry-After` honoured), redirects checked hop by hop, body limits
//! counted after decompression ([`body`]), charset decoding, and the SSRF guard ([`ssrf`]).
//! [`stream`] runs any number of URLs through it (optionally extracting each page) with a
//! bounded number in flight and held, yielding results as they complete.

pub mod body;
pub mod client;
pub mod config;
pub mod error;
pub mod robots;
pub mod ssrf;
pub mod stream;

pub use client::{Fetcher, Page, RequestOptions};
pub use config::FetchConfig;
pub use error::{FetchError, FetchErrorKind, FetchResult};
pub use stream::{Extracted, Stream};
