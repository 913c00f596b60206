//! Seen-URL dedup with bounded memory, and recrawl.
//!
//! A queue with dedup on ([`DedupOptions`]) remembers every URL it accepted, by fingerprint,
//! independently of the job records: a URL submitted again — by id or not, after its job was
//! purged or not — is not queued again until its revisit interval has passed. Job records of
//! finished jobs can then be purged early without bringing recrawls back.
//!
//! - **Canonical URL** ([`canonical_url`]): scheme and host lower case, default port and
//!   fragment dropped, query parameters sorted, ignored parameters (`utm_*`, ...) removed,
//!   with the `url` crate's WHATWG parser (which also normalises the path's dot segments and
//!   percent-encoding).
//! - **Fingerprint** ([`Fingerprint::of`]): 128-bit xxh3 with a fixed seed over a versioned
//!   prefix ([`FINGERPRINT_VERSION`]), the job's scope (its crawl id) and the canonical URL.
//! - **Redis**: a scalable, blocked Bloom filter per time bucket ([`Geometry`], `bloom.rs`):
//!   a URL sets `k` bits of one 52-bit word per layer; its word and mask come from its
//!   fingerprint here ([`Fingerprint::word_hash`], [`Fingerprint::mask`]); the submit script
//!   only reads, compares and writes words. The layout is part of the stored format:
//!   [`FILTER_VERSION`] is written with the filter's geometry, and a queue whose stored
//!   version differs is refused rather than silently misread.
//! - **SQLite**: an exact table of 64-bit fingerprints with the bucket they were last seen in
//!   (`sqlite/dedup.rs`).
//!
//! Recrawl: time is cut into buckets of `bucket` width (stored with the geometry: every client
//! of a queue uses the same). A URL with revisit interval R is new when it is in none of the
//! buckets `floor((now - R) / bucket) ..= floor(now / bucket)`, so it comes back after at
//! least R and at most R + one bucket. Without a revisit interval a URL is seen for ever (a
//! bucket of its own that never expires). Old buckets expire.

mod bloom;

use std::time::Duration;

pub use bloom::Geometry;

use crate::config::{ConfigError, ConfigResult};

/// Version of the fingerprint (canonical form, hash and seed): part of what the filters and
/// the SQLite table hold; change it only with a migration.
pub const FINGERPRINT_VERSION: u32 = 1;

/// xxh3 seed of the fingerprint (fixed for ever: part of the stored format).
const SEED: u64 = 0x5eed_5c4a_9e4c_0001;

/// Version of the Redis filter's layout (stored as the geometry's `version`): 1 was a
/// classic Bloom filter (`k` bits anywhere in a layer), 2 a blocked one ([`bloom`]). A filter
/// of another version is refused, not misread.
pub const FILTER_VERSION: u32 = 2;

/// Settings of the seen-URL filter.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupOptions {
    /// URLs the first layer of a bucket's filter holds at the promised rate; each further
    /// layer holds twice the previous one. Size it to the URLs expected per bucket: memory
    /// per URL is least when one layer suffices.
    pub capacity: u64,
    /// The false-positive rate promised over all layers (a new URL taken for seen).
    pub error_rate: f64,
    /// Revisit interval of jobs that do not set one (config `revisit`, seconds); `None`:
    /// a URL is never queued again.
    pub revisit: Option<Duration>,
    /// Width of the time buckets of recrawl (default: a quarter of `revisit`, or a day).
    pub bucket: Option<Duration>,
    /// Query parameters removed before hashing: exact names, or a prefix ending in `*`
    /// (case-insensitive).
    pub ignored_params: Vec<String>,
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            error_rate: 0.01,
            revisit: None,
            bucket: None,
            ignored_params: default_ignored_params(),
        }
    }
}

