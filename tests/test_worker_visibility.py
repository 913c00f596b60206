"""What a worker tells its user: items the callback dropped, a line per page and a periodic
stats line in the log (text or JSON), a busy metrics port refused before registering, and a
concurrency limit that reacts to the worker's own load rather than other programs'."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.exceptions import WorkerError
from scraperv4.extract import Template
from scraperv4.queue import JobQueue
from scraperv4.worker import Worker
from test_worker import LOCAL, _product_jobs, seed, wait_for

CLI = [sys.executable, "-m", "scraperv4"]

DROP_SCRIPT = """
    import json, logging
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    from scraperv4.demo import TEMPLATE_PATH, DemoSite
    from scraperv4.extract import Template
    from scraperv4.fetch import FetchConfig
    from scraperv4.queue import JobQueue
    from scraperv4.worker import Worker, crawl_job_id

    queue = JobQueue("memory://")
    items = []
    with DemoSite(categories=1, products_per_category=6) as site:
        queue.submit({"id": crawl_job_id("c", site.url), "crawl_id": "c",
                      "template_id": "demo-products", "target_url": site.url})
        worker = Worker(queue, templates=[Template.from_file(TEMPLATE_PATH)], exit_when_done=True,
                        fetch=FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0),
                        on_item=items.append)
        progress = worker.run()
    print(json.dumps({"seen": len(items), "items": progress["items"],
                      "dropped": progress["dropped"]}))
    print(worker.metrics_text())
"""


def test_a_callback_returning_none_drops_items_counted_and_warned_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DROP_SCRIPT)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.splitlines()[0])
    assert counts == {"seen": 6, "items": 0, "dropped": 6}
    assert "scraperv4_worker_items_dropped_total" in done.stdout
    assert 'items_dropped_total{worker="' in done.stdout and '"} 6' in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "on_item dropped all" in line]
    assert len(warnings) == 1, done.stderr
    assert "the callback must return the record to keep it" in warnings[0]
    assert "items.append" in warnings[0]


def test_a_busy_metrics_port_is_refused_before_registering(tmp_path: Path) -> None:
    queue_url = f"sqlite://{tmp_path / 'q.db'}"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        worker = Worker(JobQueue(queue_url), worker_id="second", metrics_addr=f"127.0.0.1:{port}")
        with pytest.raises(WorkerError) as caught:
            worker.run(handle_signals=False)
        message = str(caught.value)
        assert f"cannot serve metrics on 127.0.0.1:{port}: the port is already in use" in message
        assert f"--metrics-addr 127.0.0.1:{port + 1}" in message
        assert JobQueue(queue_url).workers() == [], "no ghost left in the registry"

        done = subprocess.run(
            [*CLI, "worker", "--queue", queue_url, "--templates", str(TEMPLATE_PATH.parent),
             "--metrics-addr", f"127.0.0.1:{port}", "--worker-id", "cli"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "another worker on this host?" in done.stderr and "Traceback" not in done.stderr
    stats = subprocess.run(
        [*CLI, "stats", "--queue", queue_url], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert "workers 0 active of 0" in stats.stdout, stats.stdout


def _worker_cli(queue_url: str, *extra: str) -> list[str]:
    return [*CLI, "worker", "--queue", queue_url, "--templates", str(TEMPLATE_PATH.parent),
            "--allow-private-networks", "--metrics-addr", "off", "--exit-when-done",
            "--fetch-retries", "0", "--worker-id", "logs", *extra]  # fmt: skip


def test_info_logs_a_line_per_page_and_a_stats_line(tmp_path: Path) -> None:
    queue_url = f"sqlite://{tmp_path / 'q.db'}"
    with DemoSite(categories=1, products_per_category=12, latency=0.3) as site:
        seed(JobQueue(queue_url), site)
        done = subprocess.run(
            _worker_cli(queue_url, "--concurrency", "2", "--log-stats-interval", "1",
                        "--log-level", "info"),
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        url = site.url
    assert done.returncode == 0, done.stderr
    crawled = [line for line in done.stderr.splitlines() if "Crawled (200) <GET " in line]
    assert len(crawled) == site.page_count, done.stderr
    assert any(f"Crawled (200) <GET {url}product/3> (1 items, 0 links, " in line
               for line in crawled), crawled  # fmt: skip
    stats = [line for line in done.stderr.splitlines() if "pages/min), scraped" in line]
    assert stats, done.stderr


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    queue_url = f"sqlite://{tmp_path / 'q.db'}"
    with DemoSite(categories=1, products_per_category=2) as site:
        seed(JobQueue(queue_url), site)
        done = subprocess.run(
            _worker_cli(queue_url),
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "SCRAPERV4_LOG_FORMAT": "json", "SCRAPERV4_LOG_LEVEL": "info"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert records, done.stderr
    for record in records:
        assert set(record) >= {"time", "level", "logger", "message"}
        assert record["time"].endswith("Z")
    assert any(r["logger"] == "scraperv4.pages" and r["message"].startswith("Crawled (200)")
               for r in records)  # fmt: skip
    others = [line for line in done.stderr.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith("worker logs ") for line in others), others


@pytest.fixture
def cpu_hogs() -> Iterator[None]:
    """Two busy processes (as many as the cores of a small machine): another program's load.
    Each stops by itself after 60 s; stopped by PID at the end of the test."""
    hogs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass",
            ]
        )
        for _ in range(max(2, os.cpu_count() or 2))
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_other_programs_load_does_not_throttle_the_worker(cpu_hogs: None) -> None:
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=40, latency=0.15) as site:
        queue = JobQueue("memory://")
        _product_jobs(queue, site, 40)
        # A CPU threshold the machine is above (the hogs) and the worker itself is not.
        worker = Worker(
            queue, worker_id="own", templates=[template], fetch=LOCAL, concurrency=8,
            exit_when_done=True, cpu_max=50.0, adapt_interval=0.2,
        )  # fmt: skip
        limits: list[int] = []
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
        thread.start()
        while thread.is_alive():
            limits.append(worker.progress()["concurrency_limit"])
            thread.join(0.05)
    assert queue.stats().by_status["completed"] == 40
    assert set(limits) == {8}, limits
    assert site.peak_in_flight == 8


def test_the_whole_machine_is_an_opt_in_and_a_change_is_logged_once(cpu_hogs: None) -> None:
    template = Template.from_file(TEMPLATE_PATH)
    records = _Records()
    logger = logging.getLogger("scraperv4")
    logger.addHandler(records)
    try:
        with DemoSite(categories=1, products_per_category=80, latency=0.1) as site:
            queue = JobQueue("memory://")
            _product_jobs(queue, site, 80)
            worker = Worker(
                queue, worker_id="machine", templates=[template], fetch=LOCAL, concurrency=8,
                exit_when_done=True, cpu_max=50.0, adapt_interval=0.2, adapt_scope="machine",
            )  # fmt: skip
            thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
            thread.start()
            try:
                wait_for(lambda: worker.progress()["concurrency_limit"] == 1, 30, "the floor")
                time.sleep(1.0)  # five more intervals under pressure: no more warnings
            finally:
                worker.stop(immediate=True)
                thread.join(timeout=30)
    finally:
        logger.removeHandler(records)
    lowering = [m for m in records.messages if "lowering concurrency" in m]
    assert len(lowering) == 1, records.messages
    assert lowering[0].startswith("CPU of the machine at "), lowering
