"""``scraperv4 coordinator``: the HTTP API and dashboard (``SCRAPERV4_ROLE=coordinator``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scraperv4.commands._common import EXIT_OK, add_setting_flags, guide
from scraperv4.settings import CoordinatorSettings


def add(commands: Any) -> None:
    command = commands.add_parser(
        "coordinator",
        help="the HTTP API, dashboard and live stats over a queue",
        **guide(
            "Serve the coordinator: the JSON API (GET /api/openapi.json describes it), a live\n"
            "dashboard at /, a WebSocket of stats at /ws and cluster metrics at /metrics.\n"
            "Stateless: run as many as you like behind nginx against one Redis.\n\n"
            "Set SCRAPERV4_API_TOKEN (16+ characters; or SCRAPERV4_API_TOKEN_FILE, a mounted\n"
            "secret) to require Authorization: Bearer <token> on every route but the health\n"
            "probe, /metrics and the page (reads too, unless --no-protect-reads). Without a\n"
            "token it only listens on a loopback address (--insecure-no-auth overrides).\n"
            "See docs/security.md.\n\n"
            "examples:\n"
            "  SCRAPERV4_API_TOKEN=... scraperv4 coordinator --addr 0.0.0.0:8080\n"
            "  scraperv4 coordinator --addr 127.0.0.1:8080      # no token: this machine only"
        ),
    )
    add_setting_flags(command, CoordinatorSettings)
    command.set_defaults(handler=_coordinator)


def _coordinator(args: argparse.Namespace) -> int:
    from scraperv4.coordinator import Coordinator

    server = Coordinator.from_settings(args.settings)
    address = server.start()
    print(f"coordinator on http://{address}/ (API: /api/openapi.json)", file=sys.stderr, flush=True)
    server.run()
    print("coordinator stopped", file=sys.stderr)
    return EXIT_OK
