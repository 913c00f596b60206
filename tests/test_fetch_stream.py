"""The streaming fetch against a real HTTP server on 127.0.0.1.

The server counts requests in progress and tells when each one ended (finished, or the
client went away), so the tests check bounds and cancellation on the server's side. Every
loop is bounded in count and time; waits are on conditions, with generous deadlines.
"""

from __future__ import annotations

import asyncio
import http.server
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest

from scraperv4.exceptions import ConfigError, FetchError
from scraperv4.extract import Template
from scraperv4.fetch import Fetcher
from support.http_server import PAGE
from support.redis_server import free_port

DEADLINE = 30.0


T = TypeVar("T")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run_once_four_in_flight(server: Any, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` while another thread holds the server's gate shut until four
    requests are in flight at once (fewer never get through)."""

    def release() -> None:
        wait_for(lambda: server.active == 4, "four requests in flight at once")
        server.gate.set()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        return asyncio.run(main())
    finally:
        server.gate.set()
        releaser.join()


class Handler(http.server.BaseHTTPRequestHandler):
    server: StreamServer

    def log_message(self, *args: Any) -> None:
        pass

    def _page(self, body: bytes = PAGE) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0.02)
        return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        # A request counts as active from its arrival until its answer starts: inside the
        # client's own span of it (which ends with the last byte), so the server's count of
        # active requests never exceeds the client's count in flight.
        with self.server.track():
            if parts.path == "/hold":
                time.sleep(int(query["ms"][0]) / 1000)
            elif parts.path == "/gated":
                self.server.gate.wait(DEADLINE)
            elif parts.path == "/hang":
                # Held until the client goes away (or the deadline): the server sees it end.
                deadline = time.monotonic() + DEADLINE
                while time.monotonic() < deadline and not self._client_gone():
                    pass
                return
        if parts.path in ("/page", "/hold", "/gated"):
            self._page()
        elif parts.path == "/big":
            self._page(b"x" * 256 * 1024)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


class StreamServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.started = 0
        self.ended = 0
        self.gate = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def track(self) -> Any:
        server = self

        class Tracked:
            def __enter__(self) -> None:
                with server.lock:
                    server.active += 1
                    server.started += 1
                    server.most_active = max(server.most_active, server.active)

            def __exit__(self, *exc: object) -> None:
                with server.lock:
                    server.active -= 1
                    server.ended += 1

        return Tracked()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def server() -> Iterator[StreamServer]:
    running = StreamServer()
    running._thread.start()
    yield running
    running.gate.set()
    running.shutdown()
    running.server_close()
    running._thread.join(timeout=5)


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(
        respect_robots=False,
        allow_private_networks=True,
        retries=0,
        concurrency=64,
        per_host_concurrency=64,
    )


def test_results_arrive_before_the_input_is_exhausted(
    server: StreamServer, fetcher: Fetcher
) -> None:
    total, concurrency, buffer = 200, 4, 3
    pulled = 0

    def urls() -> Iterator[str]:
        nonlocal pulled
        for n in range(total):
            pulled += 1
            yield f"{server.base}/page?n={n}"

    consumed = 0
    seen = set()
    first_at = None
    for url, result in fetcher.stream(urls(), concurrency=concurrency, buffer=buffer):
        consumed += 1
        first_at = first_at if first_at is not None else pulled
        assert pulled <= consumed - 1 + concurrency + buffer, (pulled, consumed)
        assert getattr(result, "status", None) == 200, result
        assert result.url == url
        seen.add(url)
    assert first_at is not None and first_at < total
    assert consumed == pulled == total == len(seen)


def test_the_number_in_flight_is_bounded(server: StreamServer, fetcher: Fetcher) -> None:
    urls = [f"{server.base}/hold?ms=20&n={n}" for n in range(40)]
    results = list(fetcher.stream(urls, concurrency=3, buffer=10))
    assert len(results) == 40
    assert all(getattr(r, "status", None) == 200 for _, r in results)
    assert 1 <= server.most_active <= 3


def test_a_slow_url_does_not_hold_back_fast_ones(server: StreamServer, fetcher: Fetcher) -> None:
    urls = [f"{server.base}/gated"] + [f"{server.base}/page?n={n}" for n in range(20)]
    order = []
    for url, _result in fetcher.stream(urls, concurrency=4, buffer=4):
        order.append(url)
        if len(order) == 20:
            server.gate.set()  # every fast page arrived while the slow one was held
    assert order[-1] == f"{server.base}/gated"
    assert len(order) == 21


def test_failed_urls_are_yielded_as_typed_errors_and_the_rest_succeed(
    server: StreamServer,
) -> None:
    fetcher = Fetcher(
        respect_robots=False, allow_private_networks=True, retries=0, max_body_bytes=64 * 1024
    )
    dead = f"http://127.0.0.1:{free_port()}/page"
    good = [f"{server.base}/page?n={n}" for n in range(10)]
    bad = {dead: "connect", "not a url": "decode", f"{server.base}/big": "too_large"}
    urls = good[:5] + list(bad) + good[5:] + [f"{server.base}/missing"]
    results = dict(fetcher.stream(urls, concurrency=4))
    assert set(results) == set(urls)
    for url in good:
        assert getattr(results[url], "status", None) == 200
    for url, kind in bad.items():
        error = results[url]
        assert isinstance(error, FetchError), error
        assert error.kind == kind, (url, error)
    missing = results[f"{server.base}/missing"]
    assert isinstance(missing, FetchError) and missing.kind == "http_status"


def hanging(server: StreamServer, n: int) -> list[str]:
    return [f"{server.base}/page"] + [f"{server.base}/hang?n={i}" for i in range(n)]


def test_breaking_out_stops_the_requests_in_flight(server: StreamServer, fetcher: Fetcher) -> None:
    first = None
    for url, _result in fetcher.stream(hanging(server, 6), concurrency=8):
        first = url
        wait_for(lambda: server.active == 6, "six requests in flight")
        break
    # The stream is gone with the loop: its requests are aborted, the server sees them end.
    wait_for(lambda: server.ended == 7 and server.active == 0, "the requests to end")
    assert first == f"{server.base}/page"


def test_close_stops_the_requests_in_flight(server: StreamServer, fetcher: Fetcher) -> None:
    with fetcher.stream(hanging(server, 5), concurrency=8) as stream:
        next(stream)
        wait_for(lambda: server.active == 5, "five requests in flight")
    wait_for(lambda: server.ended == 6 and server.active == 0, "the requests to end")
    assert list(stream) == []


def test_cancelling_the_async_iteration_stops_the_requests(
    server: StreamServer, fetcher: Fetcher
) -> None:
    async def consume(got: list[str]) -> None:
        async for url, _result in fetcher.stream_async(hanging(server, 6), concurrency=8):
            got.append(url)

    async def main() -> list[str]:
        got: list[str] = []
        task = asyncio.ensure_future(consume(got))
        deadline = time.monotonic() + DEADLINE
        while server.active < 6:
            assert time.monotonic() < deadline, "the requests never started"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(main())
    wait_for(lambda: server.ended == 7 and server.active == 0, "the requests to end")
    assert got == [f"{server.base}/page"]


def test_sync_and_async_streams_give_the_same_results(
    server: StreamServer, fetcher: Fetcher
) -> None:
    urls = [f"{server.base}/page?n={n}" for n in range(30)] + ["not a url"]

    def summary(pairs: list[Any]) -> list[tuple[str, Any]]:
        return sorted(
            (url, r.kind if isinstance(r, FetchError) else (r.status, r.content))
            for url, r in pairs
        )

    async def collect() -> list[Any]:
        async def source() -> AsyncIterator[str]:
            for url in urls:
                yield url

        from_list = [p async for p in fetcher.stream_async(urls, concurrency=5)]
        from_async = [p async for p in fetcher.stream_async(source(), concurrency=5)]
        assert summary(from_list) == summary(from_async)
        return from_list

    synced = list(fetcher.stream(iter(urls), concurrency=5))
    assert summary(synced) == summary(asyncio.run(collect()))


def test_an_async_input_keeps_every_slot_busy(server: StreamServer, fetcher: Fetcher) -> None:
    async def source() -> AsyncIterator[str]:
        for n in range(8):
            yield f"{server.base}/gated?n={n}"

    async def main() -> list[str]:
        got = []
        async for url, result in fetcher.stream_async(source(), concurrency=4, buffer=0):
            assert getattr(result, "status", None) == 200
            got.append(url)
        return got

    assert len(run_once_four_in_flight(server, main)) == 8
    assert server.most_active == 4


def test_an_async_input_fed_by_the_results_does_not_deadlock(
    server: StreamServer, fetcher: Fetcher
) -> None:
    async def main() -> int:
        queue: asyncio.Queue[str] = asyncio.Queue()
        await queue.put(f"{server.base}/page?n=0")

        async def frontier() -> AsyncIterator[str]:
            while True:
                yield await queue.get()

        done = 0
        async with fetcher.stream_async(frontier(), concurrency=4) as stream:
            async for _url, result in stream:
                assert getattr(result, "status", None) == 200
                done += 1
                if done == 25:
                    break
                await queue.put(f"{server.base}/page?n={done}")  # a link found on the page
        return done

    assert asyncio.run(asyncio.wait_for(main(), DEADLINE)) == 25


def test_fetch_and_extract_yields_items_as_pages_arrive(
    server: StreamServer, fetcher: Fetcher
) -> None:
    template = Template.from_dict(
        {"id": "t", "item": "body", "fields": [{"name": "text", "selector": "p.x"}]}
    )
    pulled = 0

    def urls() -> Iterator[str]:
        nonlocal pulled
        for n in range(50):
            pulled += 1
            yield f"{server.base}/page?n={n}"
        pulled += 1
        yield f"{server.base}/missing"

    results = {}
    for consumed, (url, items) in enumerate(
        fetcher.stream_extract(urls(), template, concurrency=4, buffer=2), start=1
    ):
        assert pulled <= consumed - 1 + 6
        results[url] = items
    assert len(results) == 51
    assert all(results[f"{server.base}/page?n={n}"] == [{"text": "hello"}] for n in range(50))
    assert isinstance(results[f"{server.base}/missing"], FetchError)

    async def collect() -> list[Any]:
        return [p async for p in fetcher.stream_extract_async([f"{server.base}/page"], template)]

    assert asyncio.run(collect()) == [(f"{server.base}/page", [{"text": "hello"}])]


def test_an_input_that_fails_closes_the_stream_and_raises(
    server: StreamServer, fetcher: Fetcher
) -> None:
    def urls() -> Iterator[str]:
        yield f"{server.base}/page"
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        list(fetcher.stream(urls(), concurrency=1, buffer=0))
    wait_for(lambda: server.active == 0, "the requests to end")


EXIT_RIGHT_AFTER = """
import asyncio, sys
from scraperv4.fetch import Fetcher

async def main():
    fetcher = Fetcher(respect_robots=False, allow_private_networks=True, retries=0)
    urls = (f"{sys.argv[1]}/page?n={n}" for n in range(300))
    count = 0
    async for _url, result in fetcher.stream_async(urls, concurrency=16):
        count += result.status == 200
    print(count)

asyncio.run(main())
"""


def test_a_program_may_end_right_after_its_async_stream(server: StreamServer) -> None:
    # A result handed to asyncio from a runtime thread once outlived the program's end
    # (Fatal Python error: PyGILState_Release): the stream now waits for its hand-overs.
    import subprocess
    import sys

    for _ in range(6):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_RIGHT_AFTER, server.base],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "300"


def test_an_async_input_that_waits_still_fills_every_slot(
    server: StreamServer, fetcher: Fetcher
) -> None:
    """Found by review: an input that awaits between URLs kept one request in flight (its
    URL was pushed only after the next result)."""

    async def source() -> AsyncIterator[str]:
        for n in range(8):
            await asyncio.sleep(0.005)
            yield f"{server.base}/gated?n={n}"

    async def main() -> int:
        return len([p async for p in fetcher.stream_async(source(), concurrency=4, buffer=0)])

    assert run_once_four_in_flight(server, main) == 8
    assert server.most_active == 4


def test_close_from_another_task_ends_the_iteration_and_fetches_nothing_more(
    server: StreamServer, fetcher: Fetcher
) -> None:
    """Found by review: aclose() by a supervisor while a task iterated left the iterating
    task spinning and pushing more URLs after the close."""

    async def main() -> None:
        only_hanging = [f"{server.base}/hang?n={i}" for i in range(20)]
        stream = fetcher.stream_async(only_hanging, concurrency=4, buffer=0)
        consumer = asyncio.ensure_future(stream.__anext__())
        deadline = time.monotonic() + DEADLINE
        while server.active < 4:
            assert time.monotonic() < deadline, "the requests never started"
            await asyncio.sleep(0.01)
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(consumer, DEADLINE)

    asyncio.run(main())
    wait_for(lambda: server.active == 0, "the requests to end")
    assert server.started == 4  # none after the close


def test_close_from_another_thread_ends_a_sync_iteration(
    server: StreamServer, fetcher: Fetcher
) -> None:
    only_hanging = [f"{server.base}/hang?n={i}" for i in range(20)]
    stream = fetcher.stream(only_hanging, concurrency=4, buffer=0)
    outcome: list[tuple[str, object]] = []

    def iterate() -> None:
        outcome.extend(stream)

    thread = threading.Thread(target=iterate)
    thread.start()
    wait_for(lambda: server.active == 4, "four requests in flight")
    stream.close()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the iterating thread did not stop"
    wait_for(lambda: server.active == 0, "the requests to end")
    assert all(url for url, _ in outcome)  # no made-up pair for a cancelled task


def test_an_input_item_that_is_not_a_url_string_costs_only_itself(
    server: StreamServer, fetcher: Fetcher
) -> None:
    items: list[Any] = [
        f"{server.base}/page?n=0",
        42,
        b"http://x/",
        "\udcff",
        f"{server.base}/page?n=1",
    ]
    pairs = list(fetcher.stream(items, concurrency=4))
    assert len(pairs) == 5
    by_url = {repr(url): result for url, result in pairs}
    for bad in (42, b"http://x/", "\udcff"):
        error = by_url[repr(bad)]
        assert isinstance(error, FetchError) and error.kind == "decode"
    assert sum(getattr(r, "status", None) == 200 for _, r in pairs) == 2


def test_stream_bounds_out_of_range_are_typed_errors(fetcher: Fetcher) -> None:
    # Before any URL is pulled or any task started (a huge bound used to panic natively).
    for bounds in [{"concurrency": 0}, {"buffer": -1}, {"concurrency": 10**20}, {"buffer": 2**64}]:
        with pytest.raises(ConfigError, match="stream bounds"):
            fetcher.stream(["http://127.0.0.1:9/"], **bounds)
        with pytest.raises(ConfigError, match="stream bounds"):
            fetcher.stream_async(["http://127.0.0.1:9/"], **bounds)
