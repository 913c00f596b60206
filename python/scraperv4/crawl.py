"""Crawl on one machine: seed URLs and a template in, a JSON Lines file of items out.

:func:`run_crawl` is what ``scraperv4 run`` and ``scraperv4 demo`` call. The crawl's state
is an embedded SQLite queue next to the output, so a crawl that was stopped (Ctrl-C, a
crash, a reboot) resumes where it stopped when run again with the same arguments: pages
already scraped are not fetched again and no item is written twice.

Running again is never a silent no-op. The state remembers what the crawl was started with
(``<state>.crawl.json``: the template's fingerprint and the options that change what is
fetched); when the template or those options changed since, the run is refused with a
:class:`CrawlChangedError` naming the changes, until it is told ``fresh`` (start over: the
state and the output are replaced) or ``resume`` (go on with the new template and
options). Pages that failed are retried on every run, and a finished crawl says so.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO, Union

from scraperv4 import _core
from scraperv4.exceptions import ConfigError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue, JobStatus
from scraperv4.settings import RunSettings, resolve
from scraperv4.worker import ItemCallback, Worker, crawl_job_id

__all__ = ["CrawlChangedError", "CrawlSummary", "default_crawl_id", "run_crawl"]

PathLike = Union[str, "os.PathLike[str]"]

#: Fetch settings that change which pages are fetched or what they contain: a crawl started
#: with other values is a different crawl (``fresh``) unless it is told to ``resume``.
_SCRAPE_OPTIONS = (
    "allow_private_networks",
    "allowed_networks",
    "allowed_hosts",
    "respect_robots",
    "user_agent",
    "headers",
    "cookies",
    "proxy",
    "ca_file",
    "max_body_bytes",
    "max_redirects",
)


class CrawlChangedError(ConfigError):
    """The template or the options changed since the crawl in this state started: run with
    ``fresh`` (start over) or ``resume`` (go on with the new ones).

    Attributes:
        changes: one line per change (``template: changed``, ``allow_private_networks:
            False -> True``, ...).
    """

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


@dataclass
class CrawlSummary:
    """What a crawl did. ``pages_*`` and ``items`` count every run of the crawl so far;
    ``this_run`` is the worker's :meth:`~scraperv4.worker.Worker.progress` of this run."""

    crawl_id: str
    output: Path
    state: Path
    pages_completed: int
    pages_failed: int
    pages_left: int
    items: int
    seconds: float
    interrupted: bool
    this_run: dict[str, Any] = field(default_factory=dict)
    #: Failed pages by the kind in front of their error: ``{kind: (count, an error)}``.
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Pages that had failed in an earlier run and were retried by this one.
    retried_failed: int = 0
    #: Failures tolerated before the crawl counts as failed (``max_failures``).
    max_failures: int = 0

    @property
    def finished(self) -> bool:
        """Nothing left to fetch and the crawl was not interrupted."""
        return not self.interrupted and self.pages_left == 0

    @property
    def ok(self) -> bool:
        """Finished, with no more failed pages than tolerated."""
        return self.finished and self.pages_failed <= self.max_failures

    @property
    def queue_url(self) -> str:
        """The crawl's state as a queue URL (for ``scraperv4 jobs ... --queue``)."""
        return f"sqlite://{self.state.resolve()}"

    def describe(self) -> str:
        """A few lines for a terminal."""
        from scraperv4._crawl_report import describe

        return describe(self)

    def _repr_html_(self) -> str:
        from scraperv4._crawl_report import summary_html

        return summary_html(self)


def default_crawl_id(template_id: str, urls: Iterable[str]) -> str:
    """A crawl id derived from the template id and the seed URLs, so that running the same
    command again continues the same crawl (the HTTP API derives the same ids)."""
    return _core.default_crawl_id(template_id, list(urls))


