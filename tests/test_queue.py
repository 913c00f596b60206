"""Queue conformance: every semantic, on every backend (a real redis-server, SQLite, memory)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

from scraperv4.exceptions import (
    ConfigError,
    CorruptJobError,
    InvalidJobError,
    QueueError,
    QueueUnavailableError,
)
from scraperv4.queue import AsyncJobQueue, JobQueue, JobSpec, JobStatus
from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer

BACKENDS = ["memory", "sqlite", "redis", "sharded", "cluster"]
SHARED_BACKENDS = ["sqlite", "redis", "sharded", "cluster"]  # reachable from several processes
# "sharded": a queue of 3 shards on one redis-server (tests/test_queue_sharded.py spreads
# jobs over the shards; here every semantic holds where the jobs of a test share a key).


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for this module; each test uses its own queue name in it."""
    with RedisServer() as server:
        yield server


QueueFactory = Callable[..., JobQueue]


@pytest.fixture
def backend_url(
    request: pytest.FixtureRequest, shared_redis: RedisServer, tmp_path: Path
) -> Callable[[str], str]:
    def url(backend: str) -> str:
        if backend in ("redis", "sharded"):
            return shared_redis.url
        if backend == "cluster":
            cluster: RedisCluster = request.getfixturevalue("shared_cluster")
            return cluster.url
        if backend == "sqlite":
            return f"sqlite://{tmp_path / 'queue.db'}"
        return "memory://"

    return url


@pytest.fixture(params=BACKENDS)
def make_queue(request: pytest.FixtureRequest, backend_url: Callable[[str], str]) -> QueueFactory:
    """Opens a queue on the parametrised backend, with a name no other test uses."""
    name = f"t{uuid.uuid4().hex[:12]}"
    url = backend_url(request.param)

    def make(**options: Any) -> JobQueue:
        options.setdefault("name", name)
        if request.param == "sharded":
            options.setdefault("shards", 3)
        return JobQueue(url, **options)

    return make


def spec(n: int, **fields: Any) -> JobSpec:
    return JobSpec(f"https://example.com/page/{n}", template_id="t", name=f"job {n}", **fields)


def spread_spec(n: int) -> JobSpec:
    """A job of one of 30 sites (on a sharded queue, jobs of every shard)."""
    return JobSpec(f"https://site{n % 30}.example/page/{n}", template_id="t", name=f"job {n}")


def sharding(backend: str) -> dict[str, Any]:
    """The options that make a queue of ``backend`` what the backend names."""
    return {"shards": 3} if backend == "sharded" else {}


# -- submit and claim --------------------------------------------------------------------


def test_claim_order_is_priority_then_fifo(make_queue: QueueFactory) -> None:
    queue = make_queue()
    ids = queue.submit_many(
        [spec(0, priority=1), spec(1, priority=5), spec(2, priority=1), spec(3, priority=5)]
    )
    claimed = [job.id for job in queue.claim("w", 10)]
    assert claimed == [ids[1], ids[3], ids[0], ids[2]]


def test_claim_records_worker_lease_and_fencing_token(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=30)
    queue.submit(spec(0, config={"delay_range": [1, 3]}))
    before = time.time()
    [job] = queue.claim("worker-a")
    assert job.status is JobStatus.ASSIGNED
    assert job.assigned_worker == "worker-a"
    assert job.attempt == 1
    assert job.config == {"delay_range": [1, 3]}
    assert job.lease_deadline is not None
    assert 29 <= job.lease_deadline - before <= 31
    assert queue.claim("worker-b") == [], "a claimed job is not claimed twice"


def test_submit_is_idempotent_by_id(make_queue: QueueFactory) -> None:
    queue = make_queue()
    assert queue.submit(spec(0, id="same")) == "same"
    assert queue.submit(spec(99, id="same", priority=7)) == "same"
    stats = queue.stats()
    assert stats.total == 1 and stats.pending == 1
    job = queue.get("same")
    assert job is not None and job.target_url.endswith("/0") and job.priority == 0


