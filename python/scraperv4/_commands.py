"""The subcommands of ``scraperv4`` (the parser and exit codes live in :mod:`scraperv4.cli`)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from scraperv4.exceptions import ConfigError, ScraperV4Error

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_QUEUE_HELP = (
    "queue URL: redis://host:6379/0, rediss://..., or sqlite:///path/queue.db (default: $REDIS_URL)"
)


def _guide(text: str) -> dict[str, Any]:
    return {"description": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _queue_url(args: argparse.Namespace) -> str:
    url: Optional[str] = args.queue or os.environ.get("REDIS_URL")
    if not url:
        raise ConfigError(
            "no queue given: pass --queue redis://host:6379/0 (or sqlite:///path/queue.db), "
            "or set REDIS_URL"
        )
    return url


def _open_queue(args: argparse.Namespace) -> Any:
    from scraperv4.queue import JobQueue

    return JobQueue(_queue_url(args), name=args.queue_name)


def _add_queue_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--queue", metavar="URL", help=_QUEUE_HELP)
    command.add_argument(
        "--queue-name", default="default", help="queue name inside the backend (default: default)"
    )


def _read_urls(urls: list[str], urls_file: Optional[str]) -> list[str]:
    collected = list(urls)
    if urls_file:
        source = sys.stdin if urls_file == "-" else open(urls_file, encoding="utf-8")  # noqa: SIM115
        with source:
            collected.extend(
                line.strip() for line in source if line.strip() and not line.startswith("#")
            )
    if not collected:
        raise ConfigError("no URLs: pass them as arguments or with --urls-file FILE")
    return collected


def _fetch_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("fetching")
    group.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="allow private and loopback addresses (for a local site; off by default: SSRF guard)",
    )
    group.add_argument(
        "--ignore-robots", action="store_true", help="do not fetch or obey robots.txt"
    )
    group.add_argument(
        "--delay",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        default=(0.0, 0.0),
        help="seconds between requests to one host, random in [MIN, MAX] (default 0 0)",
    )
    group.add_argument("--user-agent", help="User-Agent header")
    group.add_argument(
        "--fetch-retries",
        type=int,
        default=1,
        help="retries inside one attempt on timeouts, 429 and 5xx (default 1; "
        "the queue retries the job after that)",
    )


def _fetch_config(args: argparse.Namespace, concurrency: int) -> Any:
    from scraperv4.fetch import FetchConfig

    return FetchConfig(
        concurrency=max(concurrency, 1),
        per_host_concurrency=max(concurrency, 1),
        delay_range=tuple(args.delay),
        user_agent=args.user_agent,
        retries=args.fetch_retries,
        respect_robots=not args.ignore_robots,
        allow_private_networks=args.allow_private_networks,
    )


def _adaptive_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group(
        "adaptive concurrency",
        "The number of jobs in flight drops by a quarter every 2 s while this machine's\n"
        "memory or CPU is past its threshold, and climbs back when it is not.",
    )
    group.add_argument(
        "--fixed-concurrency",
        action="store_true",
        help="keep --concurrency jobs in flight whatever the machine's load",
    )
    group.add_argument(
        "--min-concurrency", type=int, default=1, help="floor of the limit (default 1)"
    )
    group.add_argument(
        "--memory-max", type=float, default=85.0, help="memory threshold, percent (default 85)"
    )
    group.add_argument(
        "--cpu-max", type=float, default=95.0, help="CPU threshold, percent (default 95)"
    )


def _adaptive_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "adaptive_concurrency": not args.fixed_concurrency,
        "min_concurrency": args.min_concurrency,
        "memory_max": args.memory_max,
        "cpu_max": args.cpu_max,
    }


# --- run ---------------------------------------------------------------------------------


def add_run(commands: Any) -> None:
    command = commands.add_parser(
        "run",
        help="crawl on this machine into a JSON Lines file (resumable)",
        **_guide(
            "Crawl from seed URLs with a template, on this machine, into a JSON Lines file.\n\n"
            "The template's links and pagination are followed; each page is fetched once.\n"
            "The crawl's state is a SQLite file next to the output: stop with Ctrl-C (in-flight\n"
            "pages finish first) and run the same command again to resume.\n\n"
            "example:\n"
            "  scraperv4 run https://shop.example/ --template shop.json --output items.jsonl"
        ),
    )
    command.add_argument("urls", nargs="*", metavar="URL", help="seed URLs")
    command.add_argument(
        "--urls-file", metavar="FILE", help="more seed URLs, one per line (- for stdin)"
    )
    command.add_argument("--template", required=True, help="template file (.json or .yaml)")
    command.add_argument("--output", default="items.jsonl", help="items file (default items.jsonl)")
    command.add_argument("--state", help="crawl state file (default <output>.queue.db)")
    command.add_argument("--concurrency", type=int, default=16, help="pages at once (default 16)")
    command.add_argument("--crawl-id", help="name of the crawl (default: derived from the inputs)")
    command.add_argument(
        "--max-retries", type=int, default=3, help="retries of a failing page (default 3)"
    )
    command.add_argument(
        "--progress",
        choices=["auto", "bar", "lines"],
        default="auto",
        help="a live bar, or a line every 5 s (default: bar on a terminal)",
    )
    _fetch_options(command)
    _adaptive_options(command)
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from scraperv4.crawl import run_crawl
    from scraperv4.extract import Template

    template = Template.from_file(args.template)
    summary = run_crawl(
        _read_urls(args.urls, args.urls_file),
        template,
        output=args.output,
        state=args.state,
        concurrency=args.concurrency,
        crawl_id=args.crawl_id,
        fetch=_fetch_config(args, args.concurrency),
        max_retries=args.max_retries,
        progress={"auto": None, "bar": True, "lines": False}[args.progress],
        worker_options=_adaptive_settings(args),
    )
    print(summary.describe())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.pages_failed == 0 else EXIT_FAILED


# --- demo --------------------------------------------------------------------------------


def add_demo(commands: Any) -> None:
    command = commands.add_parser(
        "demo",
        help="crawl a bundled demo shop served on 127.0.0.1",
        **_guide(
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
        "--progress", choices=["auto", "bar", "lines"], default="auto", help="progress display"
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
    ):
        (directory / stale).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    template = Template.from_file(TEMPLATE_PATH)
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
            progress={"auto": None, "bar": True, "lines": False}[args.progress],
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


# --- submit ------------------------------------------------------------------------------


def add_submit(commands: Any) -> None:
    command = commands.add_parser(
        "submit",
        help="queue URLs for a fleet of workers",
        **_guide(
            "Queue seed URLs as jobs of one crawl (batched, one round trip per 1,000 URLs).\n"
            "A URL already queued in the crawl is left alone, so submitting twice is safe.\n\n"
            "example:\n"
            "  REDIS_URL=redis://localhost:6379/0 scraperv4 submit --template-id shop \\\n"
            "      --urls-file seeds.txt"
        ),
    )
    command.add_argument("urls", nargs="*", metavar="URL")
    command.add_argument("--urls-file", metavar="FILE", help="URLs, one per line (- for stdin)")
    command.add_argument("--template-id", required=True, help="the template workers extract with")
    command.add_argument("--crawl-id", help="crawl name (default: derived from the inputs)")
    command.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    command.add_argument("--max-retries", type=int, default=3, help="retries per page (default 3)")
    command.add_argument("--config", default="{}", help="job config, a JSON object")
    _add_queue_options(command)
    command.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    from scraperv4.crawl import default_crawl_id
    from scraperv4.worker import crawl_job_id

    urls = _read_urls(args.urls, args.urls_file)
    try:
        config = json.loads(args.config)
    except ValueError as error:
        raise ConfigError(f"--config is not JSON: {error}") from None
    crawl = args.crawl_id or default_crawl_id(args.template_id, urls)
    queue = _open_queue(args)
    started = time.monotonic()
    ids = queue.submit_many(
        {
            "id": crawl_job_id(crawl, url),
            "name": crawl,
            "template_id": args.template_id,
            "target_url": url,
            "config": config,
            "priority": args.priority,
            "max_retries": args.max_retries,
            "crawl_id": crawl,
        }
        for url in urls
    )
    print(
        f"submitted {len(ids)} URLs to crawl {crawl} on {queue.url} "
        f"in {time.monotonic() - started:.2f} s"
    )
    return EXIT_OK


# --- worker ------------------------------------------------------------------------------


def add_worker(commands: Any) -> None:
    command = commands.add_parser(
        "worker",
        help="run a worker of the fleet (SCRAPERV4_ROLE=worker)",
        **_guide(
            "Claim jobs from the queue and scrape them until stopped. SIGTERM or Ctrl-C: stop\n"
            "claiming, let in-flight jobs finish within --grace-period, release the rest, exit 0.\n"
            "Items go to the queue's results log (a Redis stream): `scraperv4 results export`.\n\n"
            "environment: REDIS_URL (the queue), WORKER_ID (default <hostname>-<pid>),\n"
            "SCRAPERV4_TEMPLATES (--templates); `scraperv4` alone with SCRAPERV4_ROLE=worker\n"
            "runs this command (the guide's compose files set it)"
        ),
    )
    _add_queue_options(command)
    command.add_argument(
        "--templates",
        default=os.environ.get("SCRAPERV4_TEMPLATES"),
        metavar="DIR",
        help="directory of templates (default $SCRAPERV4_TEMPLATES)",
    )
    command.add_argument("--worker-id", help="id in the fleet (default $WORKER_ID or host-pid)")
    command.add_argument("--concurrency", type=int, default=32, help="jobs at once (default 32)")
    command.add_argument("--heartbeat", type=float, default=30.0, help="seconds (default 30)")
    command.add_argument("--grace-period", type=float, default=30.0, help="seconds (default 30)")
    command.add_argument(
        "--lease", type=float, default=60.0, help="job lease, seconds (default 60)"
    )
    command.add_argument(
        "--metrics-addr",
        default="0.0.0.0:9100",
        help="serve /metrics, /health, /ready here (default 0.0.0.0:9100; 'off' to disable)",
    )
    command.add_argument(
        "--exit-when-done", action="store_true", help="exit once the queue has nothing left"
    )
    _fetch_options(command)
    _adaptive_options(command)
    command.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from scraperv4.queue import JobQueue
    from scraperv4.worker import Worker

    if not args.templates:
        raise ConfigError("no templates: pass --templates DIR or set SCRAPERV4_TEMPLATES")
    queue = JobQueue(_queue_url(args), name=args.queue_name, lease=args.lease)
    worker = Worker(
        queue,
        worker_id=args.worker_id,
        templates_dir=args.templates,
        fetch=_fetch_config(args, args.concurrency),
        concurrency=args.concurrency,
        heartbeat=min(args.heartbeat, args.lease / 2),
        grace_period=args.grace_period,
        exit_when_done=args.exit_when_done,
        metrics_addr=None if args.metrics_addr == "off" else args.metrics_addr,
        **_adaptive_settings(args),
    )
    print(f"worker {worker.worker_id} serving {queue.url}", file=sys.stderr, flush=True)
    progress = worker.run()
    print(
        f"worker {worker.worker_id} stopped: {progress['completed']} completed, "
        f"{progress['failed']} failed, {progress['released']} released, "
        f"{progress['items']} items",
        file=sys.stderr,
    )
    return EXIT_OK


# --- stats, jobs, results ---------------------------------------------------------------


def add_stats(commands: Any) -> None:
    command = commands.add_parser(
        "stats",
        help="jobs per status and workers; rates over time; a plot",
        **_guide(
            "Show the queue's counts. With --watch, sample every --interval seconds for\n"
            "--duration seconds and print throughput, error rate and job durations (from\n"
            "the queue's own totals); with --plot, draw queue depth, workers and\n"
            "throughput over that time to a PNG (needs matplotlib).\n\n"
            "examples:\n"
            "  scraperv4 stats\n"
            "  scraperv4 stats --watch --duration 60 --interval 5\n"
            "  scraperv4 stats --plot fleet.png --duration 300 --interval 5"
        ),
    )
    _add_queue_options(command)
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.add_argument("--watch", action="store_true", help="sample over time")
    command.add_argument("--plot", metavar="PNG", help="draw the samples to this PNG file")
    command.add_argument(
        "--duration", type=float, default=60.0, help="seconds to sample (default 60)"
    )
    command.add_argument(
        "--interval", type=float, default=5.0, help="seconds between samples (default 5)"
    )
    command.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    queue = _open_queue(args)
    if args.watch or args.plot:
        return _stats_over_time(args, queue)
    stats = queue.stats()
    if args.json:
        print(
            json.dumps(
                {
                    **stats.by_status,
                    "total": stats.total,
                    "runnable": stats.runnable,
                    "active_workers": stats.active_workers,
                    "totals": dataclasses.asdict(stats.totals),
                }
            )
        )
        return EXIT_OK
    print(f"queue {queue.url}")
    for status, count in stats.by_status.items():
        print(f"  {status:<10} {count}")
    print(f"  {'total':<10} {stats.total}")
    print(f"  {'runnable':<10} {stats.runnable}")
    print(f"workers {stats.active_workers} active of {stats.total_workers}")
    totals = stats.totals
    if totals.duration_count:
        mean = totals.duration_ms_sum / totals.duration_count / 1000
        print(
            f"ever: {totals.completed} completed, {totals.failed} failed, "
            f"{totals.retried} retried; mean job {mean:.2f} s"
        )
    return EXIT_OK


def _stats_over_time(args: argparse.Namespace, queue: Any) -> int:
    from scraperv4.scaling.metrics_collector import DistributedMetricsCollector

    if args.interval <= 0 or args.duration < 0:
        raise ConfigError("--interval must be > 0 and --duration >= 0")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print(
                "scraperv4: --plot needs matplotlib: pip install matplotlib "
                "(or use --watch for text)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        matplotlib.use("Agg")
    collector = DistributedMetricsCollector(queue, collection_interval=args.interval)
    deadline = time.monotonic() + args.duration
    while True:
        m = collector.collect_now()
        if args.json:
            print(json.dumps(dataclasses.asdict(m)), flush=True)
        else:
            print(
                f"{time.strftime('%H:%M:%S', time.localtime(m.timestamp))}  "
                f"runnable {m.queue_length:>6}  running {m.running_jobs:>5}  "
                f"workers {m.active_workers:>3}  {m.jobs_per_second:8.2f} jobs/s  "
                f"errors {m.error_rate:6.1%}  mean job {m.avg_job_duration:6.2f} s",
                flush=True,
            )
        if time.monotonic() + args.interval > deadline:
            break
        time.sleep(args.interval)
    if args.plot:
        _plot(collector.history_arrays(), args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def _plot(history: dict[str, Any], path: str) -> None:
    import matplotlib.pyplot as plt

    elapsed = history["timestamp"] - history["timestamp"][0]
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 7))
    axes[0].plot(elapsed, history["queue_length"], label="runnable")
    axes[0].plot(elapsed, history["running_jobs"], label="running")
    axes[0].set_ylabel("jobs")
    axes[0].legend(loc="upper right")
    axes[1].step(elapsed, history["active_workers"], where="post")
    axes[1].set_ylabel("workers")
    axes[2].plot(elapsed, history["jobs_per_second"])
    axes[2].set_ylabel("jobs / s")
    axes[2].set_xlabel("seconds")
    axes[0].set_title("scraperv4 queue depth, workers and throughput")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- autoscale ---------------------------------------------------------------------------


def add_autoscale(commands: Any) -> None:
    command = commands.add_parser(
        "autoscale",
        help="scale a worker fleet on the queue's backlog",
        **_guide(
            "Evaluate the queue every --evaluation-interval seconds and scale the fleet:\n"
            "up when there are more than --scale-up-threshold runnable jobs per worker,\n"
            "down (gracefully: chosen workers are drained and leave when their jobs are\n"
            "done) below --scale-down-threshold. Every decision is logged with its reason.\n"
            "Also serves the cluster metrics on --metrics-addr (/metrics).\n\n"
            "executors:\n"
            "  local       start/stop `scraperv4 worker` processes here (needs --templates)\n"
            "  swarm       docker service scale SERVICE=N\n"
            "  kubernetes  kubectl scale deployment NAME --replicas=N\n\n"
            "example:\n"
            "  scraperv4 autoscale --executor local --templates ./templates --max-workers 8"
        ),
    )
    _add_queue_options(command)
    command.add_argument("--executor", choices=["local", "swarm", "kubernetes"], default="local")
    defaults = _scaling_defaults()
    for name, value in defaults.items():
        flag = "--" + name.replace("_", "-")
        kind = int if isinstance(value, int) else float
        command.add_argument(flag, type=kind, default=None, help=f"(default {value})")
    command.add_argument(
        "--templates",
        default=os.environ.get("SCRAPERV4_TEMPLATES"),
        metavar="DIR",
        help="templates of local workers (default $SCRAPERV4_TEMPLATES)",
    )
    command.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for each local worker (repeat: --worker-arg=--concurrency "
        "--worker-arg=8)",
    )
    command.add_argument("--service", default="scraperv4_worker", help="Swarm service")
    command.add_argument("--deployment", default="scraperv4-worker", help="Kubernetes name")
    command.add_argument("--namespace", default="default", help="Kubernetes namespace")
    command.add_argument("--drain-timeout", type=float, default=120.0, help="seconds (default 120)")
    command.add_argument(
        "--no-resource-veto",
        action="store_true",
        help="local: scale up even when this machine is past its resource thresholds",
    )
    command.add_argument(
        "--metrics-addr",
        default="0.0.0.0:9200",
        help="serve the cluster /metrics here (default 0.0.0.0:9200; 'off' to disable)",
    )
    command.add_argument(
        "--run-for", type=float, default=None, help=argparse.SUPPRESS
    )  # tests: stop after this many seconds
    command.set_defaults(handler=_autoscale)


def _scaling_defaults() -> dict[str, Any]:
    from scraperv4.autoscale import default_scaling_config

    return default_scaling_config()


def _autoscale(args: argparse.Namespace) -> int:
    import signal
    import threading

    from scraperv4.autoscale import (
        Autoscaler,
        Executor,
        KubernetesExecutor,
        LocalExecutor,
        SwarmExecutor,
    )
    from scraperv4.scaling.metrics_collector import DistributedMetricsCollector

    queue = _open_queue(args)
    config = {
        name: getattr(args, name)
        for name in _scaling_defaults()
        if getattr(args, name, None) is not None
    }
    executor: Executor
    if args.executor == "local":
        executor = LocalExecutor(
            queue.url, args.templates or "", worker_args=args.worker_arg,
            queue_name=args.queue_name,
        )  # fmt: skip
    elif args.executor == "swarm":
        executor = SwarmExecutor(args.service)
    else:
        executor = KubernetesExecutor(args.deployment, args.namespace)
    scaler = Autoscaler(
        queue, executor, config, drain_timeout=args.drain_timeout,
        resources=False if args.no_resource_veto else None,
    )  # fmt: skip
    collector = DistributedMetricsCollector(
        queue, collection_interval=float(scaler.config["evaluation_interval"])
    )
    if args.metrics_addr != "off":
        bound = collector.serve_metrics(args.metrics_addr)
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


def add_jobs(commands: Any) -> None:
    command = commands.add_parser(
        "jobs",
        help="list, show, retry or cancel jobs",
        **_guide(
            "examples:\n"
            "  scraperv4 jobs list --status failed\n"
            "  scraperv4 jobs show JOB_ID\n"
            "  scraperv4 jobs retry JOB_ID      (a failed or cancelled job runs again)\n"
            "  scraperv4 jobs cancel JOB_ID"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="jobs with a status")
    listing.add_argument("--status", default="failed", help="status to list (default failed)")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_queue_options(listing)
    listing.set_defaults(handler=_jobs_list)
    for name, help_text in (
        ("show", "one job in full"),
        ("retry", "run a failed or cancelled job again"),
        ("cancel", "cancel a job that has not finished"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("job_id")
        _add_queue_options(action)
        action.set_defaults(handler=_jobs_action, action_name=name)


def _job_dict(job: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "target_url": job.target_url,
        "template_id": job.template_id,
        "crawl_id": job.crawl_id,
        "depth": job.depth,
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "attempt": job.attempt,
        "assigned_worker": job.assigned_worker,
        "error": job.error,
        "result": job.result,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
    }


def _jobs_list(args: argparse.Namespace) -> int:
    queue = _open_queue(args)
    jobs = queue.list(args.status, offset=args.offset, limit=args.limit)
    for job in jobs:
        if args.json:
            print(json.dumps(_job_dict(job)))
        else:
            error = f"  {job.error}" if job.error else ""
            print(
                f"{job.id}  {job.status.value:<9} retries={job.retry_count}  "
                f"{job.target_url}{error}"
            )
    if not args.json:
        print(f"({len(jobs)} {args.status} jobs shown)", file=sys.stderr)
    return EXIT_OK


def _jobs_action(args: argparse.Namespace) -> int:
    queue = _open_queue(args)
    if args.action_name == "show":
        job = queue.get(args.job_id)
        if job is None:
            print(f"scraperv4: no job {args.job_id!r} in {queue.url}", file=sys.stderr)
            return EXIT_FAILED
        print(json.dumps(_job_dict(job), indent=2))
        return EXIT_OK
    ack = queue.retry(args.job_id) if args.action_name == "retry" else queue.cancel(args.job_id)
    if ack.accepted:
        print(f"{args.action_name}: {args.job_id} ok")
        return EXIT_OK
    print(f"scraperv4: cannot {args.action_name} {args.job_id}: {ack}", file=sys.stderr)
    return EXIT_FAILED


def add_results(commands: Any) -> None:
    command = commands.add_parser(
        "results",
        help="export recorded items",
        **_guide(
            "Export the items workers recorded (the queue's results log) to a file.\n"
            "JSON Lines exports are resumable: running again appends only new items.\n\n"
            "example:\n  scraperv4 results export --format csv --output items.csv"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write items to JSONL, CSV or Parquet")
    export.add_argument("--output", required=True, help="file to write")
    export.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    export.add_argument(
        "--trim",
        action="store_true",
        help="then delete the exported items from the queue's results log, so it stays\n"
        "small (JSONL only; use it when this file is the log's only consumer)",
    )
    _add_queue_options(export)
    export.set_defaults(handler=_results_export)


def _results_export(args: argparse.Namespace) -> int:
    from scraperv4.worker import _export_jsonl_counts

    queue = _open_queue(args)
    if args.format == "jsonl":
        written, trimmed = _export_jsonl_counts(queue, args.output, args.trim)
        print(f"exported {written} new items to {args.output}")
        if args.trim:
            print(f"trimmed {trimmed} entries from the results log")
        return EXIT_OK
    if args.trim:
        print(
            "scraperv4: --trim needs --format jsonl (its checkpoint records what was exported)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    rows = list(_all_records(queue))
    if args.format == "parquet":
        try:
            import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            print("scraperv4: Parquet export needs pyarrow: pip install pyarrow", file=sys.stderr)
            return EXIT_USAGE
        pq.write_table(pa.Table.from_pylist([_flat(r) for r in rows]), args.output)
    else:
        flat = [_flat(r) for r in rows]
        columns = list(dict.fromkeys(key for row in flat for key in row))
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flat)
    print(f"exported {len(rows)} items to {args.output}")
    return EXIT_OK


def _all_records(queue: Any) -> Any:
    import tempfile

    from scraperv4.worker import export_jsonl

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "items.jsonl"
        export_jsonl(queue, path)
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    fields = record.get("fields", {})
    flat = {k: v for k, v in record.items() if k != "fields"}
    for key, value in fields.items():
        flat[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


# --- coordinator -------------------------------------------------------------------------


def add_coordinator(commands: Any) -> None:
    command = commands.add_parser(
        "coordinator",
        help="the HTTP API, dashboard and live stats over a queue",
        **_guide(
            "Serve the coordinator: the JSON API (GET /api/openapi.json describes it), a live\n"
            "dashboard at /, a WebSocket of stats at /ws and cluster metrics at /metrics.\n"
            "Stateless: run as many as you like behind nginx against one Redis.\n\n"
            "Set SCRAPERV4_API_TOKEN (16+ characters) to require Authorization: Bearer\n"
            "<token> on every mutating route (and on reads with --protect-reads).\n\n"
            "example:\n"
            "  SCRAPERV4_API_TOKEN=... scraperv4 coordinator --addr 0.0.0.0:8080"
        ),
    )
    _add_queue_options(command)
    command.add_argument("--addr", default="0.0.0.0:8080", help="listen here (default :8080)")
    command.add_argument(
        "--protect-reads", action="store_true", help="require the token for reads too"
    )
    command.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browser calls from this origin (repeat; default: none)",
    )  # fmt: skip
    command.add_argument(
        "--body-limit", type=int, default=1 << 20, help="largest request body, bytes (1 MiB)"
    )
    command.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds per request (default 30)"
    )
    command.set_defaults(handler=_coordinator)


def _coordinator(args: argparse.Namespace) -> int:
    from scraperv4.coordinator import Coordinator

    server = Coordinator(
        _open_queue(args),
        args.addr,
        protect_reads=args.protect_reads,
        cors_origins=args.cors_origin,
        body_limit=args.body_limit,
        request_timeout=args.request_timeout,
    )
    address = server.start()
    print(f"coordinator on http://{address}/ (API: /api/openapi.json)", file=sys.stderr, flush=True)
    server.run()
    print("coordinator stopped", file=sys.stderr)
    return EXIT_OK
