"""The coordinator against its own OpenAPI document: schemathesis generates requests for
every operation (a bounded number of examples) and checks the answers against the document
on a live server over a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scraperv4.coordinator import Coordinator
from scraperv4.queue import JobQueue
from support.redis_server import RedisServer

DOCUMENT = Path(__file__).resolve().parent.parent / "src" / "coordinator" / "openapi.json"
TOKEN = "openapi-token-0123456789"
schema = schemathesis.openapi.from_path(DOCUMENT)


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    with RedisServer() as redis:
        queue = JobQueue(redis.url)
        queue.submit_many(
            {"id": f"j{i}", "target_url": f"http://127.0.0.1:9/{i}"} for i in range(5)
        )
        with Coordinator(queue, "127.0.0.1:0", token=TOKEN) as server:
            yield f"http://{server.address}"


def test_the_served_document_is_the_tested_one(live: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{live}/api/openapi.json", timeout=5) as response:  # noqa: S310
        assert json.loads(response.read()) == json.loads(DOCUMENT.read_text())


@schema.exclude(path="/ws").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case, live: str) -> None:
    case.call_and_validate(
        base_url=live,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=10,
    )
