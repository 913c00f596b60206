"""Fetch pages politely and safely.

>>> from scraperv4.fetch import Fetcher
>>> fetcher = Fetcher(allow_private_networks=True, respect_robots=False)  # a local site

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
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any, Optional, Union

from scraperv4 import _core
from scraperv4.exceptions import FetchError
from scraperv4.extract import Template

__all__ = ["FetchConfig", "FetchError", "Fetcher", "Response"]

#: A fetched page: ``status``, ``url``, ``final_url``, ``headers`` (name, value pairs),
#: ``content`` (bytes, decompressed), ``text`` (decoded), ``encoding``, ``elapsed`` (s),
#: ``wire_bytes``.
Response = _core.Response


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
