"""``scraperv4 healthcheck``: is this role's process alive? (a container's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Optional

from scraperv4.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, guide
from scraperv4.settings import (
    ROLE_ENV,
    AutoscalerSettings,
    CoordinatorSettings,
    Settings,
    WorkerSettings,
)
from scraperv4.settings import load as load_settings

#: Each role's liveness endpoint: the setting holding its address, and the path. None asks
#: the queue: a Redis outage must not make every container unhealthy (Swarm restarts those).
LIVENESS: dict[str, tuple[type[Settings], str, str]] = {
    "coordinator": (CoordinatorSettings, "addr", "/api/live"),
    "worker": (WorkerSettings, "metrics_addr", "/health"),
    "autoscaler": (AutoscalerSettings, "metrics_addr", "/health"),
}


def add(commands: Any) -> None:
    command = commands.add_parser(
        "healthcheck",
        help="probe this role's liveness endpoint (a container's HEALTHCHECK)",
        **guide(
            "GET the liveness endpoint of the role's own server on this host: the\n"
            "coordinator's /api/live on --addr, a worker's or the autoscaler's /health on\n"
            "--metrics-addr, with the addresses the role's settings give (SCRAPERV4_<NAME>\n"
            "variables, the config file). A wildcard address (0.0.0.0, ::) is probed on\n"
            "loopback. Exit 0 when it answers 200 within --timeout, else 1.\n\n"
            "example (the image's HEALTHCHECK):\n"
            "  SCRAPERV4_ROLE=worker scraperv4 healthcheck"
        ),
    )
    command.add_argument(
        "--role",
        choices=sorted(LIVENESS),
        default=None,
        help=f"the role to probe [default ${ROLE_ENV}]",
    )
    command.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file, TOML or YAML [default $SCRAPERV4_CONFIG]",
    )
    command.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)"
    )
    command.set_defaults(handler=_healthcheck)


def probe_url(address: str, path: str) -> str:
    """The URL probing ``path`` of a server bound to ``address`` from this host.

    >>> probe_url("0.0.0.0:9100", "/health"), probe_url("[::]:8080", "/api/live")
    ('http://127.0.0.1:9100/health', 'http://[::1]:8080/api/live')
    """
    host, _, port = address.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    return f"http://{host}:{port}{path}"


def _healthcheck(args: argparse.Namespace) -> int:
    role: Optional[str] = args.role or os.environ.get(ROLE_ENV, "").strip().lower() or None
    if role not in LIVENESS:
        print(
            f"scraperv4 healthcheck: no role to probe: pass --role or set {ROLE_ENV} "
            f"({', '.join(sorted(LIVENESS))})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    model, setting, path = LIVENESS[role]
    settings = load_settings(model, config_file=getattr(args, "config", None))
    address: Optional[str] = getattr(settings, setting)
    if address is None:
        print(f"{role}: {setting} is off, no liveness endpoint to probe", file=sys.stderr)
        return EXIT_OK
    url = probe_url(address, path)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:  # noqa: S310
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"{role}: {url} did not answer: {error}", file=sys.stderr)
        return EXIT_FAILED
    if status != 200:
        print(f"{role}: {url} answered {status}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
