"""Hostile input against the coordinator and the metrics listeners (issue #15), loopback only.

Each test names the attack it replays: an open coordinator on a public address, a cross-site
form or script, DNS rebinding, oversized and idle WebSocket clients, slow and idle HTTP
clients, connection floods, log forging through request ids, and probes that leak where the
queue lives.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import scraperv4
from scraperv4.coordinator import Coordinator
from scraperv4.queue import JobQueue
from scraperv4.scaling.metrics_collector import DistributedMetricsCollector
from scraperv4.worker import Worker
from support.redis_server import RedisServer

TOKEN = "security-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = json.dumps({"target_url": "http://127.0.0.1:9/x"}).encode()


def request(
    base: str,
    method: str,
    path: str,
    *,
    body: Optional[bytes] = None,
    headers: Optional[dict[str, str]] = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request; the status, the headers (lowercase names) and the body."""
    req = urllib.request.Request(f"{base}{path}", data=body, method=method)  # noqa: S310
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            status, raw, text = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, raw, text = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in raw.items()}, text


def code_of(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def raw_exchange(address: str, payload: bytes, *, wait: float = 10.0) -> tuple[bytes, float]:
    """Sends ``payload`` on a fresh connection and reads until the server closes it (or
    ``wait`` passes); what came back and how long it took."""
    host, port = address.rsplit(":", 1)
    started = time.monotonic()
    received = b""
    with socket.create_connection((host, int(port)), timeout=wait) as client:
        if payload:
            client.sendall(payload)
        try:
            while time.monotonic() - started < wait:
                chunk = client.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return received, time.monotonic() - started


@pytest.fixture
def tokened(redis_url: str) -> Iterator[tuple[str, JobQueue]]:
    queue = JobQueue(redis_url)
    with Coordinator(
        queue, "127.0.0.1:0", token=TOKEN, stats_interval=0.2, ws_max_connections=2,
        ws_idle_timeout=1.5,
    ) as server:  # fmt: skip
        yield f"http://{server.address}", queue


# --- secure by default ------------------------------------------------------------------------


def test_no_token_on_a_public_address_refuses_to_start_and_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPERV4_")}
    env.pop("REDIS_URL", None)
    for addr in ("0.0.0.0:0", "[::]:0"):
        done = subprocess.run(
            [sys.executable, "-m", "scraperv4", "coordinator", "--addr", addr,
             "--queue", "memory://"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode != 0, done.stdout
        assert "SCRAPERV4_API_TOKEN" in done.stderr and "--insecure-no-auth" in done.stderr
        assert "coordinator on http" not in done.stderr, "it never started"


def test_without_a_token_a_loopback_coordinator_serves_but_refuses_rebound_hosts() -> None:
    with Coordinator(JobQueue("memory://"), "127.0.0.1:0", token="") as server:
        base = f"http://{server.address}"
        assert request(base, "GET", "/api/queue/stats")[0] == 200
        port = server.address.rsplit(":", 1)[1]
        for name in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}"):
            assert request(base, "GET", "/api/queue/stats", headers={"Host": name})[0] == 200
        # DNS rebinding: the page's own name now resolves to 127.0.0.1.
        for rebound in (f"evil.example:{port}", "attacker.test", "localhost.evil.example"):
            status, _, body = request(
                base, "POST", "/api/scraping/start", body=JOB,
                headers={"Host": rebound, "Content-Type": "application/json"},
            )  # fmt: skip
            assert (status, code_of(body)) == (403, "host_not_allowed"), rebound
            status, _, body = request(base, "GET", "/api/workers", headers={"Host": rebound})
            assert status == 403, "reads too: the rebound page must not read the fleet"
        answer, _ = raw_exchange(server.address, b"GET /api/health HTTP/1.0\r\n\r\n", wait=5)
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
    with Coordinator(
        JobQueue("memory://"), "127.0.0.1:0", token="", allowed_hosts=["scraper.internal"]
    ) as server:
        base = f"http://{server.address}"
        ok = request(base, "GET", "/api/queue/stats", headers={"Host": "scraper.internal"})
        assert ok[0] == 200, "a listed name is served"


def test_reads_need_the_token_by_default(tokened: tuple[str, JobQueue]) -> None:
    base, _ = tokened
    for path in ("/api/queue/stats", "/api/workers", "/api/jobs", "/api/scraping/status/x"):
        status, _, body = request(base, "GET", path)
        assert (status, code_of(body)) == (401, "unauthorized"), path
    for path in ("/api/health", "/metrics", "/api/openapi.json", "/"):
        assert request(base, "GET", path)[0] == 200, f"{path} stays open"


# --- cross-site requests ------------------------------------------------------------------------


def test_cross_site_forms_and_scripts_cannot_write(tokened: tuple[str, JobQueue]) -> None:
    base, queue = tokened
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ):
        status, _, body = request(
            base, "POST", "/api/scraping/start", body=JOB,
            headers={**AUTH, "Content-Type": content_type},
        )  # fmt: skip
        assert (status, code_of(body)) == (415, "unsupported_media_type"), content_type
    # A body without any content type is not JSON either.
    status, _, _ = request(base, "POST", "/api/scraping/start", body=JOB, headers=AUTH)
    assert status == 415
    # Another site's page (or a sandboxed one: Origin null) may not write, token or not.
    for origin in ("https://evil.example", "null", "http://127.0.0.1:1"):
        status, _, body = request(
            base, "POST", "/api/scraping/start", body=JOB,
            headers={**AUTH, "Content-Type": "application/json", "Origin": origin},
        )  # fmt: skip
        assert (status, code_of(body)) == (403, "origin_not_allowed"), origin
        drained = request(base, "POST", "/api/workers/w/drain", headers={**AUTH, "Origin": origin})
        assert drained[0] == 403
    assert queue.stats().total == 0, "nothing of a refused request was submitted"
    # The coordinator's own page, and clients that are not browsers, may.
    status, _, _ = request(
        base, "POST", "/api/scraping/start", body=JOB,
        headers={**AUTH, "Content-Type": "application/json; charset=utf-8", "Origin": base},
    )  # fmt: skip
    assert status == 201
    assert request(base, "POST", "/api/jobs/nope/cancel", headers=AUTH)[0] == 404, (
        "a POST without a body needs no content type"
    )


def test_every_answer_carries_security_headers_and_a_request_id(
    tokened: tuple[str, JobQueue], caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = tokened
    # Debug: successful probes are logged at debug only.
    scraperv4.set_log_level("debug")  # also resets pyo3-log's cache of logger levels
    try:
        with caplog.at_level("DEBUG", logger="scraperv4"):
            exchange_with_headers(base)
    finally:
        scraperv4.set_log_level("warning")
    records = [r for r in caplog.records if r.name == "scraperv4.coordinator.access"]
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in records)
    assert "abc-123.x" in text and "forged" not in text
    assert "GET /api/queue/stats 401" in text, "refusals are logged too"
    assert TOKEN not in text, "no token from a header or a query string"


def exchange_with_headers(base: str) -> None:
    """Requests whose answers must carry the headers; they leave access records."""
    for path in ("/api/health", "/api/queue/stats", "/nope", "/"):
        _, headers, _ = request(base, "GET", path, headers=AUTH)
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["referrer-policy"] == "no-referrer", path
        assert len(headers["x-request-id"]) == 32, path
    _, page, _ = request(base, "GET", "/")
    assert "script-src 'sha256-" in page["content-security-policy"]
    assert "unsafe-inline" not in page["content-security-policy"]
    # nginx's $request_id is kept; a forged log line is not.
    _, kept, _ = request(base, "GET", "/api/health", headers={"X-Request-Id": "abc-123.x"})
    assert kept["x-request-id"] == "abc-123.x"
    _, fresh, _ = request(
        base, "GET", "/api/health", headers={"X-Request-Id": "x INFO forged=1 " + "a" * 200}
    )
    assert fresh["x-request-id"] != "x" and len(fresh["x-request-id"]) == 32
    request(base, "GET", "/api/queue/stats?token=" + TOKEN)  # 401, logged without query


# --- the WebSocket ---------------------------------------------------------------------------


def close_code_after_oversized_frame(host_port: str) -> Optional[int]:
    """Opens /ws on a raw socket, sends the header of a masked 2 MiB binary frame and 1 KiB of
    it, and returns the code of the close frame the server answers (None: no close frame)."""
    host, port = host_port.rsplit(":", 1)
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    mask = os.urandom(4)
    frame = bytes([0x82, 0x80 | 127]) + (2 * 1024 * 1024).to_bytes(8, "big") + mask
    frame += bytes(b ^ mask[i % 4] for i, b in enumerate(b"x" * 1024))
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(handshake)
        while b"\r\n\r\n" not in received:
            chunk = client.recv(65536)
            assert chunk, "no handshake answer"
            received += chunk
        head, received = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        client.sendall(frame)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Server frames are not masked: opcode, length (7 bits, or 126/127 + 2/8 bytes).
            while len(received) >= 2:
                opcode, length = received[0] & 0x0F, received[1] & 0x7F
                start = 2
                if length == 126:
                    if len(received) < 4:
                        break
                    length, start = int.from_bytes(received[2:4], "big"), 4
                elif length == 127:
                    if len(received) < 10:
                        break
                    length, start = int.from_bytes(received[2:10], "big"), 10
                if len(received) < start + length:
                    break
                payload, received = received[start : start + length], received[start + length :]
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            try:
                chunk = client.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return None
            if not chunk:
                return None
            received += chunk
    return None


def test_websocket_origin_frame_size_connection_count_and_idle_are_capped(
    tokened: tuple[str, JobQueue],
) -> None:
    base, _ = tokened
    ws = base.replace("http://", "ws://") + "/ws"
    with pytest.raises(InvalidStatus, match="403"):
        connect(ws, open_timeout=5, additional_headers={**AUTH, "Origin": "https://evil.example"})

    # A frame that says it carries 2 MiB: closed with 1009 before its payload is read. Only
    # the header and 1 KiB are sent (sending all of it races the server's close: the
    # client's send then meets a reset and the close frame may be lost with it).
    assert close_code_after_oversized_frame(base.removeprefix("http://")) == 1009

    # At most ws_max_connections (2) streams at once; a slot frees when one closes.
    with (
        connect(ws, open_timeout=5, additional_headers=AUTH),
        connect(ws, open_timeout=5, additional_headers=AUTH),
        pytest.raises(InvalidStatus, match="503"),
    ):
        connect(ws, open_timeout=5, additional_headers=AUTH)
    deadline = time.monotonic() + 10
    while True:
        try:
            with connect(ws, open_timeout=5, additional_headers=AUTH):
                break
        except InvalidStatus:
            assert time.monotonic() < deadline, "the slots were never given back"
            time.sleep(0.1)

    # A client that never answers the server's pings is dropped after ws_idle_timeout (1.5 s).
    host_port = base.removeprefix("http://")
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    answer, waited = raw_exchange(host_port, handshake, wait=30)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:100]
    assert b"\x88" in answer, "a close frame"
    assert waited < 15, f"the silent client was kept {waited:.1f} s"


