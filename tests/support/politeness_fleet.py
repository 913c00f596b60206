"""A fleet of real ``scraperv4 worker`` processes on one queue, for end-to-end tests.

Each worker has a known id (``fleet-0`` ...) so a test can tell which process holds a job;
every signal goes to a process by its PID (never by name). Logs go to files the test's
failure message can quote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

CLI = [sys.executable, "-m", "scraperv4"]

# A template that every test page satisfies (one item, its title).
TEMPLATE = '{"id": "page", "item": "html", "fields": [{"name": "title", "selector": "title"}]}'


def write_templates(directory: Path) -> Path:
    """``directory/templates`` holding the template every test page satisfies (``page``)."""
    templates = directory / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "page.json").write_text(TEMPLATE)
    return templates


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``condition`` every 50 ms until it is truthy (returned); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Fleet:
    """``count`` ``scraperv4 worker`` processes on ``redis_url``; use as a context manager.

    Args:
        redis_url: the queue's Redis.
        directory: where the templates and the logs go.
        count, concurrency: processes, and jobs in flight per process.
        args: more worker flags (e.g. ``--ignore-robots``, ``--lease 4``).
    """

    def __init__(
        self,
        redis_url: str,
        directory: Path,
        *,
        count: int = 4,
        concurrency: int = 32,
        args: Sequence[str] = (),
    ) -> None:
        self.redis_url = redis_url
        self.directory = directory
        self.templates = write_templates(directory)
        self.ids = [f"fleet-{i}" for i in range(count)]
        self.concurrency = concurrency
        self.args = list(args)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, worker_id: str) -> Path:
        return self.directory / f"{worker_id}.log"

    def logs(self) -> str:
        """The tail of every worker's log (for failure messages)."""
        parts = []
        for worker_id in self.ids:
            path = self.log(worker_id)
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {worker_id} ---\n{text[-2000:]}")
        return "\n".join(parts)

    def start(self) -> Fleet:
        env = {**os.environ, "REDIS_URL": self.redis_url}
        for worker_id in self.ids:
            with open(self.log(worker_id), "wb") as log:
                self.processes[worker_id] = subprocess.Popen(
                    [*CLI, "worker", "--templates", str(self.templates),
                     "--worker-id", worker_id, "--concurrency", str(self.concurrency),
                     "--fixed-concurrency", "--allow-private-networks", "--metrics-addr", "off",
                     "--fetch-retries", "0", "--log-level", "info", *self.args],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
        return self

    def wait_registered(self, queue: Any, timeout: float = 60.0) -> None:
        """Until every worker has registered with the queue (they claim from then on)."""

        def registered() -> bool:
            for worker_id, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(
                        f"{worker_id} exited with {process.returncode}:\n{self.logs()}"
                    )
            return {w["id"] for w in queue.workers()} >= set(self.processes)

        wait_for(registered, timeout, "every worker to register")

    def kill(self, worker_id: str) -> float:
        """SIGKILL one worker by its PID; returns the time.monotonic() of the kill."""
        process = self.processes[worker_id]
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=10)
        return killed

    def alive(self) -> list[str]:
        return [w for w, p in self.processes.items() if p.poll() is None]

    def stop(self) -> None:
        """SIGTERM every live worker by PID (grace: their flags), SIGKILL any still there."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
