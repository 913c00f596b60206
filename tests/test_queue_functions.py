"""The queue's Lua on the server: one Redis function library (Redis >= 7), or scripts.

The library is loaded when a queue opens; a server that lost it (a restart without
persistence, ``FUNCTION FLUSH``) gets it again on the next call, which then runs once; a user
whose ACL denies ``FUNCTION``/``FCALL`` gets the same queue as ``EVALSHA`` scripts.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
import redis

from scraperv4.exceptions import QueueUnavailableError
from scraperv4.queue import JobQueue, JobSpec
from support.redis_server import RedisServer


def _libraries(server: RedisServer) -> list[str]:
    client = redis.Redis.from_url(server.url)
    try:
        return [
            entry[b"library_name"].decode() if isinstance(entry, dict) else entry[1].decode()
            for entry in client.function_list()
        ]
    finally:
        client.close()


def test_the_library_is_loaded_once_and_again_after_function_flush(
    redis_server: RedisServer,
) -> None:
    queue = JobQueue(redis_server.url, name="fn")
    libraries = [name for name in _libraries(redis_server) if name.startswith("scraperv4_")]
    assert len(libraries) == 1, libraries
    ids = queue.submit_many([JobSpec(f"https://example.com/a/{i}") for i in range(3)])

    admin = redis.Redis.from_url(redis_server.url)
    admin.function_flush()
    assert _libraries(redis_server) == []
    # The next call finds its function missing, loads the library and runs once.
    claimed = queue.claim("w1", 3)
    assert sorted(job.id for job in claimed) == sorted(ids)
    assert [name for name in _libraries(redis_server) if name.startswith("scraperv4_")] == (
        libraries
    )
    admin.function_flush()
    assert all(ack.accepted for ack in queue.complete_many(claimed))
    assert queue.stats().by_status["completed"] == 3
    # A second queue (another client) on the same server shares the library.
    JobQueue(redis_server.url, name="fn2").submit(JobSpec("https://example.com/b"))
    assert [name for name in _libraries(redis_server) if name.startswith("scraperv4_")] == (
        libraries
    )
    admin.close()


def test_a_user_denied_functions_gets_the_queue_as_scripts(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command(
        "ACL", "SETUSER", "scripts-only", "on", ">pw", "~*", "&*", "+@all", "-function", "-fcall"
    )
    url = redis_server.url.replace("redis://", "redis://scripts-only:pw@")
    queue = JobQueue(url, name="acl")
    assert _libraries(redis_server) == []  # it could not load one, and did not need to
    ids = queue.submit_many([JobSpec(f"https://example.com/{i}") for i in range(4)])
    claimed = queue.claim("w1", 4)
    assert sorted(job.id for job in claimed) == sorted(ids)
    assert all(ack.accepted for ack in queue.complete_many(claimed))
    stats = queue.stats()
    assert stats.by_status["completed"] == 4 and stats.pending == 0
    scripts = admin.info("commandstats")
    assert "cmdstat_fcall" not in scripts and "cmdstat_evalsha" in scripts
    admin.close()


def test_counters_and_totals_stay_exact_through_many_operations(redis_url: str) -> None:
    """Completions update four totals with one HMGET and one HSET: they must add up."""
    queue = JobQueue(redis_url, name="totals", retry_base=0.001, retry_cap=0.001)
    ids = queue.submit_many([JobSpec(f"https://example.com/{i}") for i in range(40)])
    done = failed = 0
    while True:
        claimed = queue.claim("w1", 7)
        if not claimed:
            break
        for job in claimed:
            if int(job.id[-1], 16) % 3 == 0 and job.attempt == 1:
                assert queue.fail(job, "boom", retryable=False).accepted
                failed += 1
            else:
                assert queue.complete(job).accepted
                done += 1
    stats = queue.stats()
    assert done + failed == len(ids)
    assert stats.by_status.get("completed", 0) == done
    assert stats.by_status.get("failed", 0) == failed
    totals = stats.totals
    assert totals.completed == done and totals.failed == failed
    assert totals.duration_count == done
    assert sum(totals.duration_buckets) == done


def test_a_worker_first_seen_by_a_claim_gets_its_record_once(redis_url: str) -> None:
    """A claim writes the worker's record only when the worker is new (one call less)."""
    queue = JobQueue(redis_url, name="seen")
    queue.submit_many([JobSpec(f"https://example.com/{i}") for i in range(2)])
    assert queue.claim("never-registered", 1)
    first = {w["id"]: w for w in queue.workers()}["never-registered"]
    assert first["registered_at"] is not None
    assert queue.claim("never-registered", 1)
    again = {w["id"]: w for w in queue.workers()}["never-registered"]
    assert again["registered_at"] == first["registered_at"]
    assert again["last_heartbeat"] >= first["last_heartbeat"]


def _submit_in_child(url: str, out: Any) -> None:
    queue = JobQueue(url, name="fork")
    out.put(list(queue.submit_many([JobSpec(f"https://example.com/c/{i}") for i in range(50)])))


def test_generated_ids_differ_in_a_forked_child(redis_url: str) -> None:
    """Ids come from the OS: a child forked after the parent generated ids does not repeat
    the parent's next ones (a repeated id would be a job left out as already known)."""
    queue = JobQueue(redis_url, name="fork")
    queue.submit(JobSpec("https://example.com/first"))
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_submit_in_child, args=(redis_url, out))
    child.start()
    mine = queue.submit_batch([JobSpec(f"https://example.com/p/{i}") for i in range(50)])
    theirs = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert all(mine.created)
    assert len(set(mine.ids) | set(theirs)) == 100
    assert queue.stats().total == 101


def test_a_full_redis_still_purges_and_reports(redis_server: RedisServer) -> None:
    """At maxmemory with noeviction, Redis refuses a function without flags before it runs:
    purge and reap are flagged allow-oom (they free memory); stats, lists, the workers and
    the domains are read by no-writes functions (a dashboard still shows a full Redis)."""
    queue = JobQueue(redis_server.url, name="oom")
    queue.register_worker("watcher")
    queue.set_domain("slow.example", delay=2)
    claimed_ids = queue.submit_many([JobSpec(f"https://example.com/{i}") for i in range(300)])
    done = queue.claim("w1", 300)
    assert len(done) == len(claimed_ids)
    assert all(ack.accepted for ack in queue.complete_many(done, [{"x": "y" * 200}] * len(done)))
    admin = redis.Redis.from_url(redis_server.url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", str(used // 2))
    try:
        with pytest.raises(QueueUnavailableError, match="OOM"):
            queue.submit(JobSpec("https://example.com/more"))
        assert queue.stats().by_status["completed"] == 300
        assert {w["id"] for w in queue.workers()} == {"watcher", "w1"}
        assert [d["key"] for d in queue.domains()] == ["slow.example"]
        state = queue.domain("slow.example")
        assert state is not None and state["delay_override"] == 2
        assert len(queue.list("completed", limit=10)) == 10
        with pytest.raises(QueueUnavailableError, match="OOM"):
            queue.set_domain("slow.example", delay=3)
        assert queue.reap()["purged"] == 0
        assert queue.purge(0) == 300
        assert queue.stats().total == 0
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
