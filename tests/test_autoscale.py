"""Cluster metrics and the autoscaler: real queues, a real local site, real worker processes;
the Swarm and Kubernetes executors against fake ``docker`` / ``kubectl`` on PATH."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from scraperv4.autoscale import (
    Autoscaler,
    Executor,
    KubernetesExecutor,
    LocalExecutor,
    SwarmExecutor,
    default_scaling_config,
)
from scraperv4.demo import TEMPLATE_PATH, DemoSite
from scraperv4.exceptions import ConfigError
from scraperv4.extract import Template
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.resources import ResourceManager
from scraperv4.scaling.auto_scaler import AutoScaler
from scraperv4.scaling.metrics_collector import DistributedMetricsCollector
from scraperv4.worker import Worker

LOCAL = FetchConfig(allowed_networks=["127.0.0.0/8"], retries=0, per_host_concurrency=32)
NO_VETO = {"cpu_max": 100, "memory_max": 100, "disk_max": 100, "load_max": 1e6}


def wait_for(
    condition: Any, timeout: float, what: str, scaler: Optional[Autoscaler] = None
) -> None:
    """Poll ``condition`` until true; on timeout, fail with the scaler's decisions if any."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            decisions = "".join(
                f"\n  {d['action']} {d['current_workers']} -> {d['target_workers']}: {d['reason']}"
                for d in (scaler.decisions if scaler else [])
            )
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{decisions}")
        time.sleep(0.1)


def product_jobs(site: DemoSite, ids: range, **fields: Any) -> list[dict[str, Any]]:
    base = site.url.rstrip("/")
    return [
        {"id": f"p{i}", "template_id": "demo-products", "target_url": f"{base}/product/{i}",
         "depth": 2, **fields}
        for i in ids
    ]  # fmt: skip


def unreachable_jobs(count: int) -> list[dict[str, Any]]:
    """Jobs nobody runs in these tests (the backlog the autoscaler sees)."""
    return [{"template_id": "t", "target_url": f"http://127.0.0.1:9/{i}"} for i in range(count)]