/// The tracking parameters removed by default.
pub fn default_ignored_params() -> Vec<String> {
    [
        "utm_*", "gclid", "fbclid", "msclkid", "mc_cid", "mc_eid", "_ga",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Longest revisit interval (ten years).
pub const MAX_REVISIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Most buckets one revisit interval may span on Redis (the keys a submit declares; SQLite
/// has no such limit).
pub const MAX_WINDOW_BUCKETS: i64 = 64;

/// Why a revisit interval of `revisit_ms` cannot be kept with buckets of `bucket_ms`, if it
/// spans more than [`MAX_WINDOW_BUCKETS`] of them.
pub fn window_too_wide(revisit_ms: i64, bucket_ms: i64) -> Option<String> {
    (revisit_ms / bucket_ms.max(1) > MAX_WINDOW_BUCKETS).then(|| {
        format!(
            "a revisit interval of at most {MAX_WINDOW_BUCKETS} dedup buckets: {} s spans more \
             than {MAX_WINDOW_BUCKETS} buckets of {} s (use a dedup_bucket of at least \
             revisit / {MAX_WINDOW_BUCKETS})",
            revisit_ms / 1000,
            bucket_ms / 1000
        )
    })
}

impl DedupOptions {
    /// Checks every setting.
    pub fn validate(&self) -> ConfigResult<()> {
        if !(1_000..=1_000_000_000).contains(&self.capacity) {
            return Err(ConfigError::invalid(
                "dedup_capacity",
                self.capacity,
                "1,000 to 1,000,000,000 URLs",
            ));
        }
        if !(self.error_rate >= 1e-6 && self.error_rate <= 0.1) {
            return Err(ConfigError::invalid(
                "dedup_error_rate",
                self.error_rate,
                "between 0.000001 and 0.1",
            ));
        }
        if let Some(revisit) = self.revisit
            && (revisit < Duration::from_secs(1) || revisit > MAX_REVISIT)
        {
            return Err(ConfigError::invalid(
                "revisit",
                format!("{revisit:?}"),
                "1 second to 10 years",
            ));
        }
        if let Some(bucket) = self.bucket
            && (bucket < Duration::from_millis(100) || bucket > MAX_REVISIT)
        {
            return Err(ConfigError::invalid(
                "dedup_bucket",
                format!("{bucket:?}"),
                "100 ms to 10 years",
            ));
        }
        for name in &self.ignored_params {
            if name.is_empty() || name == "*" || name.len() > 128 {
                return Err(ConfigError::invalid(
                    "dedup_ignore_params",
                    name,
                    "a parameter name, or a prefix ending in * (not * alone)",
                ));
            }
        }
        Ok(())
    }

    /// The bucket width in milliseconds.
    pub fn bucket_ms(&self) -> i64 {
        let bucket = self.bucket.unwrap_or_else(|| {
            self.revisit
                .map_or(Duration::from_secs(24 * 3600), |revisit| revisit / 4)
                .max(Duration::from_millis(100))
        });
        i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX)
    }

    /// The geometry of a new filter with these settings.
    pub fn geometry(&self) -> Geometry {
        Geometry::new(self.capacity, self.error_rate, self.bucket_ms())
    }

    /// [`DedupOptions::geometry`] for a new Redis filter, refused when it could not grow (a
    /// bucket's bitmap holds 2^32 bits: at 1 %, a first layer of about 65 M URLs leaves no
    /// room for a second). SQLite keeps an exact table: any capacity does.
    pub fn redis_geometry(&self) -> ConfigResult<Geometry> {
        let geometry = self.geometry();
        if geometry.layers.len() < 2 {
            return Err(ConfigError::invalid(
                "dedup_capacity",
                self.capacity,
                "a capacity whose Redis filter can still grow within the 2^32 bits a bucket \
                 holds (about 65 M URLs at 1 %, 17 M at 0.01 %: use shorter buckets, or \
                 shards, each with a filter of its own, for more)",
            ));
        }
        Ok(geometry)
    }
}

/// The revisit interval a job's config asks for (`revisit`, seconds; `null` or absent:
/// none), or why it is not one.
pub fn revisit_of(
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Duration>, String> {
    match config.get("revisit") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(seconds) if seconds >= 1.0 && seconds <= MAX_REVISIT.as_secs_f64() => {
                Ok(Duration::try_from_secs_f64(seconds).ok())
            }
            _ => Err(format!(
                "config revisit {n} must be 1 to {} seconds",
                MAX_REVISIT.as_secs()
            )),
        },
        Some(other) => Err(format!(
            "config revisit {other} must be a number of seconds"
        )),
    }
}

/// Whether query parameter `name` is ignored under `patterns` (see
/// [`DedupOptions::ignored_params`]): ASCII case-insensitive, by bytes (a name may be any
/// text).
fn ignored(name: &str, patterns: &[String]) -> bool {
    let name = name.as_bytes();
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes())),
            None => name.eq_ignore_ascii_case(pattern.as_bytes()),
        })
}

