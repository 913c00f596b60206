//! The [`Fetcher`]: one shared HTTP client with politeness, retries, redirects and the guard.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::body::{self, BodyLimits};
use super::config::FetchConfig;
use super::error::{FetchError, FetchErrorKind, FetchResult};
use super::robots::{self, RobotsCache, RobotsStore, Rules, Shared};
use super::ssrf::{self, AddressPolicy, BlockedAddress, GuardedResolver, Lookup};
use crate::config::{ConfigError, ConfigResult};

/// A fetched page.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL asked for.
    pub url: String,
    /// The URL the content came from, after redirects.
    pub final_url: String,
    /// HTTP status.
    pub status: u16,
    /// Response headers, in order (names lowercase).
    pub headers: Vec<(String, String)>,
    /// The body, decompressed.
    pub body: Vec<u8>,
    /// The `Content-Type` header, for decoding the text.
    pub content_type: Option<String>,
    /// Time from the first request to the last byte, retries and politeness waits included.
    pub elapsed: Duration,
    /// Bytes received for the body (compressed).
    pub wire_bytes: u64,
    /// The protocol of the final response: `HTTP/1.1`, `HTTP/2.0`, ...
    pub http_version: &'static str,
}

impl Page {
    /// The body decoded to text, and the encoding used (decoded on demand: many callers
    /// only need the bytes).
    pub fn text(&self) -> (String, &'static str) {
        body::decode_text(&self.body, self.content_type.as_deref())
    }

    /// [`Page::text`] when the body is no longer needed: UTF-8 pages are not copied.
    pub fn into_text(self) -> (String, &'static str) {
        body::decode_text_owned(self.body, self.content_type.as_deref())
    }
}

/// Settings one request may take instead of the fetcher's (a job's config overrides).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestOptions {
    /// Politeness delay range for this request's host, seconds (`delay_range`).
    pub delay_range: Option<(f64, f64)>,
    /// Whether robots.txt applies to this request (`respect_robots`).
    pub respect_robots: Option<bool>,
    /// Whether a 429 or 5xx answer is retried here, after its `Retry-After` (default yes).
    /// A worker of a queue says no: the answer goes back to the queue, which slows the
    /// site down for the whole fleet and schedules the retry.
    pub retry_throttled: Option<bool>,
    /// Whether this process waits out robots.txt's `Crawl-delay` between requests to a host
    /// (default yes). No: a request whose host's delay has not passed is not sent but
    /// refused at once ([`FetchErrorKind::Paced`]) — a worker of a queue gives such a job
    /// back, and the queue holds the delay for the whole fleet.
    pub wait_for_crawl_delay: Option<bool>,
    /// Whether the queue paced this request's job (its claim held a slot of the job's
    /// politeness key; default yes). No, with `wait_for_crawl_delay` no: a first request to a
    /// host whose robots.txt asks for a `Crawl-delay` is refused ([`FetchErrorKind::Paced`])
    /// — the fleet does not know the delay yet; the worker hands it to the queue and gives
    /// the job back, and from then on the queue paces the key. Without this, every worker's
    /// first request to such a host went out at once.
    pub queue_paced: Option<bool>,
}

/// Politeness state of one host.
/// Host gates kept before idle ones are forgotten.
const MAX_HOST_GATES: usize = 4096;

struct HostGate {
    permits: Semaphore,
    next_slot: tokio::sync::Mutex<Instant>,
}

/// A polite, bounded, SSRF-guarded HTTP fetcher. Cheap to share (`Arc`).
pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
    policy: Arc<AddressPolicy>,
    /// The configured headers: sent only within their scope ([`Fetcher::scoped_headers`]).
    headers: reqwest::header::HeaderMap,
    /// The origins `headers` may go to (empty: the origin of the URL asked for).
    header_origins: Vec<String>,
    /// The resolver, for checking names before they go to a proxy.
    lookup: Lookup,
    global: Semaphore,
    hosts: std::sync::Mutex<HashMap<String, Arc<HostGate>>>,
    robots: RobotsCache,
    /// Where robots.txt outcomes are shared with the fleet, when set.
    robots_store: std::sync::OnceLock<Arc<dyn RobotsStore>>,
}