def test_exported_metrics_equal_what_the_queue_recorded(durable_queue_url: str) -> None:
    queue = JobQueue(durable_queue_url, retry_base=0.01)
    collector = DistributedMetricsCollector(queue, collection_interval=0.5)
    before = collector.collect_now()
    assert before.total_jobs == 0 and before.jobs_per_second == 0.0
    with DemoSite(categories=1, products_per_category=20, failing=[4, 9, 13], latency=0.05) as site:
        queue.submit_many(product_jobs(site, range(1, 21), max_retries=1))
        queue.submit({"id": "never", "template_id": "demo-products", "target_url": site.url})
        assert queue.cancel("never").accepted
        Worker(
            queue, worker_id="m", templates=[Template.from_file(TEMPLATE_PATH)], fetch=LOCAL,
            exit_when_done=True, concurrency=4,
        ).run(handle_signals=False)  # fmt: skip
    after = collector.collect_now()

    totals = queue.stats().totals
    assert (totals.completed, totals.failed, totals.retried, totals.cancelled) == (17, 3, 3, 1)
    assert totals.duration_count == 17 == sum(totals.duration_buckets)
    assert totals.duration_ms_sum >= 17 * 50, "each page took at least its 50 ms latency"
    by_scan = queue.recount_by_scan()
    assert (after.completed_jobs, after.failed_jobs, after.pending_jobs) == (
        by_scan["completed"], by_scan["failed"], by_scan["pending"],
    )  # fmt: skip
    assert after.total_jobs == sum(by_scan.values()) == 21
    elapsed = after.timestamp - before.timestamp
    assert after.jobs_per_second == pytest.approx(17 / elapsed)
    assert after.error_rate == pytest.approx(3 / 20)
    assert after.avg_job_duration == pytest.approx(totals.duration_ms_sum / 17 / 1000)
    assert after.avg_job_duration >= 0.05

    address = collector.serve_metrics("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        collector.stop_serving()
    for line in (
        "scraperv4_total_jobs 21",
        "scraperv4_pending_jobs 0",
        "scraperv4_queue_length 0",
        "scraperv4_jobs_completed_total 17",
        "scraperv4_jobs_failed_total 3",
        "scraperv4_jobs_retried_total 3",
        'scraperv4_jobs{status="cancelled"} 1',
        "scraperv4_job_duration_seconds_count 17",
        'scraperv4_job_duration_seconds_bucket{le="+Inf"} 17',
        f"scraperv4_error_rate {3 / 20}",
    ):
        assert line in text, f"{line!r} not in\n{text}"

    arrays = collector.history_arrays()
    assert isinstance(arrays["completed_jobs"], np.ndarray)
    assert arrays["completed_jobs"].tolist() == [0, 17]
    assert collector.history_dict()["failed_jobs"] == [0, 3]
    assert collector.get_scaling_recommendations() == {"recommendation": "insufficient_data"}
    for _ in range(3):
        collector.collect_now()
    advice = collector.get_scaling_recommendations()
    assert advice["current_state"]["avg_pending_jobs"] == 0
    # Samples with no completions have error rate 0; one has 0.15: average 0.03 < 0.1.
    assert all(r["action"] != "investigate_errors" for r in advice["recommendations"])


def test_collection_loop_and_unknown_rules(tmp_path: Path) -> None:
    queue = JobQueue(f"sqlite://{tmp_path / 'q.db'}")
    collector = DistributedMetricsCollector(queue, collection_interval=0.2)
    collector.start_collection()
    try:
        wait_for(lambda: len(collector.metrics_history) >= 3, 10, "three snapshots")
    finally:
        collector.stop_collection()
    count = len(collector.metrics_history)
    time.sleep(0.5)
    assert len(collector.metrics_history) == count, "the loop stopped"
    with pytest.raises(ConfigError, match="unknown recommendation rules"):
        DistributedMetricsCollector(queue, recommendation_rules={"nope": 1})


def _fake_cli(
    bin_dir: Path, name: str, log: Path, replicas_file: Path, pods: Optional[Path] = None
) -> None:
    """A stand-in for docker/kubectl: records argv; answers the replica query from a file
    that `scale` updates; with ``pods`` (a file naming the pods that exist, one a line),
    `kubectl annotate` fails as the real one does for any other pod."""
    script = bin_dir / name
    script.write_text(
        f"""#!{sys.executable}
import json, re, sys
argv = sys.argv[1:]
with open({str(log)!r}, "a") as out:
    out.write(json.dumps([{name!r}, *argv]) + "\\n")
state = {str(replicas_file)!r}
pods = {None if pods is None else str(pods)!r}
joined = " ".join(argv)
if joined.startswith("service inspect") or joined.startswith("get deployment"):
    print(open(state).read().strip())
elif argv[:2] == ["service", "scale"] or argv[:1] == ["scale"]:
    match = re.search(r"(?:=|--replicas=)(\\d+)$", argv[-1])
    open(state, "w").write(match.group(1))
elif argv[:2] == ["annotate", "pod"] and pods is not None:
    if argv[2] not in open(pods).read().split():
        sys.stderr.write(f'Error from server (NotFound): pods "{{argv[2]}}" not found\\n')
        sys.exit(1)
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _orchestrator(
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replicas: int,
    pods: Optional[list[str]] = None,
) -> tuple[Executor, Path, Path]:
    """The Swarm or Kubernetes executor with a fake docker/kubectl on PATH (``pods``: the
    pods that exist, for kubectl); returns it, the call log and the replica file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, replica_file = tmp_path / "calls.jsonl", tmp_path / "replicas"
    replica_file.write_text(str(replicas))
    pod_file = None
    if pods is not None:
        pod_file = tmp_path / "pods"
        pod_file.write_text("\n".join(pods))
    _fake_cli(bin_dir, "docker" if kind == "swarm" else "kubectl", log, replica_file, pod_file)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor: Executor = (
        SwarmExecutor("scraperv4_worker") if kind == "swarm"
        else KubernetesExecutor("scraperv4-worker", "scraping")
    )  # fmt: skip
    return executor, log, replica_file


def _simulated_fleet(queue: JobQueue, ids: list[str], stop: threading.Event) -> threading.Thread:
    """Workers that heartbeat, and leave when drained, as `scraperv4 worker` does."""
    for worker_id in ids:
        queue.register_worker(worker_id)

    def run() -> None:
        while not stop.is_set():
            for worker in queue.workers():
                if worker["id"] not in ids:
                    continue
                if worker["draining"]:
                    queue.unregister_worker(worker["id"])
                else:
                    queue.heartbeat(worker["id"])
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["swarm", "kubernetes"])
def test_external_executors_scale_with_the_right_commands_and_drain_idle_workers_first(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    executor, log, replicas = _orchestrator(kind, tmp_path, monkeypatch, 3)
    queue = JobQueue(redis_url, lease=30.0)
    config = {
        "min_workers": 1, "max_workers": 5, "scale_up_cooldown": 0, "scale_down_cooldown": 0,
        "scale_down_stabilization": 0, "evaluation_interval": 1,
    }  # fmt: skip
    scaler = Autoscaler(queue, executor, config, drain_timeout=10)
    queue.submit_many(unreachable_jobs(100))

    up = scaler.evaluate()
    assert (up["action"], up["current_workers"], up["target_workers"]) == ("scale_up", 3, 5)
    assert "high load" in up["reason"]
    assert replicas.read_text() == "5"

    # Five workers; two of them hold jobs. The backlog goes away: scale down to 1, idle first.
    stop = threading.Event()
    fleet = _simulated_fleet(queue, [f"w{i}" for i in range(1, 6)], stop)
    try:
        queue.claim("w1", 1)
        queue.claim("w2", 1)
        for job in queue.list("pending", limit=1000):
            queue.cancel(job.id)
        down = scaler.evaluate()
    finally:
        stop.set()
        fleet.join(timeout=5)
    assert (down["action"], down["target_workers"]) == ("scale_down", 1)
    assert "low load" in down["reason"]
    left = {w["id"] for w in queue.workers()}
    assert {"w1", "w2"} & left, "a worker holding a job is kept while idle ones go"
    assert len(left) == 1
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    scale_calls = [c for c in calls if "scale" in c]
    if kind == "swarm":
        assert scale_calls == [
            ["docker", "service", "scale", "--detach", "scraperv4_worker=5"],
            ["docker", "service", "scale", "--detach", "scraperv4_worker=1"],
        ]
    else:
        assert scale_calls == [
            ["kubectl", "scale", "deployment", "scraperv4-worker", "--namespace", "scraping",
             "--replicas=5"],
            ["kubectl", "scale", "deployment", "scraperv4-worker", "--namespace", "scraping",
             "--replicas=1"],
        ]  # fmt: skip
        annotated = sorted(c[3] for c in calls if c[1] == "annotate")
        assert annotated == sorted({"w1", "w2", "w3", "w4", "w5"} - left)
        assert all("controller.kubernetes.io/pod-deletion-cost=-1000" in c for c in calls
                   if c[1] == "annotate")  # fmt: skip
    assert replicas.read_text() == "1"


def _annotated(log: Path) -> list[str]:
    """The pods kubectl was asked to annotate, in order."""
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [c[3] for c in calls if c[1] == "annotate"]


DOWN_AT_ONCE = {
    "min_workers": 1, "max_workers": 10, "scale_up_cooldown": 0, "scale_down_cooldown": 0,
    "scale_down_stabilization": 0, "evaluation_interval": 1,
}  # fmt: skip


@pytest.mark.parametrize("kind", ["swarm", "kubernetes"])
def test_dead_workers_in_the_registry_are_never_victims_and_a_vanished_pod_is_skipped(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Five live workers (two busy); in the registry also a SIGKILLed worker that stopped
    heartbeating (``stale``: idle and the newest, the first pick if it counted) and, for
    Kubernetes, a worker still heartbeating whose pod is gone (its annotate fails)."""
    queue = JobQueue(redis_url, lease=30.0, worker_liveness=3.0)
    live = [f"w{i}" for i in range(1, 6)]
    pods = live if kind == "kubernetes" else None
    executor, log, replicas = _orchestrator(kind, tmp_path, monkeypatch, 5, pods)
    scaler = Autoscaler(queue, executor, DOWN_AT_ONCE, drain_timeout=60)
    stop = threading.Event()
    fleet_ids = [*live, "vanished"] if kind == "kubernetes" else live
    fleet = _simulated_fleet(queue, fleet_ids, stop)
    try:
        queue.submit_many(unreachable_jobs(2))
        queue.claim("w1", 1)
        queue.claim("w2", 1)
        time.sleep(0.01)  # registered last: the newest
        queue.register_worker("dead")  # then SIGKILLed: no heartbeat ever again
        wait_for(
            lambda: {w["id"]: w["state"] for w in queue.workers()}.get("dead") == "stale",
            30, "the dead worker's entry to go stale",
        )  # fmt: skip
        assert all(w["state"] == "active" for w in queue.workers() if w["id"] != "dead")
        started = time.monotonic()
        down = scaler.evaluate()
        took = time.monotonic() - started
        registry = {w["id"]: w for w in queue.workers()}
    finally:
        stop.set()
        fleet.join(timeout=5)
    # The fleet is the orchestrator's 5 replicas, whatever else the registry holds.
    assert (down["action"], down["current_workers"], down["target_workers"]) == (
        "scale_down", 5, 1,
    ), down["reason"]  # fmt: skip
    assert replicas.read_text() == "1"
    # (The queue may have expired the dead entry by now; if not, it was never drained.)
    assert "dead" not in registry or not registry["dead"]["draining"]
    # The four removed are live pods, the idle ones and one of the two busy ones.
    (kept,) = [w for w in live if w in registry]
    assert kept in ("w1", "w2"), registry
    assert took < scaler.drain_timeout, "no wait for a dead worker to leave"
    if kind == "kubernetes":
        # Each candidate tried once, the idle ones before the busy one; the vanished pod's
        # failed annotate only moved the choice on to the next.
        annotated = _annotated(log)
        busy = ({"w1", "w2"} - {kept}).pop()
        assert sorted(annotated[:-1]) == ["vanished", "w3", "w4", "w5"], annotated
        assert annotated[-1] == busy
        assert not registry["vanished"]["draining"], "not prepared, not drained"


def test_a_scale_down_whose_annotations_all_fail_still_happens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kubectl cannot annotate any pod (here: none of them is found; RBAC without
    `patch pods` looks the same): no worker is drained, the ReplicaSet picks which pods go
    (they get SIGTERM and release their jobs), and the fleet still shrinks."""
    queue = JobQueue(redis_url, lease=30.0)
    live = [f"w{i}" for i in range(1, 4)]
    executor, log, replicas = _orchestrator("kubernetes", tmp_path, monkeypatch, 3, pods=[])
    scaler = Autoscaler(queue, executor, DOWN_AT_ONCE, drain_timeout=60)
    stop = threading.Event()
    fleet = _simulated_fleet(queue, live, stop)
    try:
        with caplog.at_level(logging.WARNING, logger="scraperv4.autoscale"):
            down = scaler.evaluate()
    finally:
        stop.set()
        fleet.join(timeout=5)
    assert (down["action"], down["target_workers"]) == ("scale_down", 1), down["reason"]
    assert replicas.read_text() == "1"
    assert sorted(_annotated(log)) == live, "each live worker was tried once"
    assert not any(w["draining"] for w in queue.workers())
    assert (
        "0 of the 2 workers to remove could be drained first; kubernetes picks the rest"
        in caplog.text
    )


def test_a_failing_orchestrator_and_a_bad_config_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker here
    with pytest.raises(Exception, match="'docker' is not on PATH"):
        SwarmExecutor().workers()
    queue = JobQueue("memory://")
    with pytest.raises(ConfigError, match="scale_down_threshold"):
        Autoscaler(queue, SwarmExecutor(), {"scale_down_threshold": 50})
    with pytest.raises(ConfigError, match="scaling_config"):
        Autoscaler(queue, SwarmExecutor(), {"no_such_rule": 1})
    assert default_scaling_config()["max_workers"] == 20


def test_the_resource_manager_vetoes_a_scale_up_on_a_full_machine(tmp_path: Path) -> None:
    queue = JobQueue("memory://")
    queue.submit_many(unreachable_jobs(50))
    executor = LocalExecutor(queue.url, str(tmp_path))
    with ResourceManager({"memory_max": 0.001}) as full:
        scaler = Autoscaler(queue, executor, {"min_workers": 0, "max_workers": 4}, resources=full)
        decision = scaler.evaluate()
    assert decision["action"] == "none"
    assert "vetoed: this machine" in decision["reason"]
    assert executor.workers() == 0


def test_local_fleet_scales_up_drains_the_backlog_and_scales_back_down(
    redis_url: str, tmp_path: Path
) -> None:
    """600 jobs of ~0.5 s each; start at 1 worker, at most 6."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "demo.json").write_text(TEMPLATE_PATH.read_text())
    logs = tmp_path / "logs"
    logs.mkdir()
    queue = JobQueue(redis_url, lease=30.0)
    executor = LocalExecutor(
        redis_url, str(templates), log_dir=str(logs),
        worker_args=["--concurrency", "2", "--fixed-concurrency", "--allow-private-networks",
                     "--ignore-robots", "--heartbeat", "0.5", "--grace-period", "10"],
    )  # fmt: skip
    interval = 1.0
    config = {
        "min_workers": 1, "max_workers": 6, "scale_up_threshold": 10, "scale_down_threshold": 2,
        "scale_up_cooldown": 1, "scale_down_cooldown": 2, "evaluation_interval": interval,
        "scale_down_stabilization": 3, "scale_up_max_workers": 10,
    }  # fmt: skip
    with (
        DemoSite(categories=24, products_per_category=25, latency=0.5) as site,
        ResourceManager(NO_VETO) as resources,
    ):
        scaler = Autoscaler(queue, executor, config, resources=resources, drain_timeout=30)
        try:
            executor.scale_to(1)
            wait_for(lambda: queue.stats().active_workers == 1, 30, "the first worker")
            queue.submit_many(product_jobs(site, range(1, 601)))
            started = time.time()
            scaler.start()
            wait_for(
                lambda: any(d["action"] == "scale_up" for d in scaler.decisions), 10, "scale-up"
            )
            first_up = next(d for d in scaler.decisions if d["action"] == "scale_up")
            assert first_up["timestamp"] - started <= 2 * interval + 0.5
            assert first_up["target_workers"] == 6
            wait_for(
                lambda: queue.stats().totals.completed == 600, 180, "the backlog drained", scaler
            )
            # Down to the minimum within the same rate period (60 s): the stabilization
            # window and cooldowns hold it a few seconds, the rate limit (100 % of the
            # fleet at the period's start) not at all, however many steps it takes.
            wait_for(
                lambda: (
                    executor.workers() == 1
                    and any(d["action"] == "scale_down" for d in scaler.decisions)
                ),
                60,
                "the scale-down to min",
                scaler,
            )
        finally:
            scaler.stop()
            executor.close()
        hits = site.hits
    stats = queue.stats()
    assert stats.by_status["completed"] == 600 and stats.totals.completed == 600
    assert all(hits[f"/product/{i}"] == 1 for i in range(1, 601)), "every job ran exactly once"
    assert stats.totals.retried == 0, "no job was interrupted by scaling"
    decisions = list(scaler.decisions)
    assert all(d["reason"] for d in decisions), "every decision has its reason"
    assert not any("rate limit" in d["reason"] for d in decisions), "100 % per period, N = 10 up"
    assert max(d["target_workers"] for d in decisions) == 6
    assert all(1 <= d["target_workers"] <= 6 for d in decisions)


def test_a_backlog_on_one_site_paced_to_one_request_a_second_does_not_scale_up(
    redis_url: str, tmp_path: Path
) -> None:
    """10,000 jobs of one site limited to one request a second and one in flight, two real
    workers serving them: neither the autoscaler nor the guide's recommendations add
    workers (more could not go faster), while the same backlog unpaced does."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "demo.json").write_text(TEMPLATE_PATH.read_text())
    logs = tmp_path / "logs"
    logs.mkdir()
    queue = JobQueue(redis_url, lease=30.0)
    executor = LocalExecutor(
        redis_url, str(templates), log_dir=str(logs),
        worker_args=["--concurrency", "4", "--fixed-concurrency", "--allow-private-networks",
                     "--ignore-robots", "--heartbeat", "0.5", "--grace-period", "5"],
        stop_timeout=5,
    )  # fmt: skip
    config = {
        "min_workers": 2, "max_workers": 3, "scale_up_threshold": 10, "scale_down_threshold": 1,
        "scale_up_cooldown": 0, "evaluation_interval": 0.5,
    }  # fmt: skip
    collector = DistributedMetricsCollector(queue)
    with (
        DemoSite(categories=1, products_per_category=20) as site,
        ResourceManager(NO_VETO) as resources,
    ):
        key = queue.politeness_key(site.url)
        queue.set_domain(key, delay=1, concurrency=1)
        queue.submit_many(product_jobs(site, range(1, 10_001), max_retries=0))
        scaler = Autoscaler(queue, executor, config, resources=resources, drain_timeout=5)
        try:
            executor.scale_to(2)
            wait_for(lambda: queue.stats().active_workers == 2, 30, "two workers")
            started = time.monotonic()
            decisions = []
            while time.monotonic() - started < 6:
                decisions.append(scaler.evaluate())
                collector.collect_now()
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            done = queue.stats().totals
            ran = done.completed + done.failed
            assert 2 <= ran <= elapsed + 3, f"the workers ran the site at 1/s: {ran}"
            assert all(d["action"] != "scale_up" for d in decisions), decisions
            assert all(d["runnable"] <= 1 for d in decisions), "its limit: one in flight"
            assert executor.workers() == 2
            advice = collector.get_scaling_recommendations()
            assert advice["current_state"]["avg_pending_jobs"] > 9_900
            assert advice["current_state"]["avg_runnable_jobs"] <= 1
            assert all(r["action"] != "scale_up" for r in advice["recommendations"]), advice
            text = collector.metrics_text()
            assert "scraperv4_queue_runnable " in text and "scraperv4_domains_paced 1" in text

        finally:
            scaler.stop()
            executor.close()

    # The same backlog with no pacing (the workers stopped, so nothing drains it): every job
    # could run now, and the same rules with the same two workers scale up.
    queue.set_domain(key, delay=0, concurrency=0)
    assert queue.stats().runnable > 9_900
    for _ in range(5):
        collector.collect_now()
    advice = collector.get_scaling_recommendations()
    assert any(r["action"] == "scale_up" for r in advice["recommendations"]), advice

    class TwoWorkers:
        name = "recorded"

        def __init__(self) -> None:
            self.targets: list[int] = []

        def workers(self) -> int:
            return 2

        def worker_ids(self) -> Optional[set[str]]:
            return None

        def scale_to(self, target: int) -> None:
            self.targets.append(target)

        def before_removal(self, worker_ids: Any) -> None:
            pass

        def close(self) -> None:
            pass

    recorded = TwoWorkers()
    decision = Autoscaler(queue, recorded, config).evaluate()
    assert decision["action"] == "scale_up" and recorded.targets == [3], decision


def test_seed_autoscaler_surface(redis_url: str, tmp_path: Path) -> None:
    executor = LocalExecutor(redis_url, str(tmp_path))
    scaler = AutoScaler(redis_url, executor=executor, resources=False)
    assert scaler.scaling_config["min_workers"] == 2
    scaler.scaling_config.update(min_workers=0, max_workers=3, evaluation_interval=0.2)
    thread = scaler.start_monitoring()
    try:
        wait_for(lambda: len(scaler.decisions) >= 2, 10, "two evaluations")
    finally:
        scaler.stop_monitoring()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert all(d["action"] == "none" for d in scaler.decisions), "empty queue, no workers"
    assert scaler.executor.workers() == 0


def test_stats_plot_draws_queue_depth_workers_and_throughput(tmp_path: Path) -> None:
    queue_url = f"sqlite://{tmp_path / 'q.db'}"
    JobQueue(queue_url).submit_many(unreachable_jobs(5))
    png = tmp_path / "fleet.png"
    cli = [sys.executable, "-m", "scraperv4", "stats", "--queue", queue_url]
    done = subprocess.run(
        [*cli, "--plot", str(png), "--duration", "1", "--interval", "0.5"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stdout.count("runnable      5") >= 2, done.stdout
    # Without matplotlib: a clear message and exit code 2, not a traceback.
    blocked = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['matplotlib'] = None; from scraperv4.cli import main; "
         f"sys.exit(main(['stats', '--queue', {queue_url!r}, '--plot', 'x.png']))"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert blocked.returncode == 2
    assert "--plot needs matplotlib: pip install matplotlib" in blocked.stderr


def _fake_docker_info(bin_dir: Path, answer: str) -> None:
    """A stand-in for `docker info --format ...` on a host that answers ``answer``."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = info ] && echo '{answer}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_the_executor_follows_where_the_autoscaler_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    from scraperv4 import autoscale

    for variable in ("KUBERNETES_SERVICE_HOST", "DOCKER_HOST", "SCRAPERV4_TEMPLATES",
                     "SCRAPERV4_EXECUTOR", "SCRAPERV4_NAMESPACE"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(autoscale, "SERVICE_ACCOUNT_DIR", str(tmp_path / "serviceaccount"))
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    # A Swarm manager: `docker info` says the node is an active manager.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    _fake_docker_info(bin_dir, "active true")
    assert autoscale.detect_executor() == "swarm"
    scaler = AutoScaler(redis_url)
    assert isinstance(scaler.executor, SwarmExecutor)
    assert scaler.executor.service == "scraperv4_worker"
    # A Swarm worker node, or Docker without Swarm: not a manager.
    for answer in ("active false", "inactive false"):
        _fake_docker_info(bin_dir, answer)
        assert autoscale.detect_executor() == "local"

    # Inside a pod: the service account is mounted; the namespace is the pod's own.
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("t")
    (account / "namespace").write_text("scraping\n")
    # Only its presence counts; loopback, so that nothing could leave the machine.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    scaler = AutoScaler(redis_url)
    assert isinstance(scaler.executor, KubernetesExecutor)
    assert (scaler.executor.deployment, scaler.executor.namespace) == (
        "scraperv4-worker",
        "scraping",
    )
    monkeypatch.setenv("SCRAPERV4_NAMESPACE", "other")
    executor = AutoScaler(redis_url).executor
    assert isinstance(executor, KubernetesExecutor) and executor.namespace == "other", "set wins"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")


def test_the_guides_autoscaler_constructs_without_templates_until_a_worker_must_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    for variable in ("KUBERNETES_SERVICE_HOST", "DOCKER_HOST", "SCRAPERV4_TEMPLATES",
                     "SCRAPERV4_EXECUTOR"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker: not a Swarm manager
    scaler = AutoScaler(redis_url)  # as in the guide
    assert isinstance(scaler.executor, LocalExecutor)
    scaler.scaling_config.update(min_workers=0)
    assert scaler.evaluate()["action"] == "none", "an empty queue starts nobody"
    scaler.scaling_config.update(min_workers=1)
    with pytest.raises(ConfigError, match="templates directory"):
        scaler.evaluate()
    assert scaler.executor.workers() == 0

    # The command line the same: it starts, then says why it cannot start a worker (exit 2).
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "autoscale", "--executor", "auto", "--queue",
         redis_url, "--metrics-addr", "off", "--min-workers", "1", "--run-for", "30"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "with the local executor" in done.stderr and "templates directory" in done.stderr
