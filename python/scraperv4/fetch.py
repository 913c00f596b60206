"""Fetch pages politely and safely.

>>> from scraperv4.fetch import Fetcher
>>> fetcher = Fetcher(allow_private_networks=True, respect_robots=False, retries=0)  # local

Defaults a crawler should have: 64 requests in flight, 8 per host, robots.txt respected
(its ``Crawl-delay`` too), 3 retries with backoff on timeouts, connection errors, 429 and 5xx
(``Retry-After`` honoured), 10 redirects, bodies up to 10 MiB counted *after*
decompression with a cap on the decompression ratio, proxy variables from the environment
ignored, and the SSRF guard on: private, loopback, link-local and cloud-metadata addresses
are refused (after DNS resolution, for every redirect hop). Open it for a local site with
``allow_private_networks=True`` or ``allowed_networks=["10.1.0.0/16"]`` /
``allowed_hosts=["intranet.example"]``. TLS trusts the system's certificate store, plus
an internal CA with ``ca_file="ca.pem"``; HTTP/2 is negotiated by ALPN (``Response.http_version``).

Failures raise :class:`~scraperv4.exceptions.FetchError` with a machine-readable ``kind``:
``timeout``, ``dns``, ``connect``, ``tls``, ``too_large``, ``robots_denied``,
``blocked_address``, ``http_status``, ``too_many_redirects`` or ``decode``.

Any number of URLs, with bounded memory: :meth:`Fetcher.stream` (and
:meth:`Fetcher.stream_async`, :meth:`Fetcher.stream_extract`,
:meth:`Fetcher.stream_extract_async`) pull URLs from any iterable as room frees up and yield
``(url, result)`` pairs as pages complete; a failed URL yields its error, the stream goes on.

>>> from scraperv4.exceptions import FetchError
>>> with fetcher.stream(["http://127.0.0.1:9/"]) as results:  # nothing listens there
...     for url, result in results:
...         if isinstance(result, FetchError):
...             print(url, result.kind)
http://127.0.0.1:9/ connect
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from itertools import islice
from types import TracebackType
from typing import Any, Generic, Optional, TypeVar, Union

from scraperv4 import _core
from scraperv4.exceptions import ExtractionLimitError, FetchError
from scraperv4.extract import Template

__all__ = ["AsyncFetchStream", "FetchConfig", "FetchError", "FetchStream", "Fetcher", "Response"]

#: A fetched page: ``status``, ``url``, ``final_url``, ``headers`` (name, value pairs),
#: ``content`` (bytes, decompressed), ``text`` (decoded), ``encoding``, ``elapsed`` (s),
#: ``wire_bytes``.
Response = _core.Response

#: What a stream yields for one URL: ``(url, result)``, ``url`` exactly as given.
_R = TypeVar("_R")

#: The most results taken from the core in one call (they are already finished).
_TAKE = 1024


def _encodable(text: str) -> bool:
    """Whether ``text`` can go to the core (UTF-8: no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


#: How long a sync stream that got fewer results than its pull chunk waits once for more,
#: seconds (fewer wake-ups of the iterating thread; a page is never held back longer).
_LINGER = 0.001


# A stream's bounds: far above what one process can fetch at once, far below what would
# overflow the native side.
_MAX_IN_FLIGHT = 100_000
_MAX_BUFFERED = 1_000_000


class _Window:
    """What both streams share: the core handle, results taken but not yet handed out, and
    the bound: ``outstanding`` (pulled - handed out) ``<= window``, counted here so that
    handing out a result costs no call into the core."""

    def __init__(self, native: _core.FetchStream, window: int, chunk: int) -> None:
        self._native = native
        self._window = window
        # URLs are pulled once this many places are free (1 without a buffer): fewer, larger
        # pushes, while the buffer keeps every connection busy in between.
        self._chunk = chunk
        self._outstanding = 0
        self._ready: deque[Any] = deque()
        self._exhausted = False
        self._closed = False

    def _pull_sync(self, urls: Iterator[str]) -> None:
        """Pushes as many URLs as there is room for (never more: the input stays lazy)."""
        room = self._window - self._outstanding
        if self._closed or self._exhausted or room < self._chunk:
            return
        batch = list(islice(urls, room))
        if len(batch) < room:
            self._exhausted = True
        self._push(batch)

    def _push(self, batch: list[Any]) -> None:
        """Starts the URLs of ``batch``; an item that is not a URL string (``42``, bytes, a
        lone surrogate) is a ``decode`` error of its own, like any URL that cannot be
        fetched: one bad input item never costs the others."""
        good = [u for u in batch if isinstance(u, str) and _encodable(u)]
        if len(good) < len(batch):
            for item in batch:
                if not (isinstance(item, str) and _encodable(item)):
                    self._ready.append((item, FetchError(f"not a URL: {item!r}", "decode")))
        if good:
            self._native.push(good)
        self._outstanding += len(batch)

    def _handed_out(self) -> Any:
        self._outstanding -= 1
        return self._ready.popleft()

    def close(self) -> None:
        """Stops the work still running (its connections are closed when this returns) and
        drops results not handed out. Idempotent; iterating afterwards yields nothing."""
        if not self._closed:
            self._closed = True
            self._ready.clear()
            self._native.close()


class FetchStream(_Window, Generic[_R]):
    """Results of :meth:`Fetcher.stream` / :meth:`Fetcher.stream_extract`, as they complete.

    Iterate it (once) for ``(url, result)`` pairs. The input is pulled lazily: at any time
    at most ``concurrency + buffer`` URLs have been pulled but not yet yielded, of which at
    most ``concurrency`` are being fetched. Leaving the loop early (``break``, an exception)
    and :meth:`close` stop the work still running; use it as a context manager to close it
    at a definite point. Not thread-safe: iterate it from one thread.
    """

    def __init__(
        self, native: _core.FetchStream, window: int, chunk: int, urls: Iterable[str]
    ) -> None:
        super().__init__(native, window, chunk)
        self._urls = iter(urls)

    def __iter__(self) -> FetchStream[_R]:
        return self

    def __next__(self) -> tuple[str, _R]:
        if self._closed:
            raise StopIteration
        try:
            self._pull_sync(self._urls)
            while not self._ready:
                if self._exhausted and self._outstanding == 0:
                    self.close()
                    raise StopIteration
                # The GIL is released; a small batch waits _LINGER once for more.
                taken = self._native.take(_TAKE, self._chunk, _LINGER)
                if self._closed:  # by another thread, or a signal handler, meanwhile
                    raise StopIteration
                self._ready.extend(taken)
                self._pull_sync(self._urls)  # new work before handing results out
        except StopIteration:
            raise
        except BaseException:
            self.close()  # the input failed, or Ctrl-C: nothing keeps running
            raise
        return self._handed_out()  # type: ignore[no-any-return]

    def __enter__(self) -> FetchStream[_R]:
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


class AsyncFetchStream(_Window, Generic[_R]):
    """The asyncio twin of :class:`FetchStream` (:meth:`Fetcher.stream_async`).

    The input may be an iterable or an async iterable. Cancelling the task that iterates it
    stops the work still running, as do ``break`` (once the stream is collected),
    :meth:`aclose` and ``async with``. An async input is never awaited while results are
    ready to be handed out (so an input fed from those results cannot deadlock it).
    """

    def __init__(
        self,
        native: _core.FetchStream,
        window: int,
        chunk: int,
        urls: Union[Iterable[str], AsyncIterable[str]],
    ) -> None:
        super().__init__(native, window, chunk)
        self._sync: Optional[Iterator[str]] = None
        self._async: Optional[AsyncIterator[str]] = None
        if isinstance(urls, AsyncIterable):
            self._async = urls.__aiter__()
        else:
            self._sync = iter(urls)
        self._pull: Optional[asyncio.Future[str]] = None
        # The core's pending take (kept across a wake-up by the input's pull).
        self._taking: Optional[asyncio.Future[list[Any]]] = None

    async def _pull_async(self) -> None:
        if self._sync is not None:
            self._pull_sync(self._sync)
            return
        assert self._async is not None
        while not self._closed and not self._exhausted and self._outstanding < self._window:
            if self._pull is None:
                self._pull = asyncio.ensure_future(self._async.__anext__())
                await asyncio.sleep(0)  # one turn: an input with a URL at hand gives it now
            if self._pull is None:
                return  # closed meanwhile
            if not self._pull.done():
                if self._outstanding:
                    return  # results first; the pull stays armed (and wakes _take)
                await asyncio.wait([self._pull])
            if self._pull is None:
                return
            pull, self._pull = self._pull, None
            try:
                url = pull.result()
            except StopAsyncIteration:
                self._exhausted = True
                return
            self._push([url])

    async def _take(self) -> list[Any]:
        """Finished results; waits for one, or for the armed pull of the input to give a
        URL (then returns nothing: the caller pushes it, and asks again)."""
        ready = self._native.try_take(_TAKE)
        if ready:
            return ready
        if self._taking is None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[list[Any]] = loop.create_future()

            def deliver(results: list[Any]) -> None:
                if not future.done():  # not cancelled meanwhile
                    future.set_result(results)

            self._native.take_async(_TAKE, loop.call_soon_threadsafe, deliver)
            self._taking = future
        taking = self._taking
        if self._pull is not None and not self._pull.done():
            # An input that has to wait (a database cursor, a queue fed by another task):
            # its URL goes out as soon as it comes, not after the next result.
            either: set[asyncio.Future[Any]] = {taking, self._pull}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not taking.done():
                return []
        try:
            results = await taking
        except asyncio.CancelledError:
            if self._closed:  # close() by another task cancelled the take: the end
                return []
            raise
        self._taking = None
        return results

    def __aiter__(self) -> AsyncFetchStream[_R]:
        return self

    async def __anext__(self) -> tuple[str, _R]:
        if self._closed:
            raise StopAsyncIteration
        try:
            await self._pull_async()
            while not self._ready:
                if self._exhausted and self._outstanding == 0:
                    self.close()
                    raise StopAsyncIteration
                taken = await self._take()
                if self._closed:  # by another task meanwhile
                    raise StopAsyncIteration
                self._ready.extend(taken)
                await self._pull_async()
        except StopAsyncIteration:
            raise
        except BaseException:
            self.close()  # cancelled, or the input failed: nothing keeps running
            raise
        return self._handed_out()  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._pull is not None:
            self._pull.cancel()
            self._pull = None
        if self._taking is not None:
            self._taking.cancel()
            self._taking = None
        super().close()

    async def aclose(self) -> None:
        """The same as :meth:`close` (which does not wait on the event loop)."""
        self.close()

    async def __aenter__(self) -> AsyncFetchStream[_R]:
        return self

    async def __aexit__(
        self,
        kind: Optional[type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


#: A page, or why there is none.
Fetched = Union[Response, FetchError]
#: A page's items, or why there are none.
Extracted = Union[list[dict[str, Any]], FetchError, ExtractionLimitError]


@dataclasses.dataclass
class FetchConfig:
    """Settings of a :class:`Fetcher` (see the module docs for what the defaults mean)."""

    concurrency: int = 64
    per_host_concurrency: int = 8
    delay_range: tuple[float, float] = (0.0, 0.0)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_redirects: int = 10
    user_agent: Optional[str] = None
    proxy: Optional[str] = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    header_origins: list[str] = dataclasses.field(default_factory=list)
    cookies: bool = False
    max_body_bytes: int = 10 * 1024 * 1024
    max_decompression_ratio: int = 100
    retries: int = 3
    retry_base: float = 0.5
    max_retry_after: float = 60.0
    respect_robots: bool = True
    robots_ttl: float = 3600.0
    allow_private_networks: bool = False
    allowed_networks: list[str] = dataclasses.field(default_factory=list)
    allowed_hosts: list[str] = dataclasses.field(default_factory=list)
    ca_file: Optional[str] = None

    def _to_json(self) -> str:
        fields = dataclasses.asdict(self)
        if fields["user_agent"] is None:
            del fields["user_agent"]  # the core's default names the version
        fields["delay_range"] = list(fields["delay_range"])
        return json.dumps(fields)


class Fetcher:
    """One shared HTTP client (pooled connections, HTTP/1.1 and HTTP/2) with its limits.

    Args:
        config: a :class:`FetchConfig`; keyword arguments override its fields.

    Raises:
        ConfigError: an unknown setting or an unusable value.
    """

    def __init__(self, config: Optional[FetchConfig] = None, **overrides: Any) -> None:
        base = config or FetchConfig()
        try:
            self.config = dataclasses.replace(base, **overrides)
        except TypeError as error:
            from scraperv4.exceptions import ConfigError

            raise ConfigError(f"unknown fetch setting: {error}") from None
        self._inner = _core.Fetcher(self.config._to_json())

    def fetch(self, url: str) -> Response:
        """Fetch ``url`` (the GIL is released while it runs). Raises :class:`FetchError`."""
        return self._inner.fetch(url)

    def fetch_many(self, urls: Iterable[str]) -> list[Union[Response, FetchError]]:
        """Fetch all ``urls`` concurrently; one result per URL, in order.

        A failure does not stop the others: its place holds the :class:`FetchError`.
        """
        return self._inner.fetch_many(list(urls))

    def fetch_extract_many(
        self, urls: Iterable[str], template: Template
    ) -> list[Union[list[dict[str, Any]], FetchError]]:
        """Fetch every URL and extract its items with ``template``, without Python in between.

        One result per URL, in order: the page's items, or the :class:`FetchError`.
        """
        return self._inner.fetch_extract_many(list(urls), template._inner)

    async def fetch_async(self, url: str) -> Response:
        """The asyncio twin of :meth:`fetch`."""
        return await self._inner.fetch_async(url)

    async def fetch_many_async(self, urls: Iterable[str]) -> list[Union[Response, FetchError]]:
        """The asyncio twin of :meth:`fetch_many`."""
        return await self._inner.fetch_many_async(list(urls))

    def _bounds(
        self, concurrency: Optional[int], buffer: Optional[int]
    ) -> tuple[int, int, int, int]:
        """``in_flight, buffered, window, chunk`` of a stream."""
        in_flight = self.config.concurrency if concurrency is None else concurrency
        buffered = in_flight if buffer is None else buffer
        if not (1 <= in_flight <= _MAX_IN_FLIGHT and 0 <= buffered <= _MAX_BUFFERED):
            from scraperv4.exceptions import ConfigError

            raise ConfigError(
                f"stream bounds: concurrency {in_flight} (1 to {_MAX_IN_FLIGHT:,}), "
                f"buffer {buffered} (0 to {_MAX_BUFFERED:,})"
            )
        return in_flight, buffered, in_flight + buffered, max(1, buffered // 2)

    def stream(
        self,
        urls: Iterable[str],
        *,
        concurrency: Optional[int] = None,
        buffer: Optional[int] = None,
    ) -> FetchStream[Fetched]:
        """Fetch ``urls`` (any iterable, pulled lazily) and yield ``(url, Response |
        FetchError)`` pairs as pages complete.

        At most ``concurrency`` (default: the fetcher's) are fetched at once, under the
        fetcher's global and per-host limits, and at most ``concurrency + buffer`` (default
        ``buffer = concurrency``) are pulled from ``urls`` but not yet yielded: memory stays
        bounded for any number of URLs, and a consumer that stops iterating stops the
        pulling. A failed URL yields its :class:`FetchError`; the stream goes on.
        """
        in_flight, buffered, window, chunk = self._bounds(concurrency, buffer)
        return FetchStream(self._inner.stream(in_flight, buffered), window, chunk, urls)

    def stream_async(
        self,
        urls: Union[Iterable[str], AsyncIterable[str]],
        *,
        concurrency: Optional[int] = None,
        buffer: Optional[int] = None,
    ) -> AsyncFetchStream[Fetched]:
        """The asyncio twin of :meth:`stream` (``async for``); ``urls`` may be async."""
        in_flight, buffered, window, chunk = self._bounds(concurrency, buffer)
        return AsyncFetchStream(self._inner.stream(in_flight, buffered), window, chunk, urls)

    def stream_extract(
        self,
        urls: Iterable[str],
        template: Template,
        *,
        concurrency: Optional[int] = None,
        buffer: Optional[int] = None,
    ) -> FetchStream[Extracted]:
        """:meth:`stream` with each page's items extracted by ``template`` in Rust, as it
        arrives: ``(url, items | FetchError | ExtractionLimitError)`` pairs."""
        in_flight, buffered, window, chunk = self._bounds(concurrency, buffer)
        native = self._inner.stream_extract(template._inner, in_flight, buffered)
        return FetchStream(native, window, chunk, urls)

    def stream_extract_async(
        self,
        urls: Union[Iterable[str], AsyncIterable[str]],
        template: Template,
        *,
        concurrency: Optional[int] = None,
        buffer: Optional[int] = None,
    ) -> AsyncFetchStream[Extracted]:
        """The asyncio twin of :meth:`stream_extract`."""
        in_flight, buffered, window, chunk = self._bounds(concurrency, buffer)
        native = self._inner.stream_extract(template._inner, in_flight, buffered)
        return AsyncFetchStream(native, window, chunk, urls)
