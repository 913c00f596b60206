"""TLS and HTTP/2 against a real server on 127.0.0.1 (Hypercorn with a trustme certificate):
HTTP/2 is negotiated by ALPN; an untrusted certificate is a ``tls`` error; ``ca_file`` adds
a trusted root."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

from scraperv4.exceptions import ConfigError, FetchError
from scraperv4.fetch import Fetcher

LOCAL = {"allowed_networks": ["127.0.0.0/8"], "respect_robots": False, "retries": 0}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = f"<html><p>{scope['http_version']}</p></html>".encode()
    await send(
        {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/html; charset=utf-8")]}
    )  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class _Connection(socket.socket):
    """An accepted connection that tells its listener when it is closed."""

    def __init__(self, listener: _Listener, fd: int) -> None:
        super().__init__(listener.family, listener.type, listener.proto, fileno=fd)
        self._listener: Optional[_Listener] = listener

    def close(self) -> None:
        super().close()
        listener, self._listener = self._listener, None
        if listener is not None:
            with listener.changed:
                listener.open -= 1
                listener.changed.notify_all()


class _Listener(socket.socket):
    """The server's listening socket on a free loopback port: it counts the connections it
    accepted that are not closed yet (the event loop accepts and closes through it)."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen()
        self.open = 0
        self.changed = threading.Condition()

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        with self.changed:
            self.open += 1
        return _Connection(self, fd), address

    def wait_closed(self, timeout: float) -> bool:
        """Wait until every accepted connection is closed; False after ``timeout``."""
        with self.changed:
            return self.changed.wait_for(lambda: self.open == 0, timeout)


class _Config(Config):
    def __init__(self, listener: _Listener) -> None:
        super().__init__()
        self.listener = listener

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[self.listener], insecure_sockets=[], quic_sockets=[])


class TlsServer:
    """Hypercorn on a free loopback port in its own thread and event loop.

    It stops once its clients have closed their connections, not while they close them. A
    dropped ``Fetcher`` sends an HTTP/2 GOAWAY, then its close_notify; if the server has
    sent its own close_notify meanwhile, asyncio's SSL transport reads that GOAWAY with
    ``SSL_shutdown``, which OpenSSL fails with APPLICATION_DATA_AFTER_CLOSE_NOTIFY (data
    after our close_notify must be read with ``SSL_read``), and Hypercorn raises it out of
    ``serve``. A connection still open after the wait (a client kept alive) is closed by
    the server: an idle client answers with its close_notify alone.
    """

    def __init__(self, directory: Path, alpn: list[str]) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert_file, key_file = directory / "cert.pem", directory / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        self.listener = _Listener()  # listening already: clients may connect at once
        self.port = self.listener.getsockname()[1]
        self.config = _Config(self.listener)
        self.config.certfile, self.config.keyfile = str(cert_file), str(key_file)
        self.config.alpn_protocols = alpn
        self.config.accesslog = None
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stopping = asyncio.Event()
            self.loop.call_soon(self.ready.set)
            await serve(app, self.config, shutdown_trigger=self.stopping.wait)  # type: ignore[arg-type]

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def __enter__(self) -> TlsServer:
        self.thread.start()
        assert self.ready.wait(10), "the TLS server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.wait_closed(timeout=10)  # then the server closes what is left
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the TLS server did not stop"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


@pytest.fixture
def h2_server(tmp_path: Path) -> Iterator[TlsServer]:
    with TlsServer(tmp_path, ["h2", "http/1.1"]) as server:
        yield server


def test_http2_is_negotiated_over_tls(h2_server: TlsServer) -> None:
    fetcher = Fetcher(ca_file=str(h2_server.ca_file), **LOCAL)
    response = fetcher.fetch(h2_server.url)
    assert (response.status, response.http_version) == (200, "HTTP/2.0")
    assert "<p>2</p>" in response.text, "the server saw HTTP/2 too"
    del fetcher  # a dropped client closes its connection: GOAWAY, close_notify, FIN
    assert h2_server.listener.wait_closed(timeout=10), "the dropped client kept its connection"


def test_http1_servers_still_get_http1(tmp_path: Path) -> None:
    with TlsServer(tmp_path, ["http/1.1"]) as server:
        response = Fetcher(ca_file=str(server.ca_file), **LOCAL).fetch(server.url)
    assert (response.status, response.http_version) == (200, "HTTP/1.1")


def test_an_untrusted_certificate_is_a_tls_error(h2_server: TlsServer) -> None:
    Fetcher(ca_file=str(h2_server.ca_file), **LOCAL).fetch(h2_server.url)
    with pytest.raises(FetchError) as caught:
        Fetcher(**LOCAL).fetch(h2_server.url)  # the system's roots only: the test CA is unknown
    assert caught.value.kind == "tls", caught.value
    assert "certificate" in str(caught.value).lower()


def test_a_bad_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca_file"):
        Fetcher(ca_file=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_file"):
        Fetcher(ca_file=str(junk))