def run_crawl(
    urls: Iterable[str],
    template: Template,
    *,
    output: Optional[PathLike] = None,
    state: Optional[PathLike] = None,
    concurrency: Optional[int] = None,
    crawl_id: Optional[str] = None,
    fetch: Optional[FetchConfig] = None,
    max_retries: Optional[int] = None,
    retry_base: float = 1.0,
    grace_period: Optional[float] = None,
    on_item: Optional[ItemCallback] = None,
    progress: Optional[bool] = None,
    stream: TextIO = sys.stderr,
    handle_signals: bool = True,
    worker_options: Optional[dict[str, Any]] = None,
    settings: Optional[RunSettings] = None,
    fresh: bool = False,
    resume: bool = False,
    max_failures: Optional[int] = None,
) -> CrawlSummary:
    """Crawl from ``urls`` with ``template`` on this machine; items go to ``output``.

    Settings not given here come from the ``run`` role of :mod:`scraperv4.settings`
    (``SCRAPERV4_<NAME>`` variables, the config file, the defaults), as for ``scraperv4 run``.

    Args:
        urls: seed URLs (the crawl follows the template's links and pagination).
        template: the extraction template.
        output: the JSON Lines file of items (appended to when resuming; default
            ``items.jsonl``).
        state: the SQLite file holding the crawl's queue (default ``<output>.queue.db``).
        concurrency: pages fetched at once.
        crawl_id: names the crawl (default :func:`default_crawl_id`).
        fetch: fetch settings (default: from the fetch and politeness settings;
            ``per_host_concurrency`` defaults to ``concurrency``).
        max_retries: retries of a failing page before it is recorded as failed.
        retry_base: first retry delay in seconds (doubles each retry).
        grace_period: on Ctrl-C, seconds in-flight pages get to finish.
        on_item: called with each item record; it must return the record to keep it
            (``None`` drops it, see :data:`scraperv4.worker.ItemCallback`).
        progress: a live progress bar (default: on a terminal or in a notebook); otherwise
            a log line every few seconds.
        handle_signals: stop cleanly on SIGINT/SIGTERM (main thread only).
        worker_options: more :class:`~scraperv4.worker.Worker` settings (e.g.
            ``adaptive_concurrency``, ``memory_max``).
        settings: loaded :class:`~scraperv4.settings.RunSettings` to start from.
        fresh: start over: the crawl's state and the output file are deleted first.
        resume: go on although the template or the options changed since the crawl started
            (pages already scraped keep the items they gave).
        max_failures: failed pages tolerated: :attr:`CrawlSummary.ok` stays true (and
            ``scraperv4 run`` exits 0) with at most this many.

    Returns:
        A :class:`CrawlSummary`; ``interrupted`` is true when a signal stopped the crawl.

    Raises:
        CrawlChangedError: the template or the options changed since the crawl in ``state``
            started, and neither ``fresh`` nor ``resume`` was given.
    """
    overrides = {
        "output": None if output is None else os.fspath(output),
        "state": None if state is None else os.fspath(state),
        "concurrency": concurrency,
        "max_retries": max_retries,
        "grace_period": grace_period,
        "max_failures": max_failures,
    }
    settings = resolve(RunSettings, settings, overrides)
    if fresh and resume:
        raise ConfigError("fresh (start over) and resume (go on) cannot be combined: pick one")
    seeds = list(dict.fromkeys(urls))
    if not seeds:
        raise ConfigError("no URLs to crawl: pass at least one URL")
    output_path = Path(settings.output)
    state_path = Path(settings.state) if settings.state else Path(f"{output_path}.queue.db")
    for path in (output_path, state_path):
        if not path.resolve().parent.is_dir():
            raise ConfigError(
                f"the directory of {path} does not exist: create it first "
                f"(mkdir -p {path.resolve().parent})"
            )
    crawl = crawl_id or default_crawl_id(template.id, seeds)
    fetch_config = fetch or settings.fetch_config(settings.concurrency)
    manifest = _Manifest(state_path, crawl, template, fetch_config, seeds)
    if fresh:
        _start_over(output_path, state_path)
    else:
        manifest.check(resume=resume)
    queue = JobQueue(f"sqlite://{state_path.resolve()}", retry_base=retry_base, lease=60.0)
    queue.submit_many(
        {
            "id": crawl_job_id(crawl, url),
            "name": crawl,
            "template_id": template.id,
            "target_url": url,
            "crawl_id": crawl,
            "max_retries": settings.max_retries,
        }
        for url in seeds
    )
    manifest.write()
    retried = _retry_failed(queue, crawl)
    worker = Worker(
        queue,
        worker_id=f"run-{crawl}",
        templates=[template],
        fetch=fetch_config,
        concurrency=settings.concurrency,
        grace_period=settings.grace_period,
        heartbeat=20.0,
        idle_poll=0.2,
        exit_when_done=True,
        metrics_addr="off",
        jsonl_path=output_path,
        on_item=on_item,
        log_stats_interval=0,
        **{**settings.adaptive_options(), **(worker_options or {})},
    )
    started = time.monotonic()
    interrupted = _run_with_progress(worker, queue, progress, stream, handle_signals)
    stats = queue.stats()
    left = sum(
        stats.by_status.get(s.value, 0)
        for s in (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.ASSIGNED, JobStatus.RUNNING)
    )
    return CrawlSummary(
        crawl_id=crawl,
        output=output_path,
        state=state_path,
        pages_completed=stats.by_status.get("completed", 0),
        pages_failed=stats.by_status.get("failed", 0),
        pages_left=left,
        items=_core.results_file_records(str(output_path)),
        seconds=time.monotonic() - started,
        interrupted=interrupted,
        this_run=worker.progress(),
        failures=_failures(queue, crawl),
        retried_failed=retried,
        max_failures=settings.max_failures,
    )


