"""`scraperv4 run`, `demo`, `jobs` and `submit` as a user runs them (subprocesses, a local site)."""

from __future__ import annotations

import json
import os
import re
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
    for expected in ("2 new, 0 already queued", "0 new, 2 already queued"):
        result = run_cli(
            "submit", "--template-id", "t", "--urls-file", str(urls), REDIS_URL=redis_url
        )
        assert result.returncode == 0, result.stderr
        assert "submitted 2 URLs" in result.stdout and expected in result.stdout, result.stdout
    stats = run_cli("stats", "--json", REDIS_URL=redis_url)
    assert json.loads(stats.stdout)["pending"] == 2
    typo = run_cli("submit", "--template-id", "t", "http://127.0.0.1:9/c",
                   "--job-config", '{"delay_rang": [1, 2]}', REDIS_URL=redis_url)  # fmt: skip
    assert typo.returncode == 2
    assert "unknown key 'delay_rang' (did you mean 'delay_range'?)" in typo.stderr
    assert "timeout, delay_range, respect_robots" in typo.stderr


def test_jobs_list_totals_cancel_explains_and_stats_lists_workers(tmp_path: Path) -> None:
    queue_url = f"sqlite://{tmp_path / 'q.db'}"
    queue = JobQueue(queue_url)
    queue.submit_many({"id": f"j{i}", "target_url": f"http://127.0.0.1:9/{i}"} for i in range(5))
    queue.register_worker("w-1")
    (claimed,) = queue.claim("w-1", 1)
    queue.complete(claimed)

    listed = run_cli("jobs", "list", "--limit", "2", "--queue", queue_url)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2
    assert "(1-2 of 4 pending jobs shown; also 1 completed (--status STATUS))" in listed.stderr

    cancelled = run_cli("jobs", "cancel", claimed.id, "--queue", queue_url)
    assert cancelled.returncode == 1
    assert cancelled.stderr.strip() == (
        f"scraperv4: cannot cancel {claimed.id}: it is completed already (only unfinished "
        "jobs can be cancelled)"
    )
    assert "Ack(" not in cancelled.stderr
    missing = run_cli("jobs", "retry", "nope", "--queue", queue_url)
    assert missing.returncode == 1 and "there is no such job" in missing.stderr

    queue.claim("w-1", 2)
    stats = run_cli("stats", "--queue", queue_url)
    assert stats.returncode == 0, stats.stderr
    assert "held       2   (by workers: assigned + running)" in stats.stdout
    assert re.search(r"\n  w-1 +active +\d+ s ago +2\n", stats.stdout), stats.stdout
    watch = run_cli("stats", "--watch", "--duration", "0", "--queue", queue_url)
    assert re.search(r"held +2 ", watch.stdout), watch.stdout


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


# -- running again: never a silent no-op (#19) -----------------------------------------------


def _run_args(site: DemoSite, template: Path, output: Path, *extra: str) -> list[str]:
    return [
        "run", site.url, "--template", str(template), "--output", str(output),
        "--progress", "lines", "--fetch-retries", "0", *extra,
    ]  # fmt: skip