def test_an_invalid_job_in_a_batch_submits_nothing(make_queue: QueueFactory) -> None:
    queue = make_queue()
    with pytest.raises(InvalidJobError) as caught:
        queue.submit_many([spec(0), JobSpec("ftp://example.com/x", id="bad-one")])
    assert caught.value.job_id == "bad-one"
    assert "bad-one" in str(caught.value) and "http or https" in str(caught.value)
    assert queue.stats().total == 0


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (JobSpec("not a url", id="j"), "not a valid URL"),
        (JobSpec("https://", id="j"), "not a valid URL"),
        (JobSpec("https://x.com/", id="j", config={"f": object()}), "not JSON-serialisable"),
        (JobSpec("https://x.com/", id="j", config={"big": "x" * 1100}), "over the 1024-byte"),
        (JobSpec("https://x.com/", id="j", priority=10**9), "priority"),
    ],
)
def test_bad_submissions_are_typed_errors_naming_the_job(
    make_queue: QueueFactory, job: JobSpec, message: str
) -> None:
    queue = make_queue(max_config_bytes=1024)
    with pytest.raises(InvalidJobError, match=message) as caught:
        queue.submit(job)
    assert str(caught.value).startswith("job j: ")
    assert isinstance(caught.value, ValueError)
    queue.submit(spec(1))
    assert len(queue.claim("w")) == 1, "the queue keeps working"


def test_unknown_status_is_a_config_error(make_queue: QueueFactory) -> None:
    with pytest.raises(ConfigError, match="job status"):
        make_queue().list("bogus")


# -- fencing, leases, retries --------------------------------------------------------------


def test_lease_expiry_requeues_without_using_a_retry(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=1.0)  # long enough that a loaded machine cannot expire it early
    queue.submit(spec(0, id="j"))
    [first] = queue.claim("dead-worker")
    assert queue.reap() == {"requeued": 0, "failed": 0, "purged": 0, "workers_expired": 0}
    time.sleep(1.15)
    assert queue.reap()["requeued"] == 1
    job = queue.get("j")
    assert job is not None
    assert job.status is JobStatus.PENDING and job.retry_count == 0 and job.lease_expiries == 1
    assert "lease expired" in (job.error or "") and "dead-worker" in (job.error or "")
    totals = queue.stats().totals
    assert (totals.expired, totals.retried) == (1, 0)
    [second] = queue.claim("live-worker")
    assert second.attempt == first.attempt + 1
    assert second.token > first.token


def test_a_running_job_of_a_dead_worker_comes_back(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=0.3)
    queue.submit(spec(0, id="j"))
    [job] = queue.claim("w")
    assert queue.mark_running(job).accepted
    assert queue.heartbeat("w").renewed == 1, "a running job is still held"
    time.sleep(0.45)
    assert queue.reap()["requeued"] == 1
    assert [j.id for j in queue.claim("w2")] == ["j"]


def test_a_stale_workers_completion_is_rejected_after_takeover(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=0.3)
    queue.submit(spec(0, id="j"))
    [old] = queue.claim("presumed-dead")
    time.sleep(0.45)
    queue.reap()
    [new] = queue.claim("new-owner")
    late = queue.complete(old, result={"from": "old"})
    assert not late and late.reason == "stale"
    assert late.status == "assigned" and late.token == new.token
    for call in (queue.fail(old, "late"), queue.release(old), queue.mark_running(old)):
        assert call.reason == "stale"
    current = queue.get("j")
    assert current is not None and current.assigned_worker == "new-owner"
    assert queue.complete(new, result={"from": "new"}).accepted
    done = queue.get("j")
    assert done is not None and done.result == {"from": "new"}


def test_heartbeats_keep_leases_alive(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=0.5)
    queue.submit_many([spec(i) for i in range(3)])
    queue.claim("w", 3)
    for _ in range(5):
        time.sleep(0.2)
        assert queue.heartbeat("w").renewed == 3
    assert queue.reap()["requeued"] == 0
    assert queue.stats().by_status["assigned"] == 3


