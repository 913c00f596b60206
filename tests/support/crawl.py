"""Crawls of local demo sites by in-process ``Worker`` threads, for the queue tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Callable, Optional

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.worker import Worker, crawl_job_id

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0, per_host_concurrency=32)


def seed(queue: JobQueue, sites: Iterable[DemoSite], crawl_id: str = "c") -> None:
    """Queues the home page of every site as a seed of crawl ``crawl_id``."""
    queue.submit_many(
        [
            {
                "id": crawl_job_id(crawl_id, site.url),
                "template_id": "demo-products",
                "target_url": site.url,
                "crawl_id": crawl_id,
            }
            for site in sites
        ]
    )


def run_workers(
    queue: JobQueue,
    workers: int,
    *,
    concurrency: int,
    during: Optional[Callable[[], None]] = None,
) -> dict[str, object]:
    """Runs ``workers`` workers (``exit_when_done``) in threads until the queue is done,
    calling ``during()`` meanwhile; every worker is stopped when it returns or raises.
    Returns each worker's outcome (its report, or the exception it raised)."""
    template = Template.from_file(TEMPLATE_PATH)
    fleet = [
        Worker(
            queue,
            worker_id=f"w{i}",
            templates=[template],
            fetch=LOCAL,
            concurrency=concurrency,
            heartbeat=0.5,
            exit_when_done=True,
        )
        for i in range(workers)
    ]
    outcomes: dict[str, object] = {}

    def run(worker: Worker) -> None:
        try:
            outcomes[worker.worker_id] = worker.run(handle_signals=False)
        except BaseException as error:  # reported to the caller
            outcomes[worker.worker_id] = error

    threads = [threading.Thread(target=run, args=(w,)) for w in fleet]
    for thread in threads:
        thread.start()
    try:
        if during is not None:
            during()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        for worker in fleet:
            worker.stop(immediate=True)
        for thread in threads:
            thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a worker did not stop"
    return outcomes
