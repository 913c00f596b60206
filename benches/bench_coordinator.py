"""Coordinator throughput: ``wrk`` against ``GET /api/queue/stats`` and ``POST
/api/scraping/start`` (batches of 100 jobs), directly and through nginx running the
repository's ``docker/nginx/nginx-scale.conf``.

One coordinator process (the release build) on a local redis-server, with an API token as in
production. For the nginx runs the configuration's rate limits are removed (they would answer
most of a benchmark with 429: that is their job, tested in tests/test_coordinator.py); what
is measured is the proxy's cost. Prints requests/s and p99 latency of each run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a benchmark token)
CONNECTIONS = 32
SECONDS = 8


def wait_ok(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer")
        time.sleep(0.1)


def wrk(url: str, script: Path | None = None) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of a ``wrk`` run."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    argv = [binary, "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency",
            "-H", f"Authorization: Bearer {TOKEN}"]  # fmt: skip
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise SystemExit(f"{url}: {non_2xx.group(1)} error answers during the run:\n{out}")
    return rate, p99


def main() -> int:
    from _common import report
    from support import nginx
    from support.redis_server import RedisServer, free_port

    batch = {"jobs": [{"target_url": f"https://shop.example/p/{i}", "template_id": "shop"}
                      for i in range(100)]}  # fmt: skip
    figures: dict[str, float | int | str] = {
        "wrk connections": CONNECTIONS,
        "seconds per run": SECONDS,
    }
    with RedisServer() as redis, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        post = root / "post.lua"
        post.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(json.dumps(batch))}\n"
        )
        port, proxy_port = free_port(), free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "SCRAPERV4_API_TOKEN": TOKEN}
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "scraperv4", "coordinator", "--addr", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        proxy = nginx.start(nginx.scale_conf(root, proxy_port, [port], rate_limits=False))
        try:
            direct = f"http://127.0.0.1:{port}"
            proxied = f"http://127.0.0.1:{proxy_port}"
            wait_ok(f"{direct}/api/health")
            wait_ok(f"{proxied}/health")
            for label, base in (("direct", direct), ("nginx", proxied)):
                rate, p99 = wrk(f"{base}/api/queue/stats")
                figures[f"GET /api/queue/stats {label} (req/s)"] = rate
                figures[f"GET /api/queue/stats {label} p99 (ms)"] = p99
                rate, p99 = wrk(f"{base}/api/scraping/start", post)
                figures[f"POST start x100 {label} (req/s)"] = rate
                figures[f"POST start x100 {label} (jobs/s)"] = rate * 100
                figures[f"POST start x100 {label} p99 (ms)"] = p99
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
            coordinator.terminate()
            coordinator.wait(timeout=30)
    report("coordinator", figures, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
