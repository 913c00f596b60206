"""The coordinator over a real redis-server: every route, its errors and its token; two
replicas; the WebSocket; graceful stop; and nginx (Debian's) in front of two coordinator
processes with one of them SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from websockets.sync.client import connect

from scraperv4.coordinator import Coordinator
from scraperv4.exceptions import ConfigError
from scraperv4.queue import JobQueue
from support import nginx
from support.redis_server import RedisServer, free_port

TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "docker" / "nginx" / "nginx-scale.conf"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: Optional[str] = TOKEN,
    raw: Optional[bytes] = None,
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, text, raw_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, text, raw_headers = error.code, error.read(), error.headers
    headers = {name.lower(): value for name, value in raw_headers.items()}
    content_type = headers.get("content-type", "")
    parsed = json.loads(text) if "json" in content_type else text.decode()
    return status, parsed, headers


def assert_error(answer: tuple[int, Any, dict[str, str]], status: int, code: str) -> str:
    got_status, body, _ = answer
    assert got_status == status, body
    assert body["error"]["status"] == status and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


@pytest.fixture
def api(redis_url: str) -> Iterator[tuple[str, JobQueue]]:
    queue = JobQueue(redis_url)
    with Coordinator(queue, "127.0.0.1:0", token=TOKEN, stats_interval=0.2) as server:
        yield f"http://{server.address}", queue


def test_every_route_answers(api: tuple[str, JobQueue]) -> None:
    base, queue = api
    status, health, _ = call(base, "GET", "/api/health")
    assert status == 200 and health["status"] == "ok" and health["queue"] == "reachable"
    assert health["version"] and health["uptime_seconds"] >= 0

    status, one, _ = call(
        base, "POST", "/api/scraping/start",
        {"target_url": "http://127.0.0.1:9/a", "template_id": "t", "id": "a",
         "config": {"timeout": 5}, "priority": 3},
        token=TOKEN,
    )  # fmt: skip
    assert (status, one) == (201, {"ids": ["a"], "created": 1, "existing": 0})
    batch = {"jobs": [{"target_url": f"http://127.0.0.1:9/{i}"} for i in range(100)]}
    status, many, _ = call(base, "POST", "/api/scraping/start", batch, token=TOKEN)
    assert status == 201 and many["created"] == 100 and len(set(many["ids"])) == 100
    status, again, _ = call(
        base, "POST", "/api/scraping/start", {"target_url": "http://127.0.0.1:9/a", "id": "a"},
        token=TOKEN,
    )  # fmt: skip
    assert (status, again["created"], again["existing"]) == (201, 0, 1), "idempotent by id"

    status, job, _ = call(base, "GET", "/api/scraping/status/a")
    assert status == 200
    assert (job["id"], job["status"], job["priority"], job["config"]) == (
        "a", "pending", 3, {"timeout": 5},
    )  # fmt: skip

    status, page, _ = call(base, "GET", "/api/jobs?status=pending&page=2&per_page=40")
    assert status == 200 and (page["page"], page["per_page"], len(page["jobs"])) == (2, 40, 40)
    status, last, _ = call(base, "GET", "/api/jobs?status=pending&page=3&per_page=40")
    assert len(last["jobs"]) == 21

    status, cancelled, _ = call(base, "POST", "/api/jobs/a/cancel", token=TOKEN)
    assert (status, cancelled) == (200, {"id": "a", "action": "cancel", "accepted": True})
    status, retried, _ = call(base, "POST", "/api/jobs/a/retry", token=TOKEN)
    assert status == 200 and retried["accepted"] and queue.get("a").status.value == "pending"

    queue.register_worker("w1")
    queue.claim("w1", 2)
    status, stats, _ = call(base, "GET", "/api/queue/stats")
    assert status == 200
    assert stats["by_status"]["pending"] == 99 and stats["by_status"]["assigned"] == 2
    assert stats["total"] == 101 and stats["runnable"] == 99 and stats["active_workers"] == 1
    assert stats["totals"]["cancelled"] == 1 and "jobs_per_second" in stats["rates"]

    status, workers, _ = call(base, "GET", "/api/workers")
    assert status == 200 and [w["id"] for w in workers["workers"]] == ["w1"]
    assert len(workers["workers"][0]["jobs"]) == 2
    status, drained, _ = call(base, "POST", "/api/workers/w1/drain", token=TOKEN)
    assert (status, drained) == (200, {"id": "w1", "draining": True})
    assert queue.heartbeat("w1").draining

    time.sleep(0.5)  # the sampler feeds /metrics
    status, metrics, headers = call(base, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert "scraperv4_total_jobs 101" in metrics and "scraperv4_queue_length 99" in metrics

    status, document, _ = call(base, "GET", "/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    status, page_html, headers = call(base, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<title>ScraperV4 Scale</title>" in page_html


def test_bad_input_gets_a_json_error_with_the_right_code(api: tuple[str, JobQueue]) -> None:
    base, queue = api

    def start(body: Any = None, raw: Optional[bytes] = None) -> Any:
        return call(base, "POST", "/api/scraping/start", body, token=TOKEN, raw=raw)

    assert "not a valid URL" in assert_error(start({"target_url": "nope"}), 400, "invalid_job")
    assert "ftp" in assert_error(start({"target_url": "ftp://x.org/"}), 400, "invalid_job")
    assert "unknown field" in assert_error(
        start({"target_url": "http://x.org/", "colour": 1}), 400, "bad_request"
    )
    assert "not JSON" in assert_error(start(raw=b"{nope"), 400, "bad_request")
    assert_error(start([1, 2]), 400, "bad_request")
    assert_error(start({"jobs": []}), 400, "bad_request")
    assert_error(start({"jobs": [{"target_url": "http://x.org/"}] * 1001}), 400, "bad_request")
    assert_error(start({"jobs": [{"target_url": "http://x.org/"}], "extra": 1}), 400, "bad_request")
    assert_error(start({"target_url": "http://x.org/", "priority": 10**9}), 400, "invalid_job")
    with Coordinator(queue, "127.0.0.1:0", token=TOKEN, body_limit=4096) as small:
        too_big = {"target_url": "http://x.org/", "config": {"blob": "x" * 5000}}
        status, _, _ = call(
            f"http://{small.address}", "POST", "/api/scraping/start", too_big, token=TOKEN
        )
        assert status == 413, "the body limit"
    assert queue.stats().total == 0, "nothing of a refused request was submitted"

    assert_error(call(base, "GET", "/api/scraping/status/nope"), 404, "not_found")
    assert "unknown status" in assert_error(
        call(base, "GET", "/api/jobs?status=bogus"), 400, "bad_request"
    )
    assert_error(call(base, "GET", "/api/jobs?per_page=0"), 400, "bad_request")
    assert_error(call(base, "GET", "/api/jobs?page=x"), 400, "bad_request")
    queue.submit({"id": "p", "target_url": "http://x.org/"})
    assert "pending" in assert_error(
        call(base, "POST", "/api/jobs/p/retry", token=TOKEN), 409, "conflict"
    )
    assert_error(call(base, "POST", "/api/jobs/nope/cancel", token=TOKEN), 404, "not_found")
    assert_error(call(base, "POST", "/api/workers/nope/drain", token=TOKEN), 404, "not_found")
    assert_error(call(base, "GET", "/api/nothing"), 404, "not_found")
    assert_error(call(base, "DELETE", "/api/jobs", token=TOKEN), 405, "method_not_allowed")


def test_the_token_guards_mutations_and_never_leaks(redis_url: str) -> None:
    queue = JobQueue(redis_url)
    with Coordinator(queue, "127.0.0.1:0", token=TOKEN) as server:
        base = f"http://{server.address}"
        job = {"target_url": "http://x.org/"}
        missing = call(base, "POST", "/api/scraping/start", job, token=None)
        assert_error(missing, 401, "unauthorized")
        assert missing[2]["www-authenticate"] == "Bearer"
        wrong = call(base, "POST", "/api/scraping/start", job, token="wrong")
        assert_error(wrong, 403, "forbidden")
        for path in ("/api/jobs/x/retry", "/api/jobs/x/cancel", "/api/workers/x/drain"):
            assert_error(call(base, "POST", path, token=None), 401, "unauthorized")
        assert_error(call(base, "GET", "/api/queue/stats", token=None), 401, "unauthorized")
        assert_error(call(base, "GET", "/api/jobs", token="wrong"), 403, "forbidden")
        assert call(base, "GET", "/api/queue/stats")[0] == 200
        assert call(base, "GET", "/api/health", token=None)[0] == 200, "probes stay open"
        assert call(base, "GET", "/api/live", token=None)[0] == 200, "probes stay open"
        assert call(base, "GET", "/metrics", token=None)[0] == 200, "scrapes stay open"
        assert queue.stats().total == 0
        ws_base = base.replace("http://", "ws://")
        with pytest.raises(Exception, match="401"):
            connect(f"{ws_base}/ws", open_timeout=5).close()
        with connect(f"{ws_base}/ws?token={TOKEN}", open_timeout=5) as socket:
            assert "by_status" in json.loads(socket.recv(timeout=5))
    with Coordinator(queue, "127.0.0.1:0", token=TOKEN, protect_reads=False) as server:
        base = f"http://{server.address}"
        assert call(base, "GET", "/api/queue/stats", token=None)[0] == 200, "reads opened"
        assert_error(call(base, "POST", "/api/jobs/x/retry", token=None), 401, "unauthorized")
    with pytest.raises(ConfigError, match="16 characters"):
        Coordinator(queue, "127.0.0.1:0", token="short")


def test_an_unreachable_queue_is_503_without_its_url(caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(extra_args=["--requirepass", "hunter2hunter2"]) as redis_server:
        url = redis_server.url.replace("redis://", "redis://:hunter2hunter2@")
        queue = JobQueue(url, operation_timeout=0.5)
        port = str(redis_server.port)
    # The server is gone now.
    with (
        caplog.at_level("WARNING", logger="scraperv4"),
        Coordinator(queue, "127.0.0.1:0", token=TOKEN, stats_interval=0.2) as server,
    ):
        base = f"http://{server.address}"
        status, health, _ = call(base, "GET", "/api/health")
        assert status == 503 and health["status"] == "unavailable"
        # Liveness does not depend on the queue: a Redis outage restarts no coordinator.
        status, live, _ = call(base, "GET", "/api/live")
        assert status == 200 and live["status"] == "ok" and live["uptime_seconds"] >= 0
        answer = call(base, "GET", "/api/queue/stats")
        message = assert_error(answer, 503, "queue_unavailable")
        time.sleep(0.5)  # the stats sampler fails and logs too
    assert "queue unavailable" in caplog.text, "the failures were logged"
    for text in (message, json.dumps(health), caplog.text):
        assert "hunter2" not in text and port not in text and TOKEN not in text


def test_cors_is_off_unless_origins_are_configured(redis_url: str) -> None:
    def preflight(base: str) -> dict[str, str]:
        request = urllib.request.Request(f"{base}/api/queue/stats", method="OPTIONS")  # noqa: S310
        request.add_header("Origin", "https://dash.example")
        request.add_header("Access-Control-Request-Method", "GET")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            return {k.lower(): v for k, v in error.headers.items()}

    queue = JobQueue(redis_url)
    with Coordinator(queue, "127.0.0.1:0", token="") as closed:
        assert "access-control-allow-origin" not in preflight(f"http://{closed.address}")
    with Coordinator(
        queue, "127.0.0.1:0", token="", cors_origins=["https://dash.example"]
    ) as open_:
        headers = preflight(f"http://{open_.address}")
        assert headers["access-control-allow-origin"] == "https://dash.example"
        assert "authorization" in headers["access-control-allow-headers"].lower()


def test_a_client_too_slow_to_send_its_headers_is_cut_off(redis_url: str) -> None:
    import socket

    with Coordinator(JobQueue(redis_url), "127.0.0.1:0", header_timeout=0.5) as server:
        host, port = server.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as client:
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never finished
            started = time.monotonic()
            answer = client.recv(4096)  # the server hangs up (maybe with a 408)
            waited = time.monotonic() - started
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        assert waited < 4, f"the slow client held the connection for {waited:.1f} s"
        assert call(f"http://{server.address}", "GET", "/api/health")[0] == 200


def test_two_coordinators_on_one_redis_give_the_same_answers(redis_url: str) -> None:
    queue = JobQueue(redis_url)
    with (
        Coordinator(queue, "127.0.0.1:0", token=TOKEN) as first,
        Coordinator(JobQueue(redis_url), "127.0.0.1:0", token=TOKEN) as second,
    ):
        a, b = f"http://{first.address}", f"http://{second.address}"
        _, submitted, _ = call(
            a, "POST", "/api/scraping/start",
            {"jobs": [{"target_url": f"http://x.org/{i}"} for i in range(30)]}, token=TOKEN,
        )  # fmt: skip
        call(b, "POST", f"/api/jobs/{submitted['ids'][0]}/cancel", token=TOKEN)
        for path in (
            f"/api/scraping/status/{submitted['ids'][0]}",
            "/api/jobs?status=pending&per_page=100",
            "/api/workers",
        ):
            assert call(a, "GET", path)[1] == call(b, "GET", path)[1], path
        stats_a = call(a, "GET", "/api/queue/stats")[1]
        stats_b = call(b, "GET", "/api/queue/stats")[1]
        for key in ("by_status", "total", "runnable", "totals"):
            assert stats_a[key] == stats_b[key]
        assert stats_a["by_status"]["cancelled"] == 1 and stats_a["runnable"] == 29


def test_domains_routes_list_show_and_set_keys_and_metrics_count_the_runnable_backlog(
    api: tuple[str, JobQueue],
) -> None:
    base, queue = api
    status, empty, _ = call(base, "GET", "/api/domains")
    assert status == 200 and empty["domains"] == [] and empty["more"] is False

    # One site limited to one request in flight with 40 jobs, one paced to a request a
    # second and then throttled with a Retry-After; 10 jobs of sites that need no pacing.
    queue.set_domain("busy.example", concurrency=1)
    queue.set_domain("slow.example", delay=1)
    queue.submit_many({"target_url": f"https://busy.example/{i}"} for i in range(40))
    queue.submit_many({"target_url": f"https://slow.example/{i}"} for i in range(3))
    queue.submit_many({"target_url": f"https://free{i}.example/"} for i in range(10))
    queue.register_worker("w")
    claimed = queue.claim("w", 100)
    slow = next(j for j in claimed if "slow.example" in j.target_url)
    queue.fail(slow, "HTTP 429", feedback="throttled", retry_after=120)

    status, page, _ = call(base, "GET", "/api/domains?per_page=1")
    assert status == 200 and page["more"] is True and len(page["domains"]) == 1
    status, listing, _ = call(base, "GET", "/api/domains?limit=50")
    by_key = {d["key"]: d for d in listing["domains"]}
    assert set(by_key) == {"busy.example", "slow.example"}, by_key
    busy = by_key["busy.example"]
    assert (busy["waiting"], busy["inflight"], busy["concurrency"]) == (39, 1, 1)
    assert busy["concurrency_override"] == 1 and busy["paced"] is True
    throttled = by_key["slow.example"]
    assert throttled["throttled"] == 1 and throttled["paused_until"] > throttled["now"] + 100
    assert throttled["waiting"] == 2 and throttled["delay"] >= 2, "doubled by the 429"
    assert throttled["last_throttled"] is not None and throttled["ready_at"] > throttled["now"]
    same = queue.domain("slow.example")
    assert (
        same is not None
        and same["throttled"] == 1
        and same["paused_until"] == pytest.approx(throttled["paused_until"], abs=0.001)
    ), "the API shows the queue's DomainState"

    status, one, _ = call(base, "GET", "/api/domains/busy.example")
    assert status == 200 and one["key"] == "busy.example" and one["waiting"] == 39
    unknown = call(base, "GET", "/api/domains/free1.example")
    assert "no record" in assert_error(unknown, 404, "not_found")
    assert_error(call(base, "GET", "/api/domains/" + "k" * 300), 400, "bad_request")
    assert_error(call(base, "GET", "/api/domains?limit=0"), 400, "bad_request")
    assert_error(call(base, "GET", "/api/domains?limit=5&page=2"), 400, "bad_request")

    # PUT changes a key for every worker; it needs the token.
    assert_error(
        call(base, "PUT", "/api/domains/example.com", {"delay": 2}, token=None), 401, "unauthorized"
    )
    status, changed, _ = call(
        base, "PUT", "/api/domains/example.com", {"delay": 2, "concurrency": 1}, token=TOKEN
    )
    assert status == 200 and (changed["delay_override"], changed["concurrency_override"]) == (2, 1)
    assert changed["delay"] == 2 and changed["concurrency"] == 1
    state = queue.domain("example.com")
    assert state is not None and (state["delay_override"], state["concurrency_override"]) == (2, 1)
    status, cleared, _ = call(base, "PUT", "/api/domains/example.com", {"delay": None}, token=TOKEN)
    assert status == 200 and cleared["delay_override"] is None
    assert cleared["concurrency_override"] == 1, "a field left out is kept"
    for body, says in [
        ({}, "nothing to change"),
        ({"delay": -1}, '"delay" must be'),
        ({"delay": 86401}, '"delay" must be'),
        ({"concurrency": 1.5}, '"concurrency" must be'),
        ({"colour": 1}, "unknown field"),
        ([1], "the body is an object"),
    ]:
        message = assert_error(
            call(base, "PUT", "/api/domains/example.com", body, token=TOKEN), 400, "bad_request"
        )
        assert says in message, (body, message)

    # The runnable backlog: the 9 unpaced jobs left were claimed; busy.example is at its
    # limit, slow.example paused past the horizon. Pending counts every job.
    stats = queue.stats()
    assert stats.by_status["pending"] >= 39 and stats.runnable <= 2, stats
    status, api_stats, _ = call(base, "GET", "/api/queue/stats")
    assert api_stats["paced_keys"] >= 2 and api_stats["runnable"] <= 2

    def metric(text: str, name: str) -> float:
        (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
        return float(line.split()[1])

    # The sampler feeds /metrics every 0.2 s from a snapshot that may have started before the
    # jobs were submitted (set_domain alone makes a key paced): wait for one taken after the
    # throttle, the last change above (it made the slow job the one retrying).
    assert stats.by_status["retrying"] == 1, stats
    retrying = 'scraperv4_jobs{status="retrying"}'
    deadline = time.monotonic() + 30
    while True:
        text = call(base, "GET", "/metrics")[1]
        if retrying in text and metric(text, retrying) == 1:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert metric(text, "scraperv4_domains_paced") >= 2
    assert metric(text, "scraperv4_domains_waiting") >= 1, "slow.example waits out its pause"
    assert metric(text, "scraperv4_pending_jobs") >= 39
    assert metric(text, "scraperv4_queue_runnable") <= 2
    assert metric(text, "scraperv4_queue_runnable") == metric(text, "scraperv4_queue_length")

    with connect(base.replace("http://", "ws://") + f"/ws?token={TOKEN}", open_timeout=5) as socket:
        pushed = json.loads(socket.recv(timeout=5))
    summary = pushed["domains"]
    assert summary["busiest"][0]["key"] == "busy.example", summary
    assert [d["key"] for d in summary["throttled"]] == ["slow.example"], summary


def test_the_websocket_pushes_stats_that_follow_the_queue(api: tuple[str, JobQueue]) -> None:
    base, queue = api
    with connect(
        base.replace("http://", "ws://") + "/ws", open_timeout=5, additional_headers=AUTH
    ) as socket:
        first = json.loads(socket.recv(timeout=5))
        assert first["by_status"]["pending"] == 0
        queue.submit_many({"target_url": f"http://x.org/{i}"} for i in range(7))
        deadline = time.monotonic() + 10
        seen = first
        while seen["by_status"]["pending"] != 7:
            assert time.monotonic() < deadline, "the pushed stats did not follow the queue"
            seen = json.loads(socket.recv(timeout=5))
        assert seen["runnable"] == 7 and seen["time"] > first["time"]


def test_stop_lets_an_in_flight_request_finish(redis_server: Any) -> None:
    queue = JobQueue(redis_server.url, operation_timeout=1.5)
    server = Coordinator(queue, "127.0.0.1:0", token=TOKEN)
    base = f"http://{server.start()}"
    answers: list[int] = []
    redis_server.pause()  # the health probe now waits for its timeout
    try:
        request = threading.Thread(
            target=lambda: answers.append(call(base, "GET", "/api/health")[0])
        )
        request.start()
        time.sleep(0.3)
        server.stop()  # returns once the in-flight request is answered
        request.join(timeout=10)
    finally:
        redis_server.resume()
    assert answers == [503], "the in-flight request got its answer"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/api/health", timeout=2)  # noqa: S310


def test_the_access_log_has_a_line_per_request_with_its_id(redis_url: str, tmp_path: Path) -> None:
    """`scraperv4 coordinator --log-level info` as a user runs it: a line per request with the
    client, the request, the status, the time and an id that the answer carries back (a
    proxy's id is kept); refusals are warnings (shown at the default level), probes that
    succeed are not at info, and a token in a query never reaches the log."""
    port = free_port()
    log = tmp_path / "coordinator.log"
    process = _coordinator_process(redis_url, port, log, "--log-level", "info")
    base = f"http://127.0.0.1:{port}"
    try:
        status, _, refused = call(base, "GET", "/api/queue/stats", token=None)
        assert status == 401
        request = urllib.request.Request(  # noqa: S310
            f"{base}/api/jobs?status=failed&limit=5",
            headers={"X-Request-Id": "proxy-id-42", "Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200
            assert response.headers["X-Request-Id"] == "proxy-id-42", "a proxy's id is kept"
        with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", open_timeout=5) as socket:
            socket.recv(timeout=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    lines = log.read_text().splitlines()
    access = [line for line in lines if " scraperv4.coordinator.access: " in line]
    refused_id = refused["x-request-id"]
    assert len(refused_id) == 32 and all(c in "0123456789abcdef" for c in refused_id), refused
    (unauthorized,) = [line for line in access if f"id={refused_id}" in line]
    assert " WARNING scraperv4.coordinator.access: 127.0.0.1:" in unauthorized, unauthorized
    assert " GET /api/queue/stats 401 " in unauthorized, unauthorized
    (listed,) = [line for line in access if "id=proxy-id-42" in line]
    assert " INFO " in listed and " GET /api/jobs 200 " in listed, listed
    assert any(" GET /ws 101 " in line for line in access), access
    assert not any("/api/health" in line for line in access), "probes stay at debug"
    assert TOKEN not in log.read_text()


# --- nginx in front of two coordinator processes -------------------------------------------


def _coordinator_process(
    redis_url: str, port: int, log: Path, *flags: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "SCRAPERV4_API_TOKEN": TOKEN}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scraperv4", "coordinator", "--addr", f"127.0.0.1:{port}",
             *flags],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            if call(f"http://127.0.0.1:{port}", "GET", "/api/health")[0] == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"coordinator on {port} did not start: {log.read_text()}")
        time.sleep(0.1)


def test_nginx_balances_two_coordinators_survives_a_sigkill_and_limits_bursts(
    redis_url: str,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ports = [free_port(), free_port()]
        coordinators = [
            _coordinator_process(redis_url, p, root / f"c{i}.log") for i, p in enumerate(ports)
        ]
        nginx_port = free_port()
        proxy = nginx.start(nginx.scale_conf(root, nginx_port, ports))
        base = f"http://127.0.0.1:{nginx_port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if call(base, "GET", "/health")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, (root / "error.log").read_text()
                time.sleep(0.1)
            job = {"target_url": "http://x.org/1"}
            status, first, _ = call(base, "POST", "/api/scraping/start", job, token=TOKEN)
            assert status == 201

            coordinators[0].send_signal(signal.SIGKILL)
            coordinators[0].wait(timeout=10)
            for i in range(2, 5):  # within the submit zone's burst of 5
                status, body, _ = call(
                    base, "POST", "/api/scraping/start", {"target_url": f"http://x.org/{i}"},
                    token=TOKEN,
                )  # fmt: skip
                assert status == 201, body
            for _ in range(8):
                assert call(base, "GET", "/health")[0] == 200
            assert call(base, "GET", f"/api/scraping/status/{first['ids'][0]}")[0] == 200

            with connect(
                f"ws://127.0.0.1:{nginx_port}/ws", open_timeout=5, additional_headers=AUTH
            ) as socket:
                pushed = [json.loads(socket.recv(timeout=5)) for _ in range(3)]
            assert pushed[-1]["by_status"]["pending"] == 4, "live stats through the proxy"

            statuses = [call(base, "GET", "/api/queue/stats")[0] for _ in range(40)]
            assert 429 in statuses, statuses
            assert statuses.count(200) >= 10, "the burst allowance was served"
            assert set(statuses) <= {200, 429}
            coordinators[1].send_signal(signal.SIGTERM)
            assert coordinators[1].wait(timeout=15) == 0, "SIGTERM stops a coordinator cleanly"
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
            for process in coordinators:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=10)


def test_the_api_and_the_cli_share_one_job_model(api: tuple[str, JobQueue]) -> None:
    """Ids from the crawl and the URL (the same URL posted twice is queued once, with the id
    `scraperv4 submit` gives it), offset/limit paging with a total, times in seconds."""
    from scraperv4.crawl import default_crawl_id
    from scraperv4.worker import crawl_job_id

    base, queue = api
    url = "http://127.0.0.1:9/same"
    answers = [
        call(
            base,
            "POST",
            "/api/scraping/start",
            {"target_url": url, "template_id": "shop"},
            token=TOKEN,
        )[1]
        for _ in range(2)
    ]
    crawl = default_crawl_id("shop", [url])
    expected_id = crawl_job_id(crawl, url)
    assert answers == [
        {"ids": [expected_id], "created": 1, "existing": 0},
        {"ids": [expected_id], "created": 0, "existing": 1},
    ]
    assert queue.stats().total == 1
    named = call(base, "POST", "/api/scraping/start",
                 {"jobs": [{"target_url": url, "crawl_id": "mine"}]}, token=TOKEN)[1]  # fmt: skip
    assert named["ids"] == [crawl_job_id("mine", url)]

    queue.submit_many({"target_url": f"http://127.0.0.1:9/{i}"} for i in range(5))
    status, page, _ = call(base, "GET", "/api/jobs?status=pending&offset=2&limit=3")
    assert status == 200, page
    assert (page["total"], page["offset"], page["limit"], len(page["jobs"])) == (7, 2, 3, 3)
    status, page, _ = call(base, "GET", "/api/jobs?offset=6&limit=3")
    assert (page["status"], len(page["jobs"])) == ("pending", 1), "pending by default"
    assert_error(call(base, "GET", "/api/jobs?offset=0&page=1"), 400, "bad_request")

    job = call(base, "GET", f"/api/scraping/status/{expected_id}")[1]
    stored = queue.get(expected_id)
    assert stored is not None
    assert job["created_at"] == pytest.approx(stored.created_at, abs=0.002)
    assert abs(job["created_at"] - time.time()) < 600, "seconds since the epoch"
    assert job["crawl_id"] == crawl
