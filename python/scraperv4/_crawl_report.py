"""How a crawl shows itself: the live progress (a bar on a terminal or in a notebook, a line
every few seconds otherwise) and the end-of-run summary (text, or HTML in a notebook)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from scraperv4.crawl import CrawlSummary
    from scraperv4.queue import JobQueue
    from scraperv4.worker import Worker


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()
    except AttributeError:
        return False
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def wants_bar(stream: TextIO) -> bool:
    """A live bar on a terminal and in a notebook; lines elsewhere (logs, CI, pipes)."""
    return stream.isatty() or in_notebook()


def _bar(stream: TextIO) -> Any:
    """tqdm's bar for where this runs (a widget in a notebook with ipywidgets, text
    otherwise)."""
    try:
        from tqdm.auto import tqdm

        return tqdm(total=0, unit="page", file=stream, dynamic_ncols=True)
    except ImportError:  # a notebook without ipywidgets: the text bar
        from tqdm import tqdm as text_tqdm

        return text_tqdm(total=0, unit="page", file=stream, dynamic_ncols=True)


class Reporter:
    """The crawl's progress: totals of the crawl so far, and this run's own numbers."""

    def __init__(self, queue: JobQueue, worker: Worker, stream: TextIO, bar: bool) -> None:
        self._queue = queue
        self._worker = worker
        self._stream = stream
        self._last_line = time.monotonic()
        self._bar: Any = _bar(stream) if bar else None

    def update(self) -> None:
        progress = self._worker.progress()
        stats = self._queue.stats()
        failed = stats.by_status.get("failed", 0)
        done = stats.by_status.get("completed", 0) + failed
        total = max(stats.total - stats.by_status.get("cancelled", 0), done)
        rate = progress["completed"] / max(progress["elapsed"], 1e-9)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.set_postfix(
                failed=failed, items=progress["items"], this_run=progress["completed"],
                refresh=False,
            )  # fmt: skip
            self._bar.refresh()
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            left = total - done
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            print(
                f"{time.strftime('%H:%M:%S')} crawl: {done}/{total} pages done ({failed} "
                f"failed) | this run: {progress['completed']} pages, {progress['items']} "
                f"items, {rate:.0f} pages/s, ETA {eta}",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        self.update()
        if self._bar is not None:
            self._bar.close()


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _state(summary: CrawlSummary) -> str:
    run = summary.this_run
    if summary.interrupted:
        return "interrupted: run the same command again to resume"
    if summary.pages_left:
        return f"{summary.pages_left} pages left"
    if not run.get("claimed"):
        return "already finished: nothing left to fetch (--fresh crawls it again)"
    return "finished"


def describe(summary: CrawlSummary) -> str:
    """The end-of-run summary for a terminal."""
    run = summary.this_run
    rate = run.get("completed", 0) / summary.seconds if summary.seconds > 0 else 0.0
    lines = [f"crawl {summary.crawl_id}: {_state(summary)}"]
    lines.append(
        f"  pages   {summary.pages_completed} scraped, {summary.pages_failed} failed in all"
    )
    retries = f", {run.get('retried', 0)} retries" if run.get("retried") else ""
    lines.append(
        f"  run     {run.get('completed', 0)} scraped, {run.get('failed', 0)} failed in "
        f"{summary.seconds:.1f} s ({rate:.0f} pages/s, {_size(run.get('bytes', 0))}{retries})"
    )
    statuses = run.get("statuses") or {}
    if statuses:
        lines.append(
            "  HTTP    " + ", ".join(f"{code} x{n}" for code, n in sorted(statuses.items()))
        )
    if summary.retried_failed:
        lines.append(f"  retried {summary.retried_failed} pages that had failed before")
    if summary.failures:
        first = True
        for kind, (count, example) in summary.failures.items():
            label = "failed  " if first else "        "
            lines.append(f"  {label}{kind} x{count}, e.g. {example}")
            first = False
        lines.append(f"          list them: scraperv4 jobs list --status failed --queue "
                     f"{summary.queue_url}")  # fmt: skip
        lines.append("          retry them: run the same command again")
        if summary.pages_failed > summary.max_failures:
            lines.append(
                f"          {summary.pages_failed} failed pages > --max-failures "
                f"{summary.max_failures}: exit code 1"
            )
    dropped = run.get("dropped", 0)
    dropped_text = f" ({dropped} dropped by on_item)" if dropped else ""
    lines.append(f"  items   {summary.items} in {summary.output}{dropped_text}")
    lines.append(f"  state   {summary.state}")
    return "\n".join(lines)


def summary_html(summary: CrawlSummary) -> str:
    """The summary as a table, for a notebook."""
    from scraperv4._display import table

    run = summary.this_run
    rows: list[tuple[str, Any]] = [
        ("state", _state(summary)),
        ("pages scraped (all runs)", summary.pages_completed),
        ("pages failed (all runs)", summary.pages_failed),
        ("pages left", summary.pages_left),
        ("items in the output", summary.items),
        ("this run: pages", run.get("completed", 0)),
        ("this run: seconds", summary.seconds),
        ("this run: bytes", _size(run.get("bytes", 0))),
        ("this run: retries", run.get("retried", 0)),
        ("this run: dropped by on_item", run.get("dropped", 0)),
    ]
    rows += [(f"HTTP {code}", n) for code, n in sorted((run.get("statuses") or {}).items())]
    rows += [(f"failed: {kind}", f"{n} (e.g. {example})")
             for kind, (n, example) in summary.failures.items()]  # fmt: skip
    rows += [("output", str(summary.output)), ("state", str(summary.state))]
    return table(["", ""], rows, caption=f"crawl {summary.crawl_id}")
