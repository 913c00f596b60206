"""A throwaway Redis Cluster on loopback: 3 masters and 3 replicas, each its own
``redis-server`` (started and stopped by PID), joined by ``redis-cli --cluster create``.

Slot moves use ``redis-cli --cluster reshard`` and failovers ``CLUSTER FAILOVER``, as an
operator would. A missing ``redis-server`` or ``redis-cli`` is an error that says how to
install them, never a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import redis
from redis.crc import key_slot

from support.redis_server import INSTALL_HINT, RedisServer, RedisServerMissingError


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_for(condition: object, what: str, timeout: float = 60.0) -> None:
    """Polls ``condition()`` until it is true; fails with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class RedisCluster:
    """Six ``redis-server`` processes in cluster mode; use as a context manager."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        if shutil.which("redis-cli") is None:
            raise RedisServerMissingError(INSTALL_HINT)
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.data_dir = Path(tempfile.mkdtemp(prefix="scraperv4-cluster-"))
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every master as a seed."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}"

    def client(self, port: int) -> redis.Redis:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)
        client.set_response_callback("CLUSTER NODES", lambda reply, **_: reply)  # the text
        return client

    def start(self) -> RedisCluster:
        for i in range(self.masters * (1 + self.replicas_per_master)):
            port = _free_cluster_port()
            node = RedisServer(
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "3000",
                ],
                port=port,
                data_dir=self.data_dir / str(i),
            )  # fmt: skip
            self.nodes.append(node)
            node.start()
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{node.port}" for node in self.nodes],
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}"
            )
        wait_for(self.settled, "every node to see the whole cluster with every slot served")
        return self

    def settled(self) -> bool:
        """Every node answers ``cluster_state:ok`` and knows every other node."""
        try:
            for node in self.nodes:
                info = self.client(node.port).cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(
                    self.nodes
                ):
                    return False
            return self.replicas_in_sync()
        except redis.RedisError:
            return False

    def replicas_in_sync(self) -> bool:
        for node in self.nodes:
            info = self.client(node.port).info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def nodes_view(self, port: Optional[int] = None) -> dict[str, dict[str, object]]:
        """``CLUSTER NODES`` as seen by ``port``: address -> fields."""
        port = port or self.nodes[0].port
        raw = self.client(port).execute_command("CLUSTER NODES")
        text = raw if isinstance(raw, str) else raw.decode()
        view: dict[str, dict[str, object]] = {}
        for line in text.splitlines():
            fields = line.split()
            address = fields[1].split("@")[0]
            view[address] = {
                "id": fields[0],
                "flags": fields[2].split(","),
                "master": fields[3],
                "slots": fields[8:],
            }
        return view

    def master_of(self, slot: int) -> int:
        """The port of the master serving ``slot`` (as the first node sees it)."""
        for address, node in self.nodes_view().items():
            if "master" not in node["flags"]:  # type: ignore[operator]
                continue
            for span in node["slots"]:  # type: ignore[union-attr]
                if str(span).startswith("["):
                    continue  # a migration in progress
                low, _, high = str(span).partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(address.rsplit(":", 1)[1])
        raise AssertionError(f"no master serves slot {slot}")

    def node_id(self, port: int) -> str:
        return str(self.nodes_view()[f"127.0.0.1:{port}"]["id"])

    def replica_of(self, master_port: int) -> int:
        master_id = self.node_id(master_port)
        for address, node in self.nodes_view().items():
            if node["master"] == master_id:
                return int(address.rsplit(":", 1)[1])
        raise AssertionError(f"master {master_port} has no replica")

    def reshard(
        self, source_port: int, target_port: int, slots: int
    ) -> subprocess.CompletedProcess[str]:
        """Moves the first ``slots`` slots of ``source_port`` to ``target_port`` with
        ``redis-cli --cluster reshard``, one key per MIGRATE (a slow, long migration)."""
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                f"127.0.0.1:{source_port}",
                "--cluster-from",
                self.node_id(source_port),
                "--cluster-to",
                self.node_id(target_port),
                "--cluster-slots",
                str(slots),
                "--cluster-pipeline",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"reshard failed:\n{done.stdout[-3000:]}{done.stderr}"
        return done

    def failover(self, master_port: int) -> int:
        """``CLUSTER FAILOVER`` on the replica of ``master_port``; returns the new master's
        port once every node sees it serving the old master's slots."""
        replica = self.replica_of(master_port)
        self.client(replica).execute_command("CLUSTER FAILOVER")
        address = f"127.0.0.1:{replica}"
        wait_for(
            lambda: (
                all(
                    "master" in self.nodes_view(node.port)[address]["flags"]  # type: ignore[operator]
                    for node in self.nodes
                )
                and self.settled()
            ),
            f"every node to see replica {replica} take over from {master_port}",
        )
        return replica

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def name_in_first_slots(masters_first_slot: int = 0, width: int = 10, prefix: str = "q") -> str:
    """A queue name whose slot is within ``width`` slots of ``masters_first_slot`` (the first
    slots of a master are the ones ``redis-cli --cluster reshard`` moves first)."""
    for i in range(1_000_000):
        name = f"{prefix}{i}"
        if masters_first_slot <= key_slot(name.encode()) < masters_first_slot + width:
            return name
    raise AssertionError("no such name")
