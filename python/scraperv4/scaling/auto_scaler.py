"""The scaling guide's ``AutoScaler``, scaling on the real backlog and draining gracefully.

Differences from the seed: the decision engine is the Rust policy (the seed's thresholds and
cooldowns, plus stabilization windows and rate limits; scale on the runnable backlog, not on
delayed retries); the executor comes from where it runs (Kubernetes inside a pod, Swarm on
a Swarm manager, else local ``scraperv4 worker`` processes, which need templates only once
one must start; or pass ``executor=``); scale-down drains the chosen workers and waits for
them instead of killing them mid-job.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from scraperv4.autoscale import (
    Autoscaler,
    Executor,
    KubernetesExecutor,
    LocalExecutor,
    SwarmExecutor,
    executor_from_settings,
)
from scraperv4.settings import AutoscalerSettings, with_overrides
from scraperv4.settings import load as load_settings

__all__ = [
    "AutoScaler",
    "KubernetesExecutor",
    "LocalExecutor",
    "SwarmExecutor",
    "start_auto_scaler",
]

_SEED_KEYS = (
    "min_workers", "max_workers", "scale_up_threshold", "scale_down_threshold",
    "scale_up_cooldown", "scale_down_cooldown", "evaluation_interval",
)  # fmt: skip


class AutoScaler:
    """The seed's surface: ``scaling_config`` (a dict you may change), ``start_monitoring``,
    ``stop_monitoring``.

    Args:
        redis_url: the queue's URL (default: the ``queue_url`` setting, e.g. ``$REDIS_URL``,
            else ``redis://localhost:6379/0``).
        executor: how to change the fleet (default: the ``executor`` setting, ``auto``:
            Kubernetes in a pod, Swarm on a manager, else local worker processes with the
            templates of ``$SCRAPERV4_TEMPLATES``).
        **options: more :class:`~scraperv4.autoscale.Autoscaler` options.
    """

    def __init__(
        self,
        redis_url: Optional[str] = None,
        executor: Optional[Executor] = None,
        **options: Any,
    ) -> None:
        settings = load_settings(AutoscalerSettings, overrides={"queue_url": redis_url})
        url = settings.queue_url or "redis://localhost:6379/0"
        self.queue = settings.open_queue(url)
        rules = settings.scaling_rules()
        #: The seed's keys, from the settings (the seed's defaults unless set); changes
        #: apply at the next evaluation.
        self.scaling_config: dict[str, Any] = {k: rules[k] for k in _SEED_KEYS}
        self.executor = executor or executor_from_settings(
            with_overrides(settings, {"queue_url": url})
        )
        self._autoscaler = Autoscaler(
            self.queue, self.executor, self.scaling_config, settings=settings, **options
        )
        self._applied = dict(self.scaling_config)
        self.last_scale_action = 0.0
        self.running = False

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """Every decision so far with its reason (bounded)."""
        return list(self._autoscaler.decisions)

    def evaluate(self) -> dict[str, Any]:
        """One evaluation now (what the monitoring loop does)."""
        if self.scaling_config != self._applied:
            self._autoscaler.reconfigure(self.scaling_config)
            self._applied = dict(self.scaling_config)
        decision = self._autoscaler.evaluate()
        if decision["action"] != "none":
            self.last_scale_action = time.time()
        return decision

    def start_monitoring(self) -> threading.Thread:
        """Evaluate every ``evaluation_interval`` seconds in a daemon thread."""
        self.running = True
        self._autoscaler.resume()
        thread = threading.Thread(target=self._monitoring_loop, daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def stop_monitoring(self) -> None:
        """Stop evaluating; the workers keep running (call ``executor.close()`` to stop
        local ones)."""
        self.running = False
        self._autoscaler.stop()

    def _monitoring_loop(self) -> None:
        import logging

        while self.running:
            try:
                self.evaluate()
            except Exception as error:
                logging.getLogger("scraperv4.autoscale").warning("auto-scaling error: %s", error)
            if self._autoscaler.sleep(float(self.scaling_config["evaluation_interval"])):
                break


def start_auto_scaler() -> None:
    """The seed's entry point: the settings (``REDIS_URL``, ...), run until Ctrl-C."""
    scaler = AutoScaler()
    scaler.start_monitoring()
    try:
        while scaler.running:
            time.sleep(1)
    except KeyboardInterrupt:
        scaler.stop_monitoring()
