"""What the chaos scenarios share: the scale, a crawl of the demo shop's product pages, the
exactly-once checks and the report each scenario prints.

The short versions run in ``make test``; ``make chaos`` sets ``SCRAPERV4_CHAOS=long`` for
the long ones and ``SCRAPERV4_CHAOS_REPORT`` to a file that collects every report as a JSON
line (``docs/reliability.md`` quotes them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, cast

import redis

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.exceptions import QueueUnavailableError
from scraperv4.queue import JobQueue

LONG = os.environ.get("SCRAPERV4_CHAOS") == "long"

T = TypeVar("T")


def pick(short: T, long: T) -> T:
    """The short version's value in ``make test``, the long one's in ``make chaos``."""
    return long if LONG else short


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Waits until ``condition()`` is true (every 50 ms, at most ``timeout`` seconds);
    returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def answers(queue: JobQueue) -> bool:
    """Whether the queue answers now."""
    try:
        queue.stats()
    except QueueUnavailableError:
        return False
    return True


def running(queue: JobQueue) -> int:
    """Jobs running now; 0 while the queue does not answer."""
    try:
        return queue.stats().by_status["running"]
    except QueueUnavailableError:
        return 0


def completed(queue: JobQueue) -> Optional[int]:
    """Jobs completed so far (the monotonic total); None while the queue does not answer."""
    try:
        return queue.stats().totals.completed
    except QueueUnavailableError:
        return None


@dataclasses.dataclass
class Report:
    """What a scenario did and found; printed, and collected by ``make chaos``."""

    scenario: str
    jobs: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    lost: int = 0
    doubled: int = 0
    recover_s: list[float] = dataclasses.field(default_factory=list)
    found: dict[str, Any] = dataclasses.field(default_factory=dict)

    def emit(self) -> None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        command = f"{'SCRAPERV4_CHAOS=long ' if LONG else ''}pytest -s '{test}'"
        recover = "n/a"
        if self.recover_s:
            median = sorted(self.recover_s)[len(self.recover_s) // 2]
            recover = f"max {max(self.recover_s):.2f} s, median {median:.2f} s"
        lines = [
            f"[chaos] {self.scenario} ({'long' if LONG else 'short'})",
            f"  command:  {command}",
            f"  jobs:     {self.jobs}",
            f"  faults:   {', '.join(f'{k} x{v}' for k, v in self.faults.items()) or 'none'}",
            f"  lost:     {self.lost}",
            f"  doubled:  {self.doubled}",
            f"  recover:  {recover}",
            *(f"  {k}: {v}" for k, v in self.found.items()),
        ]
        print("\n".join(lines), flush=True)
        target = os.environ.get("SCRAPERV4_CHAOS_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as out:
                record = {"command": command, "scale": "long" if LONG else "short"}
                out.write(json.dumps({**record, **dataclasses.asdict(self)}) + "\n")


@dataclasses.dataclass
class Findings:
    """The exactly-once checks of a finished crawl."""

    records: int
    lost: list[str]
    doubled_in_file: int
    doubled_in_log: int
    wrong: list[str]


class ProductCrawl:
    """Product pages of the demo shop as jobs ``p1``.. (at the depth where the template
    follows no more links: one item per job, at index 0), served on 127.0.0.1.

    Args:
        tmp: a scratch directory (templates, logs, the export).
        products: how many product pages the site has.
        latency: seconds each page takes to answer.
    """

    def __init__(self, tmp: Path, products: int, latency: float) -> None:
        per_category = -(-products // 24)
        self.site = DemoSite(categories=24, products_per_category=per_category, latency=latency)
        self.tmp = tmp
        self.templates = tmp / "templates"
        self.templates.mkdir(exist_ok=True)
        (self.templates / "demo.json").write_text(TEMPLATE_PATH.read_text())
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.export = tmp / "items.jsonl"
        #: Jobs p1..p<submitted> were submitted.
        self.submitted = 0

    def __enter__(self) -> ProductCrawl:
        self.site.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.stop()

    def job(self, number: int) -> dict[str, Any]:
        return {
            "id": f"p{number}",
            "template_id": "demo-products",
            "target_url": f"{self.site.url}product/{number}",
            "depth": 2,
        }

    def submit(self, queue: JobQueue, first: int, count: int) -> list[str]:
        ids: list[str] = queue.submit_many(self.job(n) for n in range(first, first + count))
        self.submitted = max(self.submitted, first + count - 1)
        return ids

    def fetched_more_than_once(self) -> int:
        """Product pages requested more than once (jobs that ran again: at-least-once)."""
        hits = self.site.hits.items()
        return sum(1 for path, n in hits if path.startswith("/product/") and n > 1)

    @staticmethod
    def settled(queue: JobQueue, jobs: int) -> bool:
        """All ``jobs`` jobs have ended (completed, failed or cancelled) and nothing is left
        to do; False while the queue does not answer."""
        try:
            by_status = queue.stats().by_status
        except QueueUnavailableError:
            return False
        ended = sum(by_status[s] for s in ("completed", "failed", "cancelled"))
        active = ("pending", "assigned", "running", "retrying")
        return ended >= jobs and all(by_status[s] == 0 for s in active)

    def wait_done(self, queue: JobQueue, jobs: int, timeout: float) -> float:
        """Waits until all ``jobs`` jobs have ended and nothing else is left to do (the
        scenario then checks that they all completed)."""
        try:
            return wait_for(lambda: self.settled(queue, jobs), timeout, f"{jobs} jobs to end")
        except AssertionError as error:
            raise AssertionError(f"{error}: {queue.stats()}") from None

    def verify(self, queue: JobQueue, redis_url: str, numbers: range) -> Findings:
        """Exports the results with ``scraperv4 results export`` (appending to the file the
        scenario may already have exported to) and checks every job of ``numbers``: its
        item is in the file once, (job_id, index) pairs are unique in the file, and the
        queue's results log holds each job once."""
        done = subprocess.run(
            [sys.executable, "-m", "scraperv4", "results", "export", "--output", str(self.export),
             "--queue-url", redis_url],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in self.export.read_text().splitlines()]
        keys = Counter((r["job_id"], r["index"]) for r in records)
        by_job = {r["job_id"]: r for r in records}
        expected = {f"p{n}": f"SKU-{n:06d}" for n in numbers}
        wrong = [
            job
            for job, record in by_job.items()
            if job not in expected or record["fields"]["sku"] != expected[job]
        ]
        log = Counter(self.log_jobs(redis_url))
        return Findings(
            records=len(records),
            lost=sorted(set(expected) - by_job.keys()),
            doubled_in_file=sum(n - 1 for n in keys.values()),
            doubled_in_log=sum(n - 1 for n in log.values()),
            wrong=wrong,
        )

    @staticmethod
    def log_jobs(redis_url: str) -> list[str]:
        """The job id of every entry of the queue's results log (the Redis stream)."""
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        jobs: list[str] = []
        cursor = "-"
        try:
            while True:
                page = cast(
                    "list[tuple[str, dict[str, str]]]",
                    client.xrange(RESULTS_KEY, cursor, "+", count=5000),
                )
                jobs.extend(fields["job"] for _, fields in page)
                if len(page) < 5000:
                    return jobs
                cursor = "(" + page[-1][0]
        finally:
            client.close()


