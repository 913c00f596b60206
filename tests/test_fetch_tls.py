"""TLS and HTTP/2 against a real server on 127.0.0.1 (Hypercorn with a trustme certificate):
HTTP/2 is negotiated by ALPN; an untrusted certificate is a ``tls`` error; ``ca_file`` adds
a trusted root."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from scraperv4.exceptions import ConfigError, FetchError
from scraperv4.fetch import Fetcher
from support.redis_server import free_port

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


class TlsServer:
    """Hypercorn on a free loopback port in its own thread and event loop."""

    def __init__(self, directory: Path, alpn: list[str]) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert_file, key_file = directory / "cert.pem", directory / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        self.port = free_port()
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{self.port}"]
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
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


@pytest.fixture
def h2_server(tmp_path: Path) -> Iterator[TlsServer]:
    with TlsServer(tmp_path, ["h2", "http/1.1"]) as server:
        yield server


def fetch_when_listening(fetcher: Fetcher, url: str) -> Any:
    """The server binds a moment after its loop starts: retry connection refusals briefly."""
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            return fetcher.fetch(url)
        except FetchError as error:
            if error.kind != "connect" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_http2_is_negotiated_over_tls(h2_server: TlsServer) -> None:
    fetcher = Fetcher(ca_file=str(h2_server.ca_file), **LOCAL)
    response = fetch_when_listening(fetcher, h2_server.url)
    assert (response.status, response.http_version) == (200, "HTTP/2.0")
    assert "<p>2</p>" in response.text, "the server saw HTTP/2 too"


def test_http1_servers_still_get_http1(tmp_path: Path) -> None:
    with TlsServer(tmp_path, ["http/1.1"]) as server:
        response = fetch_when_listening(Fetcher(ca_file=str(server.ca_file), **LOCAL), server.url)
    assert (response.status, response.http_version) == (200, "HTTP/1.1")


def test_an_untrusted_certificate_is_a_tls_error(h2_server: TlsServer) -> None:
    fetch_when_listening(Fetcher(ca_file=str(h2_server.ca_file), **LOCAL), h2_server.url)
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