/// The canonical form of `url` for dedup: scheme and host in lower case, default port and
/// fragment dropped, path normalised (WHATWG), query parameters minus the `ignored` ones,
/// stable-sorted by name with their values in their order. The query is never decoded and
/// encoded again (only the hex digits of `%xx` are upper-cased): `+` and `%20`, `x` and `x=`,
/// `%E9` and `%E8` (text in Latin-1 or `Shift_JIS`), `a=1&a=2` and `a=2&a=1` are different
/// requests to the server. Text that is not a URL is returned as it is.
pub fn canonical_url(url: &str, ignored_params: &[String]) -> String {
    let Ok(mut parsed) = url::Url::parse(url.trim()) else {
        return url.to_owned();
    };
    parsed.set_fragment(None);
    if let Some(query) = parsed.query() {
        let mut pairs: Vec<(String, &str)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                (upper_hex(name), pair)
            })
            .filter(|(name, _)| {
                let decoded = url::form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map_or_else(String::new, |(name, _)| name.into_owned());
                !ignored(&decoded, ignored_params)
            })
            .collect();
        // By name only, stable: the values of one name keep their order.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let query = pairs
            .iter()
            .map(|(_, pair)| upper_hex(pair))
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query((!query.is_empty()).then_some(query.as_str()));
    }
    parsed.into()
}