impl Fetcher {
    /// A fetcher with `config` (checked first).
    pub fn new(config: FetchConfig) -> ConfigResult<Self> {
        Self::with_lookup(config, ssrf::system_lookup())
    }

    /// A fetcher resolving names with `lookup` instead of the system resolver (the guard
    /// still checks every address it returns).
    pub fn with_lookup(config: FetchConfig, lookup: Lookup) -> ConfigResult<Self> {
        let allowed_networks = config.validate()?;
        crate::tls::ensure_crypto_provider();
        let policy = Arc::new(AddressPolicy {
            allow_private_networks: config.allow_private_networks,
            allowed_networks,
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        });
        let mut defaults = reqwest::header::HeaderMap::new();
        defaults.insert(
            reqwest::header::ACCEPT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip, br, zstd, deflate"),
        );
        let header_origins = config.header_origins()?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid("headers", name, "a valid header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| ConfigError::invalid("headers", value, "a valid header value"))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(defaults)
            .connect_timeout(FetchConfig::seconds(config.connect_timeout))
            .read_timeout(FetchConfig::seconds(config.read_timeout))
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(config.cookies)
            .dns_resolver(GuardedResolver::with_lookup(
                Arc::clone(&policy),
                Arc::clone(&lookup),
            ))
            .pool_max_idle_per_host(config.per_host_concurrency);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::invalid("ca_file", path, e.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConfigError::invalid("ca_file", path, format!("not PEM certificates: {e}"))
            })?;
            if certificates.is_empty() {
                return Err(ConfigError::invalid(
                    "ca_file",
                    path,
                    "no certificate in it",
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder = match &config.proxy {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy).map_err(|_| {
                ConfigError::invalid("proxy", crate::config::redact_url(proxy), "a proxy URL")
            })?),
            None => builder.no_proxy(),
        };
        let client = builder
            .build()
            .map_err(|e| ConfigError::invalid("fetch config", "client", e.to_string()))?;
        Ok(Self {
            client,
            global: Semaphore::new(config.concurrency),
            config,
            policy,
            headers,
            header_origins,
            lookup,
            hosts: std::sync::Mutex::new(HashMap::new()),
            robots: RobotsCache::default(),
            robots_store: std::sync::OnceLock::new(),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Shares robots.txt outcomes through `store` (a queue): each origin's file is then
    /// fetched about once per TTL for the whole fleet. Only the first store set is used.
    pub fn share_robots(&self, store: Arc<dyn RobotsStore>) {
        let _ = self.robots_store.set(store);
    }

    /// The `Crawl-delay` robots.txt asks of us for `url`'s origin, if its rules are cached.
    pub fn crawl_delay(&self, url: &str) -> Option<Duration> {
        let parsed = reqwest::Url::parse(url).ok()?;
        self.robots.cached(&origin(&parsed))?.crawl_delay()
    }

    /// Fetches `url`: robots.txt, politeness, retries and redirects included.
    pub async fn fetch(&self, url: &str) -> FetchResult<Page> {
        self.fetch_with(url, RequestOptions::default()).await
    }

    /// [`Fetcher::fetch`] with some settings overridden for this request.
    pub async fn fetch_with(&self, url: &str, options: RequestOptions) -> FetchResult<Page> {
        let started = Instant::now();
        let mut attempt = 0;
        let mut failed: Option<FetchError> = None;
        loop {
            // fetch_once bounds each step itself (total_timeout from the moment the request
            // may be sent): a politeness wait or a queue for a permit is not the site's time.
            match self.fetch_once(url, options).await {
                Ok((mut page, retry_after)) => {
                    if retry_after.is_some()
                        && attempt < self.config.retries
                        && options.retry_throttled.unwrap_or(true)
                    {
                        attempt += 1;
                        self.wait_before_retry(attempt, retry_after).await;
                        continue;
                    }
                    if page.status >= 400 {
                        let reason = reqwest::StatusCode::from_u16(page.status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .map(|r| format!(" {r}"))
                            .unwrap_or_default();
                        let attempts = match attempt {
                            0 => String::new(),
                            n => format!(" (after {} attempts)", n + 1),
                        };
                        let mut error = FetchError::new(
                            FetchErrorKind::HttpStatus,
                            &page.final_url,
                            format!("the server answered HTTP {}{reason}{attempts}", page.status),
                        );
                        error.status = Some(page.status);
                        // 1 ms stands for "no Retry-After" (see fetch_once).
                        error.retry_after = retry_after.filter(|d| *d > Duration::from_millis(1));
                        return Err(error);
                    }
                    page.elapsed = started.elapsed();
                    return Ok(page);
                }
                Err(error) if error.is_retryable() && attempt < self.config.retries => {
                    attempt += 1;
                    tracing::debug!(url, attempt, %error, "retrying");
                    self.wait_before_retry(attempt, None).await;
                    failed = Some(error);
                }
                // A retry refused for politeness after a real failure: the failure is the
                // answer (its kind slows the site down for the fleet and counts as a retry),
                // not "paced", which would give the job back with the failure forgotten.
                Err(error) if error.kind == FetchErrorKind::Paced => {
                    return Err(failed.unwrap_or(error));
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn wait_before_retry(&self, attempt: u32, retry_after: Option<Duration>) {
        let exponential = self.config.retry_base * f64::from(1_u32 << (attempt - 1).min(16));
        let jittered = exponential * (0.5 + rand::random::<f64>() / 2.0);
        let wait = retry_after.map_or(FetchConfig::seconds(jittered), |after| {
            after.min(FetchConfig::seconds(self.config.max_retry_after))
        });
        tokio::time::sleep(wait).await;
    }

    /// One attempt: redirects followed. On a retryable status (429, 5xx) returns the page
    /// with the delay to wait (from `Retry-After`, or zero meaning "use the backoff").
    #[allow(clippy::too_many_lines)] // the redirect loop, one hop after the other
    async fn fetch_once(
        &self,
        url: &str,
        options: RequestOptions,
    ) -> FetchResult<(Page, Option<Duration>)> {
        let respect_robots = options.respect_robots.unwrap_or(self.config.respect_robots);
        let mut current = self.checked_url(url)?;
        let asked = origin(&current);
        let mut seen = vec![current.to_string()];
        let total = FetchConfig::seconds(self.config.total_timeout);
        let timed_out = || {
            FetchError::new(
                FetchErrorKind::Timeout,
                url,
                format!("no complete response within {total:?}"),
            )
        };
        // Set when the first request may be sent: robots.txt (bounded by its own timeout),
        // permits and politeness waits come before it and are not counted.
        let mut deadline: Option<tokio::time::Instant> = None;
        for hop in 0..=self.config.max_redirects {
            if respect_robots {
                self.check_robots(&current).await?;
            }
            tokio::time::timeout(total, self.check_before_proxy(&current))
                .await
                .map_err(|_| timed_out())??;
            let gate = self.gate(&current);
            let _host = gate.permits.acquire().await.map_err(|_| closed(url))?;
            // Only the first request of a fetch may be refused for politeness: a redirect's
            // next hop waits for its slot (refusing it would give the job back to start over
            // from the first URL, which books the slot again: a loop that never gets there).
            let hop_options = if hop == 0 {
                options
            } else {
                RequestOptions {
                    wait_for_crawl_delay: Some(true),
                    ..options
                }
            };
            self.wait_for_slot(&gate, &current, hop_options).await?;
            // The global permit only after the politeness wait: a slow host must not hold
            // a slot every other host needs.
            let _global = self.global.acquire().await.map_err(|_| closed(url))?;
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + total);
            let sent = self
                .client
                .get(current.clone())
                .headers(self.scoped_headers(&asked, &current))
                .send();
            let response = tokio::time::timeout_at(deadline, sent)
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| classify(current.as_str(), &e))?;
            let status = response.status().as_u16();
            if response.status().is_redirection()
                && let Some(location) = response.headers().get(reqwest::header::LOCATION)
            {
                let next = self.redirect_target(&current, location)?;
                if seen.iter().any(|u| u == next.as_str()) {
                    return Err(FetchError::new(
                        FetchErrorKind::TooManyRedirects,
                        url,
                        format!("redirect loop back to {next}"),
                    ));
                }
                seen.push(next.to_string());
                current = next;
                continue;
            }
            let read = self.read_page(url, response, status, deadline);
            return read.await.map_err(|error| error.unwrap_or_else(timed_out));
        }
        Err(FetchError::new(
            FetchErrorKind::TooManyRedirects,
            url,
            format!("more than {} redirects", self.config.max_redirects),
        ))
    }

    /// Parses `url`, requires http(s) and a host, and applies the guard to literal IPs (names
    /// are checked by the resolver, at connection time).
    fn checked_url(&self, url: &str) -> FetchResult<reqwest::Url> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            FetchError::new(FetchErrorKind::Decode, url, format!("not a valid URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::new(
                FetchErrorKind::BlockedAddress,
                url,
                format!(
                    "scheme {:?} is not fetched (only http and https)",
                    parsed.scheme()
                ),
            ));
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => {
                return Err(FetchError::new(
                    FetchErrorKind::Decode,
                    url,
                    "the URL has no host",
                ));
            }
        };
        if let Some(ip) = ip
            && let Some(reason) = self.policy.refusal(ip)
            && !self.policy.host_allowed(&ip.to_string())
        {
            return Err(FetchError::new(
                FetchErrorKind::BlockedAddress,
                url,
                format!("{ip} is {reason}, refused by the SSRF guard"),
            ));
        }
        Ok(parsed)
    }

    /// The page of a final (not redirecting) `response`, its body read by `deadline`; the
    /// error is `None` when the deadline passed. On a retryable status (429, 5xx) also the
    /// delay to wait (from `Retry-After`, or 1 ms meaning "use the backoff").
    async fn read_page(
        &self,
        url: &str,
        response: reqwest::Response,
        status: u16,
        deadline: tokio::time::Instant,
    ) -> Result<(Page, Option<Duration>), Option<FetchError>> {
        let retry_after = (status == 429 || status >= 500).then(|| {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
                .unwrap_or(Duration::ZERO)
        });
        let final_url = response.url().to_string();
        let http_version = match response.version() {
            reqwest::Version::HTTP_09 => "HTTP/0.9",
            reqwest::Version::HTTP_10 => "HTTP/1.0",
            reqwest::Version::HTTP_2 => "HTTP/2.0",
            reqwest::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limits = BodyLimits {
            max_bytes: self.config.max_body_bytes,
            max_ratio: self.config.max_decompression_ratio,
        };
        let body = tokio::time::timeout_at(deadline, body::read(response, &final_url, limits))
            .await
            .map_err(|_| None)?
            .map_err(Some)?;
        let page = Page {
            url: url.to_owned(),
            final_url,
            status,
            headers,
            body: body.bytes,
            content_type,
            elapsed: Duration::ZERO,
            wire_bytes: body.wire_bytes,
            http_version,
        };
        Ok((page, retry_after.map(|d| d.max(Duration::from_millis(1)))))
    }

    /// Where a `Location` answered by `current` leads, checked by the guard.
    fn redirect_target(
        &self,
        current: &reqwest::Url,
        location: &reqwest::header::HeaderValue,
    ) -> FetchResult<reqwest::Url> {
        let location = location.to_str().map_err(|_| {
            FetchError::new(FetchErrorKind::Decode, current.as_str(), "bad Location")
        })?;
        let next = current.join(location).map_err(|e| {
            FetchError::new(
                FetchErrorKind::Decode,
                current.as_str(),
                format!("redirect to an invalid URL {location:?}: {e}"),
            )
        })?;
        self.checked_url(next.as_str())
    }

    /// The configured headers when `url` is within their scope: the origin of the URL asked
    /// for (`asked`) — never another origin a redirect leads to — and, when
    /// `header_origins` is set, one of those. Empty otherwise (`Authorization` or `Cookie`
    /// must not follow a redirect to another site).
    fn scoped_headers(&self, asked: &str, url: &reqwest::Url) -> reqwest::header::HeaderMap {
        if self.headers.is_empty() {
            return reqwest::header::HeaderMap::new();
        }
        let here = origin(url);
        let in_scope = here == asked
            && (self.header_origins.is_empty() || self.header_origins.contains(&here));
        if in_scope {
            self.headers.clone()
        } else {
            reqwest::header::HeaderMap::new()
        }
    }

    /// With a proxy, the proxy resolves host names, so the guard in our resolver never
    /// sees them: resolve and check the name here first. (The proxy may still resolve it
    /// differently — a DNS answer that changes between the two lookups — so a proxy should
    /// enforce the same egress rules itself: `docs/security.md`.)
    async fn check_before_proxy(&self, url: &reqwest::Url) -> FetchResult<()> {
        if self.config.proxy.is_none() {
            return Ok(());
        }
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(()); // literal IPs were checked by checked_url
        };
        let addresses = (self.lookup)(host.to_owned()).await.map_err(|error| {
            FetchError::new(
                FetchErrorKind::Dns,
                url.as_str(),
                format!("name lookup: {error}"),
            )
        })?;
        GuardedResolver::filter(&self.policy, host, addresses)
            .map(|_| ())
            .map_err(|blocked| {
                FetchError::new(
                    FetchErrorKind::BlockedAddress,
                    url.as_str(),
                    blocked.to_string(),
                )
            })
    }

    fn gate(&self, url: &reqwest::Url) -> Arc<HostGate> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hosts.len() >= MAX_HOST_GATES && !hosts.contains_key(&host) {
            // Wildcard subdomains make hosts without end: forget the idle ones — nobody
            // holds them and their next slot has passed, so they remember nothing.
            let now = Instant::now();
            hosts.retain(|_, gate| {
                Arc::strong_count(gate) > 1 || gate.next_slot.try_lock().map_or(true, |n| *n > now)
            });
        }
        Arc::clone(hosts.entry(host).or_insert_with(|| {
            Arc::new(HostGate {
                permits: Semaphore::new(self.config.per_host_concurrency),
                next_slot: tokio::sync::Mutex::new(Instant::now()),
            })
        }))
    }

    /// Waits for this host's politeness slot and books the next one (or, when the caller
    /// does not wait for robots.txt's `Crawl-delay`, refuses a request that comes too early).
    async fn wait_for_slot(
        &self,
        gate: &HostGate,
        url: &reqwest::Url,
        options: RequestOptions,
    ) -> FetchResult<()> {
        let (low, high) = options.delay_range.unwrap_or(self.config.delay_range);
        let mut delay = low + (high - low) * rand::random::<f64>();
        let mut crawl_delay = 0.0;
        if options.respect_robots.unwrap_or(self.config.respect_robots)
            && let Some(asked) = self
                .robots
                .rules(&origin(url), Duration::MAX, || async { Rules::AllowAll })
                .await
                .crawl_delay()
        {
            crawl_delay = asked.as_secs_f64();
        }
        let wait_for_crawl_delay = options.wait_for_crawl_delay.unwrap_or(true);
        if wait_for_crawl_delay {
            delay = delay.max(crawl_delay);
        }
        if delay <= 0.0 && crawl_delay <= 0.0 {
            return Ok(());
        }
        if !wait_for_crawl_delay && crawl_delay > 0.0 && !options.queue_paced.unwrap_or(true) {
            return Err(FetchError::new(
                FetchErrorKind::Paced,
                url.as_str(),
                format!(
                    "robots.txt asks for {crawl_delay} s between requests to this host and the \
                     fleet does not pace it yet: not sent"
                ),
            ));
        }
        let mut next = gate.next_slot.lock().await;
        let now = Instant::now();
        if *next > now {
            if !wait_for_crawl_delay && crawl_delay > 0.0 {
                return Err(FetchError::new(
                    FetchErrorKind::Paced,
                    url.as_str(),
                    format!(
                        "robots.txt asks for {crawl_delay} s between requests to this host: not \
                         sent yet"
                    ),
                ));
            }
            tokio::time::sleep(*next - now).await;
        }
        *next = Instant::now() + FetchConfig::seconds(delay.max(crawl_delay));
        Ok(())
    }

    async fn check_robots(&self, url: &reqwest::Url) -> FetchResult<()> {
        let origin = origin(url);
        let ttl = FetchConfig::seconds(self.config.robots_ttl);
        let rules = self
            .robots
            .rules(&origin, ttl, || self.load_robots(origin.clone()))
            .await;
        rules
            .check(url.as_str())
            .map_err(|(kind, reason)| FetchError::new(kind, url.as_str(), reason))
    }

    /// The rules of `origin`: from the fleet's store when it has them, else fetched here
    /// (by one worker of the fleet while the others wait for its answer) and shared.
    async fn load_robots(&self, origin: String) -> Rules {
        let agent = self.config.user_agent.clone();
        // Parsing is CPU work (a large robots.txt compiles patterns): off the async threads.
        let parse = |shared: Shared| {
            let agent = agent.clone();
            async move {
                tokio::task::spawn_blocking(move || shared.rules(&agent))
                    .await
                    .unwrap_or_else(|error| {
                        Rules::DisallowAll(format!("robots.txt could not be parsed: {error}"))
                    })
            }
        };
        let local = |outcome: Result<Shared, Rules>| async {
            match outcome {
                Ok(shared) => parse(shared).await,
                Err(rules) => rules,
            }
        };
        let Some(store) = self.robots_store.get() else {
            return local(self.fetch_robots(&origin).await).await;
        };
        let stored = |value: Option<String>| {
            value.and_then(|text| serde_json::from_str::<Shared>(&text).ok())
        };
        if let Some(shared) = stored(store.get(&origin).await) {
            return parse(shared).await;
        }
        let wait = FetchConfig::seconds(self.config.total_timeout).min(Duration::from_secs(30));
        if store.claim(&origin, wait).await {
            let outcome = self.fetch_robots(&origin).await;
            if let Ok(shared) = outcome {
                let rules = parse(shared.clone()).await;
                if let Ok(text) = serde_json::to_string(&shared) {
                    let ttl = FetchConfig::seconds(self.config.robots_ttl);
                    store.put(&origin, text, rules.lifetime(ttl)).await;
                }
                return rules;
            }
            return local(outcome).await;
        }
        // Another worker is fetching it: wait for its answer (bounded), else fetch here.
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(shared) = stored(store.get(&origin).await) {
                return parse(shared).await;
            }
        }
        local(self.fetch_robots(&origin).await).await
    }

    /// Fetches `origin`'s robots.txt: the outcome to share, or (the guard refused the
    /// address) rules that only hold here.
    async fn fetch_robots(&self, origin: &str) -> Result<Shared, Rules> {
        let url = format!("{origin}/robots.txt");
        let attempt = async {
            if let Ok(parsed) = reqwest::Url::parse(&url)
                && let Err(error) = self.check_before_proxy(&parsed).await
            {
                return Some(if error.kind == FetchErrorKind::BlockedAddress {
                    Err(Rules::Blocked(error.message))
                } else {
                    Ok(Shared::Unreachable {
                        kind: error.kind,
                        reason: format!("robots.txt could not be fetched: {}", error.message),
                    })
                });
            }
            let response = match self.client.get(&url).send().await {
                Ok(response) => response,
                Err(error) => {
                    let error = classify(&url, &error);
                    return Some(if error.kind == FetchErrorKind::BlockedAddress {
                        Err(Rules::Blocked(error.message))
                    } else {
                        Ok(Shared::Unreachable {
                            kind: error.kind,
                            reason: format!("robots.txt could not be fetched: {}", error.message),
                        })
                    });
                }
            };
            let status = response.status().as_u16();
            if (400..500).contains(&status) {
                return Some(Ok(Shared::AllowAll));
            }
            if status >= 300 {
                return Some(Ok(Shared::DisallowAll {
                    reason: format!(
                        "robots.txt answered HTTP {status}: treated as disallow (RFC 9309)"
                    ),
                }));
            }
            let limits = BodyLimits {
                max_bytes: 512 * 1024,
                max_ratio: self.config.max_decompression_ratio,
            };
            let body = body::read(response, &url, limits).await.ok()?;
            Some(Ok(Shared::Parsed {
                rules: robots::summary(&body.bytes),
            }))
        };
        let timeout = FetchConfig::seconds(self.config.total_timeout);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Ok(Shared::DisallowAll {
                reason: "robots.txt could not be read: treated as disallow (RFC 9309)".to_owned(),
            }),
            Err(_) => Ok(Shared::Unreachable {
                kind: FetchErrorKind::Timeout,
                reason: format!("robots.txt did not arrive within {timeout:?}"),
            }),
        }
    }
}

fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

fn closed(url: &str) -> FetchError {
    FetchError::new(FetchErrorKind::Connect, url, "the fetcher is shutting down")
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Maps a reqwest error to our kinds by looking through its causes.
/// The rustls error in `cause`, also when wrapped in `io::Error`s (whose payload is not their
/// `source()`, so walking the chain alone misses it).
fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

fn classify(url: &str, error: &reqwest::Error) -> FetchError {
    let causes = || std::iter::successors(error.source(), |cause| (*cause).source());
    // The guard's refusal travels inside the resolver's error: look for it first.
    for cause in causes() {
        if let Some(blocked) = cause.downcast_ref::<BlockedAddress>() {
            return FetchError::new(FetchErrorKind::BlockedAddress, url, blocked.to_string());
        }
        if let Some(tls) = rustls_error(cause) {
            return FetchError::new(FetchErrorKind::Tls, url, format!("TLS: {tls}"));
        }
    }
    for cause in causes() {
        // hyper-util reports a resolver failure as a ConnectError "dns error" wrapping it.
        let text = cause.to_string();
        if text.starts_with("dns error") || text.starts_with("failed to lookup address") {
            let detail = cause.source().map_or(text, ToString::to_string);
            return FetchError::new(FetchErrorKind::Dns, url, format!("name lookup: {detail}"));
        }
    }
    let text = error.to_string();
    if error.is_timeout() {
        FetchError::new(
            FetchErrorKind::Timeout,
            url,
            "no answer in time (timed out)",
        )
    } else if text.contains("dns error") || text.contains("failed to lookup") {
        FetchError::new(
            FetchErrorKind::Dns,
            url,
            format!("name lookup failed: {text}"),
        )
    } else {
        FetchError::new(FetchErrorKind::Connect, url, connect_reason(url, error))
    }
}

/// Why a connection failed, in words: from the operating system's error when there is one
/// (never the error's `Debug` form, which names crate types).
fn connect_reason(url: &str, error: &reqwest::Error) -> String {
    use std::io::ErrorKind;
    let causes = std::iter::successors(error.source(), |cause| (*cause).source());
    let address = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "that address".to_owned());
    let mut innermost = None;
    for cause in causes {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                ErrorKind::ConnectionRefused => {
                    format!("connection refused (nothing listens on {address})")
                }
                ErrorKind::ConnectionReset => "the server reset the connection".to_owned(),
                ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
                    "the server closed the connection early".to_owned()
                }
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    format!("no route to {address}")
                }
                ErrorKind::AddrNotAvailable => format!("cannot connect to {address}"),
                _ => without_os_code(&io.to_string()),
            };
        }
        innermost = Some(cause.to_string());
    }
    innermost.map_or_else(
        || "the connection failed".to_owned(),
        |text| without_os_code(&text),
    )
}

