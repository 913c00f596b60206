"""Issue #21's fault scenarios, one test each: real redis-server (and SQLite where the fault
applies to both backends), a real HTTP site on 127.0.0.1, real workers, bounded waits.

Each of these failed before the fix it names: a claim nobody works on was renewed for ever, a
cancelled run kept its jobs leased and stayed registered, the seed API took the job's
current token, a slow item callback starved the heartbeats, a re-created job repeated old
fencing tokens, dead workers piled up in the registry, a job that ran again after Redis lost
its finish was exported twice, and a signal turned applied Redis calls into errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.exceptions import QueueUnavailableError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue, JobSpec, JobStatus
from scraperv4.scaling.distributed_queue import DistributedJobQueue, ScrapingJob
from scraperv4.worker import Worker, export_jsonl
from support.redis_server import RedisServer

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0, per_host_concurrency=32)
TEMPLATE = Template.from_file(TEMPLATE_PATH)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def product(site: DemoSite, number: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"p{number}",
        "template_id": "demo-products",
        "target_url": f"{site.url.rstrip('/')}/product/{number}",
        "depth": 2,
        **fields,
    }


def worker(url: str, **settings: Any) -> Worker:
    options: dict[str, Any] = {
        "worker_id": "w",
        "templates": [TEMPLATE],
        "fetch": LOCAL,
        "lease": 2.0,
        "heartbeat": 0.5,
        "adaptive_concurrency": False,
    }
    options.update(settings)
    return Worker(url, **options)


def run_in_thread(target: Worker) -> threading.Thread:
    thread = threading.Thread(target=target.run, daemon=True)
    thread.start()
    return thread


def test_a_claim_whose_reply_was_lost_comes_back_through_the_heartbeat(redis_url: str) -> None:
    """Defect 1: the claim ran in Redis but the worker never heard of it."""
    with DemoSite(categories=1, products_per_category=3, latency=1.5) as site:
        queue = JobQueue(redis_url, lease=2.0)
        queue.submit(product(site, 1))
        w = worker(redis_url, concurrency=1)
        thread = run_in_thread(w)
        try:
            wait_for(lambda: queue.stats().by_status["running"] == 1, 20, "the worker busy")
            queue.submit(product(site, 2))
            [orphan] = queue.claim("w")  # under the worker's id: a claim it does not know of
            assert orphan.id == "p2"
            wait_for(
                lambda: (job := queue.get("p2")) is not None and job.status is JobStatus.COMPLETED,
                30,
                "the orphaned claim given back and completed by the worker",
            )
            done = queue.get("p2")
            # Given back by the heartbeat, counted as an expired lease (a job that kills its
            # task cannot come back for ever).
            assert done is not None and done.lease_expiries == 1
            assert queue.stats().totals.expired == 1
        finally:
            w.stop()
            thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_cancelled_run_gives_its_jobs_back_unregisters_and_can_run_again(
    redis_url: str,
) -> None:
    """Defect 2: cancelling `run_async` left the jobs leased and the worker registered."""
    with DemoSite(categories=1, products_per_category=4, latency=1.0) as site:
        queue = JobQueue(redis_url, lease=2.0)
        queue.submit_many(product(site, n) for n in range(1, 5))
        w = worker(redis_url, concurrency=4, exit_when_done=True)

        async def cancel_mid_flight() -> None:
            task = asyncio.create_task(w.run_async())
            deadline = time.monotonic() + 20
            while queue.stats().by_status["running"] < 4:
                assert time.monotonic() < deadline, "4 jobs never got in flight"
                await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(cancel_mid_flight())
        # Within three leases everything is back and the worker gone (the cleanup runs at
        # once; the leases would have expired by then anyway).
        wait_for(
            lambda: queue.stats().by_status["pending"] == 4 and not queue.workers(),
            6,
            "the jobs back and the worker unregistered",
        )
        assert all((j := queue.get(f"p{n}")) and j.lease_expiries == 0 for n in range(1, 5))
        progress = asyncio.run(w.run_async())  # a second run works
        assert progress["completed"] == 4
        assert queue.stats().by_status["completed"] == 4


def test_the_seed_queue_fences_each_claim_even_within_one_client(durable_queue_url: str) -> None:
    """Defect 3: `update_job_status` used the job's *current* token when it had none."""
    seed = DistributedJobQueue(durable_queue_url, lease=0.3)
    seed.submit_job(
        ScrapingJob(id="j", name="n", template_id="t", target_url="http://127.0.0.1/x", config={})
    )
    slow = seed.get_next_job("slow")
    assert slow is not None and slow.token > 0
    time.sleep(0.45)
    seed.cleanup_stale_jobs()  # the lease lapsed: the job goes back
    fast = seed.get_next_job("fast")
    assert fast is not None and fast.id == "j" and fast.token != slow.token
    assert seed.update_job_status("j", JobStatus.COMPLETED) is False, "ambiguous by id"
    assert seed.update_job_status(slow, JobStatus.COMPLETED, result={"by": "slow"}) is False
    assert seed.update_job_status(fast, JobStatus.COMPLETED, result={"by": "fast"}) is True
    done = seed.queue.get("j")
    assert done is not None and done.result == {"by": "fast"}
    unknown = DistributedJobQueue(durable_queue_url)
    assert unknown.update_job_status("j", JobStatus.COMPLETED) is False, "never claimed here"


