"""Scale a worker fleet on its real backlog, and shrink it without losing or repeating a job.

The decision engine is Rust (``_core.ScalingPolicy``: the scaling guide's thresholds and
cooldowns plus HPA-style stabilization windows and rate limits; every decision carries its
reason). This module runs it every ``evaluation_interval`` and acts through an executor:

- :class:`LocalExecutor` spawns and stops ``scraperv4 worker`` processes on this machine;
  the resource manager can veto a scale-up when the machine is full.
- :class:`SwarmExecutor` runs ``docker service scale SERVICE=N``.
- :class:`KubernetesExecutor` runs ``kubectl scale deployment NAME --replicas=N``.

The ``executor`` setting ``auto`` (the default) picks one from where the autoscaler runs
(:func:`detect_executor`): Kubernetes inside a pod, Swarm on a Swarm manager, else local.

Scale-down is graceful for all of them: the workers to remove are chosen among the live
ones (registered with a recent heartbeat: a dead worker's registry entry is never a victim;
idle ones first), the executor prepares each (Kubernetes: a low pod-deletion cost), their
drain flag is set in the queue, the autoscaler waits for them to finish their in-flight jobs
and unregister, and only then asks the executor for the smaller fleet. A worker the executor
cannot prepare (its pod is gone) is skipped for the next candidate; if too few could be
prepared, the orchestrator picks the rest. The queue's fencing tokens make that safe: a worker
stopped anyway (SIGTERM) releases its jobs, and none is recorded twice.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Optional, Protocol

from scraperv4 import _core
from scraperv4.exceptions import ConfigError, ScraperV4Error
from scraperv4.queue import JobQueue
from scraperv4.settings import AutoscalerSettings, resolve

__all__ = [
    "Autoscaler",
    "Executor",
    "KubernetesExecutor",
    "LocalExecutor",
    "SwarmExecutor",
    "default_scaling_config",
    "detect_executor",
    "executor_from_settings",
]

log = logging.getLogger("scraperv4.autoscale")


def default_scaling_config() -> dict[str, Any]:
    """The rules and their defaults (the scaling guide's values, HPA's for the rest)."""
    config: dict[str, Any] = _core.ScalingPolicy("{}").config()
    return config


class ExecutorError(ScraperV4Error):
    """An executor could not change or read the fleet (a failed ``docker``/``kubectl``)."""


class Executor(Protocol):
    """How the autoscaler changes the fleet."""

    name: str

    def workers(self) -> int:
        """Workers the fleet has now (as the orchestrator counts them)."""
        ...

    def worker_ids(self) -> Optional[set[str]]:
        """Queue worker ids of this fleet, or ``None`` when every registered worker is."""
        ...

    def scale_to(self, target: int) -> None:
        """Make the fleet ``target`` workers (after the removed ones were drained)."""
        ...

    def before_removal(self, worker_ids: Sequence[str]) -> None:
        """Called with workers chosen for removal, before they are drained; raises
        :class:`ExecutorError` when they cannot be (the autoscaler then picks others)."""
        ...

    def close(self) -> None:
        """Release what the executor holds."""
        ...


def _run(command: list[str], timeout: float = 60.0) -> str:
    binary = shutil.which(command[0])
    if binary is None:
        raise ExecutorError(f"{command[0]!r} is not on PATH: cannot run {' '.join(command)}")
    try:
        done = subprocess.run(
            [binary, *command[1:]], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ExecutorError(f"{' '.join(command)} did not finish in {timeout} s") from error
    if done.returncode != 0:
        raise ExecutorError(
            f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[:500]}"
        )
    return done.stdout


class SwarmExecutor:
    """Scales a Docker Swarm service (``docker service scale``).

    Args:
        service: the service name (the guide's ``scraperv4_worker``).
    """

    name = "swarm"

    def __init__(self, service: str = "scraperv4_worker") -> None:
        self.service = service

    def workers(self) -> int:
        out = _run(
            ["docker", "service", "inspect", self.service, "--format",
             "{{.Spec.Mode.Replicated.Replicas}}"]
        )  # fmt: skip
        try:
            return int(out.strip())
        except ValueError as error:
            raise ExecutorError(f"docker service inspect said {out.strip()!r}") from error

    def worker_ids(self) -> Optional[set[str]]:
        return None

    def scale_to(self, target: int) -> None:
        _run(["docker", "service", "scale", "--detach", f"{self.service}={target}"])

    def before_removal(self, worker_ids: Sequence[str]) -> None:
        """Swarm picks which tasks to remove: drained ones exit on their own first."""

    def close(self) -> None:
        pass


class KubernetesExecutor:
    """Scales a Kubernetes Deployment (``kubectl scale``).

    Workers must use their pod name as ``WORKER_ID`` (the Deployment sets it from
    ``metadata.name``): the pods chosen for removal get a low
    ``controller.kubernetes.io/pod-deletion-cost`` so the ReplicaSet removes those.

    Args:
        deployment: the Deployment's name.
        namespace: its namespace.
    """

    name = "kubernetes"

    def __init__(self, deployment: str = "scraperv4-worker", namespace: str = "default") -> None:
        self.deployment = deployment
        self.namespace = namespace

    def workers(self) -> int:
        out = _run(
            ["kubectl", "get", "deployment", self.deployment, "--namespace", self.namespace,
             "--output", "jsonpath={.spec.replicas}"]
        )  # fmt: skip
        try:
            return int(out.strip())
        except ValueError as error:
            raise ExecutorError(f"kubectl get deployment said {out.strip()!r}") from error

    def worker_ids(self) -> Optional[set[str]]:
        return None

    def scale_to(self, target: int) -> None:
        _run(
            ["kubectl", "scale", "deployment", self.deployment, "--namespace", self.namespace,
             f"--replicas={target}"]
        )  # fmt: skip

    def before_removal(self, worker_ids: Sequence[str]) -> None:
        for pod in worker_ids:
            _run(
                ["kubectl", "annotate", "pod", pod, "--namespace", self.namespace, "--overwrite",
                 "controller.kubernetes.io/pod-deletion-cost=-1000"]
            )  # fmt: skip

    def close(self) -> None:
        pass


class LocalExecutor:
    """Runs ``scraperv4 worker`` processes on this machine.

    Args:
        queue_url: the queue the workers serve (``REDIS_URL``).
        templates_dir: the workers' templates (``--templates``); needed only once a worker
            must be started (a :class:`~scraperv4.exceptions.ConfigError` then).
        worker_args: more ``scraperv4 worker`` arguments (e.g. ``["--concurrency", "4"]``).
        queue_name: the queue's name.
        log_dir: where each worker's stderr goes (default: discarded).
        stop_timeout: after the drain timeout, seconds between SIGTERM and SIGKILL.
    """

    name = "local"

    def __init__(
        self,
        queue_url: str,
        templates_dir: Optional[str] = None,
        *,
        worker_args: Sequence[str] = (),
        queue_name: str = "default",
        log_dir: Optional[str] = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.queue_url = queue_url
        self.templates_dir = templates_dir
        self.worker_args = list(worker_args)
        self.queue_name = queue_name
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._prefix = f"auto-{os.getpid()}-"

    def _reap(self) -> None:
        for worker_id, process in list(self.processes.items()):
            if process.poll() is not None:
                log.info("worker %s exited with %s", worker_id, process.returncode)
                del self.processes[worker_id]

    def workers(self) -> int:
        self._reap()
        return len(self.processes)

    def worker_ids(self) -> Optional[set[str]]:
        self._reap()
        return set(self.processes)

    def scale_to(self, target: int) -> None:
        self._reap()
        while len(self.processes) < target:
            self._spawn()
        # Scale-down: the chosen workers were drained and have left; any still running
        # past the drain timeout are stopped by PID (SIGTERM: they release their jobs).
        surplus = sorted(self.processes)[: max(len(self.processes) - target, 0)]
        for worker_id in surplus:
            self._stop(worker_id)

    def stop_workers(self, worker_ids: Sequence[str]) -> None:
        """SIGTERM these workers (by PID) and wait for them; SIGKILL after the timeout."""
        for worker_id in worker_ids:
            self._stop(worker_id)

    def before_removal(self, worker_ids: Sequence[str]) -> None:
        pass

    def _spawn(self) -> None:
        if not self.templates_dir:
            # Only now: an autoscaler that never starts a local worker needs no templates.
            raise ConfigError(
                "the local executor needs a templates directory (--templates or "
                "SCRAPERV4_TEMPLATES) for the workers it starts"
            )
        worker_id = f"{self._prefix}{uuid.uuid4().hex[:8]}"
        argv = [
            sys.executable, "-m", "scraperv4", "worker", "--templates", self.templates_dir,
            "--worker-id", worker_id, "--queue-name", self.queue_name, "--metrics-addr", "off",
            *self.worker_args,
        ]  # fmt: skip
        env = {**os.environ, "REDIS_URL": self.queue_url}
        stderr: Any = subprocess.DEVNULL
        if self.log_dir:
            stderr = open(os.path.join(self.log_dir, f"{worker_id}.log"), "wb")  # noqa: SIM115
        try:
            self.processes[worker_id] = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        log.info("started worker %s (pid %d)", worker_id, self.processes[worker_id].pid)

    def _stop(self, worker_id: str) -> None:
        process = self.processes.pop(worker_id, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        """Stop every worker this executor started (graceful, by PID)."""
        for worker_id in list(self.processes):
            self._stop(worker_id)


#: A pod's service account: its token, CA and namespace (mounted by Kubernetes).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _in_kubernetes_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(
        os.path.join(SERVICE_ACCOUNT_DIR, "token")
    )


def _on_swarm_manager() -> bool:
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return False
    try:
        state = _run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
            timeout=15.0,
        )
    except ExecutorError as error:
        log.info("not a Swarm manager: %s", error)
        return False
    return state.split() == ["active", "true"]


def detect_executor() -> str:
    """The executor for where this process runs: ``kubernetes`` inside a pod (a service
    account is mounted), ``swarm`` on a Swarm manager (``docker info`` says so), else
    ``local``."""
    if _in_kubernetes_pod():
        return "kubernetes"
    if _on_swarm_manager():
        return "swarm"
    return "local"


def _pod_namespace(settings: AutoscalerSettings) -> str:
    """The ``namespace`` setting, or the pod's own namespace when it was not set."""
    path = os.path.join(SERVICE_ACCOUNT_DIR, "namespace")
    if settings.from_default("namespace") and os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or settings.namespace
    return settings.namespace


def executor_from_settings(settings: AutoscalerSettings) -> Executor:
    """The executor the ``executor`` setting names (``auto``: :func:`detect_executor`),
    configured by the other settings."""
    kind = detect_executor() if settings.executor == "auto" else settings.executor
    if kind != settings.executor:
        log.info("executor auto: %s", kind)
    if kind == "swarm":
        return SwarmExecutor(settings.service)
    if kind == "kubernetes":
        return KubernetesExecutor(settings.deployment, _pod_namespace(settings))
    return LocalExecutor(
        settings.require_queue_url(),
        settings.templates,
        worker_args=settings.worker_args,
        queue_name=settings.queue_name,
    )


class Autoscaler:
    """Evaluates the fleet every ``evaluation_interval`` seconds and acts on the decision.

    The rules and options not given here come from the settings model (the ``autoscaler``
    role of :mod:`scraperv4.settings`: ``SCRAPERV4_<NAME>`` variables, the config file, the
    defaults).

    Args:
        queue: the queue whose backlog drives the fleet.
        executor: how the fleet is changed (see the module docs).
        config: overrides of the rules (:func:`default_scaling_config` names them; unknown
            keys are errors).
        resources: a :class:`~scraperv4.resources.ResourceManager` whose verdict can veto a
            scale-up (default: one with the guide's thresholds, for the local executor
            only, unless the ``resource_veto`` setting is off; ``False``: no veto).
        drain_timeout: longest wait for drained workers to leave before they are stopped.
        decision_log: decisions kept in :attr:`decisions`.
        settings: loaded :class:`~scraperv4.settings.AutoscalerSettings` to start from.
    """

    def __init__(
        self,
        queue: JobQueue,
        executor: Executor,
        config: Optional[dict[str, Any]] = None,
        *,
        resources: Any = None,
        drain_timeout: Optional[float] = None,
        decision_log: int = 1000,
        settings: Optional[AutoscalerSettings] = None,
    ) -> None:
        overrides = {"drain_timeout": drain_timeout}
        settings = resolve(AutoscalerSettings, settings, overrides)
        self.settings = settings
        self.queue = queue
        self.executor = executor
        self._config = {**settings.scaling_rules(), **(config or {})}
        self._policy = _core.ScalingPolicy(json.dumps(self._config))
        if resources is None and executor.name == "local" and settings.resource_veto:
            from scraperv4.resources import ResourceManager

            resources = ResourceManager()
        self.resources = resources or None
        self.drain_timeout = settings.drain_timeout
        self.decisions: collections.deque[dict[str, Any]] = collections.deque(maxlen=decision_log)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def from_settings(
        cls, settings: AutoscalerSettings, *, queue: Optional[JobQueue] = None
    ) -> Autoscaler:
        """The autoscaler ``settings`` describe (what ``scraperv4 autoscale`` runs), with
        its executor."""
        return cls(
            queue or settings.open_queue(), executor_from_settings(settings), settings=settings
        )

    @property
    def config(self) -> dict[str, Any]:
        """The rules in use."""
        return dict(self._config)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Apply new rules (checked first; the decision history starts again)."""
        merged = {**self._config, **config}
        self._policy = _core.ScalingPolicy(json.dumps(merged))
        self._config = merged

    def _veto(self) -> Optional[str]:
        if self.resources is None:
            return None
        availability = self.resources.check_resource_availability()
        if availability["can_scale_up"]:
            return None
        reasons = availability["limiting_factors"] or ["resources exhausted"]
        return "this machine: " + "; ".join(str(r) for r in reasons)

    def evaluate(self) -> dict[str, Any]:
        """One evaluation: observe, decide, act. Returns the decision (also logged)."""
        stats = self.queue.stats()
        workers = self.executor.workers()
        decision: dict[str, Any] = self._policy.decide(
            time.monotonic(), stats.runnable, workers, self._veto()
        )
        decision["timestamp"] = time.time()
        decision["runnable"] = stats.runnable
        level = logging.INFO if decision["action"] != "none" else logging.DEBUG
        log.log(
            level,
            "%s: %d -> %d workers (%s)",
            decision["action"], workers, decision["target_workers"], decision["reason"],
        )  # fmt: skip
        self.decisions.append(decision)
        if decision["action"] == "scale_up":
            self.executor.scale_to(decision["target_workers"])
        elif decision["action"] == "scale_down":
            self._scale_down(workers, decision["target_workers"])
        return decision

    def _scale_down(self, current: int, target: int) -> None:
        count = current - target
        victims: list[str] = []
        for worker_id in self._candidates():
            if len(victims) == count:
                break
            try:
                self.executor.before_removal([worker_id])
            except ExecutorError as error:
                log.warning("worker %s cannot be removed gracefully, skipped: %s", worker_id, error)
            else:
                victims.append(worker_id)
        if len(victims) < count:
            log.warning(
                "%d of the %d workers to remove could be drained first; %s picks the rest",
                len(victims), count, self.executor.name,
            )  # fmt: skip
        if victims:
            for worker_id in victims:
                self.queue.drain(worker_id)
            deadline = time.monotonic() + self.drain_timeout
            # A victim that dies while draining has left too (its registry entry goes stale).
            while any(w["id"] in victims and w["state"] == "active" for w in self.queue.workers()):
                if time.monotonic() >= deadline:
                    log.warning(
                        "drained workers did not all leave within %.0f s", self.drain_timeout
                    )
                    break
                if self._stop.wait(0.2):
                    break
            if isinstance(self.executor, LocalExecutor):
                # Exactly the drained ones go (they have exited or get SIGTERM now).
                self.executor.stop_workers(victims)
        self.executor.scale_to(target)

    def _candidates(self) -> list[str]:
        """The workers that may be removed, best first: live ones of this fleet (a registry
        entry without a recent heartbeat is a dead worker's, not a worker), not already
        draining, idle first (fewest jobs held), then the newest."""
        ours = self.executor.worker_ids()
        candidates = [
            w for w in self.queue.workers()
            if w["state"] == "active" and not w["draining"] and (ours is None or w["id"] in ours)
        ]  # fmt: skip
        candidates.sort(key=lambda w: (len(w["jobs"]), -w["registered_at"]))
        return [w["id"] for w in candidates]

    def start(self) -> threading.Thread:
        """Evaluate in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="scraperv4-autoscaler", daemon=True)
        self._thread.start()
        return self._thread

    def run(self) -> None:
        """Evaluate every ``evaluation_interval`` seconds until :meth:`stop` (errors are
        logged and the loop goes on: an unreachable queue is not a reason to stop)."""
        while not self._stop.is_set():
            try:
                self.evaluate()
            except (ScraperV4Error, OSError) as error:
                log.warning("autoscaler evaluation failed: %s", error)
            self._stop.wait(float(self._config["evaluation_interval"]))

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until :meth:`stop`; true when stopped."""
        return self._stop.wait(seconds)

    def resume(self) -> None:
        """Undo :meth:`stop` for a loop driven from outside (with :meth:`sleep`)."""
        self._stop.clear()

    def stop(self) -> None:
        """Stop evaluating (the fleet stays as it is)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.drain_timeout + 30)
        self._thread = None
