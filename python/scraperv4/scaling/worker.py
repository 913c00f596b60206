"""The scaling guide's ``ScrapingWorker`` and ``ScrapingService``, on the Rust worker runtime.

A script written for the guide runs unchanged except its import lines::

    from scraperv4.scaling.worker import ScrapingWorker, ScrapingService

What changed underneath, on purpose:

- ``ScrapingWorker.start()`` runs :class:`scraperv4.worker.Worker`: concurrent jobs in one
  process, leases renewed by heartbeats, results recorded atomically with the completion.
- SIGTERM / SIGINT no longer ``sys.exit(0)`` mid-job: the worker stops claiming, lets
  in-flight jobs finish within the grace period, releases the rest and returns from
  ``start()``.
- Templates are looked up by ``template_id`` in ``templates_dir`` (default
  ``$SCRAPERV4_TEMPLATES``, else ``./templates``).
- Everything else comes from the settings model like for ``scraperv4 worker``
  (``docs/configuration.md``): ``ScrapingWorker(worker_id, redis_url)`` in a container
  picks up ``SCRAPERV4_ALLOW_PRIVATE_NETWORKS=true``, ``SCRAPERV4_CONCURRENCY=64``, ...;
  ``/metrics``, ``/health`` and ``/ready`` are served when ``SCRAPERV4_METRICS_ADDR`` (or
  ``metrics_addr``) is set, as for any worker built in Python.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from scraperv4.extract import Template, TemplateRegistry
from scraperv4.fetch import FetchConfig
from scraperv4.queue import JobQueue
from scraperv4.settings import WorkerSettings
from scraperv4.settings import load as load_settings
from scraperv4.worker import Worker, crawl_job_id, default_worker_id, export_jsonl

__all__ = ["ScrapingService", "ScrapingWorker", "ServiceJob"]

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def _templates_dir(templates_dir: Optional[str]) -> str:
    return templates_dir or os.environ.get("SCRAPERV4_TEMPLATES") or "templates"


class ScrapingWorker:
    """A fleet worker, constructed as in the guide.

    Args:
        worker_id: default ``$WORKER_ID`` (or ``$SCRAPERV4_WORKER_ID``), else
            ``<hostname>-<pid>``: unique per container or pod replica (the guide's
            ``worker-<pid>`` was the same in every container, where the worker has the same
            PID).
        redis_url: default ``$SCRAPERV4_QUEUE_URL`` / ``$REDIS_URL`` (or the config file),
            else ``redis://localhost:6379/0``.
        templates_dir: directory of templates (see the module docs).
        **options: any :class:`scraperv4.worker.Worker` option or worker setting by name
            (``concurrency``, ``allow_private_networks``, ...); they win over the
            environment.
    """

    def __init__(
        self,
        worker_id: Optional[str] = None,
        redis_url: Optional[str] = None,
        *,
        templates_dir: Optional[str] = None,
        **options: Any,
    ) -> None:
        settings = load_settings(
            WorkerSettings,
            overrides={"worker_id": worker_id, "queue_url": redis_url, "templates": templates_dir},
        )
        self.worker_id = settings.worker_id or default_worker_id()
        self._worker = Worker(
            settings.queue_url or DEFAULT_REDIS_URL,
            worker_id=self.worker_id,
            templates_dir=settings.templates or "templates",
            **options,
        )
        self.queue = self._worker.queue
        self.running = False

    def start(self) -> dict[str, Any]:
        """Work until :meth:`stop`, a signal or a drain request; returns the final progress."""
        print(f"Starting worker: {self.worker_id}")
        self.running = True
        try:
            return self._worker.run()
        finally:
            self.running = False

    def stop(self) -> None:
        """Stop gracefully (in-flight jobs finish within the grace period)."""
        self._worker.stop()


@dataclass
class ServiceJob:
    """A job created by :meth:`ScrapingService.create_job`."""

    id: str
    name: str
    template_id: str
    target_url: str
    config: dict[str, Any] = field(default_factory=dict)


class ScrapingService:
    """Scrape one job on this machine (the service the guide's worker calls).

    ``start_scraping_job`` runs in the background (the template's links and pagination are
    followed, as in a crawl); ``get_job_status`` reports ``status``, ``items_scraped`` and
    ``error``.

    Args:
        templates: a :class:`~scraperv4.extract.TemplateRegistry`, a directory, or a list of
            templates (default ``$SCRAPERV4_TEMPLATES`` / ``./templates``).
        fetch: fetch settings.
        concurrency: pages fetched at once per job.
    """

    def __init__(
        self,
        templates: Union[TemplateRegistry, str, list[Template], None] = None,
        *,
        fetch: Optional[FetchConfig] = None,
        concurrency: int = 8,
    ) -> None:
        if isinstance(templates, TemplateRegistry):
            self._templates = [templates.get(i) for i in templates.ids()]
        elif isinstance(templates, list):
            self._templates = list(templates)
        else:
            registry = TemplateRegistry(_templates_dir(templates))
            self._templates = [registry.get(i) for i in registry.ids()]
        self._fetch = fetch
        self._concurrency = concurrency
        self._jobs: dict[str, tuple[ServiceJob, JobQueue, Optional[threading.Thread]]] = {}
        self._lock = threading.Lock()

    def create_job(
        self, name: str, template_id: str, target_url: str, config: Optional[dict[str, Any]] = None
    ) -> ServiceJob:
        """Register a job; nothing is fetched until :meth:`start_scraping_job`."""
        job = ServiceJob(str(uuid.uuid4()), name, template_id, target_url, dict(config or {}))
        queue = JobQueue("memory://")
        queue.submit(
            {
                "id": crawl_job_id(job.id, target_url),
                "name": name,
                "template_id": template_id,
                "target_url": target_url,
                "config": job.config,
                "crawl_id": job.id,
            }
        )
        with self._lock:
            self._jobs[job.id] = (job, queue, None)
        return job

    def start_scraping_job(self, job_id: str) -> dict[str, Any]:
        """Start scraping in the background; returns the status at once."""
        with self._lock:
            job, queue, thread = self._jobs[job_id]
            if thread is None:
                worker = Worker(
                    queue,
                    worker_id=f"service-{job_id}",
                    templates=self._templates,
                    fetch=self._fetch,
                    concurrency=self._concurrency,
                    exit_when_done=True,
                    idle_poll=0.05,
                )
                thread = threading.Thread(
                    target=worker.run, kwargs={"handle_signals": False}, daemon=True
                )
                self._jobs[job_id] = (job, queue, thread)
                thread.start()
        return self.get_job_status(job_id)

    def get_job_status(self, job_id: str) -> dict[str, Any]:
        """``{"status", "items_scraped", "error", "pages"}`` of a job (KeyError if unknown)."""
        job, queue, thread = self._jobs[job_id]
        root = queue.get(crawl_job_id(job.id, job.target_url))
        stats = queue.stats().by_status
        running = thread is not None and thread.is_alive()
        if thread is None:
            status = "pending"
        elif running:
            status = "running"
        else:
            status = "failed" if root is not None and root.status.value == "failed" else "completed"
        items = 0
        if not running and thread is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as scratch:
                items = export_jsonl(queue, os.path.join(scratch, "items.jsonl"))
        return {
            "status": status,
            "items_scraped": items,
            "error": root.error if root is not None and status == "failed" else None,
            "pages": stats.get("completed", 0),
        }
