"""`scraperv4 results export` as a user runs it: one record shape in every format, no column
collisions, the format from the extension, stdout, filters by crawl and template, and CSV
cells neutralised against formula injection."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.export import flat_record
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.worker import Worker, crawl_job_id
from test_crawl_cli import run_cli

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0)

#: What the item callback puts in each record's fields: names that are also record keys,
#: cells a spreadsheet would run, a number-like text, a list.
TRICKY = {
    "url": "/relative/p",
    "index": "seven",
    "formula": '=HYPERLINK("http://evil.example","x")',
    "plus": "+1+1",
    "at": "@SUM(A1)",
    "tab": "\tcmd",
    "cr": "\rcmd",
    "minus_text": "-cmd|' /C calc'!A0",
    "negative": "-12.5",
    "tags": ["a", "b"],
}


def _tricky(record: dict[str, Any]) -> dict[str, Any]:
    record["fields"] = {**record["fields"], **TRICKY}
    return record


@pytest.fixture(scope="module")
def queue_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One queue holding two crawls of the demo shop with two templates."""
    url = f"sqlite://{tmp_path_factory.mktemp('export') / 'queue.db'}"
    queue = JobQueue(url)
    products = Template.from_file(TEMPLATE_PATH)
    other = json.loads(TEMPLATE_PATH.read_text())
    other["id"] = "names-only"
    other["fields"] = other["fields"][:1]
    with DemoSite(categories=1, products_per_category=3) as site:
        for crawl, template_id in (("crawl-a", "demo-products"), ("crawl-b", "names-only")):
            queue.submit({"id": crawl_job_id(crawl, site.url), "crawl_id": crawl,
                          "template_id": template_id, "target_url": site.url})  # fmt: skip
        Worker(queue, templates=[products, Template.from_dict(other)], fetch=LOCAL,
               exit_when_done=True, on_item=_tricky).run()  # fmt: skip
    return url


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_the_jsonl_record_flattened_without_collisions(
    queue_url: str, tmp_path: Path
) -> None:
    jsonl, table = tmp_path / "items.jsonl", tmp_path / "items.csv"
    assert (
        run_cli("results", "export", "--output", str(jsonl), "--queue", queue_url).returncode == 0
    )
    done = run_cli("results", "export", "--output", str(table), "--queue", queue_url)
    assert done.returncode == 0, done.stderr
    assert "exported 6 items to" in done.stdout and "(csv)" in done.stdout, "format from .csv"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows = _csv_rows(table.read_text())
    assert len(records) == len(rows) == 6
    header = list(rows[0])
    assert header[:7] == ["job_id", "crawl_id", "url", "template_id", "fetched_at", "index",
                          "fields.name"]  # fmt: skip
    assert {"fields.url", "fields.index", "fields.tags"} <= set(header)
    by_key = {(r["job_id"], r["index"]): r for r in rows}
    for record in records:
        row = by_key[(record["job_id"], str(record["index"]))]
        assert row["url"] == record["url"] and row["url"].startswith("http://127.0.0.1:")
        assert row["fields.url"] == "/relative/p" and row["fields.index"] == "seven"
        assert json.loads(row["fields.tags"]) == ["a", "b"]
        flat = flat_record(record)
        assert set(row) >= set(flat)


def test_csv_cells_that_would_run_as_formulas_are_neutralised(
    queue_url: str, tmp_path: Path
) -> None:
    table = tmp_path / "items.csv"
    run_cli("results", "export", "--output", str(table), "--queue", queue_url)
    with open(table, newline="", encoding="utf-8") as file:
        row = _csv_rows(file.read())[0]
    assert row["fields.formula"] == "'" + TRICKY["formula"]
    assert row["fields.plus"] == "'+1+1"
    assert row["fields.at"] == "'@SUM(A1)"
    assert row["fields.tab"] == "'\tcmd"
    assert row["fields.cr"] == "'\rcmd"
    # Scraped data is private to its owner, like the JSON Lines export (issue #15).
    assert table.stat().st_mode & 0o777 == 0o600
    assert row["fields.minus_text"] == "'" + TRICKY["minus_text"]
    assert row["fields.negative"] == "-12.5", "a plain number stays a number"
    help_text = run_cli("results", "export", "--help").stdout
    assert "formula" in help_text and "leading '" in help_text


def test_filters_stdout_and_the_format_from_the_extension(queue_url: str, tmp_path: Path) -> None:
    only_a = tmp_path / "a.csv"
    done = run_cli("results", "export", "--output", str(only_a), "--crawl-id", "crawl-a",
                   "--queue", queue_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = _csv_rows(only_a.read_text())
    assert len(rows) == 3 and {r["crawl_id"] for r in rows} == {"crawl-a"}

    names = run_cli("results", "export", "--output", "-", "--template-id", "names-only",
                    "--queue", queue_url)  # fmt: skip
    assert names.returncode == 0, names.stderr
    lines = [json.loads(line) for line in names.stdout.splitlines()]
    assert len(lines) == 3 and {r["template_id"] for r in lines} == {"names-only"}
    assert "exported 3 items to standard output (jsonl)" in names.stderr
    assert not (Path.cwd() / "-").exists(), "no file named -"

    as_csv = run_cli("results", "export", "--output", "-", "--format", "csv",
                     "--crawl-id", "crawl-b", "--queue", queue_url)  # fmt: skip
    assert len(_csv_rows(as_csv.stdout)) == 3

    unknown = run_cli(
        "results", "export", "--output", str(tmp_path / "x.txt"), "--queue", queue_url
    )
    assert unknown.returncode == 2 and "pass --format jsonl, csv or parquet" in unknown.stderr
    trim = run_cli("results", "export", "--output", str(tmp_path / "t.jsonl"), "--crawl-id",
                   "crawl-a", "--trim", "--queue", queue_url)  # fmt: skip
    assert trim.returncode == 2 and "--trim needs a resumable" in trim.stderr
