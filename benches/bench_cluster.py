"""The queue on a local Redis Cluster (3 masters, 3 replicas) against one redis-server.

Measured in turn, round after round (single, cluster, cluster x3, single, ...), so the
machine's drift hits all alike:

- one queue on a single redis-server: batched submit, claim and complete (jobs/s) and that
  server's CPU per job; the same on a single redis-server that feeds a replica (as every
  cluster master here does: the fair comparison);
- one queue on the cluster (it lives on the master serving its slot): the same, with that
  master's CPU per job — the per-queue ceiling is about one Redis core divided by it;
- three queues on the cluster, one per master, worked at the same time: jobs/s together;
- one queue of 3 shards on the cluster (``shards=3``: its shards on the three masters),
  URLs of 100 sites, 3 workers, against one queue of 1 shard worked the same way: jobs/s,
  and the CPU per job of all three masters together (what sharding costs the servers).

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
from typing import Any

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


def run(url: str, names: list[str], jobs: int, **options: Any) -> float:
    async def all_of_them() -> None:
        await asyncio.gather(*(produce_and_work(url, name, jobs, **options) for name in names))

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
        "one_shard": [],
        "three_shards": [],
        "shard_ratio": [],
        "one_shard_cpu": [],
        "three_shards_cpu": [],
    }
    spread_work = {"sites": 100, "workers": 3}
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

            masters = [node.port for node in cluster.nodes[: cluster.masters]]
            for shards, label in ((1, "one_shard"), (3, "three_shards")):
                before = sum(cpu_seconds(port) for port in masters)
                name = f"b{uuid.uuid4().hex[:8]}"
                figures[label].append(run(cluster.url, [name], JOBS, shards=shards, **spread_work))
                used = sum(cpu_seconds(port) for port in masters) - before
                figures[f"{label}_cpu"].append(used / JOBS * 1e6)
            figures["shard_ratio"].append(figures["three_shards"][-1] / figures["one_shard"][-1])
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
            "1 queue of 1 shard, 100 sites, 3 workers (jobs/s)": spread(figures["one_shard"]),
            "1 queue of 3 shards, 100 sites, 3 workers (jobs/s)": spread(figures["three_shards"]),
            "3 shards / 1 shard, same round": spread(figures["shard_ratio"]),
            "1 shard: masters' CPU per job (us, all 3)": spread(figures["one_shard_cpu"]),
            "3 shards: masters' CPU per job (us, all 3)": spread(figures["three_shards_cpu"]),
            "rounds (single, replicated, cluster, cluster x3, 1 shard, 3 shards interleaved)": (
                ROUNDS
            ),
            "jobs per queue, batch": f"{JOBS}, 100",
        },
        {},
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
