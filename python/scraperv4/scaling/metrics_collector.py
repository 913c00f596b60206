"""The scaling guide's ``DistributedMetricsCollector``, with every number real.

Differences from the seed: the status distribution comes from the queue's maintained counters
(the seed returned mock numbers), ``jobs_per_second`` and ``error_rate`` from differences of
the queue's monotonic totals between two snapshots, and ``avg_job_duration`` from the job
duration histogram the queue keeps as jobs complete (the seed hard-coded 30 s). The
Prometheus series are served by the Rust core on an HTTP ``/metrics`` endpoint
(:meth:`DistributedMetricsCollector.serve_metrics`) instead of needing ``prometheus_client``.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Optional, Union

from scraperv4 import _core
from scraperv4.queue import JobQueue

__all__ = ["DistributedMetricsCollector", "ScalingMetrics"]


@dataclasses.dataclass(frozen=True)
class ScalingMetrics:
    """One snapshot of the fleet (the guide's fields first).

    Attributes:
        timestamp: seconds since the Unix epoch.
        total_jobs: jobs stored.
        pending_jobs: jobs waiting to be claimed.
        running_jobs: jobs held by workers.
        completed_jobs: completed jobs stored.
        failed_jobs: failed jobs stored.
        active_workers: workers with a recent heartbeat.
        total_workers: registered workers.
        jobs_per_second: jobs completed per second since the previous snapshot.
        avg_job_duration: mean seconds of the jobs completed since the previous snapshot
            (with none: over the queue's life).
        error_rate: failed / (completed + failed) since the previous snapshot.
        retrying_jobs: retries waiting for their backoff.
        queue_length: the runnable backlog — what workers could start within the queue's
            ``runnable_horizon`` (jobs of a site paced to one request a second count about
            one per second of horizon, however many wait). What the autoscaler and the
            recommendations scale on.
        completed_total: jobs ever completed (monotonic).
        failed_total: jobs ever failed (monotonic).
        retried_total: retries ever scheduled (monotonic).
        paced_keys: politeness keys with their own queue (paced, limited or throttled).
        waiting_keys: of those, keys waiting for their next allowed time.
    """

    timestamp: float
    total_jobs: int
    pending_jobs: int
    running_jobs: int
    completed_jobs: int
    failed_jobs: int
    active_workers: int
    total_workers: int
    jobs_per_second: float
    avg_job_duration: float
    error_rate: float
    retrying_jobs: int = 0
    queue_length: int = 0
    completed_total: int = 0
    failed_total: int = 0
    retried_total: int = 0
    paced_keys: int = 0
    waiting_keys: int = 0

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> ScalingMetrics:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


#: The seed's recommendation rules, configurable.
DEFAULT_RECOMMENDATION_RULES: dict[str, float] = {
    "window": 5,  # snapshots averaged
    "backlog_per_worker": 10,  # scale up above this many runnable jobs per worker
    "jobs_per_suggested_worker": 8,  # suggested workers = runnable / this
    "error_rate": 0.1,  # investigate above this
    "idle_jobs_per_second": 0.1,  # scale down below this throughput ...
    "idle_min_workers": 2,  # ... with more workers than this
    "scale_down_factor": 0.7,  # suggested workers = workers * this
}


class DistributedMetricsCollector:
    """Periodic snapshots of a queue's fleet, a bounded history, and Prometheus series.

    Args:
        redis_url: the queue's URL (any backend; the guide's default is local Redis).
        collection_interval: seconds between snapshots (the guide's 30).
        history_size: snapshots kept (the guide's 24 h at 30 s: 2880).
        recommendation_rules: overrides of :data:`DEFAULT_RECOMMENDATION_RULES`.
        queue_options: options for opening the queue (e.g. ``name``).
    """

    def __init__(
        self,
        redis_url: Union[str, JobQueue] = "redis://localhost:6379/0",
        *,
        collection_interval: float = 30.0,
        history_size: int = 2880,
        recommendation_rules: Optional[dict[str, float]] = None,
        **queue_options: Any,
    ) -> None:
        self.queue = (
            redis_url if isinstance(redis_url, JobQueue) else JobQueue(redis_url, **queue_options)
        )
        self.collection_interval = collection_interval
        self.rules = {**DEFAULT_RECOMMENDATION_RULES, **(recommendation_rules or {})}
        unknown = set(self.rules) - set(DEFAULT_RECOMMENDATION_RULES)
        if unknown:
            from scraperv4.exceptions import ConfigError

            raise ConfigError(
                f"unknown recommendation rules {sorted(unknown)}; "
                f"known: {sorted(DEFAULT_RECOMMENDATION_RULES)}"
            )
        self._native = _core.ClusterMetrics(history_size)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.collecting = False

    # --- collection ------------------------------------------------------------------

    def collect_now(self) -> ScalingMetrics:
        """Take one snapshot now (also what the background loop does)."""
        return ScalingMetrics._from_native(self._native.sample(self.queue._inner))

    def start_collection(self) -> threading.Thread:
        """Collect every ``collection_interval`` seconds in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        self.collecting = True
        self._thread = threading.Thread(
            target=self._collection_loop, name="scraperv4-metrics", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop_collection(self) -> None:
        """Stop the loop (returns once the thread has finished)."""
        self.collecting = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.collection_interval + 10)
            self._thread = None

    def _collection_loop(self) -> None:
        import logging

        log = logging.getLogger("scraperv4.metrics")
        while not self._stop.is_set():
            try:
                self.collect_now()
            except Exception as error:
                log.warning("metrics collection failed: %s", error)
            self._stop.wait(self.collection_interval)

    # --- reading ---------------------------------------------------------------------

    @property
    def metrics_history(self) -> list[ScalingMetrics]:
        """The snapshots kept, oldest first."""
        return [ScalingMetrics._from_native(raw) for raw in self._native.history()]

    def history_dict(self) -> dict[str, list[Any]]:
        """The history as columns (``pandas.DataFrame(collector.history_dict())``)."""
        history = self._native.history()
        names = [f.name for f in dataclasses.fields(ScalingMetrics)]
        return {name: [row[name] for row in history] for name in names}

    def history_arrays(self) -> dict[str, Any]:
        """The history as numpy arrays, one per field (needs numpy)."""
        try:
            import numpy as np
        except ImportError as error:  # pragma: no cover - numpy is a test dependency
            raise ImportError("history_arrays needs numpy: pip install numpy") from error
        return {name: np.asarray(column) for name, column in self.history_dict().items()}

    def metrics_text(self) -> str:
        """The Prometheus text exposition of the latest snapshot."""
        return self._native.render()

    def serve_metrics(self, addr: str = "127.0.0.1:9200") -> str:
        """Serve ``/metrics`` on ``addr`` (port 0 picks one); returns ``host:port``. The
        default is this machine only; ``0.0.0.0:9200`` serves every interface."""
        return self._native.serve(addr)

    def stop_serving(self) -> None:
        """Stop the ``/metrics`` server."""
        self._native.stop_serving()

    def get_scaling_recommendations(self) -> dict[str, Any]:
        """The seed's recommendations over the last ``window`` snapshots (its rules, with
        the thresholds in :attr:`rules`).

        Unlike the seed, the backlog is the runnable one (``queue_length``), not every
        pending job: jobs waiting for a paced or throttled site are work more workers could
        not do sooner. A scale-up is recommended only with more workers than there are."""
        rules = self.rules
        window = int(rules["window"])
        history = self.metrics_history
        if len(history) < window:
            return {"recommendation": "insufficient_data"}
        recent = history[-window:]
        avg_pending = sum(m.pending_jobs for m in recent) / len(recent)
        avg_runnable = sum(m.queue_length for m in recent) / len(recent)
        avg_workers = sum(m.active_workers for m in recent) / len(recent)
        avg_jps = sum(m.jobs_per_second for m in recent) / len(recent)
        avg_error = sum(m.error_rate for m in recent) / len(recent)
        recommendations: list[dict[str, Any]] = []
        suggested = int(avg_runnable / rules["jobs_per_suggested_worker"])
        if avg_runnable > avg_workers * rules["backlog_per_worker"] and suggested > avg_workers:
            recommendations.append(
                {
                    "action": "scale_up",
                    "reason": "High queue backlog",
                    "suggested_workers": suggested,
                }
            )
        if avg_error > rules["error_rate"]:
            recommendations.append(
                {
                    "action": "investigate_errors",
                    "reason": f"High error rate: {avg_error:.1%}",
                    "priority": "high",
                }
            )
        if avg_jps < rules["idle_jobs_per_second"] and avg_workers > rules["idle_min_workers"]:
            recommendations.append(
                {
                    "action": "scale_down",
                    "reason": "Low throughput with excess workers",
                    "suggested_workers": max(
                        int(rules["idle_min_workers"]),
                        int(avg_workers * rules["scale_down_factor"]),
                    ),
                }
            )
        return {
            "current_state": {
                "avg_pending_jobs": avg_pending,
                "avg_runnable_jobs": avg_runnable,
                "avg_active_workers": avg_workers,
                "avg_jobs_per_second": avg_jps,
                "avg_error_rate": avg_error,
            },
            "recommendations": recommendations,
        }
