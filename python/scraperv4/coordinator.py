"""The coordinator: the scaling guide's HTTP API on port 8080, a live dashboard and a
WebSocket of stats, over one queue.

Stateless: all state is in the queue (Redis for a fleet), so replicas behind nginx
(``docker/nginx/nginx-scale.conf``) answer alike. Routes (see ``GET /api/openapi.json``):
``/api/health``, ``/api/scraping/start``, ``/api/scraping/status/{id}``, ``/api/jobs``,
``/api/jobs/{id}/retry|cancel``, ``/api/queue/stats``, ``/api/workers``,
``/api/workers/{id}/drain``, ``/metrics``, ``/ws`` and the dashboard at ``/``.

Security (``docs/security.md``): with a token (``SCRAPERV4_API_TOKEN`` or
``SCRAPERV4_API_TOKEN_FILE``, at least 16 characters) every route but the health probe,
``/metrics``, the OpenAPI document and the dashboard's page needs ``Authorization: Bearer
<token>`` (compared in constant time; reads too unless ``protect_reads=False``). Without a
token it listens on a loopback address only, unless ``insecure_no_auth``. Writes must be JSON
and come from no browser page but its own (Origin) or ``cors_origins``; the Host header must
be an IP, ``localhost`` or in ``allowed_hosts`` (DNS rebinding) unless a token guards it.
Request bodies, headers, connections and ``/ws`` streams are limited, requests time out,
every answer carries security headers and an ``X-Request-Id``, every request is logged on
``scraperv4.coordinator.access``; the queue URL and the token never appear in answers or
logs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any, Optional, Union

from scraperv4 import _core
from scraperv4.queue import JobQueue
from scraperv4.settings import CoordinatorSettings, resolve

__all__ = ["TOKEN_ENV", "Coordinator"]

#: The environment variable holding the API token.
TOKEN_ENV = "SCRAPERV4_API_TOKEN"  # noqa: S105 (a variable name, not a secret)


class Coordinator:
    """A coordinator server.

    Every setting not given here comes from the settings model (the ``coordinator`` role
    of :mod:`scraperv4.settings`: ``SCRAPERV4_<NAME>`` variables, the config file, the
    defaults); keyword arguments win.

    Args:
        queue: the queue (a :class:`~scraperv4.queue.JobQueue` or its URL; default the
            ``queue_url`` setting).
        addr: ``host:port`` to listen on (port 0 picks a free one; default ``0.0.0.0:8080``,
            which needs a token).
        token: the API token (default ``$SCRAPERV4_API_TOKEN``, or the file named by
            ``$SCRAPERV4_API_TOKEN_FILE``; empty: no token, loopback addresses only).
        protect_reads: with a token, require it for reads too (default true).
        insecure_no_auth: serve without a token on a non-loopback address anyway.
        allowed_hosts: host names the ``Host`` header may carry besides IPs and localhost.
        body_limit: largest request body, bytes.
        request_timeout: longest request, seconds.
        header_timeout: longest time a client may take to send its request headers.
        max_connections: most connections open at once (``/ws`` apart).
        ws_max_connections: most ``/ws`` connections open at once.
        ws_idle_timeout: seconds a ``/ws`` client may stay silent or not read.
        cors_origins: origins allowed to call the API from a browser (default none).
        stats_interval: seconds between the stats pushed on ``/ws``.
        settings: loaded :class:`~scraperv4.settings.CoordinatorSettings` to start from.

    Raises:
        ConfigError: an invalid setting (a token shorter than 16 characters, no token on a
            non-loopback address, ...).
    """

    def __init__(
        self,
        queue: Union[JobQueue, str, None] = None,
        addr: Optional[str] = None,
        *,
        token: Optional[str] = None,
        protect_reads: Optional[bool] = None,
        insecure_no_auth: Optional[bool] = None,
        allowed_hosts: Optional[Iterable[str]] = None,
        body_limit: Optional[int] = None,
        request_timeout: Optional[float] = None,
        header_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        ws_max_connections: Optional[int] = None,
        ws_idle_timeout: Optional[float] = None,
        cors_origins: Optional[Iterable[str]] = None,
        stats_interval: Optional[float] = None,
        settings: Optional[CoordinatorSettings] = None,
    ) -> None:
        overrides = {
            "addr": addr,
            "protect_reads": protect_reads,
            "insecure_no_auth": insecure_no_auth,
            "allowed_hosts": None if allowed_hosts is None else list(allowed_hosts),
            "body_limit": body_limit,
            "request_timeout": request_timeout,
            "header_timeout": header_timeout,
            "max_connections": max_connections,
            "ws_max_connections": ws_max_connections,
            "ws_idle_timeout": ws_idle_timeout,
            "cors_origins": None if cors_origins is None else list(cors_origins),
            "stats_interval": stats_interval,
        }
        settings = resolve(CoordinatorSettings, settings, overrides)
        self.settings = settings
        self.queue = queue if isinstance(queue, JobQueue) else settings.open_queue(queue)
        self._inner = _core.Coordinator(
            self.queue._inner,
            str(settings.addr),
            # An empty token given in Python turns the token off (it may still be set).
            token=settings.api_token if token is None else token,
            protect_reads=settings.protect_reads,
            insecure_no_auth=settings.insecure_no_auth,
            allowed_hosts=list(settings.allowed_hosts),
            body_limit=settings.body_limit,
            request_timeout=settings.request_timeout,
            header_timeout=settings.header_timeout,
            max_connections=settings.max_connections,
            ws_max_connections=settings.ws_max_connections,
            ws_idle_timeout=settings.ws_idle_timeout,
            cors_origins=list(settings.cors_origins),
            stats_interval=settings.stats_interval,
        )
        self._stopped = threading.Event()

    @classmethod
    def from_settings(cls, settings: CoordinatorSettings) -> Coordinator:
        """The coordinator ``settings`` describe (what ``scraperv4 coordinator`` runs)."""
        return cls(settings=settings)

    @property
    def address(self) -> Optional[str]:
        """``host:port`` while serving."""
        return self._inner.address

    def start(self) -> str:
        """Serve in the background; returns ``host:port``."""
        self._stopped.clear()
        return self._inner.start()

    def stop(self) -> None:
        """Stop gracefully: in-flight requests finish."""
        self._inner.stop()
        self._stopped.set()

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT (main thread), then stop gracefully."""
        self.start()
        previous: list[Any] = []
        if threading.current_thread() is threading.main_thread():

            def _handle(signum: int, frame: Optional[FrameType]) -> None:
                self._stopped.set()

            previous = [signal.signal(s, _handle) for s in (signal.SIGTERM, signal.SIGINT)]
        try:
            self._stopped.wait()
        finally:
            for s, handler in zip((signal.SIGTERM, signal.SIGINT), previous):
                signal.signal(s, handler)
            self._inner.stop()

    def __enter__(self) -> Coordinator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Coordinator({self.address or 'stopped'}, queue={self.queue.url!r})"
