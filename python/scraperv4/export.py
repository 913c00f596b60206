"""Exporting recorded items: JSON Lines, CSV or Parquet, of every crawl or one.

Every format carries the same record. JSON Lines keeps it as recorded — ``job_id``,
``crawl_id``, ``url``, ``template_id``, ``fetched_at``, ``index`` and the template's fields
nested under ``fields`` — and CSV and Parquet flatten it the way ``pandas.json_normalize``
does: one column per record key, and ``fields.<name>`` per template field. A template field
called ``url`` or ``index`` is therefore the column ``fields.url``, never the record's own
``url``; a list or object value is one JSON text cell.

CSV cells are neutralised against formula injection: a text cell that a spreadsheet would
run as a formula — starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return —
gets a leading ``'`` (OWASP's advice), except text that is only a number such as ``-12.5``.

>>> flat_record({"url": "https://a.example/", "fields": {"url": "/p/1", "tags": ["a", "b"]}})
{'url': 'https://a.example/', 'fields.url': '/p/1', 'fields.tags': '["a", "b"]'}
>>> [neutralise(v) for v in ("=SUM(A1)", "-12.5", "@cmd", "plain", 3)]
["'=SUM(A1)", '-12.5', "'@cmd", 'plain', 3]
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional, Union

from scraperv4.exceptions import ConfigError

__all__ = [
    "FORMATS",
    "export_items",
    "flat_record",
    "format_of",
    "neutralise",
    "read_items",
]

#: The export formats and the file extensions that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "csv": (".csv",),
    "parquet": (".parquet", ".pq"),
}

PathLike = Union[str, "os.PathLike[str]"]

# What a spreadsheet runs as a formula (OWASP "CSV Injection"): written by hand rather than
# with defusedcsv, which leaves a leading tab or carriage return alone and rewrites every
# "|" inside the value.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?[0-9][0-9,]*(\.[0-9]+)?$")


def neutralise(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def format_of(output: str, explicit: Optional[str]) -> str:
    """The format to write: ``explicit``, else the one the file's extension names."""
    if explicit:
        return explicit
    if output == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower()
    for name, extensions in FORMATS.items():
        if suffix in extensions:
            return name
    raise ConfigError(
        f"cannot tell the format of {output!r} from its extension: pass --format jsonl, csv "
        "or parquet (or name the file .jsonl, .csv or .parquet)"
    )


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat columns: its own keys, then ``fields.<name>`` per field (lists
    and objects as JSON text)."""
    flat = {key: value for key, value in record.items() if key != "fields"}
    for key, value in (record.get("fields") or {}).items():
        nested = isinstance(value, (list, dict))
        flat[f"fields.{key}"] = json.dumps(value, ensure_ascii=False) if nested else value
    return flat


def read_items(
    queue: Any, *, crawl_id: Optional[str] = None, template_id: Optional[str] = None
) -> Iterator[dict[str, Any]]:
    """Every item the queue's results log holds (optionally of one crawl or template), read
    through a scratch file so memory stays flat."""
    from scraperv4.worker import export_jsonl

    with tempfile.TemporaryDirectory(prefix="scraperv4-export-") as scratch:
        path = Path(scratch) / "items.jsonl"
        export_jsonl(queue, path)
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if crawl_id is not None and record.get("crawl_id") != crawl_id:
                    continue
                if template_id is not None and record.get("template_id") != template_id:
                    continue
                yield record


def check_output(output: str) -> None:
    """A usage error when the output's directory does not exist (or is not one)."""
    if output == "-":
        return
    directory = Path(output).expanduser().resolve().parent
    if not directory.is_dir():
        raise ConfigError(
            f"cannot write {output}: the directory {directory} does not exist; create it "
            f"first (mkdir -p {directory})"
        )
    if Path(output).is_dir():
        raise ConfigError(f"cannot write {output}: it is a directory; name a file")


def export_items(
    queue: Any,
    output: str,
    *,
    format: Optional[str] = None,
    crawl_id: Optional[str] = None,
    template_id: Optional[str] = None,
) -> int:
    """Write the queue's items to ``output`` (``-``: standard output) in one pass, replacing
    the file; returns the items written. For a resumable JSON Lines file that only ever
    grows, use :func:`scraperv4.worker.export_jsonl`.

    Raises:
        ConfigError: an unknown format, or a directory that does not exist.
    """
    chosen = format_of(output, format)
    if chosen not in FORMATS:
        raise ConfigError(f"unknown format {chosen!r}: jsonl, csv or parquet")
    check_output(output)
    records = read_items(queue, crawl_id=crawl_id, template_id=template_id)
    if chosen == "parquet":
        return _parquet(records, output)
    if output == "-":
        return _write_text(chosen, records, sys.stdout)
    # Written next to the target and renamed: a failed export leaves the old file whole.
    target = Path(output)
    handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            written = _write_text(chosen, records, out)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return written


def _write_text(chosen: str, records: Iterator[dict[str, Any]], out: IO[str]) -> int:
    if chosen == "jsonl":
        written = 0
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
        return written
    # CSV: the header is every column seen, so rows are kept until the end (flat dicts).
    rows = [flat_record(r) for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=[neutralise(c) for c in columns], restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({neutralise(k): neutralise(v) for k, v in row.items()})
    return len(rows)


def _parquet(records: Iterator[dict[str, Any]], output: str) -> int:
    try:
        import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install pyarrow") from None
    rows = [flat_record(r) for r in records]
    table = pa.Table.from_pylist(rows)
    if output == "-":
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        pq.write_table(table, output)
    return len(rows)
