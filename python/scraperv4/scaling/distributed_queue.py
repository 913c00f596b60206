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
import logging
import os
import threading
import time
from typing import Any, Optional, Union

from scraperv4.exceptions import InvalidJobError
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
        return cls(
            id=job.id,
            name=job.name,
            template_id=job.template_id,
            target_url=job.target_url,
            config=job.config,
            status=job.status,
            assigned_worker=job.assigned_worker,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            retry_count=job.retry_count,
            max_retries=job.max_retries,
            priority=job.priority,
            attempt=job.attempt,
            error=job.error,
            result=job.result,
            token=job.token,
        )


class DistributedJobQueue:
    """Distributed job queue (seed-compatible API over :class:`scraperv4.queue.JobQueue`).

    Args:
        redis_url: the queue URL (default as in the seed); ``REDIS_URL`` is used when the
            argument is ``None``.
        **options: queue settings (``lease``, ``name``, ... see :class:`JobQueue`).
    """

    def __init__(
        self, redis_url: Optional[str] = "redis://localhost:6379/0", **options: Any
    ) -> None:
        url = redis_url or os.environ.get("REDIS_URL", "redis://localhost:6379/0")
        self.queue = JobQueue(url, **options)
        self.worker_id: Optional[str] = None
        self.heartbeat_interval = 30
        self.job_timeout = 3600
        # job id -> the claims made through this client and not settled: (worker, token)
        self._claimed: dict[str, list[tuple[str, int]]] = {}
        # workers this client claimed for (their heartbeats list exactly their claims)
        self._claimers: set[str] = set()
        # Held by a claim until its claim is recorded, and by a heartbeat while it reads the
        # claims and sends them: a heartbeat from another thread never sees a claim
        # half-recorded (it would give the job back) nor a dict changing under it.
        self._claims_lock = threading.Lock()

    def register_worker(self, worker_id: str) -> bool:
        """Register this worker."""
        self.worker_id = worker_id
        self.queue.register_worker(worker_id)
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
        """Claim the highest-priority runnable job for ``worker_id`` (or ``None``)."""
        with self._claims_lock:
            self._claimers.add(worker_id)
            claimed = self.queue.claim(worker_id, 1)
            if not claimed:
                return None
            job = claimed[0]
            self._claimed.setdefault(job.id, []).append((worker_id, job.token))
        return ScrapingJob._from_job(job)

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
            claims = [c for c in self._claimed.get(job_id, []) if c[1] != token]
            if claims:
                self._claimed[job_id] = claims
            else:
                self._claimed.pop(job_id, None)

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
        try:
            target = JobStatus(status.value if isinstance(status, JobStatus) else status)
        except ValueError:
            raise InvalidJobError(
                f"job {job_id}: unknown status {status!r}; expected one of "
                + ", ".join(s.value for s in JobStatus),
                job_id,
            ) from None
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
        pending), or every job leased under its id when this client never claimed for it."""
        with self._claims_lock:
            if worker_id not in self._claimers:
                self.queue.heartbeat(worker_id)
                return
            held = [
                (job_id, token)
                for job_id, claims in self._claimed.items()
                for worker, token in claims
                if worker == worker_id
            ]
            beat = self.queue.heartbeat(worker_id, held)
        for job_id, token in beat.lost:
            self._forget(job_id, token)

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
