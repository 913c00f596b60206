"""The scaling guide's ``DistributedJobQueue``, on the leased, fenced queue of the Rust core.

A script written for the guide runs unchanged except its import line::

    from scraperv4.scaling.distributed_queue import DistributedJobQueue, JobStatus, ScrapingJob

What changed underneath, on purpose:

- ``get_next_job`` claims in one atomic step with a lease (the seed's ZPOPMAX-then-HGET lost
  the job when a worker died in between); jobs of a dead worker come back after one lease
  period (``cleanup_stale_jobs`` runs the reaper), not after two minutes of silence;
- ``update_job_status`` is fenced with the token of the claim: pass the :class:`ScrapingJob`
  that ``get_next_job`` returned (or its id, when this client claimed that job once and only
  once). A worker that was presumed dead and comes back cannot overwrite the job's new owner
  (it gets ``False``) — not even through the same client object;
- ``send_heartbeat`` renews exactly the jobs this client claimed for the worker and has not
  settled; any other job leased under the worker's id (a claim whose reply was lost) goes
  back to pending;
- ``FAILED`` retries with exponential backoff until ``max_retries`` *retries* have been used
  (the job then ends ``failed``, listed by :meth:`dead_letters`);
- ``get_queue_stats`` comes from counters maintained atomically (no scan, nothing mocked),
  with the seed's keys plus ``status_counts`` and ``runnable_jobs``;
- any URL the core accepts works: ``redis://``, ``rediss://``, ``sqlite:///path`` and
  ``memory://``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from enum import Enum
from typing import Any, Optional, Union

from scraperv4.exceptions import ConfigError, InvalidJobError
from scraperv4.queue import Job, JobQueue, JobSpec, JobStatus

__all__ = ["DistributedJobQueue", "JobStatus", "ScrapingJob"]

_log = logging.getLogger("scraperv4.scaling")


@dataclasses.dataclass
class ScrapingJob:
    """A job, constructible exactly as in the scaling guide (extra fields at the end)."""

    id: Optional[str]
    name: str
    template_id: str
    target_url: str
    config: dict[str, Any]
    status: JobStatus = JobStatus.PENDING
    assigned_worker: Optional[str] = None
    created_at: Optional[float] = None
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    retry_count: int = 0
    max_retries: int = 3
    priority: int = 0
    attempt: int = 0
    error: Optional[str] = None
    result: Any = None
    #: The fencing token of the claim that returned this job (0: not claimed).
    token: int = 0

    def __post_init__(self) -> None:
        if self.created_at is None:
            self.created_at = time.time()

    @classmethod
    def _from_job(cls, job: Job) -> ScrapingJob:
        # Straight from the native record (no property layer, no enum call, no JSON decode
        # of an empty config): this runs once per job of get_next_job.
        record = job._record
        config_json = record.config_json
        return cls(
            record.id,
            record.name,
            record.template_id,
            record.target_url,
            {} if config_json == "{}" else json.loads(config_json),
            _STATUSES[record.status],
            record.assigned_worker,
            record.created_at,
            record.started_at,
            record.completed_at,
            record.retry_count,
            record.max_retries,
            record.priority,
            record.attempt,
            record.error,
            None if record.result_json is None else json.loads(record.result_json),
            record.token,
        )


_STATUSES = {status.value: status for status in JobStatus}


class DistributedJobQueue:
    """Distributed job queue (seed-compatible API over :class:`scraperv4.queue.JobQueue`).

    Args:
        redis_url: the queue URL (default as in the seed); ``REDIS_URL`` is used when the
            argument is ``None``.
        prefetch: jobs claimed per round trip by :meth:`get_next_job` (default 1: one job
            per call, as in the seed). With ``k > 1`` a call that finds the worker's buffer
            empty claims up to ``k`` jobs at once and the next calls hand them out without a
            round trip. Buffered jobs are leased: :meth:`send_heartbeat` renews them, one
            whose lease ran out meanwhile is skipped (its claim is no longer current), and
            :meth:`release_prefetched` (or :meth:`close`) gives them back at once.
        **options: queue settings (``lease``, ``name``, ... see :class:`JobQueue`).
    """

    def __init__(
        self,
        redis_url: Optional[str] = "redis://localhost:6379/0",
        *,
        prefetch: int = 1,
        **options: Any,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigError(f"prefetch must be an integer >= 1, not {prefetch!r}")
        url = redis_url or os.environ.get("REDIS_URL", "redis://localhost:6379/0")
        self.queue = JobQueue(url, **options)
        self.prefetch = prefetch
        # worker id -> jobs claimed for it and not handed out yet, with the _clock()
        # of their claim (next to hand out last)
        self._buffered: dict[str, list[tuple[Job, float]]] = {}
        # worker id -> _clock() before its last heartbeat that renewed its claims
        self._renewed: dict[str, float] = {}
        self.worker_id: Optional[str] = None
        self.heartbeat_interval = 30
        #: Seconds a claim is renewed by send_heartbeat; past it the job goes back.
        self.job_timeout: float = 3600
        # job id -> the claims made through this client and not settled: (worker, token)
        self._claimed: dict[str, list[tuple[str, int]]] = {}
        # fencing token -> _clock() of its claim (for job_timeout)
        self._claimed_at: dict[int, float] = {}
        # worker id -> the session this client registered it with
        self._sessions: dict[str, str] = {}
        # workers this client claimed for (their heartbeats list exactly their claims)
        self._claimers: set[str] = set()
        # Held by a claim until its claim is recorded, and by a heartbeat while it reads the
        # claims and sends them: a heartbeat from another thread never sees a claim
        # half-recorded (it would give the job back) nor a dict changing under it.
        self._claims_lock = threading.Lock()
        # A script that never calls close() still gives its prefetched jobs back when the
        # object goes or the interpreter exits (else each waits out its lease, counted as an
        # expired lease although it never ran).
        self._finalizer = weakref.finalize(self, _release_buffered, self.queue, self._buffered)

    def register_worker(self, worker_id: str) -> bool:
        """Register this worker, as a new run of ``worker_id``: jobs still leased under the
        id (a crashed earlier run's) go back to pending now, and another client that
        registered the same id before is superseded (its heartbeats renew nothing; see
        :meth:`send_heartbeat`)."""
        self.worker_id = worker_id
        session = uuid.uuid4().hex
        self.queue.register_worker(worker_id, session=session)
        with self._claims_lock:
            self._sessions[worker_id] = session
        return True

    def submit_job(self, job: ScrapingJob) -> str:
        """Submit ``job`` (sets ``job.id`` when it was ``None``); returns the id."""
        job_id = self.queue.submit(
            JobSpec(
                target_url=job.target_url,
                template_id=job.template_id,
                name=job.name,
                config=job.config,
                priority=job.priority,
                max_retries=job.max_retries,
                id=job.id,
            )
        )
        job.id = job_id
        return job_id

    def get_next_job(self, worker_id: str) -> Optional[ScrapingJob]:
        """Claim the highest-priority runnable job for ``worker_id`` (or ``None``).

        With ``prefetch > 1``, the next job claimed for ``worker_id`` earlier, if any is
        still leased; otherwise up to ``prefetch`` jobs are claimed in one round trip.
        """
        stale: list[tuple[Job, float]] = []
        try:
            with self._claims_lock:
                self._claimers.add(worker_id)
                buffered = self._buffered.get(worker_id)
                while buffered:
                    job, claimed_at = buffered.pop()
                    if (worker_id, job.token) not in self._claimed.get(job.id, ()):
                        continue  # a heartbeat found the claim lost
                    # On this machine's clock from the claim or the last renewal: a lease
                    # that runs out within a tenth of its length would be lost before the
                    # caller gets going, so the job goes back and the next is taken.
                    renewed = max(claimed_at, self._renewed.get(worker_id, 0.0))
                    if renewed + self.queue.lease * 0.9 > _clock():
                        return ScrapingJob._from_job(job)
                    stale.append((job, claimed_at))
                started = _clock()
                claimed = self.queue.claim(worker_id, self.prefetch)
                if not claimed:
                    return None
                for job in claimed:
                    self._claimed.setdefault(job.id, []).append((worker_id, job.token))
                    self._claimed_at[job.token] = started
                job = claimed[0]
                if len(claimed) > 1:
                    self._buffered[worker_id] = [(later, started) for later in claimed[:0:-1]]
            return ScrapingJob._from_job(job)
        finally:
            # Outside the lock: a slow queue must not hold up the heartbeat.
            self._give_back_quietly(worker_id, stale)

    def _give_back(self, worker_id: str, items: list[tuple[Job, float]]) -> int:
        """Release buffered claims (the caller does not hold ``_claims_lock``); returns how
        many were still current. When the queue cannot be reached, the claims not given back
        stay buffered and held (the next heartbeat renews them; the next call tries again)."""
        released = 0
        for at, (job, _) in enumerate(items):
            try:
                released += self.queue.release(job, token=job.token).accepted
            except Exception:
                with self._claims_lock:
                    rest = [item for item in items[at:] if self._holds(worker_id, item[0])]
                    self._buffered[worker_id] = rest + self._buffered.get(worker_id, [])
                raise
            self._forget(job.id, job.token)
        return released

    def _give_back_quietly(self, worker_id: str, items: list[tuple[Job, float]]) -> None:
        if not items:
            return
        try:
            self._give_back(worker_id, items)
        except Exception as error:
            _log.warning("could not give back %d prefetched jobs yet: %s", len(items), error)

    def _holds(self, worker_id: str, job: Job) -> bool:
        return (worker_id, job.token) in self._claimed.get(job.id, ())

    def release_prefetched(self, worker_id: Optional[str] = None) -> int:
        """Give back the jobs claimed ahead for ``worker_id`` (every worker: ``None``) and
        not handed out; returns how many were still this client's to give back."""
        with self._claims_lock:
            workers = list(self._buffered) if worker_id is None else [worker_id]
            taken = [(worker, self._buffered.pop(worker, [])) for worker in workers]
        released = 0
        for at, (worker, items) in enumerate(taken):
            try:
                released += self._give_back(worker, items[::-1])
            except Exception:
                # This worker's claims not given back are buffered again by _give_back;
                # the other workers' were not tried: they go back to their buffers too.
                with self._claims_lock:
                    for later, rest in taken[at + 1 :]:
                        self._buffered[later] = rest + self._buffered.get(later, [])
                raise
        return released

    def close(self) -> None:
        """Give back prefetched jobs and let go of the queue (also done when the object is
        garbage-collected or the interpreter exits)."""
        try:
            self.release_prefetched()
        finally:
            self._finalizer.detach()
            self.queue.close()

    def __enter__(self) -> DistributedJobQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _claim_for(self, job: Union[str, ScrapingJob], worker_id: Optional[str]) -> Optional[int]:
        """The fencing token of the claim ``job`` refers to, or ``None`` when it cannot be
        known (never the job's current token: that would let a stale holder through)."""
        if isinstance(job, ScrapingJob) and job.token:
            return job.token
        job_id = job.id if isinstance(job, ScrapingJob) else job
        with self._claims_lock:
            claims = list(self._claimed.get(job_id or "", []))
        if worker_id is not None:
            claims = [claim for claim in claims if claim[0] == worker_id]
        if len(claims) == 1:
            return claims[0][1]
        if claims:
            _log.warning(
                "job %s was claimed %d times through this client: pass the ScrapingJob "
                "that get_next_job returned to say which claim is done",
                job_id,
                len(claims),
            )
        return None

    def _forget(self, job_id: str, token: int) -> None:
        with self._claims_lock:
            self._forget_locked(job_id, token)

    def _forget_locked(self, job_id: str, token: int) -> None:
        """Drop the claim ``(job_id, token)`` (caller holds ``_claims_lock``)."""
        claims = [c for c in self._claimed.get(job_id, []) if c[1] != token]
        if claims:
            self._claimed[job_id] = claims
        else:
            self._claimed.pop(job_id, None)
        self._claimed_at.pop(token, None)

    def update_job_status(
        self,
        job_id: Union[str, ScrapingJob],
        status: Union[JobStatus, str],
        error: Optional[str] = None,
        result: Optional[dict[str, Any]] = None,
        *,
        worker_id: Optional[str] = None,
    ) -> bool:
        """Move a job on; ``False`` when the job is unknown or the claim is no longer current.

        ``RUNNING``, ``COMPLETED``, ``FAILED`` / ``RETRYING`` (a failed attempt: retried with
        backoff or failed for good), ``PENDING`` (released) are fenced with the claim's token:
        pass the :class:`ScrapingJob` from ``get_next_job`` (or its id, when this client
        claimed the job only once; ``worker_id`` picks among several claims). ``CANCELLED``
        is not fenced.
        """
        job = job_id
        job_id = (job.id or "") if isinstance(job, ScrapingJob) else job
        if isinstance(status, JobStatus):
            target: Optional[JobStatus] = status
        else:
            value = status.value if isinstance(status, Enum) else status
            target = _STATUSES.get(str(value))
        if target is None:
            raise InvalidJobError(
                f"job {job_id}: unknown status {status!r}; expected one of "
                + ", ".join(s.value for s in JobStatus),
                job_id,
            )
        if target is JobStatus.CANCELLED:
            return self.queue.cancel(job_id).accepted
        if target is JobStatus.ASSIGNED:  # only a claim assigns a job
            raise InvalidJobError(
                f"job {job_id}: status 'assigned' is set by get_next_job, not by hand", job_id
            )
        token = self._claim_for(job, worker_id)
        if token is None:
            return False
        if target is JobStatus.RUNNING:
            ack = self.queue.mark_running(job_id, token=token)
            if not ack.accepted:
                self._forget(job_id, token)
            return ack.accepted
        if target is JobStatus.COMPLETED:
            ack = self.queue.complete(job_id, result, token=token)
        elif target in (JobStatus.FAILED, JobStatus.RETRYING):
            ack = self.queue.fail(job_id, error or "failed", token=token)
        else:  # PENDING: give it back
            ack = self.queue.release(job_id, token=token)
        # Settled, or refused because the claim is no longer current: either way it is over.
        self._forget(job_id, token)
        return ack.accepted

    def send_heartbeat(self, worker_id: str) -> None:
        """Renew the worker's liveness and the leases of the jobs it holds: exactly the ones
        this client claimed for it and has not settled (others leased under its id go back to
        pending), or every job leased under its id when this client never claimed for it.
        A claim older than ``job_timeout`` seconds is not renewed: the job goes back."""
        with self._claims_lock:
            session = self._sessions.get(worker_id)
            if worker_id not in self._claimers:
                self.queue.heartbeat(worker_id, session=session)
                return
            sent = _clock()
            held = self._held_locked(worker_id, sent)
            beat = self.queue.heartbeat(worker_id, held, session=session)
            stale: list[tuple[Job, float]] = []
            if beat.superseded:
                # Another client registered the id since: it owns every job leased under
                # it; this client's claims for it are over (their updates would be refused).
                _log.warning(
                    "worker id %s was registered again by another client: the %d jobs this "
                    "client claimed for it are given up",
                    worker_id,
                    len(held),
                )
                for job_id, token in held:
                    self._forget_locked(job_id, token)
                self._buffered.pop(worker_id, None)
            else:
                self._renewed[worker_id] = sent
                # Jobs claimed ahead wait at most one lease for the caller (a consumer that
                # stopped would keep them renewed for ever), and none once the worker drains.
                keep: list[tuple[Job, float]] = []
                for item in self._buffered.get(worker_id, []):
                    too_old = sent - item[1] > self.queue.lease
                    (stale if beat.draining or too_old else keep).append(item)
                if stale:
                    self._buffered[worker_id] = keep
        for job_id, token in beat.lost:
            self._forget(job_id, token)
        self._give_back_quietly(worker_id, stale)

    def _held_locked(self, worker_id: str, now: float) -> list[tuple[str, int]]:
        """The claims a heartbeat of ``worker_id`` renews (caller holds ``_claims_lock``).

        A claim held longer than job_timeout (a hung scrape, or code that stopped working on
        the job without updating it) is left out and forgotten: the queue gives the job
        back (counted as an expired lease)."""
        held: list[tuple[str, int]] = []
        overdue: list[tuple[str, int]] = []
        for job_id, claims in self._claimed.items():
            for worker, token in claims:
                if worker == worker_id:
                    late = now - self._claimed_at.get(token, now) > self.job_timeout
                    (overdue if late else held).append((job_id, token))
        for job_id, token in overdue:
            _log.warning(
                "job %s: claimed by worker %s more than job_timeout=%ss ago and not "
                "finished; its claim is given up and the job goes back to the queue",
                job_id,
                worker_id,
                self.job_timeout,
            )
            self._forget_locked(job_id, token)
        return held

    def cleanup_stale_jobs(self) -> dict[str, int]:
        """Requeue jobs whose lease expired (the seed's stale-worker sweep), purge old ones."""
        return self.queue.reap()

    def dead_letters(self, limit: int = 100) -> list[ScrapingJob]:
        """Jobs that ran out of retries, with their last error."""
        return [ScrapingJob._from_job(job) for job in self.queue.dead_letters(limit=limit)]

    def get_queue_stats(self) -> dict[str, Any]:
        """The seed's keys (pending_jobs, total_jobs, active_workers, total_workers), exact."""
        stats = self.queue.stats()
        return {
            "pending_jobs": stats.pending,
            "total_jobs": stats.total,
            "active_workers": stats.active_workers,
            "total_workers": stats.total_workers,
            "runnable_jobs": stats.runnable,
            "status_counts": stats.by_status,
        }


def _clock() -> float:
    """Seconds on a clock that also runs while the machine sleeps (a suspended host's
    leases run out on the server meanwhile)."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


_BOOTTIME: Optional[int] = (
    getattr(time, "CLOCK_BOOTTIME", None) if sys.platform == "linux" else None
)


def _release_buffered(queue: JobQueue, buffered: dict[str, list[tuple[Job, float]]]) -> None:
    """weakref.finalize callback: give back every buffered claim, best effort."""
    for items in buffered.values():
        for job, _ in items:
            try:
                queue.release(job, token=job.token)
            except Exception:  # at exit: the lease returns it anyway
                return
    buffered.clear()
