"""``scraperv4 resources``: this machine's resources and the worker count they allow."""

from __future__ import annotations

import argparse
import json
from typing import Any

from scraperv4.commands._common import EXIT_FAILED, EXIT_OK


def add(commands: Any) -> None:
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
