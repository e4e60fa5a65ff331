"""Fixtures for the deployment sync and the warm runner: the session's Prefect server, a work
pool per test module, a Prefect client, and the real local HTTP service (it counts requests).

Workflows and tenants get names unique to each test (`unique`), so the tests of a module share
one pool without seeing each other's deployments.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import free_port
from tests.support.service import RunningService, running_service

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient


def unique(prefix: str) -> str:
    """A workflow or tenant id no other test uses (ids match `^[a-z][a-z0-9-]{0,62}$`)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def work_pool(prefect_server: str) -> str:
    """A work pool of this test module (created once)."""
    from prefect import get_client

    from deployments.sync import ensure_work_pool

    name = unique("pool")
    async with get_client() as client:
        await ensure_work_pool(client, name)
    return name


@pytest.fixture
async def client(prefect_server: str) -> AsyncIterator[PrefectClient]:
    from prefect import get_client

    async with get_client() as prefect:
        yield prefect


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    """The test HTTP service; `http.request` may reach 127.0.0.1 while it runs."""
    from pieces.settings import get_piece_settings

    previous = os.environ.get("ALTLAS_HTTP_ALLOW_PRIVATE")
    os.environ["ALTLAS_HTTP_ALLOW_PRIVATE"] = "127.0.0.1/32"
    get_piece_settings.cache_clear()
    with running_service(free_port()) as running:
        yield running
    if previous is None:
        os.environ.pop("ALTLAS_HTTP_ALLOW_PRIVATE", None)
    else:
        os.environ["ALTLAS_HTTP_ALLOW_PRIVATE"] = previous
    get_piece_settings.cache_clear()


def chain_definition(workflow_id: str, **extra: Any) -> dict[str, Any]:
    """Three `core.transform` nodes in a row."""
    return {
        "format": 1,
        "id": workflow_id,
        "name": f"Chain {workflow_id}",
        "description": "three transforms in a row",
        "nodes": [
            {"id": "first", "piece": "core.transform", "input": {"value": 1}},
            {
                "id": "second",
                "piece": "core.transform",
                "input": {"value": "{{ nodes.first.output + 1 }}"},
            },
            {
                "id": "third",
                "piece": "core.transform",
                "input": {"value": "{{ nodes.second.output + 1 }}"},
            },
        ],
        "edges": [{"from": "first", "to": "second"}, {"from": "second", "to": "third"}],
        "output": "{{ nodes.third.output }}",
        **extra,
    }
