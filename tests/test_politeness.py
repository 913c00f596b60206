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
        # Before anyone had read robots.txt each worker may have sent one request; after
        # that the queue held the delay for all of them.
        gaps = [b - a for a, b in zip(arrivals[3:], arrivals[4:])]
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