def test_a_slow_item_callback_does_not_starve_the_heartbeats(redis_url: str) -> None:
    """Defect 4: the callback ran on the async threads, heartbeats stalled, leases lapsed."""
    with DemoSite(categories=1, products_per_category=12) as site:
        queue = JobQueue(redis_url, lease=2.0)
        queue.submit_many(product(site, n) for n in range(1, 13))
        seen = []

        def slow(record: dict[str, Any]) -> dict[str, Any]:
            time.sleep(0.5)
            seen.append(record["job_id"])
            return record

        progress = worker(redis_url, concurrency=4, on_item=slow, exit_when_done=True).run()
        totals = queue.stats().totals
        assert progress["completed"] == 12 and len(seen) == 12
        assert (totals.retried, totals.expired) == (0, 0), "no lease lapsed"


def test_fencing_tokens_never_repeat_when_a_job_is_created_again(
    durable_queue_url: str,
) -> None:
    """Defect 5: a purged and re-submitted job started its attempts (the tokens) at 0 again."""
    queue = JobQueue(durable_queue_url, lease=0.3)
    queue.submit(JobSpec("http://127.0.0.1/x", id="j"))
    [paused] = queue.claim("paused")
    time.sleep(0.45)
    queue.reap()
    assert queue.cancel("j").accepted
    assert queue.purge(0) == 1 and queue.get("j") is None
    queue.submit(JobSpec("http://127.0.0.1/x", id="j"))
    [fresh] = queue.claim("w2")
    assert fresh.attempt == paused.attempt == 1, "the attempt count starts again"
    assert fresh.token > paused.token, "the token does not"
    late = queue.complete(paused, result={"from": "paused"})
    assert late.reason == "stale" and late.token == fresh.token
    assert queue.complete(fresh).accepted


def test_dead_workers_leave_the_registry(durable_queue_url: str) -> None:
    """Defect 6: SIGKILLed workers stayed registered for ever."""
    # Generous windows: a loaded machine may pause this loop for a while.
    queue = JobQueue(durable_queue_url, lease=0.2, worker_liveness=1.5, worker_expiry=2.0)
    queue.submit(JobSpec("http://127.0.0.1/x", id="j"))
    queue.register_worker("dead")
    queue.register_worker("alive")
    [held] = queue.claim("dead")
    deadline = time.monotonic() + 2.3
    while time.monotonic() < deadline:
        queue.heartbeat("alive")
        time.sleep(0.1)
    states = {w["id"]: w["state"] for w in queue.workers()}
    assert states == {"dead": "stale", "alive": "active"}
    report = queue.reap()
    assert report["workers_expired"] == 1
    assert [w["id"] for w in queue.workers()] == ["alive"]
    assert queue.stats().total_workers == 1
    back = queue.get("j")
    assert back is not None and back.status is JobStatus.PENDING
    assert queue.complete(held).reason == "stale"


def test_an_export_stays_exactly_once_when_redis_loses_an_acknowledged_finish(
    tmp_path: Path,
) -> None:
    """Defect 7: Redis rolled back to a snapshot from before a finish; the job ran again."""
    # No save points and no append-only file: only the SAVE below reaches the disk.
    server = RedisServer(data_dir=tmp_path)
    server.start()
    try:
        with DemoSite(categories=1, products_per_category=3) as site:
            queue = JobQueue(server.url, lease=1.0, operation_timeout=2)
            queue.submit_many(product(site, n) for n in range(1, 4))
            client = redis.Redis.from_url(server.url)
            client.save()  # the snapshot Redis will come back to: 3 pending jobs
            client.close()
            output = tmp_path / "items.jsonl"
            assert worker(server.url, exit_when_done=True).run()["completed"] == 3
            assert export_jsonl(queue, output) == 3
            server.kill()  # the finishes and their results were never saved
            server.restart()
            wait_for(lambda: _answers(queue), 15, "the client to reconnect")
            assert queue.stats().pending == 3, "Redis lost the acknowledged finishes"
            assert worker(server.url, exit_when_done=True).run()["completed"] == 3
            assert export_jsonl(queue, output) == 0, "the same jobs' records are not copied"
        lines = output.read_text().splitlines()
        assert len(lines) == 3
        assert sorted(line.split('"job_id":"')[1][:2] for line in lines) == ["p1", "p2", "p3"]
    finally:
        server.stop()