def test_a_changed_template_is_refused_until_fresh_then_a_finished_crawl_says_so(
    tmp_path: Path,
) -> None:
    template = tmp_path / "shop.json"
    template.write_text(TEMPLATE_PATH.read_text())
    output = tmp_path / "items.jsonl"
    with DemoSite(categories=1, products_per_category=4) as site:
        args = _run_args(site, template, output, "--allow-private-networks")
        first = run_cli(*args)
        assert first.returncode == 0, first.stdout + first.stderr
        assert len(items_in(output)) == 4

        template.write_text(TEMPLATE_PATH.read_text().replace('"name": "price"', '"name": "cost"'))
        refused = run_cli(*args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "template demo-products: its definition changed" in refused.stderr
        assert "--fresh" in refused.stderr and "--resume" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(items_in(output)) == 4, "nothing was touched"

        fresh = run_cli(*args, "--fresh")
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        records = items_in(output)
        assert len(records) == 4, "the output was replaced, not appended to"
        assert all("cost" in r["fields"] and "price" not in r["fields"] for r in records)  # type: ignore[operator]

        again = run_cli(*args)
        assert again.returncode == 0
        assert "already finished: nothing left to fetch (--fresh crawls it again)" in again.stdout
        assert len(items_in(output)) == 4


def test_a_run_that_failed_for_lack_of_a_flag_tells_how_and_resumes_with_it(
    tmp_path: Path,
) -> None:
    output = tmp_path / "items.jsonl"
    with DemoSite(categories=1, products_per_category=3) as site:
        args = _run_args(site, TEMPLATE_PATH, output)
        blocked = run_cli(*args)
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        assert "failed  blocked_address x1" in blocked.stdout
        assert "--allow-private-networks" in blocked.stdout
        assert "jobs list --status failed --queue sqlite://" in blocked.stdout

        with_flag = run_cli(*args, "--allow-private-networks")
        assert with_flag.returncode == 2, with_flag.stdout + with_flag.stderr
        assert "allow_private_networks: False -> True" in with_flag.stderr
        assert "--resume" in with_flag.stderr

        resumed = run_cli(*args, "--allow-private-networks", "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "retried 1 pages that had failed before" in resumed.stdout
        assert len(items_in(output)) == 3


def test_the_summary_counts_statuses_and_failures_and_max_failures_tolerates_them(
    tmp_path: Path,
) -> None:
    output = tmp_path / "items.jsonl"
    with DemoSite(categories=1, products_per_category=5, failing={2}) as site:
        args = _run_args(site, TEMPLATE_PATH, output, "--allow-private-networks",
                         "--max-retries", "0")  # fmt: skip
        first = run_cli(*args)
        assert first.returncode == 1, first.stdout + first.stderr
        out = first.stdout
        assert "HTTP    200 x6, 500 x1" in out, out
        assert "failed  http_status x1, e.g. http_status: fetching " in out, out
        assert "the server answered HTTP 500 Internal Server Error" in out
        assert "1 failed pages > --max-failures 0: exit code 1" in out
        assert "  run     6 scraped, 1 failed in " in out, out

        tolerated = run_cli(*args, "--max-failures", "1")
        assert tolerated.returncode == 0, tolerated.stdout + tolerated.stderr
        assert "retried 1 pages that had failed before" in tolerated.stdout
        assert "  run     0 scraped, 1 failed in " in tolerated.stdout
        assert len(items_in(output)) == 4


def test_progress_lines_tell_the_crawl_apart_from_this_run(tmp_path: Path) -> None:
    output = tmp_path / "items.jsonl"
    # About 45 pages of 0.5 s, two at a time: some ten seconds, a line every five.
    with DemoSite(categories=2, products_per_category=20, latency=0.5) as site:
        done = run_cli(*_run_args(site, TEMPLATE_PATH, output, "--allow-private-networks",
                                  "--concurrency", "2"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if " crawl: " in line]
    assert lines, done.stderr
    assert re.search(r"crawl: \d+/\d+ pages done \(\d+ failed\) \| this run: \d+ pages", lines[0])


def test_user_mistakes_exit_2_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "t", "fields": [{"name": "price", "selector": "div..x"}]}')
    cases = {
        "invalid selector": (
            run_cli("run", "http://127.0.0.1:9/", "--template", str(broken)),
            "a '.' must be followed by a class name",
        ),
        "missing template": (
            run_cli("run", "http://127.0.0.1:9/", "--template", str(tmp_path / "nope.yaml")),
            "nope.yaml: No such file or directory; check the path",
        ),
        "missing export directory": (
            run_cli(
                "results",
                "export",
                "--output",
                str(tmp_path / "no" / "dir" / "x.csv"),
                "--queue",
                f"sqlite://{tmp_path / 'q.db'}",
            ),
            "does not exist; create it first (mkdir -p",
        ),
        "missing output directory": (
            run_cli(
                "run",
                "http://127.0.0.1:9/",
                "--template",
                str(TEMPLATE_PATH),
                "--output",
                str(tmp_path / "no" / "items.jsonl"),
            ),
            "does not exist: create it first",
        ),
        "bad log level": (run_cli("stats", SCRAPERV4_LOG_LEVEL="verbose"), "verbose"),
    }
    for name, (done, expected) in cases.items():
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert expected in done.stderr, (name, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("scraperv4: ")]
        assert len(errors) == 1, (name, done.stderr)
    # The package itself still imports: a bad level in the environment is reported, ignored.
    imported = subprocess.run(
        [sys.executable, "-c", "import scraperv4; print('imported')"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SCRAPERV4_LOG_LEVEL": "verbose"},
    )  # fmt: skip
    assert imported.returncode == 0 and "imported" in imported.stdout, imported.stderr
    assert "SCRAPERV4_LOG_LEVEL='verbose' is not a log level" in imported.stderr


def test_demo_shows_its_template(tmp_path: Path) -> None:
    done = run_cli("demo", "--dir", str(tmp_path / "demo"), "--categories", "1",
                   "--products", "2", "--progress", "lines")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"template {TEMPLATE_PATH}:" in done.stdout
    assert '"id": "demo-products"' in done.stdout
