"""The queue on a local Redis Cluster (3 masters, 3 replicas) against one redis-server.

Measured in turn, round after round (single, cluster, cluster x3, single, ...), so the
machine's drift hits all alike:

- one queue on a single redis-server: batched submit, claim and complete (jobs/s) and that
  server's CPU per job; the same on a single redis-server that feeds a replica (as every
  cluster master here does: the fair comparison);
- one queue on the cluster (it lives on the master serving its slot): the same, with that
  master's CPU per job — the per-queue ceiling is about one Redis core divided by it;
- three queues on the cluster, one per master, worked at the same time (what a queue split
  over three slots would give): jobs/s together.

This machine has 2 cores for six Redis processes, the client and its workers: the
aggregate figure is bounded by the machine, not by the masters; the per-job server CPU is
the number to plan with (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import redis
from redis.crc import key_slot

from _common import report, spread
from bench_queue import produce_and_work
from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer

JOBS = 20_000
ROUNDS = 3


def cpu_seconds(port: int) -> float:
    client = redis.Redis(host="127.0.0.1", port=port)
    cpu = client.info("cpu")
    client.close()
    return float(cpu["used_cpu_user"] + cpu["used_cpu_sys"])


def run(url: str, names: list[str], jobs: int) -> float:
    async def all_of_them() -> None:
        await asyncio.gather(*(produce_and_work(url, name, jobs) for name in names))

    started = time.perf_counter()
    asyncio.run(all_of_them())
    return len(names) * jobs / (time.perf_counter() - started)


def names_on_masters(cluster: RedisCluster) -> list[str]:
    """One queue name per master (its slot served there)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < cluster.masters:
        name = f"bench{uuid.uuid4().hex[:4]}{i}"
        found.setdefault(cluster.master_of(key_slot(name.encode())), name)
        i += 1
    return list(found.values())


def main() -> int:
    figures: dict[str, list[float]] = {
        "single": [],
        "single_cpu": [],
        "replicated": [],
        "replicated_cpu": [],
        "cluster": [],
        "cluster_cpu": [],
        "cluster3": [],
        "ratio": [],
    }
    with (
        RedisServer() as single,
        RedisServer() as primary,
        RedisServer() as replica,
        RedisCluster() as cluster,
    ):
        redis.Redis(port=replica.port).execute_command("REPLICAOF", "127.0.0.1", primary.port)
        for _ in range(ROUNDS):
            for server, label in ((single, "single"), (primary, "replicated")):
                before = cpu_seconds(server.port)
                figures[label].append(run(server.url, [f"b{uuid.uuid4().hex[:8]}"], JOBS))
                figures[f"{label}_cpu"].append((cpu_seconds(server.port) - before) / JOBS * 1e6)

            name = f"b{uuid.uuid4().hex[:8]}"
            master = cluster.master_of(key_slot(name.encode()))
            before = cpu_seconds(master)
            figures["cluster"].append(run(cluster.url, [name], JOBS))
            figures["cluster_cpu"].append((cpu_seconds(master) - before) / JOBS * 1e6)
            figures["ratio"].append(figures["cluster"][-1] / figures["replicated"][-1])

            figures["cluster3"].append(run(cluster.url, names_on_masters(cluster), JOBS))
    cpu = min(figures["cluster_cpu"])
    met = report(
        "cluster",
        {
            "single redis-server, 1 queue (jobs/s)": spread(figures["single"]),
            "single: server CPU per job (us)": spread(figures["single_cpu"]),
            "single with a replica, 1 queue (jobs/s)": spread(figures["replicated"]),
            "single with a replica: its CPU per job (us)": spread(figures["replicated_cpu"]),
            "cluster, 1 queue (jobs/s)": spread(figures["cluster"]),
            "cluster: its master's CPU per job (us)": spread(figures["cluster_cpu"]),
            "cluster / single with a replica, same round": spread(figures["ratio"]),
            "cluster, 3 queues on 3 masters at once (jobs/s, all)": spread(figures["cluster3"]),
            "per-queue ceiling, one Redis core / CPU per job (jobs/s)": 1e6 / cpu,
            "rounds (single, replicated, cluster, cluster x3 interleaved)": ROUNDS,
            "jobs per queue, batch": f"{JOBS}, 100",
        },
        {},
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
