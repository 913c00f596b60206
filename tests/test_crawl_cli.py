"""`scraperv4 run`, `demo`, `jobs` and `submit` as a user runs them (subprocesses, a local site)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.queue import JobQueue

CLI = [sys.executable, "-m", "scraperv4"]


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


def items_in(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_crawls_the_bundled_site_without_redis(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), "--progress", "lines")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "300 items of 300 expected: ok, every product exactly once" in result.stdout
    assert len(items_in(tmp_path / "demo" / "items.jsonl")) == 300


def test_run_interrupted_then_run_again_resumes_without_scraping_a_page_twice(
    tmp_path: Path,
) -> None:
    output = tmp_path / "items.jsonl"
    with DemoSite(categories=4, products_per_category=50, page_size=10, latency=0.02) as site:
        args = [
            *CLI, "run", site.url, "--template", str(TEMPLATE_PATH), "--output", str(output),
            "--concurrency", "4", "--allow-private-networks", "--progress", "lines",
        ]  # fmt: skip
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while sum(site.hits.values()) < 60 and time.monotonic() < deadline:
                time.sleep(0.02)
            first.send_signal(signal.SIGINT)
            assert first.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        interrupted_at = len(site.hits) - 1
        assert 0 < interrupted_at < site.page_count, "stopped part-way"
        assert "run the same command again to resume" in (tmp_path / "first.log").read_text()

        second = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "finished" in second.stdout
        hits = {path: n for path, n in site.hits.items() if path != "/robots.txt"}
        assert len(hits) == site.page_count
        assert set(hits.values()) == {1}, {p: n for p, n in hits.items() if n > 1}
        records = items_in(output)
        assert (
            sorted((r["fields"] for r in records), key=lambda i: str(i["sku"])) == site.expected()
        )  # type: ignore[index]

        # A third run has nothing left to do and writes nothing.
        third = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert third.returncode == 0
        assert len(items_in(output)) == len(records)
        assert len(site.hits) - 1 == site.page_count


def test_failing_pages_retry_then_fail_visibly_and_can_be_retried(tmp_path: Path) -> None:
    output = tmp_path / "items.jsonl"
    state = tmp_path / "crawl.db"
    with DemoSite(categories=1, products_per_category=10, failing={3, 7}) as site:
        result = run_cli(
            "run", site.url, "--template", str(TEMPLATE_PATH), "--output", str(output),
            "--state", str(state), "--allow-private-networks", "--max-retries", "1",
            "--fetch-retries", "0", "--progress", "lines",
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert "2 failed" in result.stdout
        assert len(items_in(output)) == 8
        for product in (3, 7):
            assert site.hits[f"/product/{product}"] == 2, "one attempt and one retry"

    queue_url = f"sqlite://{state}"
    listed = run_cli("jobs", "list", "--status", "failed", "--json", "--queue", queue_url)
    assert listed.returncode == 0, listed.stderr
    failed = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(j["target_url"].rsplit("/", 1)[1] for j in failed) == ["3", "7"]
    assert all("500" in j["error"] and j["retry_count"] == 1 for j in failed)

    retried = run_cli("jobs", "retry", failed[0]["id"], "--queue", queue_url)
    assert retried.returncode == 0, retried.stderr
    job = JobQueue(queue_url).get(failed[0]["id"])
    assert job is not None and job.status.value == "pending" and job.retry_count == 0
    shown = run_cli("jobs", "show", failed[0]["id"], "--queue", queue_url)
    assert json.loads(shown.stdout)["status"] == "pending"
    missing = run_cli("jobs", "show", "no-such-job", "--queue", queue_url)
    assert missing.returncode == 1 and "no job" in missing.stderr


def test_submit_is_idempotent_and_stats_counts(tmp_path: Path, redis_url: str) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("# seeds\nhttp://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\n\n")
    for _ in range(2):
        result = run_cli(
            "submit", "--template-id", "t", "--urls-file", str(urls), REDIS_URL=redis_url
        )
        assert result.returncode == 0, result.stderr
        assert "submitted 2 URLs" in result.stdout
    stats = run_cli("stats", "--json", REDIS_URL=redis_url)
    assert json.loads(stats.stdout)["pending"] == 2


def test_commands_explain_what_to_do() -> None:
    no_queue = run_cli("stats", REDIS_URL="")
    assert no_queue.returncode == 2
    assert "set REDIS_URL" in no_queue.stderr
    unreachable = run_cli("stats", "--queue", "redis://127.0.0.1:1/0")
    assert unreachable.returncode == 1
    assert "redis://127.0.0.1:1/0" in unreachable.stderr
    no_urls = run_cli("run", "--template", str(TEMPLATE_PATH))
    assert no_urls.returncode == 2 and "no URLs" in no_urls.stderr
    as_worker = run_cli("--queue", "memory://", SCRAPERV4_ROLE="worker", SCRAPERV4_TEMPLATES="")
    assert as_worker.returncode == 2 and "SCRAPERV4_TEMPLATES" in as_worker.stderr
    not_yet = run_cli(SCRAPERV4_ROLE="scheduler")
    assert not_yet.returncode == 2 and "not available in this version" in not_yet.stderr
    as_autoscaler = run_cli(
        "--queue", "memory://", "--metrics-addr", "off", SCRAPERV4_ROLE="autoscaler",
        SCRAPERV4_TEMPLATES="",
    )  # fmt: skip
    assert as_autoscaler.returncode == 2 and "templates directory" in as_autoscaler.stderr
    for command in (
        "run",
        "demo",
        "submit",
        "worker",
        "stats",
        "jobs",
        "results",
        "autoscale",
        "coordinator",
    ):
        help_text = run_cli(command, "--help")
        assert help_text.returncode == 0 and "usage: scraperv4" in help_text.stdout
