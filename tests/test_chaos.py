"""The chaos suite (issue #21): faults injected into a running fleet — real ``scraperv4
worker`` processes, a real ``redis-server``, the demo shop on 127.0.0.1 — and what they
cost: jobs lost, items recorded twice, time to recover.

Each scenario is bounded in time and prints a report (``pytest -s``). ``make test`` runs the
short versions; ``make chaos`` the long ones (``SCRAPERV4_CHAOS=long``). The figures are in
``docs/reliability.md``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from scraperv4.queue import JobQueue, JobStatus
from support.chaos import (
    LONG,
    ProductCrawl,
    Report,
    check_counts,
    pick,
    wait_for,
)
from support.fleet import Fleet
from support.redis_server import RedisServer

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(900 if LONG else 150),
]

LEASE = 2.0
#: Flags of every worker: short leases (faults show quickly), a fixed concurrency, the demo
#: site on loopback, no fetch retries (a job's attempt is one request).
WORKER_FLAGS = [
    "--lease", str(LEASE), "--heartbeat", "0.5", "--operation-timeout", "1",
    "--worker-liveness", "2", "--worker-expiry", "4", "--grace-period", "5",
    "--fixed-concurrency", "--ignore-robots", "--fetch-retries", "0",
]  # fmt: skip


def queue_for(url: str) -> JobQueue:
    """The test's own client, with the workers' queue settings."""
    return JobQueue(url, lease=LEASE, worker_liveness=2, worker_expiry=4, operation_timeout=2)


def held_by(queue: JobQueue, worker_id: str) -> list[tuple[str, int]]:
    """The (job, token) claims leased under ``worker_id`` now."""
    leased = [
        job
        for status in (JobStatus.ASSIGNED, JobStatus.RUNNING)
        for job in queue.list(status, 0, 10_000)
    ]
    return [(job.id, job.token) for job in leased if job.assigned_worker == worker_id]


def wait_registry_empty(queue: JobQueue) -> float:
    """After the fleet stopped: every worker, also the SIGKILLed ones, leaves the registry
    (the dead after ``worker_expiry``, through the reaper)."""

    def empty() -> bool:
        queue.reap()
        return not queue.workers()

    return wait_for(empty, 30, "the worker registry to empty")


def test_workers_sigkilled_and_replaced_every_2_s_lose_and_double_nothing(tmp_path: Path) -> None:
    jobs = pick(1000, 10_000)
    report = Report("4 workers, one SIGKILLed and replaced every 2 s", jobs=jobs)
    rng = random.Random(21)
    with (
        RedisServer() as server,
        ProductCrawl(tmp_path, jobs, latency=pick(0.2, 0.05)) as crawl,
        Fleet(server.url, crawl.templates, crawl.logs,
              [*WORKER_FLAGS, "--concurrency", pick("4", "8")]) as fleet,
    ):  # fmt: skip
        queue = queue_for(server.url)
        crawl.submit(queue, 1, jobs)
        for _ in range(4):
            fleet.start()
        kills: list[tuple[float, list[tuple[str, int]]]] = []
        deadline = time.monotonic() + pick(120, 800)
        next_kill = time.monotonic() + 2
        while queue.stats().by_status["completed"] < jobs:
            assert time.monotonic() < deadline, f"the crawl did not finish: {queue.stats()}"
            if time.monotonic() >= next_kill:
                victim = rng.choice(fleet.alive)
                victim.kill()
                kills.append((time.time(), held_by(queue, victim.worker_id)))
                fleet.start()
                next_kill += 2
            time.sleep(0.05)
        crawl.wait_done(queue, jobs, 60)
        codes = fleet.terminate_all()
        assert set(codes.values()) == {0}, codes

        # Every job held by a killed worker ran again elsewhere: when did it complete?
        recover = []
        for killed_at, held in kills:
            finishes = [job.completed_at for job_id, _ in held if (job := queue.get(job_id))]
            assert all(f is not None for f in finishes)
            if finishes:
                recover.append(max(f for f in finishes if f is not None) - killed_at)
        findings = crawl.verify(queue, server.url, range(1, jobs + 1))
        by_status = check_counts(queue)
        registry_s = wait_registry_empty(queue)
        stats = queue.stats()

    report.faults = {"SIGKILL worker": len(kills)}
    report.lost = len(findings.lost)
    report.doubled = findings.doubled_in_file
    report.recover_s = recover
    report.found = {
        "jobs in flight on the killed workers": sum(len(held) for _, held in kills),
        "pages fetched more than once (re-run)": crawl.fetched_more_than_once(),
        "duplicates in the results log": findings.doubled_in_log,
        "expired leases": stats.totals.expired,
        "recount_by_scan == stats": True,
        "registry empty after the stop": f"{registry_s:.1f} s",
    }
    report.emit()
    assert len(kills) >= 3, "the fault was injected"
    assert sum(len(held) for _, held in kills) > 0, "some kills hit jobs in flight"
    assert findings.lost == [] and findings.wrong == []
    assert findings.doubled_in_file == 0 and findings.doubled_in_log == 0
    assert findings.records == jobs
    assert by_status["completed"] == jobs and by_status["failed"] == 0