def _answers(queue: JobQueue) -> bool:
    try:
        queue.stats()
    except QueueUnavailableError:
        return False
    return True


def test_a_signal_during_redis_calls_never_reports_an_applied_call_as_failed(
    redis_url: str,
) -> None:
    """Defect 10: an interval timer's signal interrupted the read (EINTR) after the server
    applied the call; the client raised QueueUnavailableError."""
    queue = JobQueue(redis_url)
    ticks = 0

    def tick(signum: int, frame: object) -> None:
        nonlocal ticks
        ticks += 1

    previous = signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        for i in range(3000):
            queue.submit(JobSpec(f"http://127.0.0.1/{i}", id=f"j{i}"))
        claimed = []
        for _ in range(3000):
            claimed.extend(queue.claim("w", 1))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ticks > 50, "the timer fired during the calls"
    assert len(claimed) == 3000 and len({job.id for job in claimed}) == 3000
    stats = queue.stats()
    assert stats.total == 3000 and stats.by_status["assigned"] == 3000


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_replayed_dead_letter_is_counted_as_replayed(
    backend: str, redis_url: str, tmp_path: Path
) -> None:
    """Item 8: a job failed, replayed by hand, then completed is in `failed` and `completed`;
    `replayed` says how many of the failures did not stay failures."""
    url = redis_url if backend == "redis" else f"sqlite://{tmp_path / 'q.db'}"
    queue = JobQueue(url)
    queue.submit(JobSpec("http://127.0.0.1/x", id="j", max_retries=0))
    [job] = queue.claim("w")
    assert queue.fail(job, "boom").outcome == "failed"
    assert queue.retry("j").accepted
    [again] = queue.claim("w")
    assert queue.complete(again).accepted
    totals = queue.stats().totals
    assert (totals.failed, totals.completed, totals.replayed) == (1, 1, 1)


