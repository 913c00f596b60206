"""Run scraping workers: claim jobs, fetch, extract, record items, follow links.

A :class:`Worker` serves one queue (Redis for a fleet, SQLite on one machine). Everything a
job needs happens in Rust with the GIL released: claiming in batches, up to ``concurrency``
fetches at once, extraction with the job's template, and one atomic step per batch that
completes the jobs, appends their items to the queue's results log and submits the links
and next pages they discovered (each URL once per crawl). An optional ``on_item`` callable
sees each record (the GIL is taken for that call only).

>>> from scraperv4.queue import JobQueue
>>> from scraperv4.extract import Template
>>> queue = JobQueue("memory://")
>>> template = Template.from_dict({"id": "t", "fields": [{"name": "h", "selector": "h1"}]})
>>> worker = Worker(queue, templates=[template], worker_id="doc", exit_when_done=True)
>>> worker.run()["completed"]  # nothing queued: returns at once
0

Stopping: :meth:`stop` (or SIGTERM / SIGINT while :meth:`run` runs in the main thread) stops
claiming, lets in-flight jobs finish within ``grace_period`` seconds, releases the rest to
the queue at once, unregisters and returns. A second signal releases in-flight jobs at once.
So does the queue's drain flag (``JobQueue.drain(worker_id)``), used to scale a fleet down.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import socket
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any, Callable, Optional, Union

from scraperv4 import _core
from scraperv4.exceptions import ConfigError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.settings import WorkerSettings, resolve

__all__ = [
    "JOB_CONFIG_KEYS",
    "ItemCallback",
    "ItemRecord",
    "Worker",
    "check_job_config",
    "crawl_job_id",
    "default_worker_id",
    "export_jsonl",
]

#: An item record: ``job_id``, ``crawl_id``, ``url``, ``template_id``, ``fetched_at``,
#: ``index`` and ``fields`` (the template's fields).
ItemRecord = dict[str, Any]

#: The ``on_item`` callback: called with each item record, it **returns the record to keep**
#: (the same dict, changed or not, or a new one) or ``None`` to drop the item. Dropped items
#: are not recorded or exported; they are counted as ``dropped`` in :meth:`Worker.progress`
#: and ``scraperv4_worker_items_dropped_total``, and a page whose every item was dropped is
#: logged once as a warning. So ``on_item=items.append`` (which returns ``None``) collects
#: the records *and drops them all*; to look at items and keep them::
#:
#:     def keep(record):
#:         seen.append(record)
#:         return record
#:
#: An exception fails the job (it is retried like any failure).
ItemCallback = Callable[[ItemRecord], Optional[ItemRecord]]

PathLike = Union[str, "os.PathLike[str]"]

#: What a job's config may set for the worker: ``timeout`` (seconds for the whole job),
#: ``delay_range`` (``[min, max]`` seconds between two requests to a host) and
#: ``respect_robots`` (``true``/``false``). Other keys are carried along untouched (the
#: worker logs each unknown key once); ``scraperv4 submit`` refuses them.
JOB_CONFIG_KEYS: tuple[str, ...] = tuple(_core.JOB_CONFIG_KEYS)


def check_job_config(config: Any, *, source: str = "job config") -> None:
    """Refuse a job config that is not a JSON object or sets a key the worker does not read
    (``delay_rang`` for ``delay_range``), naming the closest valid key.

    Raises:
        ConfigError: the config is not a dict, or has an unknown key.
    """
    import difflib

    if not isinstance(config, dict):
        raise ConfigError(f'{source} must be a JSON object, like {{"timeout": 60}}')
    for key in config:
        if key not in JOB_CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), JOB_CONFIG_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key {key!r}{hint}; a job's config may set "
                f"{', '.join(JOB_CONFIG_KEYS)}"
            )


_worker_numbers = itertools.count(1)


def default_worker_id() -> str:
    """``$WORKER_ID``, else ``<hostname>-<pid>``, and ``<hostname>-<pid>-<n>`` for the n-th
    call after the first in one process: two workers in one process never share an id (a run
    registering an id takes it over from any earlier run still using it)."""
    configured = os.environ.get("WORKER_ID")
    if configured:
        return configured
    base = f"{socket.gethostname()}-{os.getpid()}"
    number = next(_worker_numbers)
    return base if number == 1 else f"{base}-{number}"


def crawl_job_id(crawl_id: str, url: str) -> str:
    """The id of the job scraping ``url`` in crawl ``crawl_id``: the same URL always gets the
    same id, which is how a crawl scrapes each URL once (fragments are ignored)."""
    return _core.crawl_job_id(crawl_id, url)


def export_jsonl(queue: JobQueue, path: PathLike, *, trim: bool = False) -> int:
    """Append the queue's results log to the JSON Lines file ``path``; returns the number of
    records written. Resumable: a checkpoint next to the file (``<path>.checkpoint``) makes
    a second call write only what is new, even after a crash mid-write.

    With ``trim``, the log entries the file now holds are then deleted from the queue (on
    Redis the ``results`` stream would otherwise grow for as long as the queue is used).
    Only trim when this file is the log's one consumer.
    """
    return _export_jsonl_counts(queue, path, trim)[0]


def _export_jsonl_counts(queue: JobQueue, path: PathLike, trim: bool) -> tuple[int, int]:
    """Records written and log entries trimmed."""
    return _core.export_jsonl(queue._inner, os.fspath(path), trim)


class Worker:
    """A scraping worker.

    Every setting not given here comes from the settings model (the ``worker`` role of
    :mod:`scraperv4.settings`): ``SCRAPERV4_<NAME>`` variables, the config file named by
    ``SCRAPERV4_CONFIG``, else the built-in defaults; ``docs/configuration.md`` lists them.
    Keyword arguments win over all of those.

    Args:
        queue: the queue to serve (a :class:`~scraperv4.queue.JobQueue` or its URL; default
            the ``queue_url`` setting, e.g. ``$REDIS_URL``).
        settings: loaded :class:`~scraperv4.settings.WorkerSettings` to start from (the CLI
            passes its own); default: loaded from the environment and the config file.
        worker_id: this worker's id in the fleet (default ``$WORKER_ID``, else
            ``<hostname>-<pid>``).
        templates_dir: a directory of ``*.json`` / ``*.yaml`` templates looked up by the
            jobs' ``template_id`` (the ``templates`` setting).
        templates: templates given directly (added to those of ``templates_dir``).
        fetch: fetch settings (:class:`~scraperv4.fetch.FetchConfig`); default: built from
            the fetch and politeness settings.
        concurrency: jobs in flight at once (the ceiling, see ``adaptive_concurrency``).
        claim_batch: most jobs claimed per call (default ``min(concurrency, 100)``).
        heartbeat: seconds between lease renewals (below the queue's lease; by default 30,
            or half the lease when that is shorter).
        grace_period: seconds in-flight jobs get to finish when stopping.
        job_timeout: longest seconds for a job unless its config says ``timeout``.
        extract_timeout: longest seconds extracting one page may take (a page over it, or
            over the per-page caps on items, links and output, fails for good).
        exit_when_done: return once nothing is pending, retrying or leased (a one-machine
            crawl); otherwise run until stopped.
        metrics_addr: ``host:port`` for ``/metrics``, ``/health`` and ``/ready`` (port 0
            picks a free port; see :attr:`metrics_address`; ``"off"``: none). A worker built
            in Python serves them only when this is set here, in a variable, in the config
            file or in ``settings`` (``scraperv4 worker`` defaults to ``127.0.0.1:9100``).
        jsonl_path: copy recorded items to this JSON Lines file as jobs complete.
        on_item: an :data:`ItemCallback`: returns the record to keep it, ``None`` drops it.
        adaptive_concurrency: lower the number of jobs in flight while memory or CPU use is
            past ``memory_max`` / ``cpu_max`` percent (by a quarter every ``adapt_interval``
            seconds, down to ``min_concurrency``), and raise it back step by step when the
            pressure is gone. Whose use counts is the ``adapt_scope`` setting: ``"own"`` (the
            default: the container's quota and limit when it has them, else this process's
            own share, so other programs do not slow the worker down) or ``"machine"``. The
            current limit is ``concurrency_limit`` in :meth:`progress` and the metrics.
        min_concurrency: the floor of the adaptive limit.
        cpu_max: CPU usage, in percent of the CPU this process may use (its cgroup quota
            in a container), above which the limit shrinks.
        memory_max: memory usage, in percent of the memory this process may use, above
            which the limit shrinks.
        adapt_interval: seconds between adjustments.
        options: any other worker setting by name (``allow_private_networks=True``,
            ``lease=30``, ...); ``name`` and ``prefix`` are read as ``queue_name`` and
            ``queue_prefix``.

    Raises:
        ConfigError: an invalid setting (a :class:`~scraperv4.exceptions.SettingsError`
            naming it and its source). TemplateError: a broken template.
    """

    def __init__(
        self,
        queue: Union[JobQueue, str, None] = None,
        *,
        settings: Optional[WorkerSettings] = None,
        worker_id: Optional[str] = None,
        templates_dir: Optional[PathLike] = None,
        templates: Iterable[Template] = (),
        fetch: Optional[FetchConfig] = None,
        concurrency: Optional[int] = None,
        claim_batch: Optional[int] = None,
        heartbeat: Optional[float] = None,
        grace_period: Optional[float] = None,
        job_timeout: Optional[float] = None,
        extract_timeout: Optional[float] = None,
        idle_poll: Optional[float] = None,
        exit_when_done: Optional[bool] = None,
        metrics_addr: Optional[str] = None,
        jsonl_path: Optional[PathLike] = None,
        on_item: Optional[ItemCallback] = None,
        adaptive_concurrency: Optional[bool] = None,
        min_concurrency: Optional[int] = None,
        cpu_max: Optional[float] = None,
        memory_max: Optional[float] = None,
        adapt_interval: Optional[float] = None,
        **options: Any,
    ) -> None:
        renamed = {"name": "queue_name", "prefix": "queue_prefix"}
        overrides = {
            "worker_id": worker_id,
            "templates": os.fspath(templates_dir) if templates_dir is not None else None,
            "concurrency": concurrency,
            "claim_batch": claim_batch,
            "heartbeat": heartbeat,
            "grace_period": grace_period,
            "job_timeout": job_timeout,
            "extract_timeout": extract_timeout,
            "idle_poll": idle_poll,
            "exit_when_done": exit_when_done,
            "metrics_addr": metrics_addr,
            "adaptive_concurrency": adaptive_concurrency,
            "min_concurrency": min_concurrency,
            "cpu_max": cpu_max,
            "memory_max": memory_max,
            "adapt_interval": adapt_interval,
            **{renamed.get(key, key): value for key, value in options.items()},
        }
        embedded = settings is None
        settings = resolve(WorkerSettings, settings, overrides)
        self.settings = settings
        self.queue = queue if isinstance(queue, JobQueue) else settings.open_queue(queue)
        serve = (
            None if embedded and settings.from_default("metrics_addr") else settings.metrics_addr
        )
        fetch_config = fetch or settings.fetch_config(settings.concurrency)
        beat = settings.heartbeat
        if settings.from_default("heartbeat"):
            beat = min(beat, self.queue.lease / 2)
        self._inner = _core.Worker(
            self.queue._inner,
            worker_id=settings.worker_id or default_worker_id(),
            templates_dir=settings.templates,
            templates=[t._inner for t in templates],
            fetch_config_json=fetch_config._to_json(),
            concurrency=settings.concurrency,
            claim_batch=settings.claim_batch,
            heartbeat=beat,
            grace_period=settings.grace_period,
            job_timeout=settings.job_timeout,
            extract_timeout=settings.extract_timeout,
            idle_poll=settings.idle_poll,
            exit_when_done=settings.exit_when_done,
            metrics_addr=serve,
            jsonl_path=os.fspath(jsonl_path) if jsonl_path is not None else None,
            on_item=on_item,
            log_stats_interval=settings.log_stats_interval,
            **settings.adaptive_options(),
        )
        self.fetch_config = dataclasses.replace(fetch_config)

    @classmethod
    def from_settings(cls, settings: WorkerSettings, **overrides: Any) -> Worker:
        """The worker ``settings`` describe (what ``scraperv4 worker`` runs); keyword
        arguments as for the constructor win over them."""
        if not (settings.templates or overrides.get("templates_dir") or overrides.get("templates")):
            raise ConfigError(
                "no templates: pass --templates DIR, or set SCRAPERV4_TEMPLATES or templates "
                "in the config file"
            )
        return cls(settings=settings, **overrides)

    @property
    def worker_id(self) -> str:
        """This worker's id in the queue."""
        return self._inner.worker_id

    @property
    def metrics_address(self) -> Optional[str]:
        """``host:port`` of the metrics server, once :meth:`run` has started it."""
        return self._inner.metrics_address

    def run(self, *, handle_signals: bool = True) -> dict[str, Any]:
        """Work until stopped (or until the queue is done with ``exit_when_done``).

        Returns the final :meth:`progress`. In the main thread with ``handle_signals``,
        SIGTERM and SIGINT stop the worker gracefully (a second one: at once) instead of
        raising; the previous handlers are restored afterwards.
        """
        if not handle_signals or threading.current_thread() is not threading.main_thread():
            return self._inner.run()
        with _StopOnSignals(self):
            return self._inner.run()

    async def run_async(self) -> dict[str, Any]:
        """The asyncio twin of :meth:`run` (signals are the caller's business)."""
        progress: dict[str, Any] = json.loads(await self._inner.run_async())
        return progress

    def stop(self, *, immediate: bool = False) -> None:
        """Stop claiming; in-flight jobs get the grace period (none with ``immediate``).
        Safe from any thread or signal handler."""
        self._inner.stop(immediate)

    def progress(self) -> dict[str, Any]:
        """Counters so far: ``claimed``, ``completed``, ``failed``, ``retried``,
        ``released``, ``stale``, ``abandoned``, ``items``, ``dropped`` (items ``on_item``
        dropped), ``bytes``, ``in_flight``, ``discovered``, ``exported``, ``elapsed``
        (seconds), ``stopping``, ``concurrency_limit`` (jobs allowed at once now),
        ``statuses`` (responses by HTTP status, e.g. ``{"200": 310, "404": 1}``) and
        ``failure_kinds`` (jobs failed for good by kind, e.g. ``{"http_status": 1}``)."""
        return self._inner.progress()

    def metrics_text(self) -> str:
        """The worker's metrics in the Prometheus text format."""
        return self._inner.metrics_text()

    def __repr__(self) -> str:
        return f"Worker({self.worker_id!r}, queue={self.queue.url!r})"

    def _repr_html_(self) -> str:
        from scraperv4._display import table

        progress = self.progress()
        rows = [(k, v) for k, v in progress.items() if not isinstance(v, dict)]
        rows += [(f"HTTP {code}", n) for code, n in progress["statuses"].items()]
        rows += [(f"failed: {kind}", n) for kind, n in progress["failure_kinds"].items()]
        return table(["", ""], rows, caption=f"worker {self.worker_id}")


class _StopOnSignals:
    """SIGTERM/SIGINT stop the worker: the first gracefully, the next at once."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._previous: dict[int, Any] = {}
        self._signals = 0

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self._signals += 1
        self._worker.stop(immediate=self._signals > 1)

    def __enter__(self) -> _StopOnSignals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
