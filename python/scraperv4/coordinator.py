"""The coordinator: the scaling guide's HTTP API on port 8080, a live dashboard and a
WebSocket of stats, over one queue.

Stateless: all state is in the queue (Redis for a fleet), so replicas behind nginx
(``docker/nginx/nginx-scale.conf``) answer alike. Routes (see ``GET /api/openapi.json``):
``/api/health``, ``/api/scraping/start``, ``/api/scraping/status/{id}``, ``/api/jobs``,
``/api/jobs/{id}/retry|cancel``, ``/api/queue/stats``, ``/api/workers``,
``/api/workers/{id}/drain``, ``/metrics``, ``/ws`` and the dashboard at ``/``.

Security: with a token (``SCRAPERV4_API_TOKEN`` or ``SCRAPERV4_API_TOKEN_FILE``, at least
16 characters) every mutating
route needs ``Authorization: Bearer <token>`` (compared in constant time), and every route
with ``protect_reads``; request bodies are limited, requests time out, CORS is off unless
origins are given; the queue URL and the token never appear in answers or logs.
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
        addr: ``host:port`` to listen on (port 0 picks a free one; default ``0.0.0.0:8080``).
        token: the API token (default ``$SCRAPERV4_API_TOKEN``, or the file named by
            ``$SCRAPERV4_API_TOKEN_FILE``; empty: no token).
        protect_reads: require the token for reads too.
        body_limit: largest request body, bytes.
        request_timeout: longest request, seconds.
        header_timeout: longest time a client may take to send its request headers.
        cors_origins: origins allowed to call the API from a browser (default none).
        stats_interval: seconds between the stats pushed on ``/ws``.
        settings: loaded :class:`~scraperv4.settings.CoordinatorSettings` to start from.

    Raises:
        ConfigError: an invalid setting (a token shorter than 16 characters, ...).
    """

    def __init__(
        self,
        queue: Union[JobQueue, str, None] = None,
        addr: Optional[str] = None,
        *,
        token: Optional[str] = None,
        protect_reads: Optional[bool] = None,
        body_limit: Optional[int] = None,
        request_timeout: Optional[float] = None,
        header_timeout: Optional[float] = None,
        cors_origins: Optional[Iterable[str]] = None,
        stats_interval: Optional[float] = None,
        settings: Optional[CoordinatorSettings] = None,
    ) -> None:
        overrides = {
            "addr": addr,
            "protect_reads": protect_reads,
            "body_limit": body_limit,
            "request_timeout": request_timeout,
            "header_timeout": header_timeout,
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
            body_limit=settings.body_limit,
            request_timeout=settings.request_timeout,
            header_timeout=settings.header_timeout,
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
