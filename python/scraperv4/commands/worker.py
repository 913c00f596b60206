"""``scraperv4 worker``: one worker of a fleet (``SCRAPERV4_ROLE=worker``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scraperv4.commands._common import EXIT_OK, add_setting_flags, guide
from scraperv4.settings import WorkerSettings


def add(commands: Any) -> None:
    command = commands.add_parser(
        "worker",
        help="run a worker of the fleet (SCRAPERV4_ROLE=worker)",
        **guide(
            "Claim jobs from the queue and scrape them until stopped. SIGTERM or Ctrl-C: stop\n"
            "claiming, let in-flight jobs finish within --grace-period, release the rest, exit 0.\n"
            "Items go to the queue's results log (a Redis stream): `scraperv4 results export`.\n\n"
            "Every setting also comes from SCRAPERV4_<NAME> (REDIS_URL and WORKER_ID still\n"
            "work) or a config file: a container needs no flags (docs/configuration.md).\n"
            "`scraperv4` alone with SCRAPERV4_ROLE=worker runs this command.\n\n"
            "example:\n"
            "  REDIS_URL=redis://redis:6379/0 SCRAPERV4_TEMPLATES=/templates scraperv4 worker"
        ),
    )
    add_setting_flags(command, WorkerSettings)
    command.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from scraperv4.worker import Worker

    worker = Worker.from_settings(args.settings)
    print(f"worker {worker.worker_id} serving {worker.queue.url}", file=sys.stderr, flush=True)
    progress = worker.run()
    print(
        f"worker {worker.worker_id} stopped: {progress['completed']} completed, "
        f"{progress['failed']} failed, {progress['released']} released, "
        f"{progress['items']} items",
        file=sys.stderr,
    )
    return EXIT_OK
