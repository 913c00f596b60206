"""The queue as a notebook or a script holds it: `with` / `async with` and close(), which
submissions were new, and tables in Jupyter (`_repr_html_`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scraperv4.exceptions import QueueError
from scraperv4.queue import AsyncJobQueue, JobQueue, JobSpec

SPECS = [{"id": "a", "target_url": "http://127.0.0.1:9/a"},
         {"id": "b", "target_url": "http://127.0.0.1:9/<b>"}]  # fmt: skip


def test_a_queue_closes_with_its_block_and_says_so_when_used_after(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'q.db'}"
    with JobQueue(url) as queue:
        first = queue.submit_batch(SPECS)
        again = queue.submit_batch([*SPECS, {"id": "c", "target_url": "http://127.0.0.1:9/c"}])
    assert (first.ids, first.new, first.existing) == (["a", "b"], 2, 0)
    assert (again.created, again.new, again.existing) == ([False, False, True], 1, 2)
    with pytest.raises(QueueError, match="this queue is closed"):
        queue.stats()
    assert JobQueue(url).stats().total == 3, "closing kept the data"


def test_an_async_queue_closes_with_async_with(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'q.db'}"

    async def session() -> tuple[int, int]:
        async with await AsyncJobQueue.open(url) as queue:
            submitted = await queue.submit_batch(SPECS)
            total = (await queue.stats()).total
        with pytest.raises(QueueError, match="this queue is closed"):
            await queue.stats()
        return submitted.new, total

    assert asyncio.run(session()) == (2, 2)


def test_stats_and_job_lists_show_as_tables_with_values_escaped() -> None:
    queue = JobQueue("memory://")
    queue.submit_many(SPECS)
    stats_html = queue.stats()._repr_html_()
    assert stats_html.startswith("<table><caption>queue</caption>")
    assert "<td>pending</td><td>2</td>" in stats_html
    jobs_html = queue.list("pending")._repr_html_()
    assert "<caption>2 jobs</caption>" in jobs_html
    assert "http://127.0.0.1:9/&lt;b&gt;" in jobs_html and "<b>" not in jobs_html


def test_the_sync_api_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    """As in a Jupyter cell, where the kernel's event loop is running: the blocking calls and
    a whole crawl work from inside it."""
    from scraperv4.crawl import run_crawl
    from scraperv4.demo import TEMPLATE_PATH, DemoSite
    from scraperv4.extract import Template
    from scraperv4.fetch import FetchConfig

    async def cell() -> tuple[int, int, bool]:
        asyncio.get_running_loop()  # a loop is running here
        queue = JobQueue("memory://")
        queue.submit_many(SPECS)
        with DemoSite(categories=1, products_per_category=3) as site:
            summary = run_crawl(
                [site.url], Template.from_file(TEMPLATE_PATH), output=tmp_path / "items.jsonl",
                fetch=FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0), progress=False,
            )  # fmt: skip
        return queue.stats().total, summary.items, summary.ok

    assert asyncio.run(cell()) == (2, 3, True)


def test_a_sqlite_call_that_waited_for_the_lock_takes_the_time_after_it(tmp_path: Path) -> None:
    """A heartbeat that waited for another writer renews to a deadline counted from when it
    ran, not from when it was sent (else a wait longer than the lease renews into the past)."""
    path = tmp_path / "q.db"
    queue = JobQueue(f"sqlite://{path}", lease=1.0, operation_timeout=30)
    queue.submit(JobSpec("https://example.com/a"))
    (job,) = queue.claim("w1", 1)
    # Another process holds the write lock (in this process, Python's own SQLite library
    # would not see the core's locks: POSIX locks are per process).
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=30)\n"
            "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
            "sys.stdin.readline(); db.execute('COMMIT')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        beats: list[object] = []
        beating = threading.Thread(target=lambda: beats.append(queue.heartbeat("w1", [job])))
        beating.start()
        time.sleep(1.5)  # longer than the lease: the heartbeat waits for the lock meanwhile
        released = time.time()
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        beating.join(60)
        assert beats, "the heartbeat did not return"
    renewed = queue.get(job.id)
    assert renewed is not None and renewed.lease_deadline is not None
    assert renewed.lease_deadline >= released + 1.0 - 0.05
