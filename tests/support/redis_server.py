"""A throwaway ``redis-server`` on a free loopback port, with its own temporary directory.

Started and stopped by PID (never by name). A missing ``redis-server`` binary is an error that
says how to install it: the Redis tests must run, never be skipped silently.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

INSTALL_HINT = (
    "redis-server was not found on PATH. The queue tests need a real Redis server: "
    "install it (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`) "
    "and run the tests again. `.ci/run` installs it automatically."
)


class RedisServerMissingError(RuntimeError):
    """``redis-server`` is not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            # A server with `requirepass` answers NOAUTH: it is up all the same.
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` process owned by a test; use as a context manager.

    Args:
        extra_args: more ``redis-server`` options, e.g. ``["--appendonly", "yes"]``.
        port: the port to listen on (default: a free one).
        data_dir: where its files go (default: a new temporary directory, removed on stop).
    """

    def __init__(
        self,
        extra_args: Optional[list[str]] = None,
        port: Optional[int] = None,
        data_dir: Optional[Path] = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissingError(INSTALL_HINT)
        self.binary = binary
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="scraperv4-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args or [])
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's PID (the only handle used to stop it)."""
        assert self.process is not None, "server not started"
        return self.process.pid

    def start(self, timeout: float = 10.0, *, wait: bool = True) -> RedisServer:
        """Start the server and wait until it answers PING (with ``wait``; else see
        :meth:`wait_ready`)."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self.wait_ready(timeout) if wait else self

    def wait_ready(self, timeout: float = 10.0) -> RedisServer:
        """Wait until the server answers PING (it has loaded its data)."""
        assert self.process is not None, "server not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = (self.data_dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited at start:\n{output}")
            if _ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {timeout}s")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server (a crash), keeping its data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open, nothing answers (a hung Redis)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the server after :meth:`pause`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0, *, wait: bool = True) -> RedisServer:
        """Start the server again on the same port and directory (after :meth:`kill`)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        return self.start(timeout, wait=wait)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
