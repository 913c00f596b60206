"""``scraperv4 autoscale``: size a worker fleet on the queue's backlog
(``SCRAPERV4_ROLE=autoscaler``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from scraperv4.commands._common import EXIT_OK, add_setting_flags, guide
from scraperv4.exceptions import ConfigError, ScraperV4Error
from scraperv4.settings import AutoscalerSettings


def add(commands: Any) -> None:
    command = commands.add_parser(
        "autoscale",
        help="scale a worker fleet on the queue's backlog",
        **guide(
            "Evaluate the queue every --evaluation-interval seconds and scale the fleet:\n"
            "up when there are more than --scale-up-threshold runnable jobs per worker,\n"
            "down (gracefully: chosen workers are drained and leave when their jobs are\n"
            "done) below --scale-down-threshold. Every decision is logged with its reason.\n"
            "Also serves the cluster metrics on --metrics-addr (/metrics).\n\n"
            "executors:\n"
            "  auto        (default) kubernetes in a pod, swarm on a Swarm manager, else local\n"
            "  local       start/stop `scraperv4 worker` processes here (needs --templates)\n"
            "  swarm       docker service scale SERVICE=N\n"
            "  kubernetes  kubectl scale deployment NAME --replicas=N\n\n"
            "Every setting also comes from SCRAPERV4_<NAME> or a config file.\n\n"
            "example:\n"
            "  scraperv4 autoscale --executor local --templates ./templates --max-workers 8"
        ),
    )
    add_setting_flags(command, AutoscalerSettings)
    command.add_argument(
        "--run-for", type=float, default=None, help=argparse.SUPPRESS
    )  # tests: stop after this many seconds
    command.set_defaults(handler=_autoscale)


def _autoscale(args: argparse.Namespace) -> int:
    import signal
    import threading

    from scraperv4.autoscale import Autoscaler
    from scraperv4.scaling.metrics_collector import DistributedMetricsCollector

    settings: AutoscalerSettings = args.settings
    queue = settings.open_queue()
    scaler = Autoscaler.from_settings(settings, queue=queue)
    executor = scaler.executor
    collector = DistributedMetricsCollector(
        queue, collection_interval=float(scaler.config["evaluation_interval"])
    )
    if settings.metrics_addr is not None:
        bound = collector.serve_metrics(settings.metrics_addr)
        print(f"cluster metrics on http://{bound}/metrics", file=sys.stderr, flush=True)
    stop = threading.Event()

    def _handle(signum: int, frame: Any) -> None:
        stop.set()
        scaler.stop()

    previous = [signal.signal(s, _handle) for s in (signal.SIGTERM, signal.SIGINT)]
    print(
        f"autoscaling {queue.url} with the {executor.name} executor: "
        + ", ".join(f"{k}={v}" for k, v in scaler.config.items()),
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    try:
        while not stop.is_set():
            try:
                collector.collect_now()
                decision = scaler.evaluate()
                print(
                    f"{decision['action']}: {decision['current_workers']} -> "
                    f"{decision['target_workers']} workers ({decision['reason']})",
                    file=sys.stderr,
                    flush=True,
                )
            except ConfigError:
                raise  # e.g. a local worker to start without templates: exit 2, say why
            except ScraperV4Error as error:
                print(f"scraperv4: evaluation failed: {error}", file=sys.stderr, flush=True)
            if args.run_for is not None and time.monotonic() - started >= args.run_for:
                break
            stop.wait(float(scaler.config["evaluation_interval"]))
    finally:
        for s, handler in zip((signal.SIGTERM, signal.SIGINT), previous):
            signal.signal(s, handler)
        collector.stop_serving()
        executor.close()
    return EXIT_OK
