"""Submit, claim and complete jobs on the embedded queue (no Redis needed).

Run: .venv/bin/python examples/queue_roundtrip.py
"""

from __future__ import annotations

import tempfile

from scraperv4.queue import JobQueue, JobSpec

with tempfile.TemporaryDirectory() as tmp:
    queue = JobQueue(f"sqlite://{tmp}/queue.db", lease=30)
    queue.submit_many(
        JobSpec(f"https://example.com/page/{i}", template_id="product", priority=i % 3)
        for i in range(10)
    )
    jobs = queue.claim("example-worker", limit=4)
    print("claimed:", [(job.target_url, job.priority, job.attempt) for job in jobs])
    acks = queue.complete_many(jobs, results=[{"items": 5}] * len(jobs))
    print("completed:", sum(ack.accepted for ack in acks))
    print(queue.stats())
