"""A real HTTP server on a loopback address, with the routes the fetcher tests need.

Every route is deterministic and bounded; the server counts requests per path so tests can
assert how many attempts were made. Stopped with ``stop()`` (or as a context manager).
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections import Counter
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import brotli

PAGE = b"<html><head><title>ok</title></head><body><p class='x'>hello</p></body></html>"
BOMB_SIZE = 50 * 1024 * 1024
_BOMBS: dict[str, bytes] = {}


def bomb(kind: str) -> bytes:
    """50 MiB of zeros, compressed (computed once per process)."""
    if kind not in _BOMBS:
        zeros = bytes(BOMB_SIZE)
        _BOMBS[kind] = gzip.compress(zeros, 9) if kind == "gzip" else brotli.compress(zeros)
    return _BOMBS[kind]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(
        self, status: int, body: bytes = b"", headers: Optional[dict[str, str]] = None
    ) -> None:
        self.send_response(status)
        headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
        if "Content-Length" not in headers and body is not None:
            headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: PLR0912 - one branch per route
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        hits = self.server.hit(path)
        if path == "/robots.txt":
            if self.server.robots is None:
                self._send(404, b"no robots")
            else:
                self._send(200, self.server.robots.encode(), {"Content-Type": "text/plain"})
        elif path == "/page":
            self._send(200, PAGE)
        elif path == "/latin1":
            self._send(
                200,
                "<p>café crème</p>".encode("latin-1"),
                {"Content-Type": "text/html; charset=ISO-8859-1"},
            )
        elif path == "/meta-1251":
            body = (
                b'<html><head><meta charset="windows-1251"></head><body>'
                + "Привет".encode("cp1251")
                + b"</body></html>"
            )
            self._send(200, body, {"Content-Type": "text/html"})
        elif path == "/slow-first-byte":
            time.sleep(float(query.get("delay", ["2"])[0]))
            self._send(200, PAGE)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(1.0)
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/page" if left == 0 else f"/redirect/{left - 1}"
            self._send(302, b"", {"Location": target})
        elif path == "/loop-a":
            self._send(302, b"", {"Location": "/loop-b"})
        elif path == "/loop-b":
            self._send(302, b"", {"Location": "/loop-a"})
        elif path == "/redirect-to":
            self._send(302, b"", {"Location": query["url"][0]})
        elif path == "/429":
            if hits == 1:
                self._send(429, b"slow down", {"Retry-After": "1"})
            else:
                self._send(200, PAGE)
        elif path == "/503-then-200":
            self._send(503 if hits == 1 else 200, PAGE)
        elif path == "/always-500":
            self._send(500, b"broken")
        elif path == "/status/404":
            self._send(404, b"missing")
        elif path == "/gzip":
            self._send(200, gzip.compress(PAGE), {"Content-Encoding": "gzip"})
        elif path == "/br":
            self._send(200, brotli.compress(PAGE), {"Content-Encoding": "br"})
        elif path == "/gzip-bomb":
            self._send(200, bomb("gzip"), {"Content-Encoding": "gzip"})
        elif path == "/brotli-bomb":
            self._send(200, bomb("br"), {"Content-Encoding": "br"})
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(100 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
        elif path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            chunk = b"y" * 65536
            try:
                for _ in range(64):  # 4 MiB at most
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path.startswith("/private"):
            self._send(200, PAGE)
        else:
            self._send(404, b"unknown route")


class Server(http.server.ThreadingHTTPServer):
    """The test server; ``robots`` is the robots.txt text (``None``: 404)."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", robots: Optional[str] = None) -> None:
        super().__init__((host, 0), Handler)
        self.robots = robots
        self.hits: Counter[str] = Counter()
        # path -> arrival times (time.monotonic()) of its requests
        self.times: dict[str, list[float]] = {}
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def get_request(self) -> Any:
        request = super().get_request()
        with self._lock:
            self.connections += 1
        return request

    def hit(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            self.times.setdefault(path, []).append(time.monotonic())
            return self.hits[path]

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
