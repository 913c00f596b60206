"""Scripts written for the scaling guide's DistributedJobQueue run with only the import changed."""

from __future__ import annotations

import enum
import gc
import subprocess
import sys
import textwrap
import time

import pytest

from scraperv4.exceptions import InvalidJobError, QueueUnavailableError
from scraperv4.scaling.distributed_queue import DistributedJobQueue, JobStatus, ScrapingJob
from support.redis_server import RedisServer


def test_the_guides_example_usage_runs_unchanged(redis_url: str) -> None:
    script = textwrap.dedent(
        f"""
        from scraperv4.scaling.distributed_queue import DistributedJobQueue, ScrapingJob

        queue = DistributedJobQueue({redis_url!r})

        # Submit jobs
        job = ScrapingJob(
            id=None,
            name="Scaled Scraping Job",
            template_id="product-template",
            target_url="https://example.com",
            config={{"delay_range": [1, 3]}},
            priority=10
        )

        job_id = queue.submit_job(job)
        print(f"Submitted job: {{job_id}}")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    job_id = done.stdout.strip().removeprefix("Submitted job: ")
    assert len(job_id) == 36
    stats = DistributedJobQueue(redis_url).get_queue_stats()
    assert stats["pending_jobs"] == 1 and stats["total_jobs"] == 1


def test_the_seed_worker_loop_with_fencing(redis_url: str) -> None:
    queue = DistributedJobQueue(redis_url, lease=0.3)
    assert queue.register_worker("worker-1") is True
    job = ScrapingJob(None, "n", "t", "https://example.com/a", {"k": 1}, priority=3)
    queue.submit_job(job)
    assert job.id is not None

    claimed = queue.get_next_job("worker-1")
    assert claimed is not None and claimed.id == job.id
    assert claimed.status is JobStatus.ASSIGNED and claimed.assigned_worker == "worker-1"
    assert queue.update_job_status(claimed.id, JobStatus.RUNNING)
    queue.send_heartbeat("worker-1")
    assert queue.update_job_status(claimed.id, JobStatus.COMPLETED, result={"items": 2})
    assert queue.update_job_status("missing", JobStatus.COMPLETED) is False

    stats = queue.get_queue_stats()
    assert {"pending_jobs", "total_jobs", "active_workers", "total_workers"} <= stats.keys()
    assert stats["status_counts"]["completed"] == 1
    assert (stats["active_workers"], stats["total_workers"]) == (1, 1)


def test_a_worker_presumed_dead_cannot_overwrite_the_new_owner(redis_url: str) -> None:
    import time

    old_client = DistributedJobQueue(redis_url, lease=0.3)
    new_client = DistributedJobQueue(redis_url, lease=0.3)
    old_client.submit_job(ScrapingJob(None, "n", "t", "https://example.com/b", {}))
    job = old_client.get_next_job("slow")
    assert job is not None
    time.sleep(0.45)
    assert new_client.cleanup_stale_jobs()["requeued"] == 1
    again = new_client.get_next_job("fast")
    assert again is not None and again.id == job.id
    assert old_client.update_job_status(job.id, JobStatus.COMPLETED) is False
    assert new_client.update_job_status(job.id, JobStatus.COMPLETED) is True


def test_failed_updates_retry_then_end_in_dead_letters(redis_url: str) -> None:
    import time

    queue = DistributedJobQueue(redis_url, retry_base=0.05, retry_cap=0.05)
    queue.submit_job(ScrapingJob("f1", "n", "t", "https://example.com/c", {}, max_retries=1))
    job = queue.get_next_job("w")
    assert job is not None
    assert queue.update_job_status(job.id, JobStatus.FAILED, error="timeout")
    time.sleep(0.1)
    job = queue.get_next_job("w")
    assert job is not None and job.retry_count == 1
    assert queue.update_job_status(job.id, JobStatus.FAILED, error="timeout again")
    [dead] = queue.dead_letters()
    assert (dead.id, dead.status, dead.error) == ("f1", JobStatus.FAILED, "timeout again")


def test_an_unknown_status_is_a_typed_error_naming_the_job(redis_url: str) -> None:
    queue = DistributedJobQueue(redis_url)
    with pytest.raises(InvalidJobError, match="job j9: unknown status 'bogus'"):
        queue.update_job_status("j9", "bogus")


def test_prefetch_claims_ahead_in_one_round_trip_and_gives_back_the_rest(
    redis_url: str,
) -> None:
    queue = DistributedJobQueue(redis_url, prefetch=3, lease=30)
    other = DistributedJobQueue(redis_url)
    for i in range(5):
        queue.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}, priority=i))
    first = queue.get_next_job("w1")
    assert first is not None and first.target_url.endswith("/4")
    # Three were claimed in one step: another worker gets the fourth best, not the second.
    seen = other.get_next_job("w2")
    assert seen is not None and seen.target_url.endswith("/1")
    second = queue.get_next_job("w1")
    assert second is not None and second.target_url.endswith("/3")
    assert queue.update_job_status(first, JobStatus.COMPLETED)
    assert queue.update_job_status(second, JobStatus.COMPLETED)
    # The third is still buffered and leased; giving it back makes it claimable at once.
    assert queue.get_queue_stats()["status_counts"]["assigned"] == 2
    assert queue.release_prefetched("w1") == 1
    back = other.get_next_job("w2")
    assert back is not None and back.target_url.endswith("/2")
    assert queue.get_queue_stats()["status_counts"]["pending"] == 1


def test_a_give_back_that_fails_keeps_every_workers_prefetched_jobs(
    redis_server: RedisServer,
) -> None:
    queue = DistributedJobQueue(redis_server.url, prefetch=3, lease=30, operation_timeout=1.0)
    for i in range(6):
        queue.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}))
    assert queue.get_next_job("w1") is not None and queue.get_next_job("w2") is not None
    redis_server.pause()  # nothing answers: the first give-back fails
    try:
        with pytest.raises(QueueUnavailableError):
            queue.release_prefetched()
    finally:
        redis_server.resume()
    # Neither worker's two buffered claims were dropped: all four go back now (the release
    # sent while Redis was paused may have been applied when it resumed: 3 or 4 are new).
    assert queue.release_prefetched() in (3, 4)
    counts = queue.get_queue_stats()["status_counts"]
    assert (counts["pending"], counts["assigned"]) == (4, 2)
    queue.close()


def test_prefetched_jobs_are_renewed_by_heartbeats_and_skipped_once_lost(
    redis_url: str,
) -> None:
    queue = DistributedJobQueue(redis_url, prefetch=4, lease=0.5)
    reaper = DistributedJobQueue(redis_url)
    for i in range(4):
        queue.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}))
    first = queue.get_next_job("w1")
    assert first is not None and queue.update_job_status(first, JobStatus.COMPLETED)
    # Heartbeats keep the three buffered claims alive past several leases.
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        queue.send_heartbeat("w1")
        time.sleep(0.1)
    assert reaper.cleanup_stale_jobs()["requeued"] == 0
    second = queue.get_next_job("w1")
    assert second is not None and queue.update_job_status(second, JobStatus.COMPLETED)
    # Without heartbeats the two left run out and the reaper gives them back: the buffer
    # does not hand out claims that are no longer current, it claims afresh.
    requeued, deadline = 0, time.monotonic() + 60
    while requeued < 2 and time.monotonic() < deadline:
        requeued += reaper.cleanup_stale_jobs()["requeued"]
        time.sleep(0.05)
    assert requeued == 2
    for _ in range(2):
        job = queue.get_next_job("w1")
        assert job is not None and queue.update_job_status(job, JobStatus.COMPLETED)
    assert queue.get_next_job("w1") is None
    assert queue.get_queue_stats()["status_counts"]["completed"] == 4


def test_prefetch_must_be_a_positive_integer(redis_url: str) -> None:
    from scraperv4.exceptions import ConfigError

    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="prefetch"):
            DistributedJobQueue(redis_url, prefetch=bad)


def test_a_claim_older_than_job_timeout_is_not_renewed(redis_url: str) -> None:
    """The guide's ``job_timeout``: a hung job is given back even while heartbeats go on."""
    queue = DistributedJobQueue(redis_url, lease=0.3)
    queue.job_timeout = 0.6
    other = DistributedJobQueue(redis_url)
    for i in range(2):
        queue.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}))
    hung = queue.get_next_job("w1")
    assert hung is not None
    taken = None
    deadline = time.monotonic() + 60
    while taken is None or taken.id != hung.id:
        assert time.monotonic() < deadline, "the hung job never came back"
        queue.send_heartbeat("w1")
        if taken is not None:  # the other job: put it back and look again
            assert other.update_job_status(taken, JobStatus.PENDING)
        time.sleep(0.05)
        taken = other.get_next_job("w2")
    assert queue.update_job_status(hung, JobStatus.COMPLETED) is False
    assert other.update_job_status(taken, JobStatus.COMPLETED)


