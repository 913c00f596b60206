"""The queue's client commands: ``submit``, ``stats`` and ``jobs`` (``results`` is in
:mod:`scraperv4.commands.results`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from scraperv4.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_setting_flags,
    guide,
    read_urls,
)
from scraperv4.exceptions import ConfigError
from scraperv4.settings import ClientSettings


def add(commands: Any) -> None:
    _add_submit(commands)
    _add_stats(commands)
    _add_jobs(commands)


def _queue_flags(command: argparse.ArgumentParser) -> None:
    add_setting_flags(command, ClientSettings)


def _add_submit(commands: Any) -> None:
    command = commands.add_parser(
        "submit",
        help="queue URLs for a fleet of workers",
        **guide(
            "Queue seed URLs as jobs of one crawl (batched, one round trip per 1,000 URLs).\n"
            "A URL already queued in the crawl is left alone, so submitting twice is safe\n"
            "(the output says how many were new and how many already queued).\n\n"
            "A job's config may set: timeout (seconds for the whole job), delay_range\n"
            "([min, max] seconds between requests to a host) and respect_robots (true or\n"
            "false); other keys are refused here.\n\n"
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
    command.add_argument(
        "--job-config",
        default="{}",
        metavar="JSON",
        help='each job\'s config, a JSON object, e.g. \'{"delay_range": [1, 3], "timeout": 60}\'',
    )
    _queue_flags(command)
    command.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    from scraperv4.crawl import default_crawl_id
    from scraperv4.worker import check_job_config, crawl_job_id

    urls = read_urls(args.urls, args.urls_file)
    try:
        config = json.loads(args.job_config)
    except ValueError as error:
        raise ConfigError(f"--job-config is not JSON: {error}") from None
    check_job_config(config, source="--job-config")
    crawl = args.crawl_id or default_crawl_id(args.template_id, urls)
    queue = args.settings.open_queue()
    started = time.monotonic()
    submitted = queue.submit_batch(
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
        f"submitted {len(submitted.ids)} URLs to crawl {crawl} on {queue.url}: "
        f"{submitted.new} new, {submitted.existing} already queued "
        f"({time.monotonic() - started:.2f} s)"
    )
    return EXIT_OK


def _add_stats(commands: Any) -> None:
    command = commands.add_parser(
        "stats",
        help="jobs per status and workers; rates over time; a plot",
        **guide(
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
    _queue_flags(command)
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
    queue = args.settings.open_queue()
    if args.watch or args.plot:
        return _stats_over_time(args, queue)
    stats = queue.stats()
    workers = queue.workers()
    if args.json:
        print(
            json.dumps(
                {
                    **stats.by_status,
                    "total": stats.total,
                    "runnable": stats.runnable,
                    "paced_keys": stats.paced_keys,
                    "waiting_keys": stats.waiting_keys,
                    "held": stats.held,
                    "active_workers": stats.active_workers,
                    "totals": dataclasses.asdict(stats.totals),
                    "workers": workers,
                }
            )
        )
        return EXIT_OK
    print(f"queue {queue.url}")
    for status, count in stats.by_status.items():
        print(f"  {status:<10} {count}")
    print(f"  {'total':<10} {stats.total}")
    print(f"  {'runnable':<10} {stats.runnable}  (what workers could start within the horizon)")
    print(f"  {'held':<10} {stats.held}   (by workers: assigned + running)")
    if stats.paced_keys:
        print(
            f"politeness: {stats.paced_keys} paced keys, {stats.waiting_keys} waiting for their "
            "next slot (scraperv4 domains list)"
        )
    print(f"workers {stats.active_workers} active of {stats.total_workers}")
    _print_workers(workers)
    totals = stats.totals
    if totals.duration_count:
        mean = totals.duration_ms_sum / totals.duration_count / 1000
        print(
            f"ever: {totals.completed} completed, {totals.failed} failed, "
            f"{totals.retried} retried; mean job {mean:.2f} s"
        )
    return EXIT_OK


def _print_workers(workers: list[dict[str, Any]]) -> None:
    """One line per registered worker: id, state, last heartbeat, jobs held."""
    if not workers:
        return
    now = time.time()
    width = max(len(w["id"]) for w in workers)
    print(f"  {'id':<{width}}  {'state':<8}  {'heartbeat':>12}  {'jobs held':>9}")
    for worker in workers:
        age = max(0.0, now - worker["last_heartbeat"] / 1000)
        state = "draining" if worker["draining"] else worker["state"]
        print(f"  {worker['id']:<{width}}  {state:<8}  {age:>8.0f} s ago  {len(worker['jobs']):>9}")


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
                f"runnable {m.queue_length:>6}  held {m.running_jobs:>5}  "
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
    axes[0].plot(elapsed, history["running_jobs"], label="held (assigned + running)")
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


def _add_jobs(commands: Any) -> None:
    command = commands.add_parser(
        "jobs",
        help="list, show, retry or cancel jobs",
        **guide(
            "examples:\n"
            "  scraperv4 jobs list --status failed\n"
            "  scraperv4 jobs show JOB_ID\n"
            "  scraperv4 jobs retry JOB_ID      (a failed or cancelled job runs again)\n"
            "  scraperv4 jobs cancel JOB_ID"
        ),
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="jobs with a status",
        description="List the jobs with a status, paged with --offset and --limit (the "
        "coordinator's GET /api/jobs takes the same status, offset and limit). Pending jobs "
        "come in claim order, finished ones newest first.",
    )
    listing.add_argument(
        "--status",
        default="pending",
        choices=[s.value for s in _statuses()],
        help="status to list (default pending)",
    )
    listing.add_argument("--limit", type=int, default=50, help="jobs shown (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="jobs skipped (default 0)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _queue_flags(listing)
    listing.set_defaults(handler=_jobs_list)
    for name, help_text in (
        ("show", "one job in full"),
        ("retry", "run a failed or cancelled job again"),
        ("cancel", "cancel a job that has not finished"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("job_id")
        _queue_flags(action)
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


def _statuses() -> list[Any]:
    from scraperv4.queue import JobStatus

    return list(JobStatus)


def _jobs_list(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.offset < 0:
        raise ConfigError("--limit must be at least 1 and --offset at least 0")
    queue = args.settings.open_queue()
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
        counts = queue.stats().by_status
        total = counts.get(args.status, 0)
        shown = (
            f"{args.offset + 1}-{args.offset + len(jobs)} of {total}" if jobs else f"0 of {total}"
        )
        others = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != args.status)
        hint = f"; also {others} (--status STATUS)" if others else ""
        print(f"({shown} {args.status} jobs shown{hint})", file=sys.stderr)
    return EXIT_OK


def _jobs_action(args: argparse.Namespace) -> int:
    queue = args.settings.open_queue()
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
    if ack.reason == "not_found":
        why = f"there is no such job in {queue.url}"
    elif args.action_name == "retry":
        why = f"it is {ack.status} (only failed or cancelled jobs can be retried)"
    else:
        why = f"it is {ack.status} already (only unfinished jobs can be cancelled)"
    print(f"scraperv4: cannot {args.action_name} {args.job_id}: {why}", file=sys.stderr)
    return EXIT_FAILED
