"""The guide's ScrapingWorker and ScrapingService, run as the guide's scripts use them."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.scaling.distributed_queue import DistributedJobQueue, ScrapingJob
from scraperv4.scaling.worker import ScrapingService, ScrapingWorker

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0)


def wait_status(service: ScrapingService, job_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = service.get_job_status(job_id)
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_scraping_service_runs_a_job_and_reports_items(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "demo.json").write_text(TEMPLATE_PATH.read_text())
    service = ScrapingService(str(templates), fetch=LOCAL)
    with DemoSite(categories=2, products_per_category=6, page_size=3, failing={12}) as site:
        job = service.create_job("shop", "demo-products", site.url, {"timeout": 60})
        assert service.get_job_status(job.id)["status"] == "pending"
        service.start_scraping_job(job.id)
        status = wait_status(service, job.id)
        assert status["status"] == "completed"
        assert status["items_scraped"] == site.expected_items == 11
        broken = service.create_job("broken", "demo-products", site.url + "product/12")
        service.start_scraping_job(broken.id)
        failed = wait_status(service, broken.id)
    assert failed["status"] == "failed"
    assert "500" in str(failed["error"])


def test_scraping_worker_processes_seed_jobs_and_stops_gracefully(
    redis_url: str, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "demo.json").write_text(TEMPLATE_PATH.read_text())
    seed_queue = DistributedJobQueue(redis_url)
    with DemoSite(categories=1, products_per_category=4) as site:
        for n in range(1, 5):
            seed_queue.submit_job(
                ScrapingJob(
                    id=None,
                    name=f"p{n}",
                    template_id="demo-products",
                    target_url=f"{site.url}product/{n}",
                    config={},
                )
            )
        worker = ScrapingWorker(
            "w-seed", redis_url, templates_dir=str(templates), fetch=LOCAL, heartbeat=1.0
        )
        thread = threading.Thread(target=worker.start)
        thread.start()
        queue = JobQueue(redis_url)
        deadline = time.monotonic() + 30
        while queue.stats().by_status["completed"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert queue.stats().by_status["completed"] >= 4
    assert queue.workers() == []


def test_scraping_workers_default_id_differs_between_containers(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replicas of one image run the worker under the same PID (tini is PID 1); their
    # hostnames differ (a container's is its id, a pod's its name).
    monkeypatch.delenv("WORKER_ID", raising=False)
    monkeypatch.delenv("SCRAPERV4_WORKER_ID", raising=False)
    worker = ScrapingWorker(redis_url=redis_url, templates_dir=str(tmp_path))
    other = ScrapingWorker(redis_url=redis_url, templates_dir=str(tmp_path))
    # <hostname>-<pid>, with a per-process number after the first worker of the process
    # (earlier tests in this process may have made some).
    base = f"{socket.gethostname()}-{os.getpid()}"
    for made in (worker, other):
        assert re.fullmatch(re.escape(base) + r"(-[0-9]+)?", made.worker_id), made.worker_id
    assert worker.worker_id != other.worker_id