/// `Connection refused (os error 111)` without the number.
fn without_os_code(text: &str) -> String {
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn idle_host_gates_are_forgotten_busy_ones_kept() {
        let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
        let url = |i: usize| reqwest::Url::parse(&format!("https://h{i}.evil.example/")).unwrap();
        let held = fetcher.gate(&url(0));
        for i in 1..3 * MAX_HOST_GATES {
            drop(fetcher.gate(&url(i)));
        }
        let hosts = fetcher.hosts.lock().unwrap();
        assert!(hosts.len() <= MAX_HOST_GATES, "{}", hosts.len());
        assert!(
            hosts
                .get("h0.evil.example")
                .is_some_and(|g| Arc::ptr_eq(g, &held)),
            "a gate in use is kept"
        );
    }

    #[test]
    fn literal_private_ips_are_refused_before_any_connection() {
        let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:10.0.0.1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[fd00:ec2::254]/",
        ] {
            let error = fetcher.checked_url(url).unwrap_err();
            assert_eq!(error.kind, FetchErrorKind::BlockedAddress, "{url}");
        }
        assert!(fetcher.checked_url("http://93.184.216.34/").is_ok());
        assert_eq!(
            fetcher.checked_url("file:///etc/passwd").unwrap_err().kind,
            FetchErrorKind::BlockedAddress
        );
    }

    /// A resolver answering from a table: no DNS packet is ever sent.
    fn table_lookup(table: &'static [(&'static str, &'static str)]) -> Lookup {
        Arc::new(move |host: String| {
            let answer = table
                .iter()
                .find(|(name, _)| *name == host)
                .map(|(_, ip)| vec![SocketAddr::new(ip.parse().unwrap(), 0)])
                .ok_or_else(|| {
                    std::io::Error::other(
                        "failed to lookup address information: Name or service not known",
                    )
                });
            Box::pin(async move { answer })
        })
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn an_unknown_name_is_a_dns_error_with_robots_on_or_off() {
        for respect_robots in [false, true] {
            let config = FetchConfig {
                respect_robots,
                retries: 0,
                ..FetchConfig::default()
            };
            let fetcher = Fetcher::with_lookup(config, table_lookup(&[])).unwrap();
            let error = run(fetcher.fetch("http://shop.invalid/p/1")).unwrap_err();
            assert_eq!(error.kind, FetchErrorKind::Dns, "{error}");
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn names_resolving_to_refused_ranges_are_blocked_at_the_resolver() {
        // Public-looking names whose answers are private, metadata, CGNAT or ULA addresses:
        // refused after the lookup and before any connection (no socket is opened).
        static TABLE: [(&str, &str); 5] = [
            ("intranet.example", "10.1.2.3"),
            ("metadata.example", "169.254.169.254"),
            ("cgnat.example", "100.64.0.1"),
            ("ula.example", "fd00:ec2::254"),
            ("mapped.example", "::ffff:192.168.0.1"),
        ];
        let config = FetchConfig {
            respect_robots: false,
            retries: 0,
            ..FetchConfig::default()
        };
        let fetcher = Fetcher::with_lookup(config, table_lookup(&TABLE)).unwrap();
        for (host, ip) in TABLE {
            let error = run(fetcher.fetch(&format!("http://{host}/"))).unwrap_err();
            assert_eq!(
                error.kind,
                FetchErrorKind::BlockedAddress,
                "{host}: {error}"
            );
            assert!(error.message.contains(host), "{error}");
            assert!(
                !error.message.contains(ip),
                "the address stays in the debug log: {error}"
            );
        }
    }
}
