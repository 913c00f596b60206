"""The subcommands of ``scraperv4``, one module per command group (the parser, the exit
codes and the error handling live in :mod:`scraperv4.cli`)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_all"]


def add_all(commands: Any) -> None:
    """Add every subcommand to ``commands`` (an argparse subparsers action)."""
    from scraperv4.commands import (
        autoscale,
        config,
        coordinator,
        crawl,
        domains,
        healthcheck,
        parse,
        queue,
        resources,
        results,
        worker,
    )
    from scraperv4.commands._common import add_logging_flags_everywhere

    crawl.add(commands)
    parse.add(commands)
    queue.add(commands)
    domains.add(commands)
    results.add(commands)
    worker.add(commands)
    autoscale.add(commands)
    coordinator.add(commands)
    resources.add(commands)
    config.add(commands)
    healthcheck.add(commands)
    for command in set(commands.choices.values()):
        add_logging_flags_everywhere(command)
