"""Target sites for the fleet politeness tests: one HTTP server per loopback address
(127.0.0.1, 127.0.0.2, ... — different hosts, so each is its own politeness key), all served
by one asyncio loop on a thread, recording the arrival time of every request.

A request's arrival is taken when its request line has been read (``time.monotonic()`` for
gaps, ``time.time()`` to compare with the queue's clock). Each site answers from a
``respond(path, nth)`` rule (``nth``: how many requests the site has had, this one included)
that says the status, headers and how long to hold the answer (bounded); ``robots`` is its
robots.txt (``None``: 404). HTTP/1.1 with keep-alive, as the workers' client expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Awaitable, Iterator, Sequence
from typing import Callable, Optional

PAGE = b"<html><head><title>ok</title></head><body><p class='x'>hello</p></body></html>"


@dataclasses.dataclass(frozen=True)
class Arrival:
    """One request as the site saw it."""

    host: str  # the site's address, e.g. "127.0.0.7" (its politeness key)
    path: str
    at: float  # time.monotonic() when the request line was read
    wall: float  # time.time() at the same moment (comparable with the queue's times)
    status: int  # what the site answered


@dataclasses.dataclass(frozen=True)
class Reply:
    """What a site answers: status, extra headers, seconds to hold the answer first."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    hold: float = 0.0


Rule = Callable[[str, int], Reply]


def ok(_path: str, _nth: int) -> Reply:
    """The default rule: 200 at once."""
    return Reply()


@dataclasses.dataclass
class Site:
    """One host: its address, port, robots.txt and answer rule."""

    host: str
    robots: Optional[str] = None
    respond: Rule = ok
    port: int = 0
    pages: int = 0  # requests other than /robots.txt so far

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


MAX_HOLD = 30.0  # no answer is held longer, whatever a rule says


class Sites:
    """``count`` sites on 127.0.0.1 ... 127.0.0.<count>; use as a context manager.

    ``release()`` ends every held answer at once (the test's cleanup calls it).
    """

    def __init__(self, count: int = 20) -> None:
        if not 1 <= count <= 254:
            raise ValueError("1 to 254 sites")
        self.sites = [Site(f"127.0.0.{i}") for i in range(1, count + 1)]
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.AbstractServer] = []
        self._released: Optional[asyncio.Event] = None
        self._handlers: set[asyncio.Task[None]] = set()

    def __getitem__(self, index: int) -> Site:
        return self.sites[index]

    def __len__(self) -> int:
        return len(self.sites)

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites)

    # --- what the sites saw ---------------------------------------------------------------

    def arrivals(self, host: Optional[str] = None, *, pages_only: bool = True) -> list[Arrival]:
        """Requests so far in arrival order (of ``host`` only, when given; robots.txt
        fetches left out unless ``pages_only`` is false)."""
        with self._lock:
            seen = list(self._arrivals)
        return [
            a
            for a in seen
            if (host is None or a.host == host) and not (pages_only and a.path == "/robots.txt")
        ]

    def robots_fetches(self, host: str) -> int:
        """How many times ``host``'s robots.txt was asked for."""
        with self._lock:
            return sum(1 for a in self._arrivals if a.host == host and a.path == "/robots.txt")

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> Sites:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._released = asyncio.Event()
        for site in self.sites:
            server = await asyncio.start_server(self._handler(site), site.host, 0)
            site.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    def release(self) -> None:
        """Answer every held request now."""
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.release()
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def __enter__(self) -> Sites:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one connection -------------------------------------------------------------------

    def _handler(
        self, site: Site
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(site, reader, writer)

        return handle

    async def _serve(
        self, site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            for _ in range(10_000):  # requests on one connection, at most
                line = await reader.readline()
                if not line:
                    return
                at, wall = time.monotonic(), time.time()
                parts = line.decode("latin-1").split()
                path = parts[1] if len(parts) >= 2 else "/"
                close = False
                for _ in range(100):  # headers, at most
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    if header.lower().startswith(b"connection:") and b"close" in header.lower():
                        close = True
                if path == "/robots.txt":
                    reply = Reply(200 if site.robots is not None else 404)
                    body = (site.robots or "no robots").encode()
                    headers: Sequence[tuple[str, str]] = [("Content-Type", "text/plain")]
                else:
                    site.pages += 1
                    reply = site.respond(path, site.pages)
                    body = PAGE if reply.status == 200 else b"no"
                    headers = [("Content-Type", "text/html; charset=utf-8"), *reply.headers]
                with self._lock:
                    self._arrivals.append(Arrival(site.host, path, at, wall, reply.status))
                if reply.hold > 0 and self._released is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._released.wait(), min(reply.hold, MAX_HOLD))
                head = [f"HTTP/1.1 {reply.status} X", f"Content-Length: {len(body)}"]
                head += [f"{name}: {value}" for name, value in headers]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()


def gaps(arrivals: Sequence[Arrival]) -> list[float]:
    """Seconds between consecutive arrivals."""
    return [b.at - a.at for a, b in zip(arrivals, arrivals[1:])]


def most_in_window(arrivals: Sequence[Arrival], window: float) -> int:
    """The most arrivals in any half-open window ``[t, t + window)``."""
    times = [a.at for a in arrivals]
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
