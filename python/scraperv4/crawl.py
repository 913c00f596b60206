"""Crawl on one machine: seed URLs and a template in, a JSON Lines file of items out.

:func:`run_crawl` is what ``scraperv4 run`` and ``scraperv4 demo`` call. The crawl's state
is an embedded SQLite queue next to the output, so a crawl that was stopped (Ctrl-C, a
crash, a reboot) resumes where it stopped when run again with the same arguments: pages
already scraped are not fetched again and no item is written twice.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO, Union

from scraperv4 import _core
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue, JobStatus
from scraperv4.settings import RunSettings, resolve
from scraperv4.worker import ItemCallback, Worker, crawl_job_id

__all__ = ["CrawlSummary", "default_crawl_id", "run_crawl"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class CrawlSummary:
    """What a crawl did (``pages_*`` and ``items`` count every run of the crawl so far)."""

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

    @property
    def finished(self) -> bool:
        """Nothing left to fetch and the crawl was not interrupted."""
        return not self.interrupted and self.pages_left == 0

    def describe(self) -> str:
        """A few lines for a terminal."""
        rate = self.this_run.get("completed", 0) / self.seconds if self.seconds > 0 else 0.0
        state = (
            "interrupted: run the same command again to resume"
            if self.interrupted
            else ("finished" if self.pages_left == 0 else f"{self.pages_left} pages left")
        )
        return "\n".join(
            [
                f"crawl {self.crawl_id}: {state}",
                f"  pages   {self.pages_completed} scraped, {self.pages_failed} failed "
                f"({rate:.0f} pages/s this run, {self.seconds:.1f} s)",
                f"  items   {self.items} in {self.output}",
                f"  state   {self.state}",
            ]
        )


def default_crawl_id(template_id: str, urls: Iterable[str]) -> str:
    """A crawl id derived from the template and the seed URLs, so that running the same
    command again continues the same crawl."""
    digest = hashlib.sha256(template_id.encode())
    for url in sorted(set(urls)):
        digest.update(b"\0" + url.encode())
    return f"crawl-{digest.hexdigest()[:12]}"


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
        on_item: called with each item record (see :data:`scraperv4.worker.ItemCallback`).
        progress: a live progress bar (default: when ``stream`` is a terminal); otherwise
            a log line every few seconds.
        handle_signals: stop cleanly on SIGINT/SIGTERM (main thread only).
        worker_options: more :class:`~scraperv4.worker.Worker` settings (e.g.
            ``adaptive_concurrency``, ``memory_max``).
        settings: loaded :class:`~scraperv4.settings.RunSettings` to start from.

    Returns:
        A :class:`CrawlSummary`; ``interrupted`` is true when a signal stopped the crawl.
    """
    overrides = {
        "output": None if output is None else os.fspath(output),
        "state": None if state is None else os.fspath(state),
        "concurrency": concurrency,
        "max_retries": max_retries,
        "grace_period": grace_period,
    }
    settings = resolve(RunSettings, settings, overrides)
    seeds = list(dict.fromkeys(urls))
    if not seeds:
        from scraperv4.exceptions import ConfigError

        raise ConfigError("no URLs to crawl: pass at least one URL")
    output_path = Path(settings.output)
    state_path = Path(settings.state) if settings.state else Path(f"{output_path}.queue.db")
    crawl = crawl_id or default_crawl_id(template.id, seeds)
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
    worker = Worker(
        queue,
        worker_id=f"run-{crawl}",
        templates=[template],
        fetch=fetch or settings.fetch_config(settings.concurrency),
        concurrency=settings.concurrency,
        grace_period=settings.grace_period,
        heartbeat=20.0,
        idle_poll=0.2,
        exit_when_done=True,
        metrics_addr="off",
        jsonl_path=output_path,
        on_item=on_item,
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
        items=_records_in(output_path),
        seconds=time.monotonic() - started,
        interrupted=interrupted,
        this_run=worker.progress(),
    )


def _records_in(output: Path) -> int:
    return _core.results_file_records(str(output))


def _run_with_progress(
    worker: Worker,
    queue: JobQueue,
    progress: Optional[bool],
    stream: TextIO,
    handle_signals: bool,
) -> bool:
    """Runs the worker in a thread while this thread reports progress and takes signals.
    Returns whether a signal stopped it."""
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
    reporter = _Reporter(queue, worker, stream, stream.isatty() if progress is None else progress)
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


class _Reporter:
    """A tqdm bar on a terminal; otherwise a log line every 5 seconds."""

    def __init__(self, queue: JobQueue, worker: Worker, stream: TextIO, bar: bool) -> None:
        self._queue = queue
        self._worker = worker
        self._stream = stream
        self._last_line = time.monotonic()
        self._bar: Any = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="page", file=stream, dynamic_ncols=True)

    def update(self) -> None:
        progress = self._worker.progress()
        stats = self._queue.stats()
        done = stats.by_status.get("completed", 0) + stats.by_status.get("failed", 0)
        total = max(stats.total - stats.by_status.get("cancelled", 0), done)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.set_postfix(
                failed=stats.by_status.get("failed", 0), items=progress["items"], refresh=False
            )
            self._bar.refresh()
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            rate = progress["completed"] / max(progress["elapsed"], 1e-9)
            left = total - done
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            print(
                f"{time.strftime('%H:%M:%S')} pages {done}/{total} done "
                f"({stats.by_status.get('failed', 0)} failed), {progress['items']} items, "
                f"{rate:.0f} pages/s, ETA {eta}",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        self.update()
        if self._bar is not None:
            self._bar.close()
