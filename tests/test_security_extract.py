"""One hostile page must not take a worker down (issue #15), loopback only.

The pages of the issue and their variants are refused by extraction with the cap they broke;
a worker fails such a job for good (no retry that would poison the next worker) and goes on
with the next job; a job config that used to panic the worker's task (``{"timeout": 1e20}``)
is refused when it is submitted, through every door: the Python API, the coordinator and the
CLI.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from scraperv4.coordinator import Coordinator
from scraperv4.exceptions import ExtractionLimitError, InvalidJobError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.worker import Worker

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0, respect_robots=False)
ITEMS = Template.from_dict(
    {"id": "items", "item": ".p", "fields": [{"name": "h", "selector": "h2"}]}
)
# The page at the depth the output cap meets first (its 50,000 levels are refused for
# depth), a page of more item elements than the cap, and one nested 50,000 deep.
COPYING = "<div class=p>" * 1000 + "<h2>" + "A" * 5_000_000
MANY = "<p class=p><h2>x</h2></p>" * 60_000
DEEP = "<div class=p>" * 50_000 + "<h2>" + "A" * 100_000
ORDINARY = "<div class=p><h2>one</h2></div><div class=p><h2>two</h2></div>"


def test_hostile_pages_raise_the_cap_they_broke() -> None:
    started = time.monotonic()
    for page, words in (
        (COPYING, "extracted values pass"),
        (MANY, "more than 50000 item elements"),
        (DEEP, "nests elements more than 1024 deep"),
    ):
        with pytest.raises(ExtractionLimitError, match=words):
            ITEMS.extract(page, "https://hostile.example/")
    with pytest.raises(ExtractionLimitError):
        ITEMS.extract_many([(ORDINARY, "https://ok.example/"), (DEEP, "https://x.example/")])
    links = Template.from_dict(
        {"id": "l", "fields": [{"name": "t", "selector": "title"}], "links": {"selector": "a"}}
    )
    many_links = "".join(f"<a href=/p/{i}>x</a>" for i in range(25_000))
    with pytest.raises(ExtractionLimitError, match="links"):
        links.links(many_links, "https://hostile.example/")
    assert ITEMS.extract(ORDINARY, "https://ok.example/") == [{"h": "one"}, {"h": "two"}]
    assert time.monotonic() - started < 120, "refused quickly (a debug build, a loaded box)"


class Site(http.server.ThreadingHTTPServer):
    """The hostile pages and an ordinary one on 127.0.0.1."""

    daemon_threads = True
    pages: ClassVar[dict[str, str]] = {"/copying": COPYING, "/deep": DEEP, "/ok": ORDINARY}

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = Site.pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def site() -> Iterator[str]:
    with Site() as server:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"


def test_a_worker_fails_hostile_pages_for_good_and_goes_on(site: str, tmp_path: Path) -> None:
    queue = JobQueue(f"sqlite://{tmp_path / 'q.db'}")
    for name in ("copying", "deep", "ok"):
        queue.submit(
            {"id": name, "template_id": "items", "target_url": f"{site}/{name}", "max_retries": 3}
        )
    worker = Worker(
        queue, worker_id="hostile", templates=[ITEMS], fetch=LOCAL, exit_when_done=True,
        concurrency=2,
    )  # fmt: skip
    started = time.monotonic()
    progress = worker.run(handle_signals=False)
    assert time.monotonic() - started < 300
    assert progress["completed"] == 1 and progress["failed"] == 2, progress
    for name, words in (("copying", "extracted values pass"), ("deep", "deep")):
        job = queue.get(name)
        assert job is not None and job.status.value == "failed", job
        assert job.retry_count == 0, "failed for good: no retry poisons the next worker"
        assert "extraction refused" in (job.error or "") and words in (job.error or ""), job
    ok = queue.get("ok")
    assert ok is not None and ok.status.value == "completed"


def test_an_extraction_deadline_stops_a_page_and_fails_the_job(site: str, tmp_path: Path) -> None:
    # A template that takes HTML goes to html5ever, whose parse of the deep page is
    # quadratic; the worker's extract_timeout stops it.
    html_items = Template.from_dict(
        {
            "id": "items",
            "item": ".p",
            "fields": [{"name": "h", "selector": "h2", "extract": "html"}],
        }
    )
    queue = JobQueue(f"sqlite://{tmp_path / 'q.db'}")
    queue.submit({"id": "deep", "template_id": "items", "target_url": f"{site}/deep"})
    worker = Worker(
        queue, worker_id="deadline", templates=[html_items], fetch=LOCAL, exit_when_done=True,
        extract_timeout=1.0,
    )  # fmt: skip
    started = time.monotonic()
    worker.run(handle_signals=False)
    assert time.monotonic() - started < 120
    job = queue.get("deep")
    assert job is not None and job.status.value == "failed" and job.retry_count == 0
    assert "deadline" in (job.error or ""), job.error


HOSTILE_CONFIGS = [
    {"timeout": 1e20},
    {"timeout": 1.7976931348623157e308},
    {"timeout": 0},
    {"timeout": "soon"},
    {"_page": 0},
    {"delay_range": [0, 1e300]},
    {"respect_robots": "no"},
]


def test_hostile_job_configs_are_refused_at_submit_through_every_door(redis_url: str) -> None:
    queue = JobQueue(redis_url)
    for config in HOSTILE_CONFIGS:
        with pytest.raises(InvalidJobError, match="config"):
            queue.submit({"target_url": "http://127.0.0.1:9/x", "config": config})
        with pytest.raises(InvalidJobError):
            queue.submit_many(
                [
                    {"target_url": "http://127.0.0.1:9/ok"},
                    {"target_url": "http://127.0.0.1:9/x", "config": config},
                ]
            )
    token = "config-token-0123456789abcdef"
    with Coordinator(queue, "127.0.0.1:0", token=token) as server:
        for config in HOSTILE_CONFIGS:
            body = json.dumps({"target_url": "http://127.0.0.1:9/x", "config": config}).encode()
            request = urllib.request.Request(
                f"http://{server.address}/api/scraping/start", data=body, method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=10)  # noqa: S310
            error = json.loads(answer.value.read())["error"]
            assert (answer.value.code, error["code"]) == (400, "invalid_job"), error
            assert "config" in error["message"]
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "submit", "--template-id", "t",
         "--job-config", json.dumps({"timeout": 1e20}), "http://127.0.0.1:9/x"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "timeout" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    assert queue.stats().total == 0, "nothing of a refused submission was written"
