"""Workers configured by the environment alone: the guide's worker startup script, and
``scraperv4`` in a container (``SCRAPERV4_ROLE=worker`` and variables, no flags)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scraperv4.demo import DemoSite
from scraperv4.queue import JobQueue
from scraperv4.worker import export_jsonl

# The guide's "Worker startup script" (src/scaling/worker.py), its import line changed.
GUIDE_SCRIPT = """\
import argparse

from scraperv4.scaling.worker import ScrapingWorker

# Worker startup script
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description='ScraperV4 Distributed Worker')
    parser.add_argument('--worker-id', default=None, help='Worker ID')
    parser.add_argument('--redis-url', default='redis://localhost:6379/0', help='Redis URL')

    args = parser.parse_args()

    worker = ScrapingWorker(args.worker_id, args.redis_url)
    worker.start()
"""


# One item per product page, no links followed: one job is one page.
TEMPLATE = '{"id": "product", "fields": [{"name": "name", "selector": "h1.name"}]}'


def write_templates(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "product.json").write_text(TEMPLATE)
    return directory


def bare_env(**variables: str) -> dict[str, str]:
    """The environment of a fresh container: no setting variable but ``variables``."""
    keep = ("PATH", "HOME", "LANG", "LD_LIBRARY_PATH", "SYSTEMROOT")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **variables}


def submit_products(queue: JobQueue, site: DemoSite, count: int, max_retries: int) -> None:
    queue.submit_many(
        {"target_url": f"{site.url}product/{n}", "template_id": "product",
         "max_retries": max_retries}
        for n in range(1, count + 1)
    )  # fmt: skip


def wait_finished(queue: JobQueue, count: int, process: subprocess.Popen[bytes]) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        by_status = queue.stats().by_status
        if by_status.get("completed", 0) + by_status.get("failed", 0) >= count:
            return by_status
        assert process.poll() is None, "the worker exited early"
        time.sleep(0.1)
    raise AssertionError(f"the jobs did not finish: {queue.stats().by_status}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def start_guide_worker(tmp_path: Path, redis_url: str, **variables: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "worker.py"
    script.write_text(GUIDE_SCRIPT)
    write_templates(tmp_path / "templates")
    with open(tmp_path / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(script), "--worker-id", "guide-1", "--redis-url", redis_url],
            cwd=tmp_path, env=bare_env(**variables), stdout=log, stderr=log,
        )  # fmt: skip


def test_the_guides_worker_script_fetches_a_loopback_site_when_the_environment_allows_it(
    tmp_path: Path, redis_url: str
) -> None:
    control_url = redis_url.rsplit("/", 1)[0] + "/1"  # another Redis database
    with DemoSite(categories=1, products_per_category=5) as site:
        # Control: without the variable the SSRF guard refuses the loopback site.
        refused_queue = JobQueue(control_url)
        refused = start_guide_worker(tmp_path, control_url)
        submit_products(refused_queue, site, 2, max_retries=0)
        assert wait_finished(refused_queue, 2, refused).get("failed") == 2
        assert stop(refused) == 0
        assert all("blocked" in (job.error or "") for job in refused_queue.list("failed"))

        queue = JobQueue(redis_url)
        allowed = start_guide_worker(tmp_path, redis_url, SCRAPERV4_ALLOW_PRIVATE_NETWORKS="true")
        submit_products(queue, site, 5, max_retries=0)
        by_status = wait_finished(queue, 5, allowed)
        assert stop(allowed) == 0
    assert by_status.get("completed") == 5, (tmp_path / "worker.log").read_text()
    assert export_jsonl(queue, tmp_path / "items.jsonl") == 5


def test_a_worker_container_needs_nothing_but_variables(tmp_path: Path, redis_url: str) -> None:
    templates = write_templates(tmp_path / "templates")
    queue = JobQueue(redis_url)
    with DemoSite(categories=1, products_per_category=4) as site:
        submit_products(queue, site, 4, max_retries=0)
        done = subprocess.run(
            [sys.executable, "-m", "scraperv4"],  # what the image's ENTRYPOINT runs
            env=bare_env(
                SCRAPERV4_ROLE="worker",
                REDIS_URL=redis_url,
                SCRAPERV4_TEMPLATES=str(templates),
                SCRAPERV4_ALLOW_PRIVATE_NETWORKS="true",
                SCRAPERV4_CONCURRENCY="4",
                SCRAPERV4_METRICS_ADDR="127.0.0.1:0",
                SCRAPERV4_EXIT_WHEN_DONE="true",
                WORKER_ID="container-1",
            ),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "worker container-1 serving" in done.stderr
    assert queue.stats().by_status.get("completed") == 4
