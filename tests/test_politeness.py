"""Fleet-wide politeness as workers see it: robots.txt fetched once for the fleet, its
Crawl-delay held across workers, a 429 pausing the site for every worker instead of being
retried inside one. Real workers, a real redis-server (and SQLite), a real HTTP server on a
loopback address that records when each request arrives."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue, JobStatus
from scraperv4.worker import Worker
from support.http_server import Server

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=2, retry_base=0.05)
TEMPLATE = Template.from_dict(
    {"id": "p", "item": "body", "fields": [{"name": "text", "selector": "p.x"}]}
)


def worker(queue: JobQueue, worker_id: str, **options: Any) -> Worker:
    return Worker(
        queue,
        worker_id=worker_id,
        templates=[TEMPLATE],
        fetch=LOCAL,
        exit_when_done=True,
        adaptive_concurrency=False,
        **options,
    )


def run_all(workers: list[Worker]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in workers]

    def run(i: int) -> None:
        results[i] = workers[i].run(handle_signals=False)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "the workers did not finish"
    return results


def test_robots_is_fetched_once_for_the_fleet_and_its_crawl_delay_paces_every_worker(
    redis_url: str,
) -> None:
    with Server("127.0.0.2", robots="User-agent: *\nCrawl-delay: 1\n") as site:
        queue = JobQueue(redis_url)
        queue.submit_many(
            {"id": f"p{n}", "template_id": "p", "target_url": f"{site.base}/page?n={n}"}
            for n in range(7)
        )
        done = run_all([worker(queue, f"w{i}", concurrency=8) for i in range(3)])
        assert sum(p["completed"] for p in done) == 7
        assert site.hits["/robots.txt"] == 1, "one fetch of robots.txt for three workers"
        key = queue.politeness_key(site.base)
        state = queue.domain(key)
        assert state is not None and state["crawl_delay"] == 1.0, state
        arrivals = sorted(site.times["/page"])
        assert len(arrivals) == 7
        # Every request, the first of each worker too: a job claimed before the fleet knew
        # the delay is given back unsent, and the queue paces the key from then on.
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert all(gap >= 0.9 for gap in gaps), gaps


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_429_pauses_the_site_for_the_fleet_instead_of_a_retry_inside_the_worker(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    url = (
        request.getfixturevalue("redis_url") if backend == "redis" else f"sqlite://{tmp_path}/q.db"
    )
    with Server("127.0.0.3") as site:
        queue = JobQueue(url, retry_base=0.05)
        queue.submit({"id": "t", "template_id": "p", "target_url": f"{site.base}/429"})
        (progress,) = run_all([worker(queue, "w", concurrency=2)])
        job = queue.get("t")
        assert job is not None and job.status is JobStatus.COMPLETED
        assert progress["retried"] == 1 and progress["completed"] == 1
        first, second = site.times["/429"]
        # The site said Retry-After: 1; the retry waited for it although the job's own
        # backoff was 50 ms — the queue paused the site.
        assert second - first >= 0.9, second - first
        state = queue.domain(queue.politeness_key(site.base))
        assert state is not None and state["throttled"] == 1, state
        assert state["delay"] >= 0.9, state


def test_a_standalone_fetcher_still_retries_a_429_itself() -> None:
    from scraperv4.fetch import Fetcher

    with Server("127.0.0.4") as site:
        started = time.monotonic()
        assert Fetcher(LOCAL).fetch(f"{site.base}/429").status == 200
        assert site.hits["/429"] == 2
        assert time.monotonic() - started >= 0.9


def test_a_redirect_on_a_site_with_a_crawl_delay_is_followed_not_given_back_for_ever(
    redis_url: str,
) -> None:
    # Each hop of /redirect/1 -> /redirect/0 -> /page comes before the Crawl-delay has passed
    # since the hop before it. A refused hop gave the job back to start over from the first
    # URL, which booked the slot again: the job looped and /page was never fetched.
    with Server("127.0.0.5", robots="User-agent: *\nCrawl-delay: 1\n") as site:
        queue = JobQueue(redis_url)
        queue.submit({"id": "r", "template_id": "p", "target_url": f"{site.base}/redirect/1"})
        (progress,) = run_all([worker(queue, "w", concurrency=2)])
        job = queue.get("r")
        assert job is not None and job.status is JobStatus.COMPLETED, job
        assert progress["completed"] == 1
        assert site.hits["/page"] == 1 and site.hits["/redirect/1"] == 1, site.hits
        hops = [site.times[p][0] for p in ("/redirect/1", "/redirect/0", "/page")]
        assert all(b - a >= 0.9 for a, b in zip(hops, hops[1:])), hops


def test_a_failure_followed_by_a_paced_retry_is_reported_as_the_failure(
    redis_url: str,
) -> None:
    # The site's robots.txt (shared through the queue) asks for 1 s between requests; then the
    # site goes away. The first try is refused a connection; its in-process retry comes before
    # the Crawl-delay has passed. That retry's "paced" used to hide the failure: the job was
    # given back without a retry counted nor the site slowed down, again and again until the
    # robots.txt TTL ran out. The failure must be reported: the job's retries run out, the
    # site's errors are counted for the fleet.
    site = Server("127.0.0.6", robots="User-agent: *\nCrawl-delay: 1\n").start()
    try:
        queue = JobQueue(redis_url, retry_base=0.05)
        queue.submit({"id": "ok", "template_id": "p", "target_url": f"{site.base}/page"})
        (first,) = run_all([worker(queue, "w1", concurrency=2)])
        assert first["completed"] == 1
    finally:
        site.stop()
    queue.submit(
        {"id": "gone", "template_id": "p", "target_url": f"{site.base}/page?n=2", "max_retries": 2}
    )
    (_progress,) = run_all([worker(queue, "w2", concurrency=2)])
    job = queue.get("gone")
    assert job is not None and job.status is JobStatus.FAILED, job
    assert job.retry_count == 2, job
    assert job.error is not None and "connect" in job.error, job.error
    assert site.hits["/robots.txt"] == 1, "the second worker read the fleet's copy"
    state = queue.domain(queue.politeness_key(site.base))
    assert state is not None and state["errors"] >= 1, state