def test_prefetched_jobs_go_back_on_drain_and_when_the_client_is_dropped(
    redis_url: str,
) -> None:
    queue = DistributedJobQueue(redis_url, prefetch=3, lease=30)
    for i in range(6):
        queue.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}))
    assert queue.get_next_job("w1") is not None  # two more buffered
    queue.queue.drain("w1")
    queue.send_heartbeat("w1")  # draining: the buffered jobs go back at once
    counts = queue.get_queue_stats()["status_counts"]
    assert counts["assigned"] == 1 and counts["pending"] == 5

    dropped = DistributedJobQueue(redis_url, prefetch=3, lease=30)
    assert dropped.get_next_job("w2") is not None  # two more buffered, never handed out
    del dropped
    gc.collect()
    counts = queue.get_queue_stats()["status_counts"]
    assert counts["assigned"] == 2 and counts["pending"] == 4
    totals = queue.queue.stats().totals
    assert totals.expired == 0  # given back, not left to expire


def test_a_status_from_another_string_enum_is_accepted_by_value(redis_url: str) -> None:
    class Theirs(str, enum.Enum):
        COMPLETED = "completed"

    queue = DistributedJobQueue(redis_url)
    queue.submit_job(ScrapingJob(None, "n", "t", "https://example.com/x", {}))
    job = queue.get_next_job("w1")
    assert job is not None and queue.update_job_status(job, Theirs.COMPLETED)
    with pytest.raises(InvalidJobError, match="unknown status"):
        queue.update_job_status(job, "finished")


def test_a_second_client_registering_the_same_worker_id_takes_it_over(redis_url: str) -> None:
    """Worker sessions: the newer registration owns the id; the older client's heartbeats
    renew nothing and its claims are refused, instead of each heartbeat giving back the
    other client's jobs as expired leases."""
    first = DistributedJobQueue(redis_url, lease=30)
    second = DistributedJobQueue(redis_url, lease=30)
    for i in range(2):
        first.submit_job(ScrapingJob(None, "n", "t", f"https://example.com/{i}", {}))
    first.register_worker("w")
    old = first.get_next_job("w")
    assert old is not None
    second.register_worker("w")  # takes the id over: the job leased under it goes back
    mine = second.get_next_job("w")
    assert mine is not None
    first.send_heartbeat("w")  # superseded: renews nothing, gives nothing back
    second.send_heartbeat("w")
    assert first.update_job_status(old, JobStatus.COMPLETED) is False
    assert second.update_job_status(mine, JobStatus.COMPLETED)
    again = second.get_next_job("w")
    assert again is not None and second.update_job_status(again, JobStatus.COMPLETED)
    totals = second.queue.stats().totals
    assert totals.completed == 2
    assert totals.expired == 1  # the job the first client held when the id was taken over