/// `text` with the hex digits of its percent escapes in upper case (`%e9` and `%E9` are the
/// same byte).
fn upper_hex(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            i += 3;
        } else {
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

/// The scope a job's URL is deduplicated in: its crawl, or, for a job of no crawl, its
/// template (one page scraped by two templates is two jobs).
pub fn scope_of(crawl_id: Option<&str>, template_id: &str) -> String {
    match crawl_id {
        Some(crawl) => format!("crawl:{crawl}"),
        None => format!("template:{template_id}"),
    }
}

/// The identity of a URL within a scope (its crawl), for dedup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint of `url` (canonicalised with `ignored_params`) in `scope`.
    pub fn of(scope: &str, url: &str, ignored_params: &[String]) -> Self {
        let canonical = canonical_url(url, ignored_params);
        let mut input = Vec::with_capacity(16 + scope.len() + canonical.len());
        input.extend_from_slice(b"scraperv4-seen-");
        input.extend_from_slice(&FINGERPRINT_VERSION.to_le_bytes());
        input.extend_from_slice(scope.as_bytes());
        input.push(0);
        input.extend_from_slice(canonical.as_bytes());
        Self(xxhash_rust::xxh3::xxh3_128_with_seed(&input, SEED))
    }

    /// 64 bits of the fingerprint as a signed integer (the SQLite key).
    pub fn short(self) -> i64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let low = self.0 as u64 as i64;
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(url: &str) -> String {
        canonical_url(url, &default_ignored_params())
    }

    #[test]
    fn urls_that_name_one_page_have_one_canonical_form() {
        let expected = "https://example.com/a/b?x=1&y=2";
        for url in [
            "https://example.com/a/b?y=2&x=1",
            "HTTPS://Example.COM:443/a/b?x=1&y=2#top",
            "https://example.com/a/./c/../b?utm_source=news&x=1&y=2&utm_medium=mail",
            "https://example.com/a/b?x=1&gclid=abc&y=2",
            "https://EXAMPLE.com/a/b?UTM_Campaign=z&x=1&y=2",
        ] {
            assert_eq!(canon(url), expected, "{url}");
        }
        assert_eq!(canon("http://h.example:80/"), "http://h.example/");
        assert_eq!(canon("http://h.example/?utm_source=x"), "http://h.example/");
        assert_eq!(
            canon("http://h.example/p?q=caf%e9"),
            canon("http://h.example/p?q=caf%E9")
        );
        // Different pages stay different.
        assert_ne!(canon("http://h.example:8080/"), canon("http://h.example/"));
        assert_ne!(canon("http://h.example/A"), canon("http://h.example/a"));
        assert_ne!(
            canon("http://h.example/?x=1"),
            canon("http://h.example/?x=2")
        );
        assert_ne!(canon("https://h.example/"), canon("http://h.example/"));
        assert_eq!(canon("not a url"), "not a url");
    }

    #[test]
    fn queries_are_compared_as_the_server_receives_them() {
        // Found by review: decoding and encoding the query again merged different requests.
        for (a, b) in [
            ("/s?q=caf%E9", "/s?q=caf%E8"), // not UTF-8 (Latin-1): was U+FFFD for both
            ("/s?q=c++", "/s?q=c%20%20"),
            ("/s?x", "/s?x="),
            ("/s?a=%zz", "/s?a=%25zz"),
            ("/s?a=1&a=2", "/s?a=2&a=1"), // the order of one name's values matters
        ] {
            let (a, b) = (
                format!("http://h.example{a}"),
                format!("http://h.example{b}"),
            );
            assert_ne!(canon(&a), canon(&b), "{a} {b}");
        }
        assert_eq!(
            canon("http://h.example/s?b=2&a=1&a=0"),
            "http://h.example/s?a=1&a=0&b=2"
        );
        // Parameter names with any text: no panic, and only utm_* is dropped.
        assert_eq!(
            canon("https://h.example/?caf%C3%A9=1&%E6%97%A5=2&utm_x=3"),
            "https://h.example/?%E6%97%A5=2&caf%C3%A9=1"
        );
        assert_eq!(
            canonical_url(
                "https://h.example/?café=1&日本=2&utm_x=3",
                &default_ignored_params()
            ),
            "https://h.example/?%E6%97%A5%E6%9C%AC=2&caf%C3%A9=1"
        );
        assert!(!ignored("日本", &["utm_*".to_owned()]));
        assert!(!ignored("café", &["utm_*".to_owned(), "caf".to_owned()]));
        assert!(ignored("UTM_Source", &["utm_*".to_owned()]));
    }

    #[test]
    fn jobs_of_no_crawl_are_deduplicated_per_template() {
        let url = "https://example.com/a";
        let of = |crawl: Option<&str>, template: &str| {
            Fingerprint::of(&scope_of(crawl, template), url, &[])
        };
        assert_ne!(of(None, "prices"), of(None, "reviews"));
        assert_eq!(of(Some("c1"), "prices"), of(Some("c1"), "reviews"));
        assert_ne!(of(Some("x"), "t"), of(None, "x"));
    }

    #[test]
    fn a_capacity_whose_redis_filter_cannot_grow_is_refused_there_only() {
        let options = |capacity| DedupOptions {
            capacity,
            ..DedupOptions::default()
        };
        assert!(options(1_000_000).redis_geometry().is_ok());
        assert!(options(60_000_000).redis_geometry().is_ok());
        // Found by review: checked in validate(), it refused SQLite queues too.
        assert!(options(400_000_000).validate().is_ok());
        assert!(options(400_000_000).redis_geometry().is_err());
        assert!(options(70_000_000).redis_geometry().is_err());
    }

    #[test]
    fn fingerprints_are_stable_across_releases() {
        // The stored filters depend on these values: they must never change silently.
        let fp = Fingerprint::of("crawl-1", "https://example.com/a?b=1", &[]);
        assert_eq!(
            fp,
            Fingerprint::of("crawl-1", "https://EXAMPLE.com/a?b=1#x", &[])
        );
        assert_ne!(
            fp,
            Fingerprint::of("crawl-2", "https://example.com/a?b=1", &[])
        );
        assert_eq!(format!("{:032x}", fp.0), "e2fe5ffd02795fc2aff75cc14313bec2");
        assert_eq!(fp.word_hash(), 0x000e_2fe5_ffd0_2795);
        assert_eq!(fp.mask(5), 70_867_746_944);
    }

    #[test]
    fn options_are_checked() {
        assert!(DedupOptions::default().validate().is_ok());
        let bad = DedupOptions {
            error_rate: 0.5,
            ..DedupOptions::default()
        };
        assert!(bad.validate().is_err());
        let bad = DedupOptions {
            ignored_params: vec!["*".to_owned()],
            ..DedupOptions::default()
        };
        assert!(bad.validate().is_err());
        let revisit = DedupOptions {
            revisit: Some(Duration::from_secs(3600)),
            ..DedupOptions::default()
        };
        assert_eq!(revisit.bucket_ms(), 900_000);
        let wide = DedupOptions {
            revisit: Some(Duration::from_secs(30 * 24 * 3600)),
            bucket: Some(Duration::from_secs(3600)),
            ..DedupOptions::default()
        };
        assert!(
            wide.validate().is_ok(),
            "a backend's own limit, checked by it"
        );
        assert!(window_too_wide(30 * 24 * 3600 * 1000, 3600 * 1000).is_some());
        assert!(window_too_wide(64 * 1000, 1000).is_none());
    }
}
