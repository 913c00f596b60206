"""HTML tables for Jupyter (``_repr_html_``): queue counts, job lists, crawl summaries.

Plain HTML with the values escaped, no styling beyond what the notebook gives tables.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Sequence
from typing import Any, Optional


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: Optional[str] = None
) -> str:
    """An HTML table; every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def when(seconds: Optional[float]) -> str:
    """Seconds since the epoch as local ``YYYY-MM-DD HH:MM:SS`` (blank for ``None``)."""
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return f"{cell:,.2f}"
    if isinstance(cell, int) and not isinstance(cell, bool):
        return f"{cell:,}"
    return str(cell)
