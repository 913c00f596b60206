"""A TCP proxy on 127.0.0.1 that can slow a connection down or cut it (asyncio, own thread).

Put it between clients and a server to simulate a bad network: :meth:`TcpProxy.set_latency`
delays every chunk, in each direction, by that many seconds (order kept);
:meth:`TcpProxy.cut` resets every open connection; :meth:`TcpProxy.refuse` makes new
connections close at once until it is turned off again (a partition).

>>> import socket
>>> server = socket.create_server(("127.0.0.1", 0))
>>> with TcpProxy(server.getsockname()[1]) as proxy:
...     client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
...     peer, _ = server.accept()
...     client.sendall(b"ping")
...     peer.recv(4)
b'ping'
>>> client.close(); peer.close(); server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, Optional, TypeVar

T = TypeVar("T")

_CHUNK = 65536


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``.

    Attributes:
        port: where clients connect.
        connections: connections accepted so far.
        cuts: connections reset by :meth:`cut`.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._latency = 0.0
        self._refusing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: Optional[asyncio.AbstractServer] = None
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, each way, by ``seconds`` from now on."""
        self._latency = seconds

    def refuse(self, refusing: bool = True) -> None:
        """While on, accepted connections are closed at once (nothing reaches the server)."""
        self._refusing = refusing

    def cut(self) -> int:
        """Reset every open connection (both ends); how many were open."""

        async def reset() -> int:
            writers = list(self._open)
            for writer in writers:
                writer.transport.abort()
            self._open.clear()
            return len(writers)

        cut = self._call(reset())
        self.cuts += cut // 2
        return cut // 2

    def stop(self) -> None:
        if self._server is not None:
            server = self._server
            self._server = None

            async def close() -> None:
                server.close()
                for writer in list(self._open):
                    writer.transport.abort()
                self._open.clear()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            self._call(close())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        # Cancelled when the proxy stops: end normally (a cancelled task here is logged).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        for end in (writer, up_writer):
            self._open.discard(end)
            end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies one direction; each chunk leaves ``latency`` seconds after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.put_nowait((time.monotonic() + self._latency, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
