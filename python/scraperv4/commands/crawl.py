"""``scraperv4 run`` (crawl on this machine) and ``scraperv4 demo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scraperv4.commands._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_setting_flags,
    guide,
    read_urls,
)
from scraperv4.settings import RunSettings

_PROGRESS = {"auto": None, "bar": True, "lines": False}


def add(commands: Any) -> None:
    _add_run(commands)
    _add_demo(commands)


def _add_run(commands: Any) -> None:
    command = commands.add_parser(
        "run",
        help="crawl on this machine into a JSON Lines file (resumable)",
        **guide(
            "Crawl from seed URLs with a template, on this machine, into a JSON Lines file.\n\n"
            "The template's links and pagination are followed; each page is fetched once.\n"
            "The crawl's state is a SQLite file next to the output: stop with Ctrl-C (in-flight\n"
            "pages finish first) and run the same command again to resume. A re-run retries\n"
            "the pages that failed. When the template or the fetch options changed since the\n"
            "crawl started, the run is refused until you choose --fresh (start over) or\n"
            "--resume (go on with the new ones).\n\n"
            "Try the template on one page first: scraperv4 parse URL --template FILE.\n\n"
            "Exit code 1 when more pages failed than --max-failures (default 0) allows.\n\n"
            "Every setting also comes from SCRAPERV4_<NAME> or a config file\n"
            "(docs/configuration.md).\n\n"
            "example:\n"
            "  scraperv4 run https://shop.example/ --template shop.json --output items.jsonl"
        ),
    )
    command.add_argument("urls", nargs="*", metavar="URL", help="seed URLs")
    command.add_argument(
        "--urls-file", metavar="FILE", help="more seed URLs, one per line (- for stdin)"
    )
    command.add_argument("--template", required=True, help="template file (.json or .yaml)")
    command.add_argument("--crawl-id", help="name of the crawl (default: derived from the inputs)")
    again = command.add_mutually_exclusive_group()
    again.add_argument(
        "--fresh",
        action="store_true",
        help="start over: delete the crawl's state and the output file first",
    )
    again.add_argument(
        "--resume",
        action="store_true",
        help="go on although the template or the fetch options changed since the crawl "
        "started (pages already scraped keep their items)",
    )
    add_setting_flags(command, RunSettings)
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from scraperv4.crawl import run_crawl
    from scraperv4.extract import Template

    settings: RunSettings = args.settings
    summary = run_crawl(
        read_urls(args.urls, args.urls_file),
        Template.from_file(args.template),
        crawl_id=args.crawl_id,
        progress=_PROGRESS[settings.progress],
        settings=settings,
        fresh=args.fresh,
        resume=args.resume,
    )
    print(summary.describe())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok else EXIT_FAILED


def _add_demo(commands: Any) -> None:
    command = commands.add_parser(
        "demo",
        help="crawl a bundled demo shop served on 127.0.0.1",
        **guide(
            "Serve a generated demo shop on 127.0.0.1 (categories, paginated listings, product\n"
            "pages) and crawl it with the bundled template, exactly as `scraperv4 run` would.\n"
            "Prints where the items are and checks them against what the site contains."
        ),
    )
    command.add_argument(
        "--dir", default="scraperv4-demo", help="output directory (default ./scraperv4-demo)"
    )
    command.add_argument("--categories", type=int, default=12, help="categories (default 12)")
    command.add_argument(
        "--products", type=int, default=25, help="products per category (default 25)"
    )
    command.add_argument("--concurrency", type=int, default=16, help="pages at once (default 16)")
    command.add_argument(
        "--progress", choices=list(_PROGRESS), default="auto", help="progress display"
    )
    command.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from scraperv4.crawl import run_crawl
    from scraperv4.demo import TEMPLATE_PATH, DemoSite
    from scraperv4.extract import Template
    from scraperv4.fetch import FetchConfig

    directory = Path(args.dir)
    # Each demo serves a new site on a new port: start from a clean directory.
    for stale in (
        "items.jsonl",
        "items.jsonl.checkpoint",
        "queue.db",
        "queue.db-wal",
        "queue.db-shm",
        "queue.db.crawl.json",
    ):
        (directory / stale).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    template = Template.from_file(TEMPLATE_PATH)
    print(f"template {TEMPLATE_PATH}:")
    print("  " + TEMPLATE_PATH.read_text(encoding="utf-8").strip().replace("\n", "\n  "))
    with DemoSite(categories=args.categories, products_per_category=args.products) as site:
        print(
            f"demo shop on {site.url}: {len(site.categories)} categories, "
            f"{len(site.products)} products, {site.page_count} pages"
        )
        summary = run_crawl(
            [site.url],
            template,
            output=directory / "items.jsonl",
            state=directory / "queue.db",
            concurrency=args.concurrency,
            fetch=FetchConfig(
                concurrency=args.concurrency,
                per_host_concurrency=args.concurrency,
                allowed_networks=["127.0.0.0/8"],
                retries=1,
            ),
            progress=_PROGRESS[args.progress],
        )
        expected = site.expected()
    print(summary.describe())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    with open(summary.output, encoding="utf-8") as lines:
        found = sorted((json.loads(line)["fields"] for line in lines), key=lambda i: str(i["sku"]))
    if found:
        print(f"  sample  {json.dumps(found[0])}")
    ok = found == expected and summary.pages_failed == 0
    verdict = "ok, every product exactly once" if ok else "MISMATCH"
    print(f"  check   {len(found)} items of {len(expected)} expected: {verdict}")
    return EXIT_OK if ok else EXIT_FAILED