# --- slow, idle and too many HTTP clients ----------------------------------------------------


def test_idle_and_flooding_clients_are_bounded(redis_url: str) -> None:
    with Coordinator(
        JobQueue(redis_url), "127.0.0.1:0", token=TOKEN, header_timeout=0.5, max_connections=2
    ) as server:
        # A connection that never sends a byte is closed after the header timeout.
        answer, waited = raw_exchange(server.address, b"", wait=20)
        assert waited < 10 and (answer == b"" or answer.startswith(b"HTTP/1.1 408")), answer
        # A head over 64 KiB is refused, not buffered.
        huge = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        try:
            answer, _ = raw_exchange(server.address, huge, wait=10)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
        # Two connections held open: a third request waits for a slot, then is served.
        host, port = server.address.rsplit(":", 1)
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
        try:
            for conn in held:
                conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never finished
            results: list[int] = []
            third = threading.Thread(
                target=lambda: results.append(
                    request(f"http://{server.address}", "GET", "/api/health")[0]
                )
            )
            third.start()
            third.join(timeout=0.3)
            assert third.is_alive() or results == [200]
            third.join(timeout=20)
            assert results == [200], "served once the slow clients were cut off"
        finally:
            for conn in held:
                conn.close()


def test_metrics_servers_use_the_hardened_listener_and_ready_hides_the_queue(
    tmp_path: Any,
) -> None:
    collector = DistributedMetricsCollector(JobQueue("memory://"))
    bound = collector.serve_metrics("127.0.0.1:0")
    try:
        answer, waited = raw_exchange(bound, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", wait=30)
        assert waited < 15, f"a slow-header client held the autoscaler's /metrics {waited:.1f} s"
        assert not answer.startswith(b"HTTP/1.1 200")
        assert request(f"http://{bound}", "GET", "/metrics")[0] == 200
    finally:
        collector.stop_serving()

    password = "p4ss-word-0123"
    with RedisServer(extra_args=["--requirepass", password]) as redis:
        url = redis.url.replace("redis://", f"redis://:{password}@")
        worker = Worker(JobQueue(url, operation_timeout=0.5), worker_id="ready-probe",
                        metrics_addr="127.0.0.1:0")  # fmt: skip
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
        thread.start()
        deadline = time.monotonic() + 20
        while worker.metrics_address is None:
            assert time.monotonic() < deadline, "the metrics server did not start"
            time.sleep(0.05)
        base = f"http://{worker.metrics_address}"
        assert request(base, "GET", "/ready")[0] == 200
        port = str(redis.port)
        redis.pause()
        try:
            status, _, body = request(base, "GET", "/ready")
        finally:
            redis.resume()
        assert status == 503
        for secret in (password, port, "127.0.0.1", "redis://"):
            assert secret not in body.decode(), body
        answer, waited = raw_exchange(worker.metrics_address, b"GET /ready HTTP/1.1\r\n", wait=30)
        assert waited < 15, "slow-header clients are cut off on the worker's server too"
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
