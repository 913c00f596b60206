"""nginx in front of the coordinator (issue #15): every location is rate limited — the
dashboard, /metrics and /ws too, not only /api/ — and each request carries nginx's request id
to the coordinator and into nginx's access log. Real nginx and a real coordinator on loopback
ports."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from scraperv4.coordinator import Coordinator
from scraperv4.queue import JobQueue
from support import nginx
from support.redis_server import free_port

TOKEN = "test-token-0123456789abcdef"


def get(url: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, {k.lower(): v for k, v in error.headers.items()}


def test_nginx_limits_every_location_and_logs_request_ids(tmp_path: Path) -> None:
    queue = JobQueue(f"sqlite://{tmp_path / 'q.db'}")
    with (
        Coordinator(queue, "127.0.0.1:0", token=TOKEN) as server,
        tempfile.TemporaryDirectory() as scratch,
    ):
        root = Path(scratch)
        port = free_port()
        upstream = int(str(server.address).rsplit(":", 1)[1])
        conf = nginx.scale_conf(root, port, [upstream])
        log = root / "access.log"
        with open(log, "wb") as out:
            proxy = subprocess.Popen(nginx.run_args(conf), stdout=out)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if get(f"{base}/health")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, (root / "error.log").read_text()
                time.sleep(0.1)
            # The request id nginx made is the one the coordinator answers with, and is in
            # nginx's log line.
            status, headers = get(f"{base}/metrics")
            assert status == 200
            request_id = headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
            for path in ("/", "/metrics"):
                statuses = [get(f"{base}{path}")[0] for _ in range(90)]
                assert 429 in statuses, (path, statuses)
                assert statuses.count(200) >= 50, (path, statuses)
                assert set(statuses) <= {200, 429}, (path, statuses)
            handshakes = []
            for _ in range(15):
                try:
                    with connect(
                        f"ws://127.0.0.1:{port}/ws",
                        open_timeout=5,
                        additional_headers={"Authorization": f"Bearer {TOKEN}"},
                    ):
                        handshakes.append(101)
                except InvalidStatus as refused:
                    handshakes.append(refused.response.status_code)
            assert handshakes.count(101) >= 10 and 429 in handshakes, handshakes
            assert set(handshakes) <= {101, 429}, handshakes
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
        lines = log.read_text().splitlines()
        assert any(f"request_id={request_id}" in line for line in lines), lines[:5]
        assert any('"GET /ws HTTP/1.1" 429' in line for line in lines)
