"""``scraperv4 healthcheck``: the image's HEALTHCHECK probes the role's liveness endpoint on
the address the role's settings give, and never the queue."""

from __future__ import annotations

import os
import subprocess
import sys

from scraperv4.coordinator import Coordinator
from scraperv4.queue import JobQueue
from support.redis_server import RedisServer


def healthcheck(**variables: str) -> subprocess.CompletedProcess[str]:
    keep = ("PATH", "HOME", "LANG")
    env = {**{k: os.environ[k] for k in keep if k in os.environ}, **variables}
    return subprocess.run(
        [sys.executable, "-m", "scraperv4", "healthcheck"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_coordinator_is_alive_while_its_queue_is_down() -> None:
    with RedisServer() as redis_server:
        queue = JobQueue(redis_server.url, operation_timeout=0.5)
    # Redis is gone: /api/health says 503 (readiness), the liveness check still passes.
    with Coordinator(queue, "127.0.0.1:0", token="t" * 16) as server:
        address = str(server.address)
        done = healthcheck(SCRAPERV4_ROLE="coordinator", SCRAPERV4_ADDR=address)
        assert done.returncode == 0, done.stderr
        # The wildcard address a container listens on is probed on loopback.
        port = address.rsplit(":", 1)[1]
        assert (
            healthcheck(SCRAPERV4_ROLE="coordinator", SCRAPERV4_ADDR=f"0.0.0.0:{port}").returncode
            == 0
        )
    done = healthcheck(SCRAPERV4_ROLE="coordinator", SCRAPERV4_ADDR=address)
    assert done.returncode == 1 and "did not answer" in done.stderr, done.stderr


def test_roles_without_an_endpoint_or_a_role() -> None:
    done = healthcheck(SCRAPERV4_ROLE="worker", SCRAPERV4_METRICS_ADDR="off")
    assert done.returncode == 0 and "metrics_addr is off" in done.stderr
    done = healthcheck()
    assert done.returncode == 2 and "SCRAPERV4_ROLE" in done.stderr
    done = healthcheck(SCRAPERV4_ROLE="autoscaler", SCRAPERV4_METRICS_ADDR="127.0.0.1:9")
    assert done.returncode == 1 and "127.0.0.1:9/health" in done.stderr
