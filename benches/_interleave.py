"""Interleaved measurement with CPU accounting, for the benchmarks that compare against a peer.

This machine's speed can swing 2x within minutes: every variant runs once per round, in
turn (A B A B ...), the ratio is taken within each round, and its spread is reported. CPU
time of the whole process (all threads: ``time.process_time``) is recorded next to wall
time, so a multi-threaded run's scaling can be read even when other work shares the cores.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Callable


def measure(
    variants: dict[str, Callable[[], object]], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """``{name: {"wall": [...], "cpu": [...]}}`` in seconds, one entry per round."""
    timings: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": []} for name in variants
    }
    for _ in range(rounds):
        for name, run in variants.items():
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            timings[name]["wall"].append(time.perf_counter() - wall)
            timings[name]["cpu"].append(time.process_time() - cpu)
    return timings


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per round, ``numerator / denominator`` (peer time / our time: how many times faster)."""
    return [n / d for n, d in zip(numerator, denominator)]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def spread(values: list[float], digits: int = 3) -> str:
    """``median (min-max)``."""
    ordered = sorted(values)
    return f"{median(values):,.{digits}f} ({ordered[0]:,.{digits}f}-{ordered[-1]:,.{digits}f})"


def load() -> str:
    """The 1, 5 and 15 minute load averages and the CPU count (context for the figures)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
