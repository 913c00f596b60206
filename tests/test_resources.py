"""The resource manager: real readings, cgroup limits, thresholds, history, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scraperv4.exceptions import ConfigError
from scraperv4.resources import DEFAULT_THRESHOLDS, ResourceManager
from scraperv4.scaling.resource_manager import ResourceManager as SeedResourceManager

SEED_KEYS = {
    "cpu_usage",
    "memory_usage",
    "disk_usage",
    "load_average",
    "can_scale_up",
    "limiting_factors",
}


def test_readings_on_this_machine_are_sane(tmp_path: Path) -> None:
    with ResourceManager(disk_path=tmp_path, sample_interval=0.2) as manager:
        status = manager.check_resource_availability()
    assert status.keys() >= SEED_KEYS
    for key in ("cpu_usage", "memory_usage", "disk_usage"):
        assert 0.0 <= status[key] <= 100.0, (key, status)
    assert status["load_average"] >= 0.0
    assert status["cpu_cores"] > 0
    assert 0 < status["memory_available_bytes"] <= status["memory_total_bytes"]
    assert status["limits_source"] in {"host", "cgroup v1", "cgroup v2"}
    assert status["can_scale_up"] is (not status["limiting_factors"])


def test_calls_do_not_block_for_a_cpu_reading() -> None:
    with ResourceManager() as manager:
        manager.check_resource_availability()  # the one wait for the first reading
        started = time.monotonic()
        for _ in range(20):
            manager.check_resource_availability()
            manager.get_optimal_worker_count(2, 100)
        elapsed = time.monotonic() - started
    # The seed blocked one second per call; 40 calls here must not come near that.
    assert elapsed < 1.0, elapsed


def write_v2_tree(root: Path, *, quota: str, limit: int, current: int) -> tuple[Path, Path]:
    cgroup = root / "cgroup"
    group = cgroup / "kubepods" / "pod" / "c"
    group.mkdir(parents=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")
    (group / "cpu.max").write_text(quota)
    (group / "cpu.stat").write_text("usage_usec 1000\n")
    (group / "memory.max").write_text(f"{limit}\n")
    (group / "memory.current").write_text(f"{current}\n")
    (group / "memory.stat").write_text("inactive_file 0\n")
    membership = root / "membership"
    membership.write_text("0::/kubepods/pod/c\n")
    return cgroup, membership


def write_v1_tree(root: Path, *, quota: int, limit: int, usage: int) -> tuple[Path, Path]:
    cgroup = root / "cgroup"
    cpu, memory = cgroup / "cpu,cpuacct" / "docker" / "x", cgroup / "memory" / "docker" / "x"
    cpu.mkdir(parents=True)
    memory.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "cpuacct.usage").write_text("5000000\n")
    (memory / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (memory / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (memory / "memory.stat").write_text("total_inactive_file 0\n")
    membership = root / "membership"
    membership.write_text("6:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n")
    return cgroup, membership


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_limits_replace_the_host_totals(tmp_path: Path, version: int) -> None:
    limit = 256 * 1024 * 1024
    if version == 2:
        root, membership = write_v2_tree(
            tmp_path, quota="100000 100000\n", limit=limit, current=limit * 9 // 10
        )
    else:
        root, membership = write_v1_tree(tmp_path, quota=100000, limit=limit, usage=limit * 9 // 10)
    # The host's load average is the machine's, not the container's (and CI machines are
    # loaded): out of this test.
    with ResourceManager(
        {"load_max": 1e9},
        sample_interval=0.2,
        _cgroup_root=str(root),
        _cgroup_membership=str(membership),
    ) as manager:
        status = manager.check_resource_availability()
        optimal = manager.get_optimal_worker_count(current_workers=1, pending_jobs=100)
    assert status["limits_source"] == f"cgroup v{version}"
    assert status["cpu_cores"] == 1.0
    assert status["memory_total_bytes"] == limit
    assert status["memory_usage"] == pytest.approx(90.0, abs=0.01)
    assert status["can_scale_up"] is False
    assert status["limiting_factors"] == ["Memory usage too high: 90.0%"]
    assert optimal == 1, "over the memory threshold: keep the current count"


def test_the_worker_count_uses_the_container_not_the_host(tmp_path: Path) -> None:
    root, membership = write_v2_tree(
        tmp_path, quota="100000 100000\n", limit=4 * 1024**3, current=0
    )
    with ResourceManager(
        {"load_max": 1e9},  # the host's load (CI machines are loaded) is out of this test
        sample_interval=0.2,
        cores_per_worker=0.5,
        _cgroup_root=str(root),
        _cgroup_membership=str(membership),
    ) as manager:
        # 1 core / 0.5 per worker = 2, whatever the host has; the backlog wants 21.
        assert manager.get_optimal_worker_count(1, 100) == 2


def test_a_tiny_disk_threshold_is_a_limiting_factor(tmp_path: Path) -> None:
    with ResourceManager({"disk_max": 0.0001}, disk_path=tmp_path) as manager:
        status = manager.check_resource_availability()
    assert status["can_scale_up"] is False
    assert any(f.startswith("Disk usage too high: ") for f in status["limiting_factors"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": {"cpu_max": -5}}, "cpu_max"),
        ({"thresholds": {"memory_max": 120}}, "memory_max"),
        ({"thresholds": {"load_max": 0}}, "load_max"),
        ({"thresholds": {"cpu": 50}}, "unknown resource threshold option"),
        ({"min_workers": 4, "max_workers": 2}, "max_workers"),
        ({"cores_per_worker": 0}, "cores_per_worker"),
        ({"memory_per_worker_mb": -1}, "memory_per_worker_mb"),
        ({"sample_interval": 0.01}, "sample_interval"),
        ({"disk_path": "/no/such/dir"}, "disk_path"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ResourceManager(**kwargs)  # type: ignore[arg-type]


def test_history_is_numpy_columns() -> None:
    with ResourceManager(sample_interval=0.2, history_size=3) as manager:
        manager.check_resource_availability()
        time.sleep(1.0)
        history = manager.history()
    assert set(history) == {"timestamp", "cpu_usage", "memory_usage", "disk_usage", "load_average"}
    lengths = {len(column) for column in history.values()}
    assert lengths == {3}, "bounded by history_size"
    assert all(column.dtype == np.float64 for column in history.values())
    assert np.all(np.diff(history["timestamp"]) > 0)


def test_the_seed_names_work() -> None:
    manager = SeedResourceManager()
    try:
        assert manager.resource_thresholds == dict(DEFAULT_THRESHOLDS)
        status = manager.check_resource_availability()
        optimal = manager.get_optimal_worker_count(3, 50)
    finally:
        manager.close()
    assert status.keys() >= SEED_KEYS
    assert optimal >= 1


def test_cli_prints_the_snapshot_as_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "resources", "--json", "--disk-path", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout)
    assert SEED_KEYS | {"optimal_worker_count"} <= report.keys()
    assert done.returncode == (0 if report["can_scale_up"] else 1)