def test_a_redis_that_evicts_keys_is_warned_about(tmp_path: Path) -> None:
    """Item 8: an evicted job record is a lost job; the queue needs `noeviction`."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "logging.basicConfig(format='%(name)s|%(levelname)s|%(message)s')\n"
        "from scraperv4.queue import JobQueue\n"
        "JobQueue(sys.argv[1]).stats()\n"
    )
    for policy, warned in (("allkeys-lru", True), ("noeviction", False)):
        with RedisServer(["--maxmemory-policy", policy], data_dir=tmp_path / policy) as server:
            done = subprocess.run(
                [sys.executable, "-c", script, server.url],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        lines = [line for line in done.stderr.splitlines() if "maxmemory-policy" in line]
        assert bool(lines) is warned, done.stderr
        if warned:
            assert lines[0].startswith("scraperv4.queue.redis|WARNING|"), lines
            assert "noeviction" in lines[0]


def test_tokens_do_not_repeat_after_redis_comes_back_from_an_older_snapshot(
    tmp_path: Path,
) -> None:
    """A rolled-back `tokens` counter must not hand out a token a worker still holds."""
    server = RedisServer(data_dir=tmp_path)
    server.start()
    try:
        queue = JobQueue(server.url, operation_timeout=2)
        queue.submit_many(JobSpec(f"http://127.0.0.1/{n}", id=f"j{n}") for n in range(2))
        client = redis.Redis.from_url(server.url)
        client.save()  # the snapshot: no claim yet
        client.close()
        [held] = queue.claim("w1")  # handed out, then lost with everything after the snapshot
        server.kill()
        server.restart()
        wait_for(lambda: _answers(queue), 15, "the client to reconnect")
        [again] = queue.claim("w2")
        assert again.id == held.id and again.token > held.token
        assert queue.complete(held).reason == "stale"
    finally:
        server.stop()


def test_two_runs_under_one_worker_id_do_not_fight_and_lose_nothing(
    durable_queue_url: str,
) -> None:
    """Jepsen review: two workers sharing an id released each other's jobs on every heartbeat
    (each gave back what it did not hold) and each run's start released the other's work.
    Now the later run takes the id over, the earlier one stops with a clear error, and every
    job is completed once."""
    url = durable_queue_url
    with DemoSite(categories=1, products_per_category=12, latency=0.4) as site:
        queue = JobQueue(url, lease=2.0)
        queue.submit_many(product(site, n) for n in range(1, 13))
        first = worker(url, worker_id="shared", concurrency=2)
        outcome: dict[str, Any] = {}

        def run_first() -> None:
            try:
                outcome["progress"] = first.run(handle_signals=False)
            except Exception as error:
                outcome["error"] = error

        thread = threading.Thread(target=run_first, daemon=True)
        thread.start()
        try:
            wait_for(lambda: queue.stats().by_status["running"] >= 1, 20, "the first run busy")
            second = worker(url, worker_id="shared", concurrency=2, exit_when_done=True)
            progress = second.run(handle_signals=False)
            thread.join(timeout=30)
            assert not thread.is_alive(), "the superseded run stopped"
        finally:
            first.stop()
            thread.join(timeout=30)
        assert "taken over by another run" in str(outcome.get("error")), outcome
        stats = queue.stats()
        assert stats.by_status["completed"] == 12, stats.by_status
        assert progress["completed"] + outcome.get("progress", {}).get("completed", 0) <= 12
        assert not queue.workers(), "the id left the registry once, by the run that owned it"


def test_a_new_session_takes_the_id_over_and_the_old_one_is_told(durable_queue_url: str) -> None:
    queue = JobQueue(durable_queue_url, lease=30.0)
    queue.submit_many({"id": f"j{n}", "target_url": f"http://127.0.0.1/{n}"} for n in range(3))
    assert queue.register_worker("w", session="old") == 0
    claimed = queue.claim("w", 2)
    assert len(claimed) == 2
    # A restart of the worker under the same id: what the old run held comes back now,
    # counted as expired leases.
    assert queue.register_worker("w", session="new") == 2
    stats = queue.stats()
    assert stats.by_status["pending"] == 3 and stats.totals.expired == 2
    beat = queue.heartbeat("w", claimed, session="old")
    assert beat.superseded and beat.renewed == 0 and beat.released == 0
    assert queue.unregister_worker("w", session="old") is None, "the old run cannot unregister"
    assert [w["id"] for w in queue.workers()] == ["w"]
    beat = queue.heartbeat("w", [], session="new")
    assert not beat.superseded
    assert queue.unregister_worker("w", session="new") == 0
    assert not queue.workers()


def test_a_job_dropped_again_and_again_fails_instead_of_looping(durable_queue_url: str) -> None:
    """Jepsen review: a job whose task dies (a panic, a lost claim reply) was given back by
    the heartbeat without counting, so a job that kills its task came back for ever."""
    queue = JobQueue(durable_queue_url, lease=30.0, max_lease_expiries=3)
    queue.submit({"id": "poison", "target_url": "http://127.0.0.1/poison"})
    for attempt in range(1, 4):
        [_job] = queue.claim("w")
        beat = queue.heartbeat("w", [])  # the worker does not hold it any more
        assert beat.released == 1
        record = queue.get("poison")
        assert record is not None
        if attempt < 3:
            assert record.status is JobStatus.PENDING and record.lease_expiries == attempt
    assert record.status is JobStatus.FAILED
    assert "dropped the job" in (record.error or "")
    assert queue.claim("w") == []


def test_the_seed_queue_heartbeat_thread_never_gives_back_a_claim_in_flight(
    durable_queue_url: str,
) -> None:
    """Jepsen review: `send_heartbeat` from another thread could run between a claim and its
    record (giving the job back) or iterate the claims while they changed."""
    seed = DistributedJobQueue(durable_queue_url, lease=30.0)
    for n in range(200):
        seed.submit_job(
            ScrapingJob(
                id=f"s{n}", name="s", template_id="t", config={},
                target_url=f"http://127.0.0.1/{n}",
            )
        )  # fmt: skip
    stop = threading.Event()
    errors: list[BaseException] = []

    def beat() -> None:
        while not stop.is_set():
            try:
                seed.send_heartbeat("w")
            except BaseException as error:
                errors.append(error)
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    claimed = []
    try:
        deadline = time.monotonic() + 60
        while len(claimed) < 200 and time.monotonic() < deadline:
            job = seed.get_next_job("w")
            if job is not None:
                claimed.append(job)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert len(claimed) == 200
    stats = seed.queue.stats()
    assert stats.by_status["assigned"] == 200, "no claim was given back by a heartbeat"
    assert stats.totals.expired == 0
    assert all(seed.update_job_status(job, "completed") for job in claimed)


def test_default_worker_ids_differ_within_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from scraperv4.worker import default_worker_id

    monkeypatch.delenv("WORKER_ID", raising=False)
    ids = {default_worker_id() for _ in range(5)}
    assert len(ids) == 5
