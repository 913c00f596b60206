"""``scraperv4 results export``: the recorded items to JSON Lines, CSV or Parquet."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scraperv4.commands._common import EXIT_OK, add_setting_flags, guide
from scraperv4.exceptions import ConfigError
from scraperv4.settings import ClientSettings


def add(commands: Any) -> None:
    command = commands.add_parser(
        "results",
        help="export recorded items (JSON Lines, CSV, Parquet)",
        **guide(
            "Export the items workers recorded (the queue's results log) to a file.\n\n"
            "examples:\n"
            "  scraperv4 results export --output items.jsonl          (resumable, appends)\n"
            "  scraperv4 results export --output items.csv --crawl-id crawl-1a2b3c4d5e6f\n"
            "  scraperv4 results export --output - --template-id shop | jq .fields.price"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write items to JSON Lines, CSV or Parquet",
        **guide(
            "Write the recorded items to --output (- for standard output).\n\n"
            "The format follows the file's extension (.jsonl/.ndjson/.json, .csv,\n"
            ".parquet) unless --format says otherwise. Every format has the same record:\n"
            "job_id, crawl_id, url, template_id, fetched_at, index and the template's\n"
            'fields — nested under "fields" in JSON Lines, as fields.<name> columns in\n'
            "CSV and Parquet (a field named url or index never overwrites the record's own).\n\n"
            "A JSON Lines file exported without filters is resumable: running the same\n"
            "command again appends only the items recorded since (a checkpoint file sits\n"
            "next to it). With --crawl-id / --template-id, or to -, and for CSV and\n"
            "Parquet, the output is written whole each time.\n\n"
            "CSV cells that a spreadsheet would run as a formula (text starting with =, +,\n"
            "-, @, a tab or a carriage return, other than a plain number) get a leading '\n"
            "so that opening the file in Excel or LibreOffice cannot run them (CSV\n"
            "injection: scraped text is the site's, not yours)."
        ),
    )
    export.add_argument(
        "--output", required=True, metavar="FILE", help="file to write, - for stdout"
    )
    export.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet"],
        help="default: from the --output extension",
    )
    export.add_argument("--crawl-id", help="only the items of this crawl")
    export.add_argument("--template-id", help="only the items extracted with this template")
    export.add_argument(
        "--trim",
        action="store_true",
        help="then delete the exported items from the queue's results log, so it stays "
        "small (resumable JSON Lines only; use it when this file is the log's only consumer)",
    )
    add_setting_flags(export, ClientSettings)
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from scraperv4.export import check_output, export_items, format_of
    from scraperv4.worker import _export_jsonl_counts

    chosen = format_of(args.output, args.format)
    filtered = args.crawl_id is not None or args.template_id is not None
    resumable = chosen == "jsonl" and not filtered and args.output != "-"
    if args.trim and not resumable:
        raise ConfigError(
            "--trim needs a resumable JSON Lines export: a .jsonl file, no --crawl-id or "
            "--template-id (its checkpoint records what was exported before the log is trimmed)"
        )
    check_output(args.output)
    queue = args.settings.open_queue()
    # Where the command reports: stderr when the items themselves go to stdout.
    report = sys.stderr if args.output == "-" else sys.stdout
    if resumable:
        written, trimmed = _export_jsonl_counts(queue, args.output, args.trim)
        print(f"exported {written} new items to {args.output}", file=report)
        if args.trim:
            print(f"trimmed {trimmed} entries from the results log", file=report)
        return EXIT_OK
    written = export_items(
        queue, args.output, format=chosen, crawl_id=args.crawl_id, template_id=args.template_id
    )
    where = "standard output" if args.output == "-" else args.output
    print(f"exported {written} items to {where} ({chosen})", file=report)
    return EXIT_OK
