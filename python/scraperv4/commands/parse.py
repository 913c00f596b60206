"""``scraperv4 parse``: try a template on one page before a crawl (Scrapy's ``parse``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from scraperv4.commands._common import EXIT_FAILED, EXIT_OK, add_setting_flags, guide
from scraperv4.exceptions import ConfigError
from scraperv4.settings import RunSettings


def add(commands: Any) -> None:
    command = commands.add_parser(
        "parse",
        help="try a template on one page: items, links, next page, fields that matched nothing",
        **guide(
            "Fetch one page (once: no links followed, nothing stored) and show what the\n"
            "template makes of it: the items, the links and the next page a crawl would\n"
            "follow, and every field that matched nothing on that page. Or read a saved\n"
            "page with --file (then --base-url resolves its relative links).\n\n"
            "Exit code 1 when the page gives no item or a field matched nothing.\n\n"
            "examples:\n"
            "  scraperv4 parse https://shop.example/p/1 --template shop.json\n"
            "  scraperv4 parse --file page.html --base-url https://shop.example/p/1 "
            "--template shop.json\n"
            "  scraperv4 parse http://127.0.0.1:8000/ --template t.yaml --allow-private-networks"
        ),
    )
    command.add_argument("url", nargs="?", metavar="URL", help="the page to fetch")
    command.add_argument("--template", required=True, help="template file (.json or .yaml)")
    command.add_argument("--file", metavar="HTML", help="read the page from this file instead")
    command.add_argument(
        "--base-url",
        metavar="URL",
        help="with --file: the page's URL (default: the URL argument, else file://...)",
    )
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.add_argument(
        "--limit", type=int, default=10, help="items and links shown at most (default 10)"
    )
    add_setting_flags(command, RunSettings, only_sections=("fetch", "politeness", "logging"))
    command.set_defaults(handler=_parse)


def _parse(args: argparse.Namespace) -> int:
    from scraperv4.extract import Template
    from scraperv4.fetch import Fetcher

    template = Template.from_file(args.template)
    if args.file:
        try:
            html = Path(args.file).read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise ConfigError(f"--file {args.file}: {error.strerror or error}") from None
        base_url = args.base_url or args.url or Path(args.file).resolve().as_uri()
    elif args.url:
        settings = args.settings
        fetcher = Fetcher(settings.fetch_config(1))
        response = fetcher.fetch(args.url)
        html, base_url = response.text, response.final_url
    else:
        raise ConfigError("give the page: a URL, or --file page.html (with --base-url URL)")
    check = template.check(html, base_url)
    if args.json:
        print(
            json.dumps(
                {
                    "template_id": check.template_id,
                    "url": check.url,
                    "items": check.items,
                    "links": check.links,
                    "next_page": check.next_page,
                    "item_elements": check.item_elements,
                    "unmatched": check.unmatched,
                    "fields": [dataclasses.asdict(f) for f in check.fields],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(check.describe(limit=args.limit))
    return EXIT_OK if check.items and not check.unmatched else EXIT_FAILED
