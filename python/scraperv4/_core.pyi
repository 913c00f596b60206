"""Type stubs for the Rust extension module ``scraperv4._core``.

Private: import the public names from :mod:`scraperv4` instead. Kept in step with
``src/python/`` by ``mypy.stubtest`` in ``make test``.
"""

from collections.abc import Callable, Iterable
from typing import Any, Literal, final

__version__: str

def set_log_level(level: str) -> None:
    """Set the ``scraperv4`` logger's level; ``ConfigError`` for an unknown level name."""

def _block_for(seconds: float) -> float:
    """Wait ``seconds`` on the Rust runtime with the GIL released; returns the time waited.

    Internal: exercises the sync bridge (GIL release, Ctrl-C) in the test-suite.
    """

async def _sleep_async(seconds: float) -> float:
    """Sleep ``seconds`` on the Rust runtime; returns the time slept.

    Internal: exercises the asyncio bridge (awaiting, cancellation) in the test-suite.
    """

def partition_lists(
    urls: Iterable[object],
    num_partitions: int,
    strategy: str = "domain_hash",
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[list[list[Any]], list[tuple[Any, str]]]:
    """Partition ``urls`` into lists; returns ``(partitions, [(invalid_url, reason), ...])``."""

def partition_indices(
    urls: Iterable[object],
    num_partitions: int,
    strategy: str = "domain_hash",
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[bytes, list[tuple[Any, str]]]:
    """Partition index per URL as native int32 bytes (``-1`` = invalid), and the invalid ones."""

def optimize_partitions(
    partitions: list[Iterable[object]],
    tolerance: float = 0.1,
    grouping: str = "registrable_domain",
    weights: list[float] | None = None,
) -> tuple[list[list[Any]], dict[str, Any], list[tuple[Any, str]]]:
    """Rebalance partitions by moving whole domains; returns ``(partitions, report, invalid)``."""

@final
class ResourceManager:
    """Background sampler of this machine's (or container's) resources."""

    def __new__(
        cls,
        thresholds: list[tuple[str, float]] | None = None,
        *,
        disk_path: str | None = None,
        sample_interval: float = 1.0,
        history_size: int = 600,
        cores_per_worker: float = 2.0,
        memory_per_worker_mb: float = 512.0,
        jobs_per_worker: int = 5,
        min_workers: int = 1,
        max_workers: int | None = None,
        cgroup_root: str | None = None,
        cgroup_membership: str | None = None,
    ) -> ResourceManager: ...
    @property
    def thresholds(self) -> dict[str, float]:
        """The thresholds in use, by their seed names."""
    def check(self) -> dict[str, Any]:
        """The latest reading plus ``can_scale_up`` and ``limiting_factors``."""
    def optimal_worker_count(self, current_workers: int, pending_jobs: int) -> int:
        """The seed's optimal worker count for this machine and backlog."""
    def history_columns(self) -> dict[str, bytes]:
        """The history as columns of native-endian float64 bytes, oldest first."""
    def close(self) -> None:
        """Stop the sampler thread."""

@final
class JobRecord:
    """A job as stored (times in seconds since the epoch)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def template_id(self) -> str: ...
    @property
    def target_url(self) -> str: ...
    @property
    def config_json(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def assigned_worker(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def completed_at(self) -> float | None: ...
    @property
    def retry_count(self) -> int: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def result_json(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def token(self) -> int: ...
    @property
    def lease_expiries(self) -> int: ...
    @property
    def lease_deadline(self) -> float | None: ...
    @property
    def not_before(self) -> float | None: ...
    @property
    def crawl_id(self) -> str | None: ...
    @property
    def depth(self) -> int: ...
    @property
    def parent_id(self) -> str | None: ...

@final
class Ack:
    """The answer to a fenced or administrative queue operation."""

    @property
    def reason(self) -> str:
        """``accepted``, ``stale`` or ``not_found``."""
    @property
    def status(self) -> str | None:
        """The job's status after the call."""
    @property
    def token(self) -> int | None:
        """The job's current fencing token, when the call was refused as stale."""
    @property
    def outcome(self) -> str | None:
        """For ``fail``: ``retrying`` or ``failed``."""
    @property
    def not_before(self) -> float | None:
        """For a retry: when the job becomes claimable."""
    @property
    def accepted(self) -> bool:
        """True when the operation was done."""
    def __bool__(self) -> bool: ...

_Submission = dict[str, Any]
_Listed = tuple[list[JobRecord], list[tuple[str, str]]]
# `JobQueue.list` shadows the builtin inside the class body: spell the types out here.
_Submissions = list[_Submission]
_Created = list[tuple[str, bool]]
_Records = list[JobRecord]
_Counts = list[tuple[str, int]]
_Workers = list[dict[str, Any]]
_Completions = list[tuple[str, int, str | None]]
_Acks = list[Ack]
_Claims = list[tuple[str, int]]
_Beat = tuple[int, bool, list[tuple[str, int]], int, bool]

@final
class JobQueue:
    """A connection to a queue backend (sync methods and ``*_async`` twins)."""

    @staticmethod
    def open(
        url: str,
        *,
        name: str = "default",
        prefix: str = "scraperv4",
        lease: float = 60.0,
        max_config_bytes: int = 1048576,
        retry_base: float = 1.0,
        retry_cap: float = 300.0,
        retention: float = 604800.0,
        worker_liveness: float = 120.0,
        worker_expiry: float = 3600.0,
        max_lease_expiries: int = 5,
        durable_commits: bool = True,
        operation_timeout: float = 10.0,
        allow_insecure_tls: bool = False,
        politeness_key: str = "domain",
        domain_delay: float | None = None,
        domain_concurrency: int | None = None,
        autothrottle: float | None = None,
        max_domain_delay: float | None = None,
        runnable_horizon: float = 10.0,
        dedup: bool = False,
        dedup_capacity: int = 1000000,
        dedup_error_rate: float = 0.01,
        revisit: float | None = None,
        dedup_bucket: float | None = None,
        dedup_ignore_params: list[str] | None = None,
        results_max_len: int | None = None,
        shards: int | None = None,
        shared_configs: bool = True,
    ) -> JobQueue: ...
    @property
    def location(self) -> str: ...
    @property
    def shards(self) -> int: ...
    @property
    def lease(self) -> float: ...
    def submit(self, jobs: _Submissions) -> _Created: ...
    async def submit_async(self, jobs: _Submissions) -> _Created: ...
    def claim(self, worker: str, limit: int, start: bool = False) -> _Records: ...
    async def claim_async(self, worker: str, limit: int, start: bool = False) -> _Records: ...
    def mark_running(self, id: str, token: int) -> Ack: ...
    async def mark_running_async(self, id: str, token: int) -> Ack: ...
    def complete(self, id: str, token: int, result_json: str | None = None) -> Ack: ...
    async def complete_async(self, id: str, token: int, result_json: str | None = None) -> Ack: ...
    def complete_many(self, completions: _Completions) -> _Acks: ...
    async def complete_many_async(self, completions: _Completions) -> _Acks: ...
    def fail(
        self,
        id: str,
        token: int,
        error: str,
        retryable: bool = True,
        feedback: str | None = None,
        retry_after: float | None = None,
    ) -> Ack: ...
    async def fail_async(
        self,
        id: str,
        token: int,
        error: str,
        retryable: bool = True,
        feedback: str | None = None,
        retry_after: float | None = None,
    ) -> Ack: ...
    def domains(self, offset: int = 0, limit: int = 100) -> Any: ...
    async def domains_async(self, offset: int = 0, limit: int = 100) -> Any: ...
    def domain(self, key: str) -> Any: ...
    async def domain_async(self, key: str) -> Any: ...
    def set_domain(
        self,
        key: str,
        delay: float | None = None,
        concurrency: int | None = None,
        clear_delay: bool = False,
        clear_concurrency: bool = False,
    ) -> Any: ...
    async def set_domain_async(
        self,
        key: str,
        delay: float | None = None,
        concurrency: int | None = None,
        clear_delay: bool = False,
        clear_concurrency: bool = False,
    ) -> Any: ...
    def set_policy(
        self,
        domain_delay: float | None = None,
        domain_concurrency: int | None = None,
        autothrottle: float | None = None,
        max_domain_delay: float | None = None,
    ) -> dict[str, float]: ...
    def policy(self) -> dict[str, float]: ...
    def politeness_key(self, url: str, override_key: str | None = None) -> str: ...
    def release(self, id: str, token: int) -> Ack: ...
    async def release_async(self, id: str, token: int) -> Ack: ...
    def cancel(self, id: str) -> Ack: ...
    async def cancel_async(self, id: str) -> Ack: ...
    def retry(self, id: str) -> Ack: ...
    async def retry_async(self, id: str) -> Ack: ...
    def get(self, id: str) -> JobRecord | None: ...
    async def get_async(self, id: str) -> JobRecord | None: ...
    def list(self, status: str, offset: int = 0, limit: int = 100) -> _Listed: ...
    async def list_async(self, status: str, offset: int = 0, limit: int = 100) -> _Listed: ...
    def stats(self) -> dict[str, Any]: ...
    async def stats_async(self) -> dict[str, Any]: ...
    def recount_by_scan(self) -> _Counts: ...
    def register_worker(self, worker: str, session: str | None = None) -> int: ...
    async def register_worker_async(self, worker: str, session: str | None = None) -> int: ...
    def heartbeat(
        self, worker: str, held: _Claims | None = None, session: str | None = None
    ) -> _Beat: ...
    async def heartbeat_async(
        self, worker: str, held: _Claims | None = None, session: str | None = None
    ) -> _Beat: ...
    def set_draining(self, worker: str, draining: bool) -> bool: ...
    async def set_draining_async(self, worker: str, draining: bool) -> bool: ...
    def unregister_worker(self, worker: str, session: str | None = None) -> int | None: ...
    async def unregister_worker_async(
        self, worker: str, session: str | None = None
    ) -> int | None: ...
    def workers(self) -> _Workers: ...
    async def workers_async(self) -> _Workers: ...
    def reap(self, limit: int = 1000) -> dict[str, int]: ...
    async def reap_async(self, limit: int = 1000) -> dict[str, int]: ...
    def purge(self, older_than: float) -> int: ...
    async def purge_async(self, older_than: float) -> int: ...

@final
class Response:
    """A fetched page."""

    @property
    def url(self) -> str: ...
    @property
    def final_url(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def wire_bytes(self) -> int: ...

@final
class Fetcher:
    """A polite, bounded, SSRF-guarded HTTP fetcher."""

    def __new__(cls, config_json: str) -> Fetcher: ...
    def fetch(self, url: str) -> Response: ...
    async def fetch_async(self, url: str) -> Response: ...
    def fetch_many(self, urls: list[str]) -> list[Any]: ...
    def fetch_extract_many(self, urls: list[str], template: Template) -> list[Any]: ...
    async def fetch_many_async(self, urls: list[str]) -> list[Any]: ...
    def stream(self, in_flight: int, buffered: int) -> FetchStream: ...
    def stream_extract(self, template: Template, in_flight: int, buffered: int) -> FetchStream: ...

@final
class FetchStream:
    """Results of a streaming fetch, in the order they complete."""

    def pending(self) -> int: ...
    def push(self, urls: list[str]) -> None: ...
    def try_take(self, max: int) -> list[tuple[str, Any]]: ...
    def take(self, max: int, want: int, linger: float) -> list[tuple[str, Any]]: ...
    def take_async(
        self,
        max: int,
        schedule: Callable[..., Any],
        deliver: Callable[[list[tuple[str, Any]]], None],
    ) -> None: ...
    def close(self) -> None: ...

@final
class Template:
    """A compiled extraction template."""

    @staticmethod
    def from_json(text: str, origin: str = "<json>") -> Template: ...
    @staticmethod
    def from_yaml(text: str, origin: str = "<yaml>") -> Template: ...
    @property
    def id(self) -> str: ...
    @property
    def field_names(self) -> list[str]: ...
    @property
    def engine(self) -> Literal["fast", "dom"]: ...
    def _extract_dom(self, html: str, base_url: str) -> list[dict[str, Any]]: ...
    def _analyse(
        self, html: str, base_url: str
    ) -> tuple[list[dict[str, Any]], list[str], str | None]: ...
    def _analyse_dom(
        self, html: str, base_url: str
    ) -> tuple[list[dict[str, Any]], list[str], str | None]: ...
    def extract(self, html: str, base_url: str) -> list[dict[str, Any]]: ...
    def extract_many(self, pages: list[tuple[str, str]]) -> list[list[dict[str, Any]]]: ...
    def field_report(self, html: str) -> dict[str, Any]: ...
    @property
    def fingerprint(self) -> str: ...
    def links(self, html: str, base_url: str) -> list[str]: ...
    def next_page(self, html: str, base_url: str) -> str | None: ...

@final
class TemplateRegistry:
    """Templates of a directory, by id."""

    def __new__(cls, path: str) -> TemplateRegistry: ...
    def get(self, template_id: str) -> Template: ...
    def ids(self) -> list[str]: ...

@final
class Worker:
    """A scraping worker (see ``scraperv4.worker.Worker``)."""

    def __new__(
        cls,
        queue: JobQueue,
        *,
        worker_id: str,
        templates_dir: str | None = None,
        templates: list[Template] = ...,
        fetch_config_json: str = "{}",
        concurrency: int = 32,
        claim_batch: int | None = None,
        heartbeat: float = 30.0,
        grace_period: float = 30.0,
        job_timeout: float = 3600.0,
        extract_timeout: float = 60.0,
        idle_poll: float = 0.5,
        exit_when_done: bool = False,
        reap_interval: float = 5.0,
        metrics_addr: str | None = None,
        jsonl_path: str | None = None,
        export_interval: float = 1.0,
        on_item: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        adaptive_concurrency: bool = True,
        min_concurrency: int = 1,
        cpu_max: float = 95.0,
        memory_max: float = 85.0,
        adapt_interval: float = 2.0,
        adapt_scope: str = "own",
        log_stats_interval: float = 0.0,
    ) -> Worker: ...
    def run(self) -> dict[str, Any]: ...
    async def run_async(self) -> str: ...
    def stop(self, immediate: bool = False) -> None: ...
    def progress(self) -> dict[str, Any]: ...
    @property
    def metrics_address(self) -> str | None: ...
    def metrics_text(self) -> str: ...
    @property
    def worker_id(self) -> str: ...

def extraction_stats() -> dict[str, Any]: ...
def _tree_dumps(html: str) -> tuple[str | None, str | None, str]: ...

TEXT_BLOCK_ELEMENTS: list[str]
TEXT_SKIPPED_ELEMENTS: list[str]
JOB_CONFIG_KEYS: list[str]
FAILURE_KINDS: list[str]

def crawl_job_id(crawl_id: str, url: str) -> str:
    """The id of the job that scrapes ``url`` in crawl ``crawl_id``."""

def default_crawl_id(template_id: str, urls: list[str]) -> str:
    """The crawl id of seed ``urls`` submitted with ``template_id`` when none is given."""

def error_kind(error: str) -> str:
    """The kind in front of a job's stored error (``other`` when there is none)."""

def export_jsonl(queue: JobQueue, path: str, trim: bool = False) -> tuple[int, int]:
    """Copies the queue's results log to a JSON Lines file; returns records written and
    log entries trimmed."""

def results_file_records(path: str) -> int:
    """Records a results file holds, from its checkpoint."""

@final
class ScalingPolicy:
    """The autoscaler's decision engine (see ``scraperv4.autoscale``)."""

    def __new__(cls, config_json: str) -> ScalingPolicy: ...
    def config(self) -> dict[str, Any]: ...
    def decide(
        self, now: float, runnable: int, workers: int, veto: str | None = None
    ) -> dict[str, Any]: ...

@final
class ClusterMetrics:
    """Cluster metrics of one queue (see ``scraperv4.scaling.metrics_collector``)."""

    def __new__(cls, history_len: int = 2880) -> ClusterMetrics: ...
    def sample(self, queue: JobQueue) -> dict[str, Any]: ...
    def history(self) -> list[dict[str, Any]]: ...
    def render(self) -> str: ...
    def serve(self, addr: str) -> str: ...
    def stop_serving(self) -> None: ...

@final
class Coordinator:
    """The coordinator server (see ``scraperv4.coordinator``)."""

    def __new__(
        cls,
        queue: JobQueue,
        addr: str,
        *,
        token: str | None = None,
        protect_reads: bool = True,
        insecure_no_auth: bool = False,
        allowed_hosts: list[str] = ...,
        body_limit: int = 1048576,
        request_timeout: float = 30.0,
        header_timeout: float = 10.0,
        max_connections: int = 1024,
        ws_max_connections: int = 64,
        ws_idle_timeout: float = 60.0,
        cors_origins: list[str] = ...,
        stats_interval: float = 1.0,
    ) -> Coordinator: ...
    def start(self) -> str: ...
    def stop(self) -> None: ...
    @property
    def address(self) -> str | None: ...
