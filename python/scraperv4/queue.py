"""The distributed job queue: leases, fencing tokens and exact counts.

One API over three backends, chosen by the URL:

- ``redis://[user:password@]host[:port][/db]`` or ``rediss://...`` (TLS): a fleet of
  workers on many machines;
- ``sqlite:///path/to/queue.db``: one machine, durable (several processes may share it);
- ``memory://``: one process, for tests and notebooks.

The life of a job::

    pending --claim--> assigned --mark_running--> running --complete--> completed
       ^                  |  \\________________________/  |
       |  release /       |        fail (retries left)   +--fail (no retries)--> failed
       |  lease expired   v                                                     (dead letters;
       +------------- retrying (after a backoff delay)                          retry() by hand)
    any unfinished status --cancel--> cancelled

Each claim gives the job a new fencing token (``job.token``, unique within the queue for
ever). ``complete``, ``fail``, ``release`` and ``mark_running`` only take effect with the
current token, so a worker that was presumed dead (its lease expired and another worker
claimed the job) cannot overwrite the new owner's work: it gets an :class:`Ack` with
``reason == "stale"`` and nothing changes. An expired lease sends the job back to pending
without using up a retry; after ``max_lease_expiries`` of them the job fails for good.

>>> from scraperv4.queue import JobQueue, JobSpec
>>> queue = JobQueue("memory://")
>>> job_id = queue.submit(JobSpec("https://example.com/", template_id="product", priority=5))
>>> [job] = queue.claim("worker-1")
>>> job.status, job.attempt
(<JobStatus.ASSIGNED: 'assigned'>, 1)
>>> queue.complete(job, result={"items": 3}).accepted
True
>>> queue.stats().by_status["completed"]
1
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Optional, TypedDict, Union, cast, overload

from scraperv4 import _core
from scraperv4.exceptions import InvalidJobError

__all__ = [
    "KEEP",
    "Ack",
    "AsyncJobQueue",
    "DomainState",
    "Feedback",
    "Heartbeat",
    "Job",
    "JobList",
    "JobQueue",
    "JobSpec",
    "JobStatus",
    "QueueStats",
    "QueueTotals",
    "Submitted",
]

#: Answer of a fenced or administrative call: ``accepted`` (truthy), ``reason``
#: (``accepted``, ``stale`` or ``not_found``), ``status`` and ``token`` of the job now, and
#: for ``fail`` the ``outcome`` (``retrying`` or ``failed``) and ``not_before``.
Ack = _core.Ack


class JobStatus(str, enum.Enum):
    """Where a job is in its life (the scaling guide's values, plus ``cancelled``)."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


@dataclasses.dataclass
class JobSpec:
    """A job to submit.

    Args:
        target_url: the page to fetch (http or https, with a host).
        template_id: the extraction template the worker uses.
        name: a human-readable name.
        config: job settings, a JSON-serialisable dict (at most 1 MiB of JSON by default).
        priority: higher runs first (-1,000,000 to 1,000,000); FIFO within a priority.
        max_retries: retries after the first attempt before the job ends ``failed``.
        id: the job's id; a UUID is generated when ``None``. Submitting an id the queue
            already has changes nothing (idempotent submission).
        crawl_id, depth, parent_id: where a discovered link came from.
    """

    target_url: str
    template_id: str = ""
    name: str = ""
    config: Optional[Mapping[str, Any]] = None
    priority: int = 0
    max_retries: int = 3
    id: Optional[str] = None
    crawl_id: Optional[str] = None
    depth: int = 0
    parent_id: Optional[str] = None


class Job:
    """A job as stored (a snapshot: it does not change when the queue does).

    Times are seconds since the epoch (like :func:`time.time`). ``token`` is the fencing token
    of the latest claim, ``attempt`` the number of claims.
    """

    __slots__ = ("_config", "_record")

    def __init__(self, record: _core.JobRecord) -> None:
        self._record = record
        self._config: Optional[dict[str, Any]] = None

    @property
    def id(self) -> str:
        """The job's id."""
        return self._record.id

    @property
    def name(self) -> str:
        """Human-readable name."""
        return self._record.name

    @property
    def template_id(self) -> str:
        """The extraction template."""
        return self._record.template_id

    @property
    def target_url(self) -> str:
        """The page to fetch."""
        return self._record.target_url

    @property
    def config(self) -> dict[str, Any]:
        """Job settings (decoded from JSON on first access)."""
        if self._config is None:
            self._config = json.loads(self._record.config_json)
        return self._config

    @property
    def priority(self) -> int:
        """Higher runs first."""
        return self._record.priority

    @property
    def status(self) -> JobStatus:
        """The status when this snapshot was taken."""
        return JobStatus(self._record.status)

    @property
    def assigned_worker(self) -> Optional[str]:
        """The worker holding (or that last held) the job."""
        return self._record.assigned_worker

    @property
    def created_at(self) -> float:
        """Submission time."""
        return self._record.created_at

    @property
    def started_at(self) -> Optional[float]:
        """Time of the latest claim."""
        return self._record.started_at

    @property
    def completed_at(self) -> Optional[float]:
        """When it reached completed, failed or cancelled."""
        return self._record.completed_at

    @property
    def retry_count(self) -> int:
        """Retries scheduled so far (failures and expired leases)."""
        return self._record.retry_count

    @property
    def max_retries(self) -> int:
        """Retries allowed after the first attempt."""
        return self._record.max_retries

    @property
    def result(self) -> Any:
        """The result given to :meth:`JobQueue.complete` (decoded JSON), or ``None``."""
        raw = self._record.result_json
        return None if raw is None else json.loads(raw)

    @property
    def error(self) -> Optional[str]:
        """The last error."""
        return self._record.error

    @property
    def attempt(self) -> int:
        """Number of claims so far."""
        return self._record.attempt

    @property
    def token(self) -> int:
        """The fencing token of the current (or last) claim: unique within the queue for
        ever. Every change to a claimed job carries it (pass the job, or ``token=``)."""
        return self._record.token

    @property
    def lease_expiries(self) -> int:
        """Leases of this job that expired (counted apart from its retries)."""
        return self._record.lease_expiries

    @property
    def lease_deadline(self) -> Optional[float]:
        """When the current lease runs out unless renewed by a heartbeat."""
        return self._record.lease_deadline

    @property
    def not_before(self) -> Optional[float]:
        """Not claimable before this time (a retry's backoff)."""
        return self._record.not_before

    @property
    def crawl_id(self) -> Optional[str]:
        """The crawl this job belongs to."""
        return self._record.crawl_id

    @property
    def depth(self) -> int:
        """Link depth from the crawl's seed URLs."""
        return self._record.depth

    @property
    def parent_id(self) -> Optional[str]:
        """The job whose page linked here."""
        return self._record.parent_id

    def __repr__(self) -> str:
        worker = f", worker={self.assigned_worker!r}" if self.assigned_worker else ""
        return (
            f"Job(id={self.id!r}, status={self.status.value!r}, url={self.target_url!r}, "
            f"priority={self.priority}, attempt={self.attempt}{worker})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return (self.id, self.token, self.status) == (other.id, other.token, other.status)

    def __hash__(self) -> int:
        return hash((self.id, self.token))


@dataclasses.dataclass(frozen=True)
class QueueTotals:
    """Counters that only grow, kept by the queue as jobs move (they survive the retention
    purge): rates and durations of a whole fleet come from their differences over time.

    Attributes:
        completed: jobs that reached ``completed``.
        failed: jobs that reached ``failed``.
        cancelled: jobs cancelled.
        retried: retries scheduled after failed attempts.
        expired: leases that expired (the job went back to pending, or failed after
            ``max_lease_expiries``).
        replayed: failed or cancelled jobs put back to pending by hand (``failed - replayed``
            is what stayed failed).
        duration_ms_sum: summed duration of completed jobs' successful attempts, ms.
        duration_count: completed jobs with a measured duration.
        duration_buckets: completed jobs per duration bucket (not cumulative); bucket ``i``
            holds durations up to ``duration_bounds_ms[i]``, the last one those above.
        duration_bounds_ms: the buckets' upper bounds, ms.
    """

    completed: int
    failed: int
    cancelled: int
    retried: int
    expired: int
    replayed: int
    duration_ms_sum: int
    duration_count: int
    duration_buckets: tuple[int, ...]
    duration_bounds_ms: tuple[int, ...]

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> QueueTotals:
        return cls(
            **{
                k: raw[k]
                for k in ("completed", "failed", "cancelled", "retried", "expired", "replayed")
            },
            duration_ms_sum=raw["duration_ms_sum"],
            duration_count=raw["duration_count"],
            duration_buckets=tuple(raw["duration_buckets"]),
            duration_bounds_ms=tuple(raw["duration_bounds_ms"]),
        )


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """Counts maintained as jobs move (never by scanning).

    Attributes:
        by_status: jobs per status (every status present).
        total: all stored jobs.
        runnable: what workers could start within the queue's ``runnable_horizon``:
            pending jobs and due retries of sites that need no pacing, and per paced site
            what its delay and in-flight limit let through in that time (a site limited to
            one request a second adds about one per second of horizon however many jobs it
            has). What more workers could work on: the autoscaler scales on it.
        active_workers: workers with a heartbeat within the liveness window.
        total_workers: registered workers.
        totals: counters that only grow (see :class:`QueueTotals`).
        paced_keys: politeness keys with their own queue (paced, limited or throttled).
        waiting_keys: of those, keys waiting for their next allowed time.
    """

    by_status: dict[str, int]
    total: int
    runnable: int
    active_workers: int
    total_workers: int
    totals: QueueTotals
    paced_keys: int = 0
    waiting_keys: int = 0

    @property
    def pending(self) -> int:
        """Jobs waiting to be claimed (``pending`` status)."""
        return self.by_status["pending"]

    @property
    def held(self) -> int:
        """Jobs held by workers: ``assigned`` plus ``running`` (what ``stats --watch`` and
        the metrics call running jobs)."""
        return self.by_status.get("assigned", 0) + self.by_status.get("running", 0)

    def _repr_html_(self) -> str:
        from scraperv4._display import table

        rows = [*self.by_status.items(), ("total", self.total), ("runnable", self.runnable),
                ("held by workers", self.held),
                ("workers", f"{self.active_workers} active of {self.total_workers}")]  # fmt: skip
        return table(["", "jobs"], rows, caption="queue")

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> QueueStats:
        return cls(
            by_status=dict(raw["by_status"]),
            total=raw["total"],
            runnable=raw["runnable"],
            active_workers=raw["active_workers"],
            total_workers=raw["total_workers"],
            totals=QueueTotals._from_native(raw["totals"]),
            paced_keys=raw.get("paced_keys", 0),
            waiting_keys=raw.get("waiting_keys", 0),
        )


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat did.

    Attributes:
        renewed: leases renewed.
        draining: the worker is asked to drain (claim nothing more, finish, leave).
        lost: ``(job id, token)`` claims the worker listed that are no longer its own (the
            lease expired and the job went back, or it was cancelled): stop working on them.
        released: jobs leased under the worker's id that it did not list, given back.
        superseded: another run registered the worker's id since this session did: nothing
            was renewed; stop (the id and its jobs belong to the newer run).
    """

    renewed: int
    draining: bool
    lost: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    released: int = 0
    superseded: bool = False


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What a submission did: the jobs' ids, and for each whether it was new (``False``:
    the queue already had a job with that id, left as it was)."""

    ids: list[str]
    created: list[bool]

    @property
    def new(self) -> int:
        """Jobs queued by this submission."""
        return sum(self.created)

    @property
    def existing(self) -> int:
        """Jobs the queue already had (idempotent submission)."""
        return len(self.ids) - self.new


class JobList(list[Job]):  # type: ignore[misc,unused-ignore]
    """A list of jobs that shows as a table in a notebook."""

    def _repr_html_(self) -> str:
        from scraperv4._display import table, when

        rows = [(j.id, j.status.value, j.target_url, j.retry_count, when(j.created_at),
                 j.error or "") for j in self]  # fmt: skip
        headers = ["id", "status", "url", "retries", "created", "error"]
        return table(headers, rows, caption=f"{len(self)} jobs")


class _Closed:
    """Stands in for a closed queue's handle: every use says so."""

    def __getattr__(self, name: str) -> Any:
        from scraperv4.exceptions import QueueError

        raise QueueError("this queue is closed: open a new one")


# One encoder for every job: json.dumps builds a new one per call when given options.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

JobLike = Union[Job, str]
# The queue classes have a `list` method, which shadows the builtin in their annotations.
_JobList = list[Job]
_StrList = list[str]
_WorkerList = list[dict[str, Any]]
_AckList = list[Ack]
SpecLike = Union[JobSpec, Mapping[str, Any]]


def _submission(spec: SpecLike) -> dict[str, Any]:
    if not isinstance(spec, JobSpec):
        fields = dict(spec)
        try:
            spec = JobSpec(**fields)
        except TypeError as error:
            job_id = fields.get("id")
            raise InvalidJobError(f"job {job_id or '<new>'}: {error}", job_id) from None
    try:
        config_json = _JSON.encode(dict(spec.config)) if spec.config else "{}"
    except (TypeError, ValueError) as error:
        raise InvalidJobError(
            f"job {spec.id or '<new>'}: config is not JSON-serialisable: {error}", spec.id
        ) from None
    return {
        "id": spec.id,
        "name": spec.name,
        "template_id": spec.template_id,
        "target_url": spec.target_url,
        "config_json": config_json,
        "priority": int(spec.priority),
        "max_retries": int(spec.max_retries),
        "crawl_id": spec.crawl_id,
        "depth": int(spec.depth),
        "parent_id": spec.parent_id,
    }


def _token(job: JobLike, token: Optional[int]) -> tuple[str, int]:
    if isinstance(job, Job):
        return job.id, job.token if token is None else token
    if token is None:
        raise TypeError("pass the Job from claim(), or its id with token=<fencing token>")
    return job, token


def _held(held: Optional[Iterable[Union[Job, tuple[str, int]]]]) -> Optional[list[tuple[str, int]]]:
    if held is None:
        return None
    return [(h.id, h.token) if isinstance(h, Job) else (str(h[0]), int(h[1])) for h in held]


def _result_json(result: Any) -> Optional[str]:
    return None if result is None else _JSON.encode(result)


def _completions(
    jobs: Iterable[Job], results: Optional[Iterable[Any]]
) -> list[tuple[str, int, Optional[str]]]:
    jobs = list(jobs)
    encoded = [None] * len(jobs) if results is None else [_result_json(r) for r in results]
    if len(encoded) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(encoded)} results")
    return [(job.id, job.token, result) for job, result in zip(jobs, encoded)]


#: What a failure says about its site (see :meth:`JobQueue.fail`).
Feedback = Literal["throttled", "error"]


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: Leave an override as it is (:meth:`JobQueue.set_domain`).
KEEP: Any = _Keep()


class DomainState(TypedDict):
    """A politeness key as the queue sees it (times in seconds since the epoch)."""

    key: str
    waiting: int  # jobs in the key's own queue
    inflight: int
    delay: float  # seconds between two requests now (floor or adaptive, the larger)
    concurrency: int  # requests in flight allowed (0: no limit)
    ready_at: Optional[float]  # None: ready now
    throttled: int  # 429/503 answers reported
    errors: int  # timeouts and connection errors reported
    last_throttled: Optional[float]
    last_error: Optional[float]
    paced: bool  # the key has its own queue
    delay_override: Optional[float]
    concurrency_override: Optional[int]
    crawl_delay: float  # robots.txt Crawl-delay in force (0: none)
    paused_until: Optional[float]  # a Retry-After pause
    now: float  # the backend's clock


_DomainList = list[DomainState]


def _overrides(delay: Any, concurrency: Any) -> tuple[Optional[float], Optional[int], bool, bool]:
    """``(delay, concurrency, clear_delay, clear_concurrency)`` for the native call."""
    return (
        None if delay is KEEP or delay is None else float(delay),
        None if concurrency is KEEP or concurrency is None else int(concurrency),
        delay is None,
        concurrency is None,
    )


def _status_name(status: Union[JobStatus, str]) -> str:
    return status.value if isinstance(status, JobStatus) else str(status)


class JobQueue:
    """A job queue (synchronous API; the GIL is released while the backend works).

    Args:
        url: ``redis://...``, ``rediss://...``, ``sqlite:///path.db`` or ``memory://``.
        name: queue name (several queues may share one backend).
        prefix: Redis key prefix.
        lease: seconds a claim stays valid without a heartbeat (visibility timeout).
        max_config_bytes: largest accepted job config, bytes of JSON.
        retry_base, retry_cap: first and longest retry delay, seconds (exponential, jittered).
        retention: seconds finished jobs are kept before :meth:`reap` deletes them.
        worker_liveness: seconds without heartbeat after which a worker counts as stale.
        worker_expiry: seconds without heartbeat after which :meth:`reap` removes a worker
            from the registry (its jobs given back).
        max_lease_expiries: expired leases after which a job fails for good (expired leases
            do not use up the job's retries).
        durable_commits: SQLite: every commit survives an operating-system crash
            (``synchronous=FULL``; off, such a crash can lose the last commits).
        operation_timeout: longest wait for any backend call, seconds.
        allow_insecure_tls: accept ``rediss://...#insecure`` (no certificate check).
        dedup: remember every URL queued, in bounded memory (a Bloom filter on Redis, a
            table of fingerprints on SQLite), so a URL is not queued again — even after
            its job record was purged — until its revisit interval has passed
            (docs/scaling.md). URLs are compared in canonical form, within their crawl.
        dedup_capacity: URLs the filter's first layer holds at ``dedup_error_rate`` (each
            further layer twice as many); size it to the URLs expected.
        dedup_error_rate: the false-positive rate promised (a new URL taken for seen).
        revisit: seconds after which a URL may be queued again (``None``: never); a job's
            config may set its own (``"revisit"``), which its discovered jobs inherit.
        dedup_bucket: width of the recrawl time buckets, seconds (default a quarter of
            ``revisit``, or a day); fixed when the filter is created.
        dedup_ignore_params: query parameters ignored when comparing URLs (exact names, or
            prefixes ending in ``*``); default ``utm_*``, ``gclid``, ``fbclid`` and others.
        results_max_len: the results log keeps about this many entries (the reaper deletes
            the oldest); an export that falls further behind loses entries and logs a warning
            saying so. ``None``: the log grows until it is trimmed.
        shards: Redis: spread the queue over this many shards (hash tags, so slots and
            masters of a Redis Cluster), fixed when the queue is created; a politeness key's
            jobs all go to one shard. ``None``: as the queue was created (one shard for a new
            queue). See docs/scaling.md.
        shared_configs: discovered jobs store a config their page's links share once, by
            reference (docs/scaling.md); off, every job keeps its own copy — for a rolling
            upgrade while clients of an older release, which cannot read such jobs, still
            use the queue.

    Raises:
        ConfigError: a bad URL or setting.
        QueueUnavailableError: the backend cannot be reached.
    """

    def __init__(self, url: str = "memory://", **options: Any) -> None:
        self._inner = _core.JobQueue.open(url, **options)

    def __repr__(self) -> str:
        return f"JobQueue({self._inner.location!r})"

    def close(self) -> None:
        """Let go of the backend (its connections close once no worker uses them); the
        queue cannot be used afterwards. Also done by ``with JobQueue(...) as queue:``."""
        self._inner = _Closed()  # type: ignore[assignment]

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The backend URL, password removed."""
        return self._inner.location

    @property
    def lease(self) -> float:
        """Lease length, seconds."""
        return self._inner.lease

    @property
    def shards(self) -> int:
        """The number of shards the queue is spread over (1 but for a sharded Redis queue)."""
        return self._inner.shards

    def submit(self, job: SpecLike) -> str:
        """Submit one job; returns its id (an existing id is left as it is)."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: Iterable[SpecLike]) -> _StrList:
        """Submit a batch in one round trip (Redis: per 1,000 jobs); returns the ids.

        Raises:
            InvalidJobError: a job is invalid (nothing of the batch is submitted).
        """
        return self.submit_batch(jobs).ids

    def submit_batch(self, jobs: Iterable[SpecLike]) -> Submitted:
        """:meth:`submit_many`, also saying which jobs were new."""
        answer = self._inner.submit([_submission(j) for j in jobs])
        return Submitted([job_id for job_id, _ in answer], [created for _, created in answer])

    def claim(self, worker_id: str, limit: int = 1, *, start: bool = False) -> _JobList:
        """Claim up to ``limit`` jobs in one atomic step (none while the worker drains).

        Each claim gets a fencing token (``job.token``) that every later change must carry.
        ``start=True`` marks them ``running`` at once (no :meth:`mark_running` round trip).
        """
        return [Job(r) for r in self._inner.claim(worker_id, limit, start)]

    def mark_running(self, job: JobLike, token: Optional[int] = None) -> Ack:
        """Record that the worker started the job (fenced)."""
        return self._inner.mark_running(*_token(job, token))

    def complete(self, job: JobLike, result: Any = None, token: Optional[int] = None) -> Ack:
        """Complete the job with a JSON-serialisable ``result`` (fenced)."""
        job_id, token = _token(job, token)
        return self._inner.complete(job_id, token, _result_json(result))

    def complete_many(
        self, jobs: Iterable[Job], results: Optional[Iterable[Any]] = None
    ) -> _AckList:
        """Complete many claimed jobs in one round trip, each fenced by its own token.

        ``results`` gives one JSON-serialisable result per job (default: none).
        """
        return self._inner.complete_many(_completions(jobs, results))

    def fail(
        self,
        job: JobLike,
        error: str,
        *,
        retryable: bool = True,
        token: Optional[int] = None,
        feedback: Optional[Feedback] = None,
        retry_after: Optional[float] = None,
    ) -> Ack:
        """Record a failed attempt (fenced): retried after a backoff, or ``failed``.

        ``feedback`` tells the queue what the failure says about the job's site, for the
        whole fleet: ``"throttled"`` (a 429 or 503 answer; ``retry_after`` its Retry-After
        seconds, which pauses the site) or ``"error"`` (a timeout or connection failure).
        Either doubles the site's delay between requests; successes lower it again.
        """
        job_id, token = _token(job, token)
        return self._inner.fail(job_id, token, error, retryable, feedback, retry_after)

    def release(self, job: JobLike, token: Optional[int] = None) -> Ack:
        """Give the job back at once without counting a retry (graceful shutdown)."""
        return self._inner.release(*_token(job, token))

    def cancel(self, job_id: str) -> Ack:
        """Cancel an unfinished job; the worker holding it will be refused."""
        return self._inner.cancel(job_id)

    def retry(self, job_id: str) -> Ack:
        """Put a failed or cancelled job back to pending with its retries reset."""
        return self._inner.retry(job_id)

    def get(self, job_id: str) -> Optional[Job]:
        """The job, or ``None``. Raises ``CorruptJobError`` for an unreadable record."""
        record = self._inner.get(job_id)
        return None if record is None else Job(record)

    def list(self, status: Union[JobStatus, str], offset: int = 0, limit: int = 100) -> _JobList:
        """Jobs with ``status``, paged (pending in claim order, finished newest first)."""
        records, _corrupt = self._inner.list(_status_name(status), offset, limit)
        return JobList(Job(r) for r in records)

    def dead_letters(self, offset: int = 0, limit: int = 100) -> _JobList:
        """Failed jobs (out of retries), newest first, each with its last ``error``."""
        return self.list(JobStatus.FAILED, offset, limit)

    def stats(self) -> QueueStats:
        """Counts per status, total, runnable backlog and workers (one round trip)."""
        return QueueStats._from_native(self._inner.stats())

    def recount_by_scan(self) -> dict[str, int]:
        """Counts by reading every job record: slow, only to check :meth:`stats`."""
        return dict(self._inner.recount_by_scan())

    def register_worker(self, worker_id: str, *, session: Optional[str] = None) -> int:
        """Register a worker (clears its drain flag); returns the jobs given back.

        ``session``: a value unique to this run of the worker (a random UUID). Registering
        with one takes the id over: jobs still leased under it (an earlier run's, killed
        before it could give them back) return to pending now — counted as expired leases —
        and heartbeats sent with the earlier run's session report ``superseded``.
        """
        return self._inner.register_worker(worker_id, session)

    def heartbeat(
        self,
        worker_id: str,
        held: Optional[Iterable[Union[Job, tuple[str, int]]]] = None,
        *,
        session: Optional[str] = None,
    ) -> Heartbeat:
        """Renew the worker's liveness and the leases of the jobs it holds.

        ``held``: the jobs (or ``(id, token)`` claims) the worker is working on — exactly
        those are renewed, jobs leased under its id that are not listed (a claim whose reply
        was lost, a job it dropped) are given back (counted as expired leases), and listed
        claims that are no longer its own come back in :attr:`Heartbeat.lost`. Without it,
        every job leased under the id is renewed (for scripts that do not track their
        claims). ``session``: the run's session (see :meth:`register_worker`); when another
        run has registered the id since, nothing is renewed and :attr:`Heartbeat.superseded`
        is true.
        """
        answer = self._inner.heartbeat(worker_id, _held(held), session)
        return Heartbeat(*answer)

    def drain(self, worker_id: str, draining: bool = True) -> bool:
        """Ask a worker to stop claiming and leave; False when it is not registered."""
        return self._inner.set_draining(worker_id, draining)

    @overload
    def unregister_worker(self, worker_id: str) -> int: ...
    @overload
    def unregister_worker(self, worker_id: str, *, session: str) -> Optional[int]: ...
    def unregister_worker(self, worker_id: str, *, session: Optional[str] = None) -> Optional[int]:
        """Remove a worker; jobs it still holds go back to pending. Returns how many — or,
        with the run's ``session``, ``None`` when another run has taken the id over since
        (then nothing is done: the id and its jobs are that run's)."""
        return self._inner.unregister_worker(worker_id, session)

    def workers(self) -> _WorkerList:
        """Registered workers: id, registered_at, last_heartbeat, draining, jobs, state."""
        return self._inner.workers()

    def reap(self, limit: int = 1000) -> dict[str, int]:
        """Requeue expired leases (or fail jobs whose leases expired too often), remove
        workers silent for ``worker_expiry`` and purge old finished jobs.

        Any client may run it; returns ``{"requeued", "failed", "purged", "workers_expired"}``.
        """
        return self._inner.reap(limit)

    def purge(self, older_than: float) -> int:
        """Delete jobs that finished more than ``older_than`` seconds ago."""
        return self._inner.purge(older_than)

    def politeness_key(self, url: str) -> str:
        """The key this queue paces a job for ``url`` by (see ``docs/politeness.md``)."""
        return self._inner.politeness_key(url)

    def domains(self, offset: int = 0, limit: int = 100) -> _DomainList:
        """The politeness keys the queue keeps a record of — paced, limited, throttled or
        with an override — most recently changed first (keys that need no pacing are not
        tracked: their jobs flow freely)."""
        return cast(_DomainList, self._inner.domains(offset, limit))

    def domain(self, key: str) -> Optional[DomainState]:
        """One politeness key, or ``None`` when the queue keeps no record of it."""
        return cast(Optional[DomainState], self._inner.domain(key))

    def set_domain(self, key: str, *, delay: Any = KEEP, concurrency: Any = KEEP) -> DomainState:
        """Set a key's own delay (seconds between two requests) or fleet-wide concurrency;
        ``None`` removes the override (the queue's value applies again)."""
        return cast(DomainState, self._inner.set_domain(key, *_overrides(delay, concurrency)))

    def policy(self) -> dict[str, float]:
        """The queue-wide politeness settings every worker follows."""
        return self._inner.policy()

    def set_policy(
        self,
        *,
        domain_delay: Optional[float] = None,
        domain_concurrency: Optional[int] = None,
        autothrottle: Optional[float] = None,
        max_domain_delay: Optional[float] = None,
    ) -> dict[str, float]:
        """Change the queue-wide politeness settings (those given); returns them all."""
        return self._inner.set_policy(
            domain_delay, domain_concurrency, autothrottle, max_domain_delay
        )


class AsyncJobQueue:
    """The asyncio twin of :class:`JobQueue` (same methods, awaitable).

    Create it with ``queue = await AsyncJobQueue.open(url, **options)``.
    """

    def __init__(self, native: _core.JobQueue) -> None:
        self._inner = native

    @classmethod
    async def open(cls, url: str = "memory://", **options: Any) -> AsyncJobQueue:
        """Connect to ``url`` (see :class:`JobQueue` for the options)."""
        native = await asyncio.get_running_loop().run_in_executor(
            None, lambda: _core.JobQueue.open(url, **options)
        )
        return cls(native)

    def __repr__(self) -> str:
        return f"AsyncJobQueue({self._inner.location!r})"

    async def close(self) -> None:
        """Let go of the backend; the queue cannot be used afterwards. Also done by
        ``async with await AsyncJobQueue.open(url) as queue:``."""
        self._inner = _Closed()  # type: ignore[assignment]

    async def __aenter__(self) -> AsyncJobQueue:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The backend URL, password removed."""
        return self._inner.location

    async def submit(self, job: SpecLike) -> str:
        """Submit one job; returns its id."""
        return (await self.submit_many([job]))[0]

    async def submit_many(self, jobs: Iterable[SpecLike]) -> _StrList:
        """Submit a batch in one round trip; returns the ids."""
        return (await self.submit_batch(jobs)).ids

    async def submit_batch(self, jobs: Iterable[SpecLike]) -> Submitted:
        """:meth:`submit_many`, also saying which jobs were new."""
        answer = await self._inner.submit_async([_submission(j) for j in jobs])
        return Submitted([job_id for job_id, _ in answer], [created for _, created in answer])

    async def claim(self, worker_id: str, limit: int = 1, *, start: bool = False) -> _JobList:
        """Claim up to ``limit`` jobs atomically."""
        return [Job(r) for r in await self._inner.claim_async(worker_id, limit, start)]

    async def mark_running(self, job: JobLike, token: Optional[int] = None) -> Ack:
        """Record that the worker started the job (fenced)."""
        return await self._inner.mark_running_async(*_token(job, token))

    async def complete(self, job: JobLike, result: Any = None, token: Optional[int] = None) -> Ack:
        """Complete the job (fenced)."""
        job_id, token = _token(job, token)
        return await self._inner.complete_async(job_id, token, _result_json(result))

    async def complete_many(
        self, jobs: Iterable[Job], results: Optional[Iterable[Any]] = None
    ) -> _AckList:
        """Complete many claimed jobs in one round trip (fenced)."""
        return await self._inner.complete_many_async(_completions(jobs, results))

    async def fail(
        self,
        job: JobLike,
        error: str,
        *,
        retryable: bool = True,
        token: Optional[int] = None,
        feedback: Optional[Feedback] = None,
        retry_after: Optional[float] = None,
    ) -> Ack:
        """Record a failed attempt (fenced; see :meth:`JobQueue.fail`)."""
        job_id, token = _token(job, token)
        return await self._inner.fail_async(job_id, token, error, retryable, feedback, retry_after)

    async def release(self, job: JobLike, token: Optional[int] = None) -> Ack:
        """Give the job back without counting a retry (fenced)."""
        return await self._inner.release_async(*_token(job, token))

    async def cancel(self, job_id: str) -> Ack:
        """Cancel an unfinished job."""
        return await self._inner.cancel_async(job_id)

    async def retry(self, job_id: str) -> Ack:
        """Put a failed or cancelled job back to pending."""
        return await self._inner.retry_async(job_id)

    async def get(self, job_id: str) -> Optional[Job]:
        """The job, or ``None``."""
        record = await self._inner.get_async(job_id)
        return None if record is None else Job(record)

    async def list(
        self, status: Union[JobStatus, str], offset: int = 0, limit: int = 100
    ) -> _JobList:
        """Jobs with ``status``, paged."""
        records, _corrupt = await self._inner.list_async(_status_name(status), offset, limit)
        return JobList(Job(r) for r in records)

    async def stats(self) -> QueueStats:
        """Maintained counts."""
        return QueueStats._from_native(await self._inner.stats_async())

    async def register_worker(self, worker_id: str, *, session: Optional[str] = None) -> int:
        """Register a worker (see :meth:`JobQueue.register_worker`)."""
        return await self._inner.register_worker_async(worker_id, session)

    async def heartbeat(
        self,
        worker_id: str,
        held: Optional[Iterable[Union[Job, tuple[str, int]]]] = None,
        *,
        session: Optional[str] = None,
    ) -> Heartbeat:
        """Renew liveness and leases (see :meth:`JobQueue.heartbeat`)."""
        answer = await self._inner.heartbeat_async(worker_id, _held(held), session)
        return Heartbeat(*answer)

    async def drain(self, worker_id: str, draining: bool = True) -> bool:
        """Set a worker's drain flag."""
        return await self._inner.set_draining_async(worker_id, draining)

    @overload
    async def unregister_worker(self, worker_id: str) -> int: ...
    @overload
    async def unregister_worker(self, worker_id: str, *, session: str) -> Optional[int]: ...
    async def unregister_worker(
        self, worker_id: str, *, session: Optional[str] = None
    ) -> Optional[int]:
        """Remove a worker, releasing its jobs (see :meth:`JobQueue.unregister_worker`)."""
        return await self._inner.unregister_worker_async(worker_id, session)

    async def workers(self) -> _WorkerList:
        """Registered workers."""
        return await self._inner.workers_async()

    async def reap(self, limit: int = 1000) -> dict[str, int]:
        """Requeue expired leases and purge old finished jobs."""
        return await self._inner.reap_async(limit)

    async def purge(self, older_than: float) -> int:
        """Delete jobs finished more than ``older_than`` seconds ago."""
        return await self._inner.purge_async(older_than)

    async def domains(self, offset: int = 0, limit: int = 100) -> _DomainList:
        """The politeness keys the queue keeps a record of (see :meth:`JobQueue.domains`)."""
        return cast(_DomainList, await self._inner.domains_async(offset, limit))

    async def domain(self, key: str) -> Optional[DomainState]:
        """One politeness key, or ``None``."""
        return cast(Optional[DomainState], await self._inner.domain_async(key))

    async def set_domain(
        self, key: str, *, delay: Any = KEEP, concurrency: Any = KEEP
    ) -> DomainState:
        """Set or clear a key's overrides (see :meth:`JobQueue.set_domain`)."""
        answer = await self._inner.set_domain_async(key, *_overrides(delay, concurrency))
        return cast(DomainState, answer)