def test_failures_back_off_then_end_failed_and_can_be_retried(make_queue: QueueFactory) -> None:
    queue = make_queue(retry_base=0.1, retry_cap=0.2)
    queue.submit(spec(0, id="j", max_retries=2))
    for retry in (1, 2):
        [job] = queue.claim("w")
        ack = queue.fail(job, f"boom {retry}")
        assert ack.accepted and ack.outcome == "retrying"
        assert ack.not_before is not None and ack.not_before > time.time()
        assert queue.claim("w") == [], "not claimable during the backoff"
        assert queue.stats().runnable == 0
        time.sleep(0.25)
    [job] = queue.claim("w")
    assert job.retry_count == 2
    final = queue.fail(job, "boom 3")
    assert final.outcome == "failed"
    [dead] = queue.dead_letters()
    assert dead.id == "j" and dead.error == "boom 3" and dead.status is JobStatus.FAILED
    assert queue.retry("j").accepted
    again = queue.get("j")
    assert again is not None and again.status is JobStatus.PENDING and again.retry_count == 0


def test_complete_many_fences_each_job(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.submit_many([spec(i, id=f"j{i}") for i in range(5)])
    jobs = queue.claim("w", 5)
    queue.cancel("j2")
    acks = queue.complete_many(jobs, results=[{"n": i} for i in range(5)])
    assert [a.reason for a in acks] == ["accepted", "accepted", "stale", "accepted", "accepted"]
    done = queue.get("j4")
    assert done is not None and done.result == {"n": 4}
    assert queue.stats().by_status == {**queue.recount_by_scan()}


def test_a_non_retryable_failure_is_final(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.submit(spec(0, id="j"))
    [job] = queue.claim("w")
    assert queue.fail(job, "404", retryable=False).outcome == "failed"


def test_a_job_that_keeps_killing_workers_ends_failed(make_queue: QueueFactory) -> None:
    queue = make_queue(lease=0.2, max_lease_expiries=2)
    queue.submit(spec(0, id="j", max_retries=0))
    for _ in range(2):
        assert len(queue.claim("w")) == 1
        time.sleep(0.3)
        queue.reap()
    job = queue.get("j")
    assert job is not None and job.status is JobStatus.FAILED
    assert "lease expired" in (job.error or "") and "2 leases of this job expired" in job.error
    assert job.retry_count == 0, "expired leases do not use up retries"


def test_release_gives_the_job_back_without_a_retry(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.submit(spec(0, id="j"))
    [job] = queue.claim("w")
    assert queue.mark_running(job).accepted
    assert queue.release(job).accepted
    back = queue.get("j")
    assert back is not None and back.status is JobStatus.PENDING and back.retry_count == 0
    assert [j.id for j in queue.claim("w2")] == ["j"]


def test_cancel_stops_pending_and_leased_jobs(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.submit_many([spec(0, id="a"), spec(1, id="b")])
    assert queue.cancel("b").accepted
    [job] = queue.claim("w")
    assert job.id == "a"
    assert queue.cancel("a").accepted
    assert queue.complete(job).reason == "stale"
    assert queue.cancel("a").reason == "stale", "already finished"
    assert queue.cancel("nope").reason == "not_found"
    assert queue.stats().by_status["cancelled"] == 2


def test_unknown_jobs_are_not_found(make_queue: QueueFactory) -> None:
    queue = make_queue()
    assert queue.get("missing") is None
    assert queue.complete("missing", token=1).reason == "not_found"
    assert queue.retry("missing").reason == "not_found"


# -- workers ------------------------------------------------------------------------------


def test_worker_registry_drain_and_unregister(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.submit_many([spec(i) for i in range(4)])
    queue.register_worker("w1")
    queue.register_worker("w2")
    held = queue.claim("w1", 2)
    assert queue.drain("w2")
    assert queue.claim("w2", 2) == [], "a draining worker claims nothing"
    assert queue.heartbeat("w2").draining
    assert not queue.drain("ghost")
    workers = {w["id"]: w for w in queue.workers()}
    assert sorted(workers["w1"]["jobs"]) == sorted(j.id for j in held)
    assert workers["w2"]["draining"] is True
    assert all(w["state"] == "active" for w in workers.values())
    stats = queue.stats()
    assert (stats.active_workers, stats.total_workers) == (2, 2)
    assert queue.unregister_worker("w1") == 2
    assert queue.stats().pending == 4
    assert [w["id"] for w in queue.workers()] == ["w2"]


def test_finished_jobs_are_purged_after_the_retention(make_queue: QueueFactory) -> None:
    queue = make_queue(retention=0.2)
    queue.submit_many([spec(0, id="done"), spec(1, id="open")])
    [job] = queue.claim("w")
    queue.complete(job)
    time.sleep(0.3)
    assert queue.reap()["purged"] == 1
    assert queue.get("done") is None
    stats = queue.stats()
    assert stats.total == 1 and stats.by_status["completed"] == 0
    assert queue.purge(older_than=0) == 0


def test_list_pages_through_a_status(make_queue: QueueFactory) -> None:
    queue = make_queue()
    ids = queue.submit_many([spec(i) for i in range(7)])
    first = queue.list("pending", offset=0, limit=4)
    second = queue.list(JobStatus.PENDING, offset=4, limit=4)
    assert [j.id for j in first + second] == ids


# -- counts -------------------------------------------------------------------------------


def run_random_operations(queue: JobQueue, operations: int, seed: int) -> None:
    """Random submits, claims, completions, failures, releases, cancels, retries, reaps."""
    import random

    rng = random.Random(seed)
    held: list[Any] = []
    next_id = 0
    for step in range(operations):
        roll = rng.random()
        if roll < 0.25:
            batch = [spec(next_id + i, id=f"j{next_id + i}") for i in range(rng.randint(1, 5))]
            if rng.random() < 0.1 and next_id:
                batch.append(spec(0, id=f"j{rng.randrange(next_id)}"))  # a duplicate id
            next_id += len(batch)
            queue.submit_many(batch)
        elif roll < 0.45:
            held.extend(queue.claim(f"w{rng.randint(1, 3)}", rng.randint(1, 4)))
        elif roll < 0.85 and held:
            job = held.pop(rng.randrange(len(held)))
            action = rng.random()
            if action < 0.45:
                queue.complete(job, result={"step": step})
            elif action < 0.75:
                queue.fail(job, "random failure", retryable=rng.random() < 0.8)
            elif action < 0.9:
                queue.release(job)
            else:
                queue.mark_running(job)
                held.append(job)
        elif roll < 0.92 and next_id:
            queue.cancel(f"j{rng.randrange(next_id)}")
        elif roll < 0.97 and next_id:
            queue.retry(f"j{rng.randrange(next_id)}")
        else:
            queue.reap()


def test_random_operations_keep_stats_equal_to_a_full_recount(make_queue: QueueFactory) -> None:
    queue = make_queue(retry_base=0.0, retry_cap=0.0)
    for round_seed in range(4):
        run_random_operations(queue, 2_500, seed=round_seed)
        stats = queue.stats()
        recount = queue.recount_by_scan()
        assert stats.by_status == recount, f"after round {round_seed}"
        assert stats.total == sum(recount.values())


def test_no_redis_job_is_in_two_places(shared_redis: RedisServer) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    queue = JobQueue(shared_redis.url, name=name, retry_base=0.0, retry_cap=0.0)
    run_random_operations(queue, 3_000, seed=11)
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    try:
        base = f"scraperv4:{{{name}}}"
        places: dict[str, list[str]] = {}
        structures = {"pending": "pending", "retrying": "delayed", "leased": "leases"}
        for status in ("completed", "failed", "cancelled"):
            structures[status] = f"idx:{status}"
        for status, structure in structures.items():
            for job_id in client.zrange(f"{base}:{structure}", 0, -1):
                places.setdefault(job_id, []).append(status)
        held: set[str] = set()
        for worker_key in client.scan_iter(f"{base}:wjobs:*"):
            held |= client.smembers(worker_key)
        for key in client.scan_iter(f"{base}:job:*"):
            job_id = key.rsplit(":", 1)[1]
            status = client.hget(key, "status")
            leased = status in ("assigned", "running")
            expected = ["leased"] if leased else [status]
            assert places.get(job_id) == expected, (job_id, status, places.get(job_id))
            assert (job_id in held) == leased, (job_id, status)
    finally:
        client.close()


# -- several processes --------------------------------------------------------------------

CLAIMER = textwrap.dedent(
    """
    import json, sys
    from scraperv4.queue import JobQueue
    url, name, worker = sys.argv[1:4]
    queue = JobQueue(url, name=name, operation_timeout=30)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    got = []
    while True:
        jobs = queue.claim(worker, 7)
        if not jobs:
            break
        got.extend(job.id for job in jobs)
        for job in jobs:
            queue.complete(job)
    print(json.dumps(got), flush=True)
    """
)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_eight_processes_racing_get_each_job_exactly_once(
    backend: str, backend_url: Callable[[str], str]
) -> None:
    import json

    url, name = backend_url(backend), f"race{uuid.uuid4().hex[:8]}"
    queue = JobQueue(url, name=name, **sharding(backend))
    ids = queue.submit_many([spread_spec(i) for i in range(1000)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, name, f"w{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        claimed: list[str] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            claimed.extend(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    assert sorted(claimed) == sorted(ids), "every job claimed exactly once"
    assert queue.stats().by_status["completed"] == 1000


HOLDER = textwrap.dedent(
    """
    import sys, time
    from scraperv4.queue import JobQueue
    url, name = sys.argv[1:3]
    queue = JobQueue(url, name=name, lease=1.0)
    jobs = queue.claim("doomed", 50)
    print(len(jobs), flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_process_killed_holding_50_jobs_loses_none(
    backend: str, backend_url: Callable[[str], str]
) -> None:
    url, name = backend_url(backend), f"kill{uuid.uuid4().hex[:8]}"
    queue = JobQueue(url, name=name, lease=1.0, **sharding(backend))
    ids = queue.submit_many([spread_spec(i) for i in range(50)])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "50"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert queue.stats().by_status["assigned"] == 50
    time.sleep(1.2)
    assert queue.reap()["requeued"] == 50
    recovered = queue.claim("survivor", 100)
    assert sorted(job.id for job in recovered) == sorted(ids)
    assert all(job.attempt == 2 and job.lease_expiries == 1 for job in recovered)


# -- Redis specifics -----------------------------------------------------------------------


def test_redis_restart_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    server = RedisServer(["--appendonly", "yes", "--appendfsync", "always"], data_dir=tmp_path)
    server.start()
    try:
        queue = JobQueue(server.url, operation_timeout=2)
        acknowledged = queue.submit_many([spec(i) for i in range(200)])
        server.kill()  # SIGKILL: no shutdown save, only the append-only file survives
        with pytest.raises(QueueUnavailableError) as caught:
            queue.stats()
        assert "127.0.0.1" in str(caught.value) and "stats" in str(caught.value)
        server.restart()
        deadline = time.monotonic() + 15
        while True:  # the same client reconnects by itself
            try:
                stats = queue.stats()
                break
            except QueueUnavailableError:
                assert time.monotonic() < deadline, "the client never reconnected"
                time.sleep(0.2)
        assert stats.pending == 200
        assert {job.id for job in queue.claim("w", 500)} == set(acknowledged)
        client = redis.Redis.from_url(server.url)
        client.script_flush()  # scripts are reloaded transparently
        client.close()
        assert queue.stats().by_status["assigned"] == 200
    finally:
        server.stop()


def test_a_dead_server_is_a_quick_typed_error_without_the_password() -> None:
    from support.redis_server import free_port

    url = f"redis://app:s3cret-pw@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError) as caught:
        JobQueue(url, operation_timeout=1)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "s3cret-pw" not in message and "app:***@127.0.0.1" in message
    assert isinstance(caught.value, QueueError) and isinstance(caught.value, ConnectionError)


def test_insecure_tls_urls_are_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="insecure"):
        JobQueue("rediss://127.0.0.1:6390/0#insecure")


def test_a_corrupt_job_hash_is_a_typed_error_and_is_quarantined(
    shared_redis: RedisServer,
) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    queue = JobQueue(shared_redis.url, name=name)
    queue.submit_many([spec(0, id="good-1"), spec(1, id="broken"), spec(2, id="good-2")])
    client = redis.Redis.from_url(shared_redis.url)
    try:
        client.hset(f"scraperv4:{{{name}}}:job:broken", "attempt", "not-a-number")
    finally:
        client.close()
    with pytest.raises(CorruptJobError) as caught:
        queue.get("broken")
    assert caught.value.job_id == "broken" and "attempt" in str(caught.value)
    claimed = queue.claim("w", 10)
    assert sorted(j.id for j in claimed) == ["good-1", "good-2"]
    stats = queue.stats()
    assert stats.by_status["failed"] == 1 and stats.by_status["assigned"] == 2
    assert stats.by_status == queue.recount_by_scan()


def test_keys_share_one_hash_tag_and_the_prefix(shared_redis: RedisServer) -> None:
    queue = JobQueue(shared_redis.url, name="tagged", prefix="myapp")
    queue.submit(spec(0))
    queue.claim("w")
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    try:
        keys = list(client.scan_iter("myapp:*"))
        assert keys and all(key.startswith("myapp:{tagged}:") for key in keys)
        slots = {client.execute_command("CLUSTER KEYSLOT", key) for key in keys}
    except redis.ResponseError:  # not a cluster server: compute slots from the tag instead
        slots = {"{tagged}"}
    finally:
        client.close()
    assert len(slots) == 1


# -- async twin ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_twin_gives_the_same_results(backend: str, backend_url: Callable[[str], str]) -> None:
    url = backend_url(backend)

    def sync_run(name: str) -> list[Any]:
        queue = JobQueue(url, name=name, **sharding(backend))
        queue.submit_many([spec(i, id=f"j{i}", priority=i % 2) for i in range(4)])
        jobs = queue.claim("w", 3)
        out: list[Any] = [[j.id for j in jobs]]
        out.append(queue.complete(jobs[0], result=[1]).reason)
        out.append(queue.fail(jobs[1], "x", retryable=False).outcome)
        out.append(queue.release(jobs[2]).reason)
        out.append(queue.stats().by_status)
        return out

    async def async_run(name: str) -> list[Any]:
        queue = await AsyncJobQueue.open(url, name=name, **sharding(backend))
        await queue.submit_many([spec(i, id=f"j{i}", priority=i % 2) for i in range(4)])
        jobs = await queue.claim("w", 3)
        out: list[Any] = [[j.id for j in jobs]]
        out.append((await queue.complete(jobs[0], result=[1])).reason)
        out.append((await queue.fail(jobs[1], "x", retryable=False)).outcome)
        out.append((await queue.release(jobs[2])).reason)
        out.append((await queue.stats()).by_status)
        return out

    suffix = uuid.uuid4().hex[:8]
    assert sync_run(f"s{suffix}") == asyncio.run(async_run(f"a{suffix}"))


def test_acl_credentials_work_and_never_leak(tmp_path: Path) -> None:
    acl = ["--user", "app", "on", ">s3cret-pw", "~*", "&*", "+@all"]
    with RedisServer(acl, data_dir=tmp_path) as server:
        good = f"redis://app:s3cret-pw@127.0.0.1:{server.port}/2"
        queue = JobQueue(good)
        queue.submit(spec(0))
        assert queue.stats().pending == 1
        assert "s3cret-pw" not in repr(queue) and "app:***@" in queue.url
        with pytest.raises(QueueUnavailableError) as caught:
            JobQueue(f"redis://app:wrong-pw@127.0.0.1:{server.port}/2", operation_timeout=2)
        assert "wrong-pw" not in str(caught.value)
        client = redis.Redis.from_url(good)
        try:
            assert client.dbsize() > 0, "the queue used db 2"
        finally:
            client.close()


def test_rediss_verifies_certificates_unless_insecure_is_allowed(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    from support.redis_server import free_port

    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert_file)]
    tls += ["--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file)]
    tls += ["--tls-auth-clients", "no"]
    with RedisServer(tls, data_dir=tmp_path):
        # The test CA is in no trust store: verification must refuse the server.
        with pytest.raises(QueueUnavailableError, match=r"(?i)certificate|unknown ?issuer"):
            JobQueue(f"rediss://127.0.0.1:{tls_port}/0", operation_timeout=3)
        with pytest.raises(ConfigError, match="insecure"):
            JobQueue(f"rediss://127.0.0.1:{tls_port}/0#insecure")
        queue = JobQueue(f"rediss://127.0.0.1:{tls_port}/0#insecure", allow_insecure_tls=True)
        queue.submit(spec(0))
        assert queue.stats().pending == 1, "TLS round trips work"