RESULTS_KEY = "scraperv4:{default}:results"


class ResultsObserver:
    """Reads the queue's results log as it is written (``XREAD BLOCK`` from a thread), so
    every finish Redis acknowledged is seen: Redis sends a blocked reader the new entry in
    the same event-loop pass as the reply to the worker that wrote it. After a crash, an
    entry seen before it and missing after the restart is an acknowledged finish Redis lost.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        #: (entry id, job id) in the order seen.
        self.seen: list[tuple[str, str]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="results-observer", daemon=True)

    def _run(self) -> None:
        cursor = "0-0"
        while not self.stopped.is_set():
            client = redis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_timeout=3, socket_connect_timeout=1
            )
            try:
                while not self.stopped.is_set():
                    answer = cast(
                        "list[tuple[str, list[tuple[str, dict[str, str]]]]]",
                        client.xread({RESULTS_KEY: cursor}, count=1000, block=500),
                    )
                    for _, entries in answer or []:
                        self.seen.extend((entry, fields["job"]) for entry, fields in entries)
                        cursor = entries[-1][0]
            except redis.RedisError:
                time.sleep(0.05)
            finally:
                client.close()

    def time_to_new_work(self, queue: JobQueue, timeout: float, what: str) -> float:
        """Seconds from now until a job claimed from now on has completed: the fleet is
        back to claiming, fetching and finishing."""
        since = time.time()
        checked = len(self.seen)

        def fresh() -> bool:
            nonlocal checked
            while checked < len(self.seen):
                try:
                    job = queue.get(self.seen[checked][1])
                except QueueUnavailableError:
                    return False
                checked += 1
                if job is not None and (job.started_at or 0) >= since:
                    return True
            return False

        return wait_for(fresh, timeout, what)

    def lost(self) -> list[tuple[str, str]]:
        """Entries seen that the log no longer holds."""
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            return [(e, job) for e, job in self.seen if not client.xrange(RESULTS_KEY, e, e)]
        finally:
            client.close()

    def __enter__(self) -> ResultsObserver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


def dead_letters(queue: JobQueue) -> list[str]:
    """The first failed jobs, with their lease expiries and error."""
    return [f"{j.id} ({j.lease_expiries} expiries): {j.error}" for j in queue.dead_letters(0, 3)]


def check_counts(queue: JobQueue) -> dict[str, int]:
    """The counts kept as jobs move must equal a scan of every job."""
    by_status = queue.stats().by_status
    assert queue.recount_by_scan() == by_status, (queue.recount_by_scan(), by_status)
    return by_status


def http_json(
    url: str, method: str = "GET", body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    """Status and JSON body of one request (an HTTP error status is an answer too)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
