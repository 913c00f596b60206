"""The ``scraperv4`` command line.

Exit codes: 0 success; 1 the command ran but failed (a job failed, a check did not pass);
2 bad usage or configuration (unknown option, invalid value); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Callable, Optional

import scraperv4
from scraperv4.exceptions import ConfigError, ScraperV4Error

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scraperv4`` command (one subcommand per task)."""
    parser = argparse.ArgumentParser(
        prog="scraperv4",
        description=(
            "ScraperV4 Scale: crawl on one machine or run a fleet of workers against Redis."
        ),
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"scraperv4 {scraperv4.__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        metavar="LEVEL",
        help="trace, debug, info, warning (default), error or off; "
        f"also read from ${scraperv4.LOG_LEVEL_ENV}",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def _configure_logging(level: Optional[str]) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if level:
        scraperv4.set_log_level(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _configure_logging(args.log_level)
        handler: Optional[Handler] = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return EXIT_USAGE
        return handler(args)
    except ConfigError as error:
        print(f"scraperv4: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ScraperV4Error as error:
        print(f"scraperv4: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("scraperv4: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
