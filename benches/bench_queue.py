"""Full job lifecycle (submit, claim, complete) of no-op jobs against a local redis-server.

Peer: RQ (``SimpleWorker``, burst mode) processing no-op jobs, measured in the same run on
the same kind of redis-server. Goals (issue #3):

- batched, 100 jobs per call: >= 100x RQ's jobs/s. Measured two ways: one loop doing
  submit, claim and complete in turn (every call waits for the previous one), and a
  producer and a worker running at the same time in one process (asyncio), which is how a
  queue is used; the goal is checked on the second, and both are printed;
- one job per call through the seed-compatible ``DistributedJobQueue``, one client:
  >= 10x RQ's jobs/s (issue #20), measured interleaved with RQ (RQ, ours, ours with
  ``prefetch=10``, RQ, ...) so that the machine's drift hits both alike; the ratio is taken
  per round and printed as median (min-max), with the Redis server's CPU per job;
- the SQLite backend: jobs/s reported.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import report, spread
from scraperv4.queue import AsyncJobQueue, JobQueue, JobSpec
from scraperv4.scaling.distributed_queue import DistributedJobQueue, ScrapingJob
from support.redis_server import RedisServer

RQ_JOBS = 2_000
BATCHED_JOBS = 50_000
SINGLE_JOBS = 5_000
ROUNDS = 5
PREFETCH = 10
SQLITE_JOBS = 20_000
BATCH = 100


def rq_jobs_per_second(url: str) -> float:
    from redis import Redis
    from rq import Queue, SimpleWorker

    connection = Redis.from_url(url)
    queue = Queue(f"bench-{uuid.uuid4().hex[:6]}", connection=connection)
    started = time.perf_counter()
    for _ in range(RQ_JOBS):
        queue.enqueue("_noop.noop")
    SimpleWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    elapsed = time.perf_counter() - started
    finished = queue.finished_job_registry.count
    assert finished == RQ_JOBS, f"RQ finished {finished} of {RQ_JOBS}"
    connection.close()
    return RQ_JOBS / elapsed


def batched_jobs_per_second(url: str, jobs: int) -> float:
    queue = JobQueue(url, name=f"bench-{uuid.uuid4().hex[:6]}")
    specs = [JobSpec(f"https://example.com/{i}", template_id="noop") for i in range(jobs)]
    started = time.perf_counter()
    for offset in range(0, jobs, BATCH):
        queue.submit_many(specs[offset : offset + BATCH])
    done = 0
    while True:
        claimed = queue.claim("bench-worker", BATCH)
        if not claimed:
            break
        done += sum(ack.accepted for ack in queue.complete_many(claimed))
    elapsed = time.perf_counter() - started
    assert done == jobs, f"completed {done} of {jobs}"
    assert queue.stats().by_status["completed"] == jobs
    return jobs / elapsed


async def produce_and_work(
    url: str, name: str, jobs: int, *, sites: int = 1, workers: int = 1, **options: Any
) -> None:
    """Submit ``jobs`` in batches while ``workers`` claim and complete them (one queue; the
    URLs spread over ``sites`` hosts, so over the shards of a sharded queue)."""
    queue = await AsyncJobQueue.open(url, name=name, **options)
    host = (lambda i: "example.com") if sites == 1 else (lambda i: f"site{i % sites}.example")
    specs = [JobSpec(f"https://{host(i)}/{i}", template_id="noop") for i in range(jobs)]
    submitted = asyncio.Event()

    async def producer() -> None:
        for offset in range(0, jobs, BATCH):
            await queue.submit_many(specs[offset : offset + BATCH])
        submitted.set()

    async def worker(n: int) -> int:
        done = 0
        while True:
            claimed = await queue.claim(f"bench-worker-{n}", BATCH)
            if claimed:
                done += sum(ack.accepted for ack in await queue.complete_many(claimed))
            elif submitted.is_set() and (await queue.stats()).pending == 0:
                return done
            else:
                await asyncio.sleep(0.001)

    _, *done = await asyncio.gather(producer(), *(worker(n) for n in range(workers)))
    assert sum(done) == jobs, f"completed {sum(done)} of {jobs}"


def concurrent_batched_jobs_per_second(url: str, jobs: int) -> float:
    """A producer submitting and a worker claiming/completing at the same time."""
    started = time.perf_counter()
    asyncio.run(produce_and_work(url, f"bench-{uuid.uuid4().hex[:6]}", jobs))
    return jobs / (time.perf_counter() - started)


def seed_api_jobs_per_second(url: str, prefetch: int = 1) -> float:
    """The guide's loop through the guide's API: submit_job, get_next_job and
    update_job_status, one job per call (``prefetch``: jobs claimed per round trip)."""
    queue = DistributedJobQueue(url, name=f"bench-{uuid.uuid4().hex[:6]}", prefetch=prefetch)
    queue.register_worker("bench-worker")
    started = time.perf_counter()
    for i in range(SINGLE_JOBS):
        queue.submit_job(ScrapingJob(None, "noop", "noop", f"https://example.com/{i}", {}))
    done = 0
    while (job := queue.get_next_job("bench-worker")) is not None:
        done += queue.update_job_status(job, "completed")
    elapsed = time.perf_counter() - started
    assert done == SINGLE_JOBS, f"completed {done} of {SINGLE_JOBS}"
    queue.close()
    return SINGLE_JOBS / elapsed


def redis_cpu_seconds(url: str) -> float:
    from redis import Redis

    client = Redis.from_url(url)
    cpu = client.info("cpu")
    client.close()
    return float(cpu["used_cpu_user"] + cpu["used_cpu_sys"])


def scripts_only_url(url: str) -> str:
    """The same server through an ACL user denied FUNCTION/FCALL: the queue runs as EVALSHA
    scripts, as on Redis < 7 (the comparison the function library is measured against)."""
    from redis import Redis

    client = Redis.from_url(url)
    client.execute_command(
        "ACL", "SETUSER", "bench-scripts", "on", ">pw", "~*", "&*", "+@all", "-function", "-fcall"
    )
    client.close()
    return url.replace("redis://", "redis://bench-scripts:pw@")


def one_job_per_call_interleaved(url: str) -> dict[str, list[float]]:
    """RQ and the guide's API in turn (A B C D A B C D ...): jobs/s of each, and the Redis
    server's CPU per job of ours, as functions and as scripts."""
    scripts_url = scripts_only_url(url)
    rates: dict[str, list[float]] = {
        "rq": [],
        "seed": [],
        "seed_prefetch": [],
        "seed_scripts": [],
        "cpu_us": [],
        "cpu_us_scripts": [],
    }
    for _ in range(ROUNDS):
        rates["rq"].append(rq_jobs_per_second(url))
        before = redis_cpu_seconds(url)
        rates["seed"].append(seed_api_jobs_per_second(url))
        rates["cpu_us"].append((redis_cpu_seconds(url) - before) / SINGLE_JOBS * 1e6)
        rates["seed_prefetch"].append(seed_api_jobs_per_second(url, prefetch=PREFETCH))
        before = redis_cpu_seconds(url)
        rates["seed_scripts"].append(seed_api_jobs_per_second(scripts_url))
        rates["cpu_us_scripts"].append((redis_cpu_seconds(url) - before) / SINGLE_JOBS * 1e6)
    return rates


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # RQ imports _noop by name
    with RedisServer() as server:
        single = one_job_per_call_interleaved(server.url)
        rq = statistics.median(single["rq"])
        batched = batched_jobs_per_second(server.url, BATCHED_JOBS)
        concurrent = concurrent_batched_jobs_per_second(server.url, BATCHED_JOBS)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = batched_jobs_per_second(f"sqlite://{tmp}/bench.db", SQLITE_JOBS)
    memory = batched_jobs_per_second("memory://", SQLITE_JOBS)
    seed_ratio = [s / r for s, r in zip(single["seed"], single["rq"])]
    prefetch_ratio = [s / r for s, r in zip(single["seed_prefetch"], single["rq"])]
    met = report(
        "queue",
        {
            "RQ SimpleWorker burst (jobs/s), median (min-max)": spread(single["rq"]),
            "redis batched x100, one loop (jobs/s)": batched,
            "redis batched x100, producer || worker (jobs/s)": concurrent,
            "redis seed API, 1 job/call (jobs/s)": spread(single["seed"]),
            f"redis seed API, prefetch={PREFETCH} (jobs/s)": spread(single["seed_prefetch"]),
            "redis server CPU per job, seed API (us)": spread(single["cpu_us"]),
            "redis seed API as EVALSHA scripts (jobs/s)": spread(single["seed_scripts"]),
            "redis server CPU per job, as scripts (us)": spread(single["cpu_us_scripts"]),
            "functions / scripts, same round (jobs/s)": spread(
                [f / s for f, s in zip(single["seed"], single["seed_scripts"])]
            ),
            "seed API / RQ, same round": spread(seed_ratio),
            f"seed API prefetch={PREFETCH} / RQ, same round": spread(prefetch_ratio),
            "sqlite file batched x100 (jobs/s)": sqlite,
            "memory batched x100 (jobs/s)": memory,
            "redis batched, one loop / RQ (ratio)": batched / rq,
            "rounds (RQ, seed, seed prefetch interleaved)": ROUNDS,
            "jobs (RQ / batched / single / sqlite)": (
                f"{RQ_JOBS} / {BATCHED_JOBS} / {SINGLE_JOBS} / {SQLITE_JOBS}"
            ),
        },
        {
            "redis batched (producer || worker) vs RQ": (concurrent / rq, 100.0),
            "seed API 1 job/call vs RQ (median)": (statistics.median(seed_ratio), 10.0),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
