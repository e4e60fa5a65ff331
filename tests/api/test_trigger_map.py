"""The trigger map: one read per workflow per time to live, forgotten at once in the process that
made a change, and never older than `ALTLAS_TRIGGER_CACHE_SECONDS` in another API process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.settings import ApiSettings
from api.store.crypto import SecretBox, generate_secret_key
from api.store.database import Database
from api.store.tenants import create_tenant
from api.store.workflows import create_workflow, delete_workflow, set_enabled
from api.triggers import TriggerMap
from pieces.base import TriggerStrategy
from pieces.registry import default_registry
from tests.conftest import free_port
from tests.support.api import ApiClient, running_api, unique
from tests.support.databases import copy_sqlite_file, sqlite_url

TTL = 1.0


def hooked(workflow_id: str) -> dict[str, object]:
    return {
        "format": 1,
        "id": workflow_id,
        "triggers": [
            {"id": "in", "type": "webhook", "verify": {"scheme": "none"}},
            {"id": "nightly", "type": "schedule", "cron": "0 2 * * *"},
        ],
        "nodes": [{"id": "a", "piece": "core.transform", "input": {"value": 1}}],
    }


async def test_found_once_per_time_to_live_and_forgotten_on_request(database: Database) -> None:
    box = SecretBox(generate_secret_key())
    triggers = TriggerMap(database, box, default_registry(), ttl=60)
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_workflow(session, tenant_id="acme", definition=hooked("orders"))

    found = await triggers.find("acme", "orders", "in", strategy=TriggerStrategy.WEBHOOK)
    assert found is not None
    assert (found.workflow_id, found.version, found.trigger.id) == ("orders", 1, "in")
    # The schedule trigger is no webhook; an unknown trigger is nothing.
    assert (
        await triggers.find("acme", "orders", "nightly", strategy=TriggerStrategy.WEBHOOK) is None
    )
    assert await triggers.find("acme", "orders", "nope", strategy=TriggerStrategy.WEBHOOK) is None

    async with database.session() as session:  # as another process would
        await set_enabled(session, tenant_id="acme", workflow_id="orders", enabled=False)
    cached = await triggers.find("acme", "orders", "in", strategy=TriggerStrategy.WEBHOOK)
    assert cached is not None, "within its time to live the entry is served from memory"
    triggers.forget("acme", "orders")
    assert await triggers.find("acme", "orders", "in", strategy=TriggerStrategy.WEBHOOK) is None

    async with database.session() as session:
        await set_enabled(session, tenant_id="acme", workflow_id="orders", enabled=True)
    triggers.forget("acme")  # the whole tenant (a secret changed)
    assert await triggers.find("acme", "orders", "in", strategy=TriggerStrategy.WEBHOOK)
    async with database.session() as session:
        await delete_workflow(session, tenant_id="acme", workflow_id="orders")
    expiring = TriggerMap(database, box, default_registry(), ttl=0)
    assert await expiring.find("acme", "orders", "in", strategy=TriggerStrategy.WEBHOOK) is None


@pytest.fixture
def two_api_processes(
    prefect_server: str, tmp_path: Path, sqlite_template: Path
) -> Iterator[tuple[ApiClient, str, str, str]]:
    """Two API servers on one store (each with its own trigger map): the operator client of
    the first, and both base URLs."""
    url = sqlite_url(copy_sqlite_file(sqlite_template, tmp_path / "altlas.db"))
    common = {
        "home": tmp_path,
        "database_url": url,
        "secret_key": generate_secret_key(),
        "admin_key": "operator-" + unique("key"),
        "trigger_cache_seconds": TTL,
    }
    first = ApiSettings(**common, api_port=free_port())  # type: ignore[arg-type]
    second = ApiSettings(**common, api_port=free_port())  # type: ignore[arg-type]
    pool = unique("pool-cache")
    with running_api(first, work_pool=pool) as a, running_api(second, work_pool=pool) as b:
        yield ApiClient(a, first.admin_key), a, b, pool


def test_another_process_stops_serving_a_disabled_workflow_within_the_bound(
    two_api_processes: tuple[ApiClient, str, str, str],
) -> None:
    admin, first, second, _ = two_api_processes
    tenant = unique("cache")
    created = admin.post("/v1/tenants", json={"id": tenant})
    assert created.status_code == 201, created.text
    client = ApiClient(first, created.json()["api_key"])
    workflow_id = unique("wf")
    assert client.post("/v1/workflows", json=hooked(workflow_id)).status_code == 201
    hook = f"/v1/hooks/{tenant}/{workflow_id}/in"

    def deliver(base: str) -> int:
        return httpx.post(base + hook, json={"n": 1}, timeout=30).status_code

    assert deliver(second) == 202  # the second process has read (and keeps) the trigger
    assert client.post(f"/v1/workflows/{workflow_id}/disable").status_code == 200
    disabled_at = time.monotonic()
    assert deliver(first) == 404  # the process that made the change: at once
    while (answer := deliver(second)) == 202:
        time.sleep(0.05)
    assert answer == 404
    assert time.monotonic() - disabled_at <= TTL + 0.5, "served a disabled workflow too long"

    assert client.post(f"/v1/workflows/{workflow_id}/enable").status_code == 200
    assert deliver(first) == 202
    time.sleep(TTL)
    assert deliver(second) == 202
    assert client.delete(f"/v1/workflows/{workflow_id}").status_code == 204
    deleted_at = time.monotonic()
    while (answer := deliver(second)) == 202:
        time.sleep(0.05)
    assert answer == 404
    assert time.monotonic() - deleted_at <= TTL + 0.5, "served a deleted workflow too long"
