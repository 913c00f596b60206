"""The settings model: shared sections and one model per role.

Every setting has one name, used everywhere: the key in a config file (in its section's
table or the role's), ``SCRAPERV4_<NAME>`` in the environment, ``--<name-with-dashes>`` on
the command line, the keyword argument in Python. Sections group settings that several
roles share (``queue``, ``fetch``, ``politeness``, ``adaptive``, ``metrics``, ``logging``);
a role's model is its sections plus its own settings.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, PrivateAttr
from pydantic.fields import FieldInfo

from scraperv4.settings._types import (
    Address,
    ArgList,
    DelayRange,
    Headers,
    Seconds,
    StrList,
    setting,
)

__all__ = [
    "ROLES",
    "SECTIONS",
    "AutoscalerSettings",
    "ClientSettings",
    "CoordinatorSettings",
    "RunSettings",
    "Settings",
    "WorkerSettings",
]

_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"
_QUEUE_SCHEMES = (
    "redis", "rediss", "valkey", "valkeys", "sqlite", "memory",
    "redis+cluster", "rediss+cluster", "valkey+cluster", "valkeys+cluster",
)  # fmt: skip
_QUEUE_URLS = (
    "redis://[user:password@]host:port/db, rediss://..., "
    "redis+cluster://host:port[,host:port...], sqlite:///path/queue.db or memory://"
)


def _queue_url(value: Optional[str]) -> Optional[str]:
    if value is not None and value.split("://", 1)[0].lower() not in _QUEUE_SCHEMES:
        raise ValueError(f"expected {_QUEUE_URLS}")
    return value


def _networks(value: list[str]) -> list[str]:
    import ipaddress

    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not a network (CIDR like 10.0.0.0/8)") from None
    return value


def _printable(value: Optional[str]) -> Optional[str]:
    if value is not None and not value.isprintable():
        raise ValueError("expected printable characters")
    return value


class Settings(BaseModel):
    """Base of the role models: immutable, unknown names refused, and the source of each
    value remembered (:meth:`source`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The role's name (``worker``, ``coordinator``, ...); ``""`` on sections.
    ROLE: ClassVar[str] = ""
    #: The section's name, on the shared sections.
    SECTION: ClassVar[str] = ""

    _sources: dict[str, Any] = PrivateAttr(default_factory=dict)

    def source(self, name: str) -> Any:
        """Where the value of setting ``name`` came from (a
        :class:`~scraperv4.settings.Source`)."""
        from scraperv4.settings._load import DEFAULT

        return self._sources.get(name, DEFAULT)

    def from_default(self, name: str) -> bool:
        """True when setting ``name`` was not set anywhere (it has its built-in default)."""
        return bool(self.source(name).kind == "default")

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        """Rules between settings: ``(settings involved, what is wrong)`` for each failure."""
        return []


# --- shared sections ----------------------------------------------------------------------


class QueueSection(Settings):
    SECTION = "queue"

    queue_url: Annotated[Optional[str], AfterValidator(_queue_url)] = setting(
        None,
        "The job queue: Redis for a fleet, a SQLite file on one machine.",
        accepted=_QUEUE_URLS,
        env_aliases=("REDIS_URL",),
        flags=("--queue-url", "--queue"),
        metavar="URL",
        secret=True,
    )
    queue_name: str = setting(
        "default",
        "Queue name inside the backend (several queues can share one Redis).",
        accepted="1-128 characters among A-Z a-z 0-9 - _ . :",
        pattern=_NAME,
    )
    queue_prefix: str = setting(
        "scraperv4",
        "Redis key prefix in front of the queue name.",
        accepted="1-128 characters among A-Z a-z 0-9 - _ . :",
        pattern=_NAME,
    )
    lease: Seconds = setting(
        60.0, "Seconds a claimed job stays leased without a heartbeat.", ge=0.1
    )
    retry_base: Seconds = setting(
        1.0, "First delay before a failed job is retried, seconds (doubles, jittered).", ge=0
    )
    retry_cap: Seconds = setting(300.0, "Longest delay before a retry, seconds.", ge=0)
    retention: Seconds = setting(
        604800.0, "Seconds finished jobs are kept before the reaper deletes them.", ge=0
    )
    worker_liveness: Seconds = setting(
        120.0, "Seconds without a heartbeat after which a worker counts as gone.", ge=0.1
    )
    worker_expiry: Seconds = setting(
        3600.0,
        "Seconds without a heartbeat after which the reaper removes a worker from the "
        "registry (its jobs given back).",
        ge=0.1,
    )
    max_lease_expiries: int = setting(
        5,
        "Expired leases after which a job fails for good (they do not use up its retries).",
        ge=1,
    )
    durable_commits: bool = setting(
        True,
        "SQLite queue: make every commit survive an operating-system crash "
        "(synchronous=FULL); off is faster but such a crash can lose the last commits.",
    )
    operation_timeout: Seconds = setting(
        10.0, "Longest wait for one queue operation, seconds.", ge=0.01
    )
    max_config_bytes: int = setting(1048576, "Largest job config accepted, bytes of JSON.", ge=2)
    allow_insecure_tls: bool = setting(
        False, "Accept rediss://...#insecure (TLS without a certificate check)."
    )
    politeness_key: Literal["domain", "host"] = setting(
        "domain",
        "What jobs are paced by, fleet-wide: their registrable domain (a.example.com and "
        "b.example.com together) or their host. A job's config may name its own "
        "(politeness_key). Every client of a queue should use the same.",
    )
    domain_delay: Optional[Seconds] = setting(
        None,
        "Fleet-wide least seconds between two requests to one politeness key, enforced when "
        "jobs are claimed. Stored in the queue (every worker follows it); unset keeps the "
        "queue's value.",
        default_text="the queue's (0 at first)",
        ge=0,
        le=86400,
    )
    domain_concurrency: Optional[int] = setting(
        None,
        "Fleet-wide most requests in flight at once to one politeness key (0: no limit). "
        "Stored in the queue; unset keeps the queue's value.",
        default_text="the queue's (0 at first)",
        ge=0,
    )
    autothrottle: Optional[float] = setting(
        None,
        "AutoThrottle: each key's delay follows its observed latency divided by this target "
        "concurrency (0: off). Stored in the queue; unset keeps the queue's value.",
        default_text="the queue's (off at first)",
        ge=0,
        le=10000,
    )
    max_domain_delay: Optional[Seconds] = setting(
        None,
        "Largest delay a key reaches after 429/503 answers and failed requests (it doubles "
        "each time). Stored in the queue; unset keeps the queue's value.",
        default_text="the queue's (60 at first)",
        ge=0,
        le=86400,
    )
    runnable_horizon: Seconds = setting(
        10.0,
        "The runnable backlog (what the autoscaler scales on) counts the jobs the keys' "
        "delays and limits let start within this many seconds.",
        ge=0.1,
    )
    dedup: bool = setting(
        False,
        "Remember every URL queued, in bounded memory (a Bloom filter on Redis, a table of "
        "fingerprints on SQLite): a URL is not queued again, even after its job record was "
        "purged, until its revisit interval has passed (docs/scaling.md). URLs are compared "
        "in canonical form, within their crawl.",
    )
    dedup_capacity: int = setting(
        1000000,
        "URLs the seen-URL filter's first layer holds at dedup_error_rate (each further "
        "layer twice as many): set it to the URLs expected per revisit bucket. Fixed when the "
        "filter is created.",
        ge=1000,
        le=1000000000,
    )
    dedup_error_rate: float = setting(
        0.01,
        "False-positive rate the seen-URL filter promises (a new URL taken for seen and not "
        "queued). Fixed when the filter is created.",
        ge=0.000001,
        le=0.1,
    )
    revisit: Optional[Seconds] = setting(
        None,
        "Seconds after which a URL seen may be queued again (recrawl); unset: never. A job's "
        'config may set its own ("revisit"), which the jobs it discovers inherit.',
        default_text="never",
        ge=1,
        le=315360000,
    )
    dedup_bucket: Optional[Seconds] = setting(
        None,
        "Width of the seen-URL filter's time buckets, seconds: a URL comes back between "
        "revisit and revisit plus one bucket. Fixed when the filter is created.",
        default_text="a quarter of revisit, or a day",
        ge=0.1,
        le=315360000,
    )
    results_max_len: Optional[int] = setting(
        None,
        "The results log keeps about this many entries: the reaper deletes the oldest. An "
        "export that falls further behind loses entries and logs a warning saying so; unset, "
        "the log grows until an export trims it (--trim).",
        default_text="no bound",
        ge=1,
    )
    shards: Optional[int] = setting(
        None,
        "Redis: the number of shards the queue is spread over (hash tags, so slots and "
        "masters of a Redis Cluster), fixed when the queue is created. Unset: as the queue was "
        "created (one shard for a new queue).",
        default_text="as created",
        ge=1,
        le=256,
    )
    shared_configs: bool = setting(
        True,
        "Discovered jobs store a config their page's links share once, by reference, not a "
        "copy per job. Turn off for a rolling upgrade while clients of an older release, which "
        "cannot read such jobs, still use the queue.",
    )
    dedup_ignore_params: Optional[StrList] = setting(
        None,
        "Query parameters ignored when comparing URLs: names, or prefixes ending in *.",
        default_text="utm_*, gclid, fbclid, msclkid, mc_cid, mc_eid, _ga",
        accepted="names, comma-separated or a JSON array",
        metavar="NAMES",
    )

    def require_queue_url(self) -> str:
        """The queue URL, or a :class:`~scraperv4.exceptions.ConfigError` saying how to
        give one."""
        if not self.queue_url:
            from scraperv4.exceptions import ConfigError

            raise ConfigError(
                "no queue given: pass --queue redis://host:6379/0 (or sqlite:///path/queue.db), "
                "or set REDIS_URL (or SCRAPERV4_QUEUE_URL, or queue_url in the config file)"
            )
        return self.queue_url

    def open_queue(self, url: Optional[str] = None) -> Any:
        """A :class:`~scraperv4.queue.JobQueue` on ``url`` (default the ``queue_url``
        setting) with the queue settings."""
        from scraperv4.queue import JobQueue

        return JobQueue(url or self.require_queue_url(), **self.queue_options())

    def queue_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`scraperv4.queue.JobQueue` (all but the URL)."""
        return {
            "name": self.queue_name,
            "prefix": self.queue_prefix,
            "lease": self.lease,
            "max_config_bytes": self.max_config_bytes,
            "retry_base": self.retry_base,
            "retry_cap": self.retry_cap,
            "retention": self.retention,
            "worker_liveness": self.worker_liveness,
            "worker_expiry": self.worker_expiry,
            "max_lease_expiries": self.max_lease_expiries,
            "durable_commits": self.durable_commits,
            "operation_timeout": self.operation_timeout,
            "allow_insecure_tls": self.allow_insecure_tls,
            "politeness_key": self.politeness_key,
            "domain_delay": self.domain_delay,
            "domain_concurrency": self.domain_concurrency,
            "autothrottle": self.autothrottle,
            "max_domain_delay": self.max_domain_delay,
            "runnable_horizon": self.runnable_horizon,
            "dedup": self.dedup,
            "dedup_capacity": self.dedup_capacity,
            "dedup_error_rate": self.dedup_error_rate,
            "revisit": self.revisit,
            "dedup_bucket": self.dedup_bucket,
            "dedup_ignore_params": self.dedup_ignore_params,
            "results_max_len": self.results_max_len,
            "shards": self.shards,
            "shared_configs": self.shared_configs,
        }

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        problems = super().cross_check()
        if self.retry_cap < self.retry_base:
            problems.append((("retry_cap", "retry_base"), "retry_cap must be >= retry_base"))
        if self.worker_expiry < max(self.lease, self.worker_liveness):
            problems.append(
                (
                    ("worker_expiry", "lease", "worker_liveness"),
                    "worker_expiry must be at least the lease and the worker liveness window",
                )
            )
        return problems


class FetchSection(Settings):
    SECTION = "fetch"

    allow_private_networks: bool = setting(
        False,
        "Fetch private, loopback and link-local addresses too (an intranet or local site); "
        "off, the SSRF guard refuses them. Cloud metadata addresses (169.254.0.0/16, "
        "fd00:ec2::/32, 100.100.100.200, 192.0.0.192) stay refused unless allowed_networks "
        "names them.",
    )
    allowed_networks: Annotated[StrList, AfterValidator(_networks)] = setting(
        [],
        "Private networks fetched anyway, e.g. 10.1.0.0/16 (the SSRF guard stays on for the rest).",
        accepted="CIDRs, comma-separated or a JSON array",
        metavar="CIDRS",
    )
    allowed_hosts: StrList = setting(
        [],
        "Host names fetched whatever address they resolve to.",
        accepted="host names, comma-separated or a JSON array",
        metavar="HOSTS",
    )
    user_agent: Annotated[Optional[str], AfterValidator(_printable)] = setting(
        None,
        "The User-Agent header (also the agent robots.txt rules are matched against).",
        accepted="printable text",
        default_text="ScraperV4/<version> (+https://github.com/scraperv4/scraperv4-scale)",
    )
    proxy: Optional[str] = setting(
        None,
        "A proxy URL (http://, https://, socks5://); proxy environment variables are ignored.",
        metavar="URL",
        secret=True,
    )
    ca_file: Optional[str] = setting(
        None,
        "A PEM file of extra trusted root certificates (an internal CA).",
        metavar="FILE",
    )
    headers: Headers = setting(
        {},
        "Extra request headers (Authorization, Cookie, ...), sent only to the origin a fetch "
        "starts at: never to another origin a redirect leads to, nor to robots.txt.",
        accepted='a JSON object: {"Name": "value"}',
        metavar="JSON",
    )
    header_origins: StrList = setting(
        [],
        "Origins the headers may be sent to (https://api.example.com); empty: the origin of "
        "each URL fetched.",
        accepted="origins, comma-separated or a JSON array",
        metavar="ORIGINS",
    )
    cookies: bool = setting(False, "Keep cookies between requests of one worker.")
    connect_timeout: Seconds = setting(10.0, "Seconds to establish a connection.", gt=0)
    read_timeout: Seconds = setting(30.0, "Seconds allowed between two reads.", gt=0)
    total_timeout: Seconds = setting(
        60.0,
        "Seconds for a whole request, redirects and body included, counted from when it may be "
        "sent (politeness waits and queueing for a fetch permit are not counted).",
        gt=0,
    )
    max_redirects: int = setting(10, "Redirects followed at most.", ge=0, le=100)
    max_body_bytes: int = setting(
        10485760, "Largest page accepted, bytes after decompression.", ge=1
    )
    max_decompression_ratio: int = setting(
        100, "Largest decompressed-to-compressed size ratio (zip bombs).", ge=1
    )
    fetch_retries: int = setting(
        1,
        "Retries inside one attempt on timeouts, connection errors, 429 and 5xx (the queue "
        "retries the job after that).",
        ge=0,
        le=100,
    )
    fetch_retry_base: Seconds = setting(
        0.5, "First delay between those retries, seconds (doubles, jittered).", ge=0
    )


class PolitenessSection(Settings):
    SECTION = "politeness"

    delay: DelayRange = setting(
        (0.0, 0.0),
        "Seconds between two requests to one host, random in [MIN, MAX].",
        accepted="MIN,MAX seconds with 0 <= MIN <= MAX (or one number for both; the flag "
        "also takes MIN MAX)",
    )
    respect_robots: bool = setting(
        True,
        "Fetch and obey robots.txt (its Crawl-delay too).",
        negative_flags=("--ignore-robots",),
    )
    robots_ttl: Seconds = setting(3600.0, "Seconds a host's robots.txt is cached.", ge=0)
    per_host_concurrency: Optional[int] = setting(
        None, "Requests in flight at once to one host.", default_text="the concurrency", ge=1
    )
    max_retry_after: Seconds = setting(60.0, "Longest Retry-After wait honoured, seconds.", ge=0)

    def fetch_config(self, concurrency: int) -> Any:
        """The :class:`~scraperv4.fetch.FetchConfig` of these settings, for ``concurrency``
        requests at once (needs the fetch section too)."""
        from scraperv4.fetch import FetchConfig

        assert isinstance(self, FetchSection), "a role with fetch and politeness settings"
        return FetchConfig(
            concurrency=concurrency,
            per_host_concurrency=self.per_host_concurrency or concurrency,
            delay_range=self.delay,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            total_timeout=self.total_timeout,
            max_redirects=self.max_redirects,
            user_agent=self.user_agent,
            proxy=self.proxy,
            headers=dict(self.headers),
            header_origins=list(self.header_origins),
            cookies=self.cookies,
            max_body_bytes=self.max_body_bytes,
            max_decompression_ratio=self.max_decompression_ratio,
            retries=self.fetch_retries,
            retry_base=self.fetch_retry_base,
            max_retry_after=self.max_retry_after,
            respect_robots=self.respect_robots,
            robots_ttl=self.robots_ttl,
            allow_private_networks=self.allow_private_networks,
            allowed_networks=list(self.allowed_networks),
            allowed_hosts=list(self.allowed_hosts),
            ca_file=self.ca_file,
        )


class AdaptiveSection(Settings):
    SECTION = "adaptive"

    adaptive_concurrency: bool = setting(
        True,
        "Lower the jobs in flight by a quarter every adapt_interval while this machine's "
        "memory or CPU is past its threshold, and raise it back after.",
        negative_flags=("--fixed-concurrency",),
    )
    min_concurrency: int = setting(1, "Floor of the adaptive limit.", ge=1)
    memory_max: float = setting(
        85.0, "Memory threshold, percent of what this process may use.", gt=0, le=100
    )
    cpu_max: float = setting(
        95.0, "CPU threshold, percent of what this process may use.", gt=0, le=100
    )
    adapt_interval: Seconds = setting(2.0, "Seconds between adjustments.", ge=0.2)
    adapt_scope: Literal["own", "machine"] = setting(
        "own",
        "Whose load counts: own (the container's quota and limit when it has them, else this "
        "process's share: other programs do not slow the worker down) or machine (the whole "
        "machine's CPU and memory).",
    )

    def adaptive_options(self) -> dict[str, Any]:
        """The adaptive-concurrency keyword arguments of :class:`scraperv4.worker.Worker`."""
        return {
            "adaptive_concurrency": self.adaptive_concurrency,
            "min_concurrency": self.min_concurrency,
            "memory_max": self.memory_max,
            "cpu_max": self.cpu_max,
            "adapt_interval": self.adapt_interval,
            "adapt_scope": self.adapt_scope,
        }


class MetricsSection(Settings):
    SECTION = "metrics"

    metrics_addr: Address = setting(
        "127.0.0.1:9100",
        "Serve /metrics (and a worker's /health and /ready) on this address; off: no server. "
        "In a container, 0.0.0.0:9100 lets Prometheus and the probes reach it.",
        accepted="IP:PORT (port 0: any free port) or off",
        metavar="ADDR",
    )


class LoggingSection(Settings):
    SECTION = "logging"

    log_level: Literal["trace", "debug", "info", "warning", "warn", "error", "critical", "off"] = (
        setting(
            "warning",
            "Level of the scraperv4 logger, Rust core included.",
            accepted="trace, debug, info, warning, error or off",
            metavar="LEVEL",
        )
    )
    log_format: Literal["text", "json"] = setting(
        "text",
        "Log lines as text, or as one JSON object per line (for log collectors).",
        metavar="FORMAT",
    )


# --- roles --------------------------------------------------------------------------------


class WorkerSettings(
    QueueSection, FetchSection, PolitenessSection, AdaptiveSection, MetricsSection, LoggingSection
):
    """``scraperv4 worker``, :class:`scraperv4.worker.Worker` and the guide's
    ``ScrapingWorker``."""

    ROLE = "worker"

    worker_id: Annotated[Optional[str], AfterValidator(_printable)] = setting(
        None,
        "This worker's id in the fleet (unique).",
        default_text="<hostname>-<pid>",
        env_aliases=("WORKER_ID",),
        max_length=200,
        min_length=1,
    )
    templates: Optional[str] = setting(
        None,
        "Directory of templates (*.json, *.yaml), looked up by the jobs' template_id.",
        metavar="DIR",
    )
    concurrency: int = setting(32, "Jobs in flight at once (the ceiling).", ge=1, le=10000)
    claim_batch: Optional[int] = setting(
        None, "Most jobs claimed per call.", default_text="min(concurrency, 100)", ge=1, le=1000
    )
    heartbeat: Seconds = setting(
        30.0,
        "Seconds between lease renewals (below the lease).",
        default_text="30, or half the lease when that is shorter",
        gt=0,
    )
    grace_period: Seconds = setting(
        30.0, "On SIGTERM, seconds in-flight jobs get to finish before release.", ge=0
    )
    job_timeout: Seconds = setting(
        3600.0, "Longest seconds for one job unless its config says timeout.", gt=0
    )
    extract_timeout: Seconds = setting(
        60.0,
        "Longest seconds extracting one page may take; a page over it (or over the per-page "
        "caps on items, links and output) fails for good.",
        gt=0,
    )
    idle_poll: Seconds = setting(0.5, "Longest wait between claims on an empty queue.", gt=0)
    exit_when_done: bool = setting(
        False, "Exit once the queue has nothing pending, retrying or leased."
    )
    log_stats_interval: Seconds = setting(
        60.0,
        "Seconds between the stats lines logged at info level (pages and items so far, and "
        "per minute); 0: none.",
        ge=0,
    )

    def effective_heartbeat(self) -> float:
        """The heartbeat: the default shrinks to half a short lease."""
        if self.from_default("heartbeat"):
            return min(self.heartbeat, self.lease / 2)
        return self.heartbeat

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        problems = super().cross_check()
        if self.effective_heartbeat() >= self.lease:
            problems.append(
                (("heartbeat", "lease"), "heartbeat must be below the lease, or leases expire")
            )
        if self.min_concurrency > self.concurrency:
            problems.append(
                (("min_concurrency", "concurrency"), "min_concurrency must be <= concurrency")
            )
        return problems


class CoordinatorSettings(QueueSection, LoggingSection):
    """``scraperv4 coordinator`` and :class:`scraperv4.coordinator.Coordinator`."""

    ROLE = "coordinator"

    addr: Address = setting(
        "0.0.0.0:8080",
        "Listen on this address (the API, the dashboard, /ws and /metrics).",
        accepted="IP:PORT (port 0: any free port)",
        metavar="ADDR",
    )
    api_token: Optional[str] = setting(
        None,
        "Bearer token required on every mutating route (and on reads with protect_reads). "
        "Without one the coordinator listens on a loopback address only (see insecure_no_auth).",
        accepted="at least 16 characters",
        secret=True,
        min_length=16,
    )
    protect_reads: bool = setting(
        True,
        "With a token, require it for reads too (all but /api/health, /metrics, "
        "/api/openapi.json and the dashboard page).",
    )
    insecure_no_auth: bool = setting(
        False,
        "Serve without a token on a non-loopback address anyway: anyone who reaches it can "
        "submit jobs and drain workers.",
    )
    allowed_hosts: StrList = setting(
        [],
        "Host names the Host header may carry besides IP addresses and localhost (DNS "
        "rebinding); empty: any name when a token is set, none without one.",
        accepted="host names, comma-separated or a JSON array (the flag repeats)",
        flags=("--allowed-host",),
        metavar="HOST",
    )
    cors_origins: StrList = setting(
        [],
        "Origins allowed to call the API from a browser (and to write and open /ws).",
        accepted="origins, comma-separated or a JSON array (the flag repeats)",
        flags=("--cors-origin",),
        metavar="ORIGIN",
    )
    body_limit: int = setting(1048576, "Largest request body, bytes.", ge=1024)
    request_timeout: Seconds = setting(30.0, "Longest request, seconds.", gt=0)
    header_timeout: Seconds = setting(
        10.0, "Longest time a client may take to send its request headers.", gt=0
    )
    max_connections: int = setting(1024, "Most connections open at once (/ws apart).", ge=1)
    ws_max_connections: int = setting(64, "Most /ws connections open at once.", ge=1)
    ws_idle_timeout: Seconds = setting(
        60.0,
        "Seconds a /ws client may stay silent (it is pinged every third of it) or not read.",
        ge=0.3,
    )
    stats_interval: Seconds = setting(1.0, "Seconds between the stats pushed on /ws.", gt=0)

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        problems = super().cross_check()
        if self.addr is None:
            problems.append((("addr",), "the coordinator needs an address to listen on"))
        return problems


def _scaling_defaults() -> dict[str, Any]:
    from scraperv4 import _core

    defaults: dict[str, Any] = _core.ScalingPolicy("{}").config()
    return defaults


_SCALING = _scaling_defaults()


class AutoscalerSettings(QueueSection, MetricsSection, LoggingSection):
    """``scraperv4 autoscale``, :class:`scraperv4.autoscale.Autoscaler` and the guide's
    ``AutoScaler``."""

    ROLE = "autoscaler"

    executor: Literal["auto", "local", "swarm", "kubernetes"] = setting(
        "auto",
        "How the fleet is changed: local worker processes, docker service scale, kubectl "
        "scale; auto: kubernetes inside a pod, swarm on a Swarm manager, else local.",
    )
    min_workers: int = setting(_SCALING["min_workers"], "Fewest workers.", ge=0)
    max_workers: int = setting(_SCALING["max_workers"], "Most workers.", ge=1)
    scale_up_threshold: float = setting(
        _SCALING["scale_up_threshold"], "Scale up above this many runnable jobs per worker.", ge=0
    )
    scale_down_threshold: float = setting(
        _SCALING["scale_down_threshold"],
        "Scale down below this many runnable jobs per worker.",
        ge=0,
    )
    scale_up_cooldown: Seconds = setting(
        _SCALING["scale_up_cooldown"], "No scale-up sooner than this after a scaling action.", ge=0
    )
    scale_down_cooldown: Seconds = setting(
        _SCALING["scale_down_cooldown"],
        "No scale-down sooner than this after a scaling action.",
        ge=0,
    )
    evaluation_interval: Seconds = setting(
        _SCALING["evaluation_interval"], "Seconds between evaluations.", gt=0
    )
    scale_up_stabilization: Seconds = setting(
        _SCALING["scale_up_stabilization"],
        "Scale up only to the lowest recommendation of this window, seconds (0: at once).",
        ge=0,
    )
    scale_down_stabilization: Seconds = setting(
        _SCALING["scale_down_stabilization"],
        "Scale down only to the highest recommendation of this window, seconds.",
        ge=0,
    )
    rate_period: Seconds = setting(
        _SCALING["rate_period"], "The period the rate limits count changes over.", gt=0
    )
    scale_up_max_percent: float = setting(
        _SCALING["scale_up_max_percent"],
        "Scale up by at most this percent of the workers at the start of the period...",
        ge=0,
    )
    scale_up_max_workers: int = setting(
        _SCALING["scale_up_max_workers"], "...or by this many workers, whichever is more.", ge=0
    )
    scale_down_max_percent: float = setting(
        _SCALING["scale_down_max_percent"],
        "Scale down by at most this percent of the workers at the start of the period...",
        ge=0,
    )
    scale_down_max_workers: int = setting(
        _SCALING["scale_down_max_workers"], "...or by this many workers, whichever is more.", ge=0
    )
    templates: Optional[str] = setting(
        None,
        "Templates of the workers the local executor starts (needed once it starts one).",
        metavar="DIR",
    )
    worker_args: ArgList = setting(
        [],
        "More arguments for each local worker, e.g. --concurrency 8.",
        accepted="a JSON array or a shell-style command line (the flag repeats)",
        flags=("--worker-arg",),
        metavar="ARG",
    )
    service: str = setting("scraperv4_worker", "Swarm: the worker service.", min_length=1)
    deployment: str = setting(
        "scraperv4-worker", "Kubernetes: the worker Deployment.", min_length=1
    )
    namespace: str = setting("default", "Kubernetes: its namespace.", min_length=1)
    drain_timeout: Seconds = setting(
        120.0, "Longest wait for drained workers to leave before they are stopped.", ge=0
    )
    resource_veto: bool = setting(
        True, "Local executor: no scale-up while this machine is past its resource thresholds."
    )
    metrics_addr: Address = FieldInfo.merge_field_infos(  # type: ignore[assignment]
        MetricsSection.model_fields["metrics_addr"], default="127.0.0.1:9200"
    )

    def scaling_rules(self) -> dict[str, Any]:
        """The rules of :func:`scraperv4.autoscale.default_scaling_config`, as set."""
        return {name: getattr(self, name) for name in _SCALING}

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        import json

        from scraperv4 import _core
        from scraperv4.exceptions import ConfigError

        problems = super().cross_check()
        try:
            _core.ScalingPolicy(json.dumps(self.scaling_rules()))
        except ConfigError as error:
            named = tuple(name for name in _SCALING if name in str(error)) or tuple(_SCALING)
            problems.append((named, str(error)))
        return problems


class RunSettings(FetchSection, PolitenessSection, AdaptiveSection, LoggingSection):
    """``scraperv4 run`` and :func:`scraperv4.crawl.run_crawl`."""

    ROLE = "run"

    output: str = setting("items.jsonl", "The JSON Lines file of items.", metavar="FILE")
    state: Optional[str] = setting(
        None,
        "The SQLite file holding the crawl's state (resumable).",
        default_text="<output>.queue.db",
        metavar="FILE",
    )
    concurrency: int = setting(16, "Pages fetched at once.", ge=1, le=10000)
    max_retries: int = setting(3, "Retries of a failing page.", ge=0, le=1000)
    progress: Literal["auto", "bar", "lines"] = setting(
        "auto", "A live bar, or a line every 5 s (auto: a bar on a terminal)."
    )
    grace_period: Seconds = setting(10.0, "On Ctrl-C, seconds in-flight pages get to finish.", ge=0)
    max_failures: int = setting(
        0,
        "Failed pages tolerated: the run still exits 0 with at most this many (a 404 here "
        "and there on a big site).",
        ge=0,
    )

    def cross_check(self) -> list[tuple[tuple[str, ...], str]]:
        problems = super().cross_check()
        if self.min_concurrency > self.concurrency:
            problems.append(
                (("min_concurrency", "concurrency"), "min_concurrency must be <= concurrency")
            )
        return problems


class ClientSettings(QueueSection, LoggingSection):
    """``scraperv4 submit``, ``stats``, ``jobs`` and ``results``."""

    ROLE = "client"


#: The role models by name.
ROLES: dict[str, type[Settings]] = {
    model.ROLE: model
    for model in (
        WorkerSettings,
        CoordinatorSettings,
        AutoscalerSettings,
        RunSettings,
        ClientSettings,
    )
}

#: The shared sections by name.
SECTIONS: dict[str, type[Settings]] = {
    section.SECTION: section
    for section in (
        QueueSection,
        FetchSection,
        PolitenessSection,
        AdaptiveSection,
        MetricsSection,
        LoggingSection,
    )
}
