"""``scraperv4 worker`` processes started by a test, each with its own metrics port and log.

Every process is started, signalled and stopped by its PID (never by name); :class:`Fleet`
kills whatever is still running when the test ends, also when it fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from support.redis_server import free_port

CLI = [sys.executable, "-m", "scraperv4"]

_SAMPLE = re.compile(r"^scraperv4_worker_jobs_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_OUTCOME = re.compile(r'outcome="(?P<outcome>[a-z]+)"')


def parse_outcomes(metrics_text: str) -> dict[str, int]:
    """``scraperv4_worker_jobs_total`` by outcome from a worker's ``/metrics`` text.

    >>> parse_outcomes('scraperv4_worker_jobs_total{outcome="stale",worker="w"} 3\\n')
    {'stale': 3}
    """
    counts: dict[str, int] = {}
    for line in metrics_text.splitlines():
        sample = _SAMPLE.match(line)
        outcome = _OUTCOME.search(sample.group("labels")) if sample else None
        if sample and outcome:
            counts[outcome.group("outcome")] = int(float(sample.group("value")))
    return counts


class WorkerProcess:
    """One ``scraperv4 worker`` process serving ``queue_url`` with its ``/metrics`` on a
    loopback port; its stderr goes to ``<log_dir>/<worker_id>.log``."""

    def __init__(
        self, queue_url: str, worker_id: str, templates_dir: Path, log_dir: Path, args: list[str]
    ) -> None:
        self.worker_id = worker_id
        self.metrics_port = free_port()
        self.log_path = log_dir / f"{worker_id}.log"
        command = [
            *CLI, "worker", "--queue-url", queue_url, "--worker-id", worker_id,
            "--templates", str(templates_dir), "--allow-private-networks",
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}", *args,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stderr=log, stdout=log, env=environment())

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process (by PID), if it still runs."""
        if self.alive():
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is released, nothing unregistered)."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (and SIGCONT, should it be stopped); the exit code. SIGKILL after
        ``timeout``, then the code is that of the kill."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process has exited (SIGKILL after ``timeout``)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait(timeout=10)

    def outcomes(self, timeout: float = 5.0) -> Optional[dict[str, int]]:
        """Jobs by outcome from ``/metrics``; None while the server does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return parse_outcomes(response.read().decode())
        except OSError:
            return None

    def wait_outcomes(self, deadline_seconds: float = 60.0) -> dict[str, int]:
        """:meth:`outcomes`, waiting for the metrics server to answer."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            counts = self.outcomes()
            if counts is not None:
                return counts
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.worker_id} serves no metrics:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_size(self) -> int:
        """Bytes logged so far (an offset for :meth:`log_since`)."""
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the worker logged after ``offset``."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Fleet:
    """Worker processes of one test; use as a context manager (kills the rest on exit).

    Args:
        queue_url: what the workers serve (may differ from the test's own URL: a proxy).
        templates_dir: the workers' templates.
        log_dir: where the logs go.
        args: more ``scraperv4 worker`` flags for every worker.
    """

    def __init__(self, queue_url: str, templates_dir: Path, log_dir: Path, args: list[str]) -> None:
        self.queue_url = queue_url
        self.templates_dir = templates_dir
        self.log_dir = log_dir
        self.args = args
        self.started: list[WorkerProcess] = []
        self._serial = 0

    def start(self, worker_id: Optional[str] = None) -> WorkerProcess:
        self._serial += 1
        worker = WorkerProcess(
            self.queue_url, worker_id or f"w{self._serial}", self.templates_dir, self.log_dir,
            self.args,
        )  # fmt: skip
        self.started.append(worker)
        return worker

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive()]

    def terminate_all(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM every live worker (once it serves its metrics: a process still starting
        has no handler yet, and SIGTERM would kill it); exit code per worker id."""
        live = self.alive
        for worker in live:
            worker.wait_outcomes()
        for worker in live:
            worker.signal(signal.SIGCONT)
            worker.signal(signal.SIGTERM)
        return {worker.worker_id: worker.wait(timeout) for worker in live}

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


def environment() -> dict[str, str]:
    """This environment without the variables that would change a worker's settings."""
    aliases = {"REDIS_URL", "WORKER_ID"}
    return {
        k: v for k, v in os.environ.items() if not k.startswith("SCRAPERV4_") and k not in aliases
    }
