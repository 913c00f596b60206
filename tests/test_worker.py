"""The worker end to end: real redis-server, real HTTP site on 127.0.0.1, real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.exceptions import ConfigError, InvalidJobError, WorkerError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.worker import Worker, crawl_job_id, export_jsonl

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0, per_host_concurrency=32)
CLI = [sys.executable, "-m", "scraperv4"]


def seed(queue: JobQueue, site: DemoSite, crawl: str = "c1", **fields: Any) -> None:
    queue.submit(
        {
            "id": crawl_job_id(crawl, site.url),
            "template_id": "demo-products",
            "target_url": site.url,
            "crawl_id": crawl,
            **fields,
        }
    )


def page_hits(site: DemoSite) -> dict[str, int]:
    return {path: n for path, n in site.hits.items() if path != "/robots.txt"}


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "demo.json").write_text(TEMPLATE_PATH.read_text())
    return directory


def test_three_worker_processes_scrape_every_page_and_item_exactly_once(
    redis_url: str, templates_dir: Path, tmp_path: Path
) -> None:
    with DemoSite(categories=20, products_per_category=95, page_size=20) as site:
        assert site.page_count == 2001
        queue = JobQueue(redis_url)
        seed(queue, site)
        env = {**os.environ, "REDIS_URL": redis_url}
        logs = [tmp_path / f"w{i}.log" for i in range(3)]
        workers = []
        for i, log in enumerate(logs):
            with open(log, "w") as stderr_file:
                workers.append(
                    subprocess.Popen(
                        [
                            *CLI,
                            "worker",
                            "--templates",
                            str(templates_dir),
                            "--concurrency",
                            "16",
                            "--allow-private-networks",
                            "--metrics-addr",
                            "off",
                            "--exit-when-done",
                            "--worker-id",
                            f"w{i}",
                            "--fetch-retries",
                            "0",
                        ],
                        env=env,
                        stderr=stderr_file,
                    )
                )
        try:
            codes = [w.wait(timeout=240) for w in workers]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        stderr = [log.read_text() for log in logs]
        assert codes == [0, 0, 0], stderr
        stats = queue.stats()
        assert stats.by_status["completed"] == site.page_count, stats
        assert stats.by_status["failed"] == 0
        # Every page was fetched exactly once across the three processes...
        hits = page_hits(site)
        assert len(hits) == site.page_count
        assert set(hits.values()) == {1}, {p: n for p, n in hits.items() if n != 1}
        # ...each worker did part of the work...
        done = [
            int(m.group(1))
            for e in stderr
            for m in [re.search(r"stopped: (\d+) completed", e)]
            if m
        ]
        assert len(done) == 3 and min(done) > 0 and sum(done) == site.page_count, stderr
        # ...and every item is recorded exactly once.
        out = tmp_path / "items.jsonl"
        result = subprocess.run(
            [*CLI, "results", "export", "--output", str(out)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted((r["fields"] for r in records), key=lambda i: i["sku"]) == site.expected()
        assert len({(r["job_id"], r["index"]) for r in records}) == len(records)
        # A second export appends nothing.
        again = subprocess.run(
            [*CLI, "results", "export", "--output", str(out)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "exported 0 new items" in again.stdout
        csv_out = tmp_path / "items.csv"
        subprocess.run(
            [*CLI, "results", "export", "--format", "csv", "--output", str(csv_out)],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        assert len(csv_out.read_text().splitlines()) == len(records) + 1


def _worker_process(redis_url: str, templates_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "worker", "--templates", str(templates_dir), "--allow-private-networks",
         "--metrics-addr", "off", "--worker-id", "slow", "--fetch-retries", "0", *extra],
        env={**os.environ, "REDIS_URL": redis_url}, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("grace", [10.0, 0.0])
def test_sigterm_finishes_or_releases_in_flight_jobs_and_exits_0(
    redis_url: str, templates_dir: Path, grace: float
) -> None:
    with DemoSite(categories=1, products_per_category=20, latency=1.0) as site:
        queue = JobQueue(redis_url)
        base = site.url.rstrip("/")
        queue.submit_many(
            {"template_id": "demo-products", "target_url": f"{base}/product/{i}", "depth": 2}
            for i in range(1, 21)
        )
        worker = _worker_process(
            redis_url, templates_dir, "--concurrency", "4", "--grace-period", str(grace)
        )
        try:
            wait_for(lambda: queue.stats().by_status["running"] == 4, 20, "4 jobs in flight")
            time.sleep(0.2)
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert worker.wait(timeout=grace + 10) == 0
            took = time.monotonic() - started
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert took < grace + 5
        stats = queue.stats().by_status
        assert stats["assigned"] == stats["running"] == 0, "nothing left waiting for a lease"
        assert stats["completed"] + stats["pending"] == 20
        if grace:
            assert stats["completed"] >= 4, "in-flight jobs were allowed to finish"
        else:
            assert stats["pending"] >= 16, "in-flight jobs were released at once"
        assert queue.workers() == [], "the worker unregistered"


def test_a_drain_request_stops_the_worker(redis_url: str) -> None:
    queue = JobQueue(redis_url, lease=5.0)
    template = Template.from_file(TEMPLATE_PATH)
    worker = Worker(queue, worker_id="drained", templates=[template], heartbeat=0.2)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        wait_for(lambda: any(w["id"] == "drained" for w in queue.workers()), 10, "registration")
        assert queue.drain("drained")
        thread.join(timeout=10)
        assert not thread.is_alive(), "the worker left after the drain request"
    finally:
        worker.stop(immediate=True)
        thread.join(timeout=10)
    assert queue.workers() == []


def test_metrics_health_and_ready_endpoints(tmp_path: Path) -> None:
    queue = JobQueue(f"sqlite://{tmp_path / 'q.db'}")
    with DemoSite(categories=2, products_per_category=5, page_size=5) as site:
        seed(queue, site)
        worker = Worker(
            queue,
            worker_id="metrics",
            templates=[Template.from_file(TEMPLATE_PATH)],
            fetch=LOCAL,
            metrics_addr="127.0.0.1:0",
            exit_when_done=True,
        )
        progress = worker.run()
    assert progress["completed"] == site.page_count
    assert progress["items"] == 10
    text = worker.metrics_text()
    assert (
        f'scraperv4_worker_jobs_total{{outcome="completed",worker="metrics"}} {site.page_count}'
        in text
    )
    assert 'scraperv4_worker_items_total{worker="metrics"} 10' in text
    assert (
        f'scraperv4_worker_http_responses_total{{code="200",worker="metrics"}} {site.page_count}'
        in text
    )
    assert "url=" not in text, "no URL labels"


def test_metrics_server_serves_while_running(redis_url: str) -> None:
    queue = JobQueue(redis_url)
    worker = Worker(
        queue,
        worker_id="probe",
        templates=[Template.from_file(TEMPLATE_PATH)],
        metrics_addr="127.0.0.1:0",
    )
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        wait_for(lambda: worker.metrics_address is not None, 10, "the metrics server")
        base = f"http://{worker.metrics_address}"
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
            assert b"scraperv4_worker_jobs_in_flight" in response.read()
    finally:
        worker.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_item_callback_filters_and_changes_records(tmp_path: Path) -> None:
    queue = JobQueue("memory://")
    seen: list[str] = []

    def keep_cheap(record: dict[str, Any]) -> Optional[dict[str, Any]]:
        seen.append(record["job_id"])
        if float(record["fields"]["price"]) > 500:
            return None
        record["fields"]["price_cents"] = round(float(record["fields"]["price"]) * 100)
        return record

    with DemoSite(categories=2, products_per_category=10, page_size=10) as site:
        seed(queue, site)
        out = tmp_path / "items.jsonl"
        worker = Worker(
            queue, worker_id="cb", templates=[Template.from_file(TEMPLATE_PATH)], fetch=LOCAL,
            exit_when_done=True, jsonl_path=out, on_item=keep_cheap,
        )  # fmt: skip
        worker.run()
        expected = [i for i in site.expected() if float(i["price"]) <= 500]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(seen) == 20
    assert len(records) == len(expected) < 20
    assert all(
        r["fields"]["price_cents"] == round(float(r["fields"]["price"]) * 100) for r in records
    )


def test_a_failing_callback_fails_the_job_with_its_message(tmp_path: Path) -> None:
    queue = JobQueue("memory://", retry_base=0.01)

    def broken(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("pipeline is down")

    with DemoSite(categories=1, products_per_category=1) as site:
        queue.submit({"id": "p1", "template_id": "demo-products",
                      "target_url": site.url + "product/1", "max_retries": 1})  # fmt: skip
        Worker(
            queue, worker_id="cb", templates=[Template.from_file(TEMPLATE_PATH)], fetch=LOCAL,
            exit_when_done=True, on_item=broken,
        ).run()  # fmt: skip
    job = queue.get("p1")
    assert job is not None and job.status.value == "failed"
    assert job.retry_count == 1
    assert "pipeline is down" in (job.error or "")
    assert export_jsonl(queue, tmp_path / "none.jsonl") == 0


def test_unknown_template_fails_the_job_without_retrying() -> None:
    queue = JobQueue("memory://")
    queue.submit({"id": "x", "template_id": "nope", "target_url": "http://127.0.0.1:9/"})
    Worker(queue, worker_id="w", exit_when_done=True).run()
    job = queue.get("x")
    assert job is not None and job.status.value == "failed" and job.retry_count == 0
    assert "nope" in (job.error or "")


def test_bad_settings_are_config_errors() -> None:
    queue = JobQueue("memory://", lease=10.0)
    with pytest.raises(ConfigError, match="below the queue's lease"):
        Worker(queue, worker_id="w", heartbeat=10.0)
    with pytest.raises(ConfigError, match="concurrency"):
        Worker(queue, worker_id="w", concurrency=0)
    with pytest.raises(ConfigError, match="metrics_addr"):
        Worker(queue, worker_id="w", metrics_addr="nonsense")


def test_a_worker_runs_once_at_a_time() -> None:
    queue = JobQueue("memory://")
    worker = Worker(queue, worker_id="once")
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        wait_for(lambda: queue.workers() != [], 10, "registration")
        with pytest.raises(WorkerError, match="already running"):
            worker.run(handle_signals=False)
    finally:
        worker.stop()
        thread.join(timeout=10)


@pytest.fixture
def demo_site() -> Iterator[DemoSite]:
    with DemoSite(categories=3, products_per_category=30, page_size=10, latency=0.02) as site:
        yield site


def _product_jobs(queue: JobQueue, site: DemoSite, count: int, first: int = 1) -> None:
    """Jobs for product pages ``first``..``first + count - 1`` (ids ``p<n>``), at the depth
    where the demo template follows no more links."""
    base = site.url.rstrip("/")
    queue.submit_many(
        {"id": f"p{i}", "template_id": "demo-products", "target_url": f"{base}/product/{i}",
         "depth": 2}
        for i in range(first, first + count)
    )  # fmt: skip


def test_concurrency_drops_to_the_floor_under_memory_pressure_and_recovers() -> None:
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=60, latency=0.1) as site:
        queue = JobQueue("memory://")
        _product_jobs(queue, site, 60)
        # Any memory use is over a 0.001 % threshold: the machine is always "under pressure".
        worker = Worker(
            queue, worker_id="squeezed", templates=[template], fetch=LOCAL, concurrency=8,
            exit_when_done=True, memory_max=0.001, adapt_interval=0.2,
        )  # fmt: skip
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
        thread.start()
        try:
            wait_for(lambda: worker.progress()["concurrency_limit"] == 1, 15, "the floor")
            time.sleep(0.5)  # jobs started under the old limit finish (0.1 s each)
            site.reset_peak()
            before = sum(page_hits(site).values())
            time.sleep(1.0)
            assert site.peak_in_flight == 1, "one request at a time at the floor"
            assert sum(page_hits(site).values()) > before, "still working at the floor"
            assert 'scraperv4_worker_concurrency_limit{worker="squeezed"} 1' in (
                worker.metrics_text()
            )
        finally:
            thread.join(timeout=30)
        assert not thread.is_alive()
    assert queue.stats().by_status["completed"] == 60

    # No pressure possible (memory cannot pass 100 %): the limit stays at the ceiling.
    with DemoSite(categories=1, products_per_category=40, latency=0.2) as site:
        queue = JobQueue("memory://")
        _product_jobs(queue, site, 40)
        worker = Worker(
            queue, worker_id="free", templates=[template], fetch=LOCAL, concurrency=8,
            exit_when_done=True, memory_max=100.0, cpu_max=100.0, adapt_interval=0.2,
        )  # fmt: skip
        progress = worker.run(handle_signals=False)
        assert progress["concurrency_limit"] == 8
        assert site.peak_in_flight == 8
        assert progress["completed"] == 40


def test_a_worker_can_run_again_after_it_stopped(tmp_path: Path) -> None:
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=6) as site:
        queue = JobQueue("memory://")
        _product_jobs(queue, site, 3)
        worker = Worker(
            queue, worker_id="again", templates=[template], fetch=LOCAL, exit_when_done=True,
            jsonl_path=tmp_path / "items.jsonl",
        )  # fmt: skip
        assert worker.run(handle_signals=False)["completed"] == 3
        _product_jobs(queue, site, 3, first=4)
        second = worker.run(handle_signals=False)
    assert second["completed"] == 6, "the second run worked (counters are cumulative)"
    assert worker.progress()["stopping"] is False, "ready for a third run"
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 6


def test_jobs_whose_lease_could_not_be_renewed_are_abandoned_not_recorded(
    redis_server: Any, tmp_path: Path
) -> None:
    """Redis hangs (SIGSTOP) for longer than the lease while jobs are in flight: the worker
    abandons them instead of recording results it no longer owns; they run again once Redis
    is back, and every item is recorded exactly once."""
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=4, latency=2.5) as site:
        queue = JobQueue(redis_server.url, lease=1.0, operation_timeout=0.5)
        _product_jobs(queue, site, 4)
        worker = Worker(
            queue, worker_id="cut-off", templates=[template], concurrency=4,
            fetch=dataclasses.replace(LOCAL, respect_robots=False),
            heartbeat=0.2, exit_when_done=True, adaptive_concurrency=False,
        )  # fmt: skip
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
        thread.start()
        try:
            wait_for(lambda: worker.progress()["in_flight"] == 4, 10, "4 jobs in flight")
            redis_server.pause()
            try:
                # Longer than the lease: the pages are requested, but the worker cannot know
                # whether it still owns the jobs when their answers arrive.
                wait_for(lambda: worker.progress()["abandoned"] == 4, 10, "abandonment")
                time.sleep(2.0)
            finally:
                redis_server.resume()
            thread.join(timeout=60)
            assert not thread.is_alive()
        finally:
            worker.stop(immediate=True)
            thread.join(timeout=10)
        progress = worker.progress()
        assert progress["abandoned"] == 4
        assert progress["completed"] == 4, "each job ran again and completed once"
        assert all(site.hits[f"/product/{i}"] == 2 for i in range(1, 5)), "fetched twice"
        out = tmp_path / "items.jsonl"
        assert export_jsonl(queue, out) == 4, "items recorded once, by the second run only"
        assert {json.loads(line)["job_id"] for line in out.read_text().splitlines()} == {
            "p1", "p2", "p3", "p4",
        }  # fmt: skip


def test_export_with_trim_empties_the_results_log_and_loses_nothing(
    durable_queue_url: str, tmp_path: Path
) -> None:
    url = durable_queue_url
    queue = JobQueue(url)
    template = Template.from_file(TEMPLATE_PATH)
    out = tmp_path / "items.jsonl"
    with DemoSite(categories=1, products_per_category=8) as site:
        _product_jobs(queue, site, 5)
        Worker(queue, worker_id="t", templates=[template], fetch=LOCAL, exit_when_done=True).run(
            handle_signals=False
        )
        if url.startswith("redis"):
            # The CLI path: export, then trim what the file holds.
            done = subprocess.run(
                [*CLI, "results", "export", "--output", str(out), "--trim"],
                env={**os.environ, "REDIS_URL": url}, capture_output=True, text=True,
                timeout=60, check=True,
            )  # fmt: skip
            assert "exported 5 new items" in done.stdout
            assert "trimmed 5 entries" in done.stdout
        else:
            assert export_jsonl(queue, out, trim=True) == 5
        assert export_jsonl(queue, tmp_path / "fresh.jsonl") == 0, "the log is empty"
        _product_jobs(queue, site, 3, first=6)
        Worker(queue, worker_id="t", templates=[template], fetch=LOCAL, exit_when_done=True).run(
            handle_signals=False
        )
    assert export_jsonl(queue, out, trim=True) == 3, "only the new items, after a trim"
    skus = sorted(json.loads(line)["fields"]["sku"] for line in out.read_text().splitlines())
    assert skus == [f"SKU-{i:06d}" for i in range(1, 9)]


def test_a_jobs_config_overrides_politeness_and_robots() -> None:
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=6) as site:
        queue = JobQueue("memory://")
        base = site.url.rstrip("/")
        queue.submit_many(
            {"id": f"p{i}", "template_id": "demo-products", "target_url": f"{base}/product/{i}",
             "depth": 2, "config": {"delay_range": [0.25, 0.25], "respect_robots": False}}
            for i in range(1, 5)
        )  # fmt: skip
        # A wrong config is refused when submitted, naming the setting (issue #15).
        with pytest.raises(InvalidJobError, match="delay_range"):
            queue.submit(
                {"id": "bad", "template_id": "demo-products", "target_url": f"{base}/product/5",
                 "config": {"delay_range": [3, 1]}}
            )  # fmt: skip
        started = time.monotonic()
        progress = Worker(
            queue, worker_id="polite", templates=[template], fetch=LOCAL, concurrency=4,
            exit_when_done=True,
        ).run(handle_signals=False)  # fmt: skip
        took = time.monotonic() - started
        assert site.hits["/robots.txt"] == 0, "robots.txt skipped as the jobs asked"
        assert site.hits["/product/5"] == 0, "a job with a wrong config is not fetched"
    assert progress["completed"] == 4
    assert took >= 0.75, "four requests to one host 0.25 s apart"
    assert queue.get("bad") is None


def test_a_stop_gives_jobs_back_uncounted_and_leaves_no_ghost_worker(redis_url: str) -> None:
    """Jobs a stop aborts are released while still listed by the heartbeat (a heartbeat in
    between would count their leases as expired), and no heartbeat follows the
    unregistration (it would put the worker back in the registry)."""
    queue = JobQueue(redis_url, lease=5.0)
    template = Template.from_file(TEMPLATE_PATH)
    with DemoSite(categories=1, products_per_category=12, latency=2.0) as site:
        base = site.url.rstrip("/")
        queue.submit_many(
            {"template_id": "demo-products", "target_url": f"{base}/product/{i}"}
            for i in range(1, 13)
        )
        for round_ in range(3):
            worker = Worker(
                queue,
                worker_id=f"stopper-{round_}",
                templates=[template],
                fetch=LOCAL,
                heartbeat=0.005,
                concurrency=4,
                grace_period=0.0,
                adaptive_concurrency=False,
            )
            thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
            thread.start()
            try:
                wait_for(lambda: queue.stats().by_status["running"] == 4, 20, "4 in flight")
                time.sleep(0.1)
            finally:
                worker.stop()
                thread.join(timeout=30)
            assert not thread.is_alive()
            time.sleep(0.2)  # forty heartbeat periods: a late one would show now
            assert queue.workers() == [], "no worker left in the registry"
            stats = queue.stats()
            assert stats.by_status["running"] == stats.by_status["assigned"] == 0
            assert stats.totals.expired == 0, "a stop's releases are not expired leases"