class _Manifest:
    """What the crawl in a state file was started with: ``<state>.crawl.json``."""

    def __init__(
        self,
        state: Path,
        crawl: str,
        template: Template,
        fetch: FetchConfig,
        seeds: list[str],
    ) -> None:
        self.state = state
        self.path = Path(f"{state}.crawl.json")
        options = {name: getattr(fetch, name) for name in _SCRAPE_OPTIONS}
        if options["proxy"]:
            options["proxy"] = "(set)"  # may hold a password: only whether there is one
        self.current = {
            "crawl_id": crawl,
            "template_id": template.id,
            "template": template.fingerprint,
            "options": options,
            "seeds": len(seeds),
        }

    def check(self, *, resume: bool) -> None:
        """Refuse a changed crawl (unless resuming)."""
        if not self.state.exists() or not self.path.exists():
            return  # a new crawl, or a state from before manifests: nothing to compare
        try:
            before = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        changes = []
        if before.get("crawl_id") != self.current["crawl_id"]:
            changes.append(
                f"the seeds or the template id: this is crawl {self.current['crawl_id']}, the "
                f"state holds crawl {before.get('crawl_id')}"
            )
        elif before.get("template") != self.current["template"]:
            changes.append(f"template {self.current['template_id']}: its definition changed")
        old_options = before.get("options", {})
        for name, value in self.current["options"].items():  # type: ignore[attr-defined]
            if name in old_options and old_options[name] != value:
                changes.append(f"{name}: {old_options[name]!r} -> {value!r}")
        if changes and not resume:
            raise CrawlChangedError(
                f"the crawl in {self.state} was started differently ({'; '.join(changes)}): "
                "run with --fresh to start over (the state and the output are replaced), or "
                "with --resume to go on with the new settings (pages already scraped keep "
                "their items; failed pages are retried)",
                changes,
            )

    def write(self) -> None:
        self.path.write_text(json.dumps(self.current, indent=1), encoding="utf-8")


def _start_over(output: Path, state: Path) -> None:
    """Delete a crawl's state and output (``fresh``)."""
    for path in (
        output,
        Path(f"{output}.checkpoint"),
        state,
        Path(f"{state}-wal"),
        Path(f"{state}-shm"),
        Path(f"{state}.crawl.json"),
    ):
        path.unlink(missing_ok=True)


def _retry_failed(queue: JobQueue, crawl: str) -> int:
    """Put the crawl's failed pages back to pending (a re-run retries them); how many."""
    retried = 0
    batch = 500
    # Failed jobs leave the failed list as they are retried: always read the first page;
    # bounded by the count at the start (jobs of other crawls stay, so skip past them).
    left = queue.stats().by_status.get("failed", 0)
    offset = 0
    while left > 0:
        jobs = queue.list(JobStatus.FAILED, offset=offset, limit=min(batch, left))
        if not jobs:
            break
        for job in jobs:
            left -= 1
            if (job.crawl_id or job.id) == crawl and queue.retry(job.id).accepted:
                retried += 1
            else:
                offset += 1
    return retried


def _failures(queue: JobQueue, crawl: str, scan: int = 10_000) -> dict[str, tuple[int, str]]:
    """The crawl's failed pages by kind (at most ``scan`` read): count and one error."""
    groups: dict[str, tuple[int, str]] = {}
    total = min(queue.stats().by_status.get("failed", 0), scan)
    for offset in range(0, total, 500):
        for job in queue.list(JobStatus.FAILED, offset=offset, limit=500):
            if (job.crawl_id or job.id) != crawl:
                continue
            error = job.error or ""
            kind = _core.error_kind(error)
            count, example = groups.get(kind, (0, error))
            groups[kind] = (count + 1, example)
    return dict(sorted(groups.items(), key=lambda item: -item[1][0]))


def _run_with_progress(
    worker: Worker,
    queue: JobQueue,
    progress: Optional[bool],
    stream: TextIO,
    handle_signals: bool,
) -> bool:
    """Runs the worker in a thread while this thread reports progress and takes signals.
    Returns whether a signal stopped it."""
    from scraperv4._crawl_report import Reporter, wants_bar

    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            worker.run(handle_signals=False)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    signals = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        worker.stop(immediate=signals > 1)
        if signals == 1:
            print(
                "\nstopping: letting in-flight pages finish (again to stop at once)",
                file=stream,
            )

    import signal as signal_module

    previous: dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()
    if handle_signals and in_main:
        for signum in (signal_module.SIGINT, signal_module.SIGTERM):
            previous[signum] = signal_module.signal(signum, on_signal)
    thread = threading.Thread(target=work, name="scraperv4-crawl", daemon=True)
    reporter = Reporter(queue, worker, stream, wants_bar(stream) if progress is None else progress)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.25)
            reporter.update()
        reporter.close()
    finally:
        for number, handler in previous.items():
            signal_module.signal(number, handler)
    if "error" in outcome:
        raise outcome["error"]
    return signals > 0
