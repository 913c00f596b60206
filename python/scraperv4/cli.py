"""The ``scraperv4`` command line.

One machine: ``scraperv4 run URL... --template T`` crawls into a JSON Lines file (resumable),
``scraperv4 demo`` does it on a bundled demo site. A fleet: ``scraperv4 submit`` queues URLs in
Redis, ``scraperv4 worker`` (one per process or container) scrapes them, ``scraperv4 stats``,
``jobs`` and ``results export`` look at and manage the queue, ``scraperv4 autoscale`` sizes
the fleet on the queue's backlog, ``scraperv4 coordinator`` serves the HTTP API and dashboard.

Exit codes: 0 success; 1 the command ran but failed (a job failed, a check did not pass);
2 bad usage or configuration (unknown option, invalid value, a broken template, a missing
file); 130 interrupted by Ctrl-C. A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Callable, Optional

import scraperv4
from scraperv4.exceptions import ConfigError, ScraperV4Error, TemplateError
from scraperv4.settings import ROLE_ENV

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scraperv4`` command (one subcommand per task)."""
    from scraperv4.commands import add_all
    from scraperv4.commands._common import add_logging_flags

    parser = argparse.ArgumentParser(
        prog="scraperv4",
        description=(
            "ScraperV4 Scale: crawl on one machine or run a fleet of workers against Redis. "
            "Settings come from flags, SCRAPERV4_<NAME> variables and a config file "
            "(scraperv4 config --help)."
        ),
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"scraperv4 {scraperv4.__version__}")
    add_logging_flags(parser)
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file, TOML or YAML (default $SCRAPERV4_CONFIG)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_all(commands)
    return parser


#: ``SCRAPERV4_ROLE`` values and the command each runs.
_ROLES = {"worker": "worker", "autoscaler": "autoscale", "coordinator": "coordinator"}


def _with_role(parser: argparse.ArgumentParser, arguments: list[str]) -> Optional[list[str]]:
    """``arguments`` with the command ``SCRAPERV4_ROLE`` names in front when none is given
    (the guide's deployments start every container with the same command and a role);
    ``None`` for a role this version does not have."""
    role = os.environ.get(ROLE_ENV, "").strip().lower()
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    if not role or any(a in commands for a in arguments) or "--version" in arguments:
        return arguments
    if role not in _ROLES:
        print(
            f"scraperv4: {ROLE_ENV}={role!r} is not available in this version "
            f"(roles: {', '.join(_ROLES)}); run a command explicitly (scraperv4 --help)",
            file=sys.stderr,
        )
        return None
    return [_ROLES[role], *arguments]


def _prepare(args: argparse.Namespace) -> None:
    """Logging, and the command's settings from every layer (``args.settings``)."""
    from scraperv4._logging import configure_cli
    from scraperv4.commands._common import load_settings
    from scraperv4.settings.model import LoggingSection

    configure_cli(os.environ.get("SCRAPERV4_LOG_FORMAT", "text").strip().lower())
    model = getattr(args, "settings_model", None)
    args.settings = load_settings(args, model or LoggingSection)
    configure_cli(args.settings.log_format)
    if not args.settings.from_default("log_level"):
        scraperv4.set_log_level(args.settings.log_level)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    arguments = _with_role(parser, list(sys.argv[1:] if argv is None else argv))
    if arguments is None:
        return EXIT_USAGE
    args, extra = parser.parse_known_args(arguments)
    if extra and not getattr(args, "accepts_role_flags", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_arguments = extra
    handler: Handler = getattr(args, "handler", None) or (lambda _: _usage(parser))
    try:
        _prepare(args)
        return handler(args)
    except BrokenPipeError:  # `scraperv4 ... | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (ScraperV4Error, KeyboardInterrupt, OSError) as error:
        message, code = _explain(error)
        print(f"scraperv4: {message}", file=sys.stderr)
        return code


def _explain(error: BaseException) -> tuple[str, int]:
    """The one line a failed command prints, and its exit code."""
    if isinstance(error, ConfigError):
        return f"configuration error: {error}", EXIT_USAGE
    if isinstance(error, TemplateError):
        return str(error), EXIT_USAGE
    if isinstance(error, ScraperV4Error):
        return str(error), EXIT_FAILED
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    assert isinstance(error, OSError)
    # A file the command was pointed at: say which, no traceback.
    return _os_error(error), EXIT_USAGE if isinstance(error, _PATH_MISTAKES) else EXIT_FAILED


#: OS errors that mean the command was pointed at the wrong path (exit code 2).
_PATH_MISTAKES = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _os_error(error: OSError) -> str:
    """``No such file or directory: 'x/y.csv'`` and what to do."""
    what = error.strerror or str(error)
    where = f": {error.filename!r}" if error.filename else ""
    hint = ""
    if isinstance(error, FileNotFoundError) and error.filename:
        hint = " (check the path; a missing directory must be created first)"
    return f"{what}{where}{hint}"
