"""The ``scraperv4`` command line.

One machine: ``scraperv4 run URL... --template T`` crawls into a JSON Lines file (resumable),
``scraperv4 demo`` does it on a bundled demo site. A fleet: ``scraperv4 submit`` queues URLs in
Redis, ``scraperv4 worker`` (one per process or container) scrapes them, ``scraperv4 stats``,
``jobs`` and ``results export`` look at and manage the queue, ``scraperv4 autoscale`` sizes
the fleet on the queue's backlog, ``scraperv4 coordinator`` serves the HTTP API and dashboard.

Exit codes: 0 success; 1 the command ran but failed (a job failed, a check did not pass);
2 bad usage or configuration (unknown option, invalid value); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from scraperv4 import _commands

    _commands.add_run(commands)
    _commands.add_demo(commands)
    _commands.add_submit(commands)
    _commands.add_worker(commands)
    _commands.add_stats(commands)
    _commands.add_jobs(commands)
    _commands.add_results(commands)
    _commands.add_autoscale(commands)
    _commands.add_coordinator(commands)
    _add_resources(commands)
    return parser


def _add_resources(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "resources",
        help="show this machine's resources and the worker count they allow",
        description=(
            "Print CPU, memory, disk and load (the container's limits when running in a "
            "cgroup), whether another worker fits under the thresholds, and the optimal "
            "worker count for a backlog. Exit code 1 when a threshold is exceeded."
        ),
    )
    command.add_argument("--disk-path", default="/", help="filesystem to check (default /)")
    command.add_argument(
        "--pending-jobs", type=int, default=0, help="backlog to size for (default 0)"
    )
    command.add_argument(
        "--current-workers", type=int, default=1, help="workers running now (default 1)"
    )
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(handler=_run_resources)


def _run_resources(args: argparse.Namespace) -> int:
    from scraperv4.resources import ResourceManager

    with ResourceManager(disk_path=args.disk_path) as manager:
        status = manager.check_resource_availability()
        optimal = manager.get_optimal_worker_count(args.current_workers, args.pending_jobs)
    if args.json:
        print(json.dumps({**status, "optimal_worker_count": optimal}))
    else:
        gib = 1024**3
        lines = [
            f"limits from     {status['limits_source']}",
            f"cpu             {status['cpu_usage']:5.1f}% of {status['cpu_cores']:g} cores",
            f"memory          {status['memory_usage']:5.1f}% of "
            f"{status['memory_total_bytes'] / gib:.1f} GiB "
            f"({status['memory_available_bytes'] / gib:.1f} GiB available)",
            f"disk            {status['disk_usage']:5.1f}% used on {args.disk_path} "
            f"({status['disk_free_bytes'] / gib:.1f} GiB free)",
            f"load average    {status['load_average']:.2f}",
            f"can scale up    {'yes' if status['can_scale_up'] else 'no'}",
            *(f"  limited by    {factor}" for factor in status["limiting_factors"]),
            f"optimal workers {optimal} (for {args.pending_jobs} pending jobs, "
            f"{args.current_workers} running)",
        ]
        print("\n".join(lines))
    return EXIT_OK if status["can_scale_up"] else EXIT_FAILED


def _configure_logging(level: Optional[str]) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if level:
        scraperv4.set_log_level(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    role = os.environ.get("SCRAPERV4_ROLE", "").strip().lower()
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    if role and not any(a in commands for a in arguments) and "--version" not in arguments:
        # The guide's deployments start every container with the same command and a role.
        roles = {"worker": "worker", "autoscaler": "autoscale", "coordinator": "coordinator"}
        if role not in roles:
            print(
                f"scraperv4: SCRAPERV4_ROLE={role!r} is not available in this version "
                f"(roles: {', '.join(roles)}); run a command explicitly (scraperv4 --help)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        arguments = [roles[role], *arguments]
    args = parser.parse_args(arguments)
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
