"""Stored workflows and their immutable versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from api.store.crypto import json_digest
from api.store.database import Database
from api.store.errors import AlreadyExists, NotFound
from api.store.models import TriggerType
from api.store.runs import create_run, get_run
from api.store.tenants import create_tenant
from api.store.workflows import (
    create_workflow,
    delete_workflow,
    get_current_version,
    get_workflow,
    get_workflow_version,
    list_current_versions,
    list_enabled_workflows,
    list_versions,
    list_workflows,
    set_enabled,
    update_workflow,
)


def definition(workflow_id: str = "order-sync", **top: Any) -> dict[str, Any]:
    return {
        "format": 1,
        "id": workflow_id,
        "nodes": [{"id": "a", "piece": "core.transform", "input": {"value": 1}}],
        "edges": [],
        **top,
    }


@pytest.fixture
async def tenants(database: Database) -> Database:
    async with database.session() as session:
        for tenant_id in ("acme", "beta"):
            await create_tenant(session, tenant_id=tenant_id)
    return database


async def test_create_stores_version_1_enabled_with_listed_fields(tenants: Database) -> None:
    body = definition(name="Order sync", description="Syncs orders.", tags=["sales", "nightly"])
    async with tenants.session() as session:
        workflow, version = await create_workflow(session, tenant_id="acme", definition=body)
    assert (workflow.tenant_id, workflow.id, workflow.current_version, workflow.enabled) == (
        "acme",
        "order-sync",
        1,
        True,
    )
    assert (workflow.name, workflow.description, workflow.tags) == (
        "Order sync",
        "Syncs orders.",
        ["sales", "nightly"],
    )
    assert workflow.created_at == workflow.updated_at == version.created_at
    assert (version.version, version.definition, version.digest) == (1, body, json_digest(body))

    async with tenants.session() as session:
        loaded = await get_workflow(session, tenant_id="acme", workflow_id="order-sync")
        current = await get_current_version(session, tenant_id="acme", workflow_id="order-sync")
        first = await get_workflow_version(
            session, tenant_id="acme", workflow_id="order-sync", version=1
        )
        assert (
            await get_workflow_version(
                session, tenant_id="acme", workflow_id="order-sync", version=2
            )
            is None
        )
        assert await get_workflow(session, tenant_id="acme", workflow_id="missing") is None
    assert loaded is not None
    assert loaded.name == "Order sync"
    assert current is not None
    assert current[1].definition == body
    assert list(current[1].definition) == list(body)  # the definition as written, key order kept
    assert first is not None
    assert first.digest == version.digest


async def test_a_definition_without_name_is_listed_under_its_id(tenants: Database) -> None:
    async with tenants.session() as session:
        workflow, _ = await create_workflow(session, tenant_id="acme", definition=definition())
    assert (workflow.name, workflow.description, workflow.tags) == ("order-sync", None, [])


async def test_a_taken_id_raises_already_exists_per_tenant(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition(name="first"))
        # The same id in another tenant is another workflow.
        await create_workflow(session, tenant_id="beta", definition=definition(name="beta's"))
    with pytest.raises(AlreadyExists) as raised:
        async with tenants.session() as session:
            await create_workflow(session, tenant_id="acme", definition=definition(name="again"))
    assert (raised.value.kind, raised.value.key) == ("workflow", "order-sync")
    async with tenants.session() as session:
        acme = await get_workflow(session, tenant_id="acme", workflow_id="order-sync")
        beta = await get_workflow(session, tenant_id="beta", workflow_id="order-sync")
    assert acme is not None
    assert beta is not None
    assert (acme.name, beta.name) == ("first", "beta's")


async def test_update_makes_a_new_version_and_identical_definitions_make_none(
    tenants: Database,
) -> None:
    original = definition(name="v1", tags=["a"])
    async with tenants.session() as session:
        created, _ = await create_workflow(session, tenant_id="acme", definition=original)

    # The same JSON value with keys in another order is not a change.
    reordered = dict(reversed(list(copy.deepcopy(original).items())))
    async with tenants.session() as session:
        same, same_version, made = await update_workflow(
            session, tenant_id="acme", workflow_id="order-sync", definition=reordered
        )
    assert not made
    assert (same.current_version, same_version.version) == (1, 1)
    assert same.updated_at == created.updated_at

    changed = definition(name="v2", tags=["b", "c"], description="second")
    async with tenants.session() as session:
        workflow, version, made = await update_workflow(
            session, tenant_id="acme", workflow_id="order-sync", definition=changed
        )
    assert made
    assert (workflow.current_version, version.version) == (2, 2)
    assert (workflow.name, workflow.description, workflow.tags) == ("v2", "second", ["b", "c"])
    assert workflow.updated_at > created.updated_at
    assert workflow.created_at == created.created_at
    assert version.definition == changed

    async with tenants.session() as session:
        old = await get_workflow_version(
            session, tenant_id="acme", workflow_id="order-sync", version=1
        )
        current = await get_current_version(session, tenant_id="acme", workflow_id="order-sync")
        versions, count = await list_versions(session, tenant_id="acme", workflow_id="order-sync")
    assert old is not None
    assert old.definition == original  # versions are immutable
    assert current is not None
    assert current[1].definition == changed
    assert [(v.version, v.digest) for v in versions] == [
        (2, json_digest(changed)),
        (1, json_digest(original)),
    ]
    assert count == 2


async def test_updating_a_missing_workflow_raises_not_found(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="beta", definition=definition())
    with pytest.raises(NotFound):
        async with tenants.session() as session:
            await update_workflow(
                session, tenant_id="acme", workflow_id="order-sync", definition=definition()
            )


async def test_concurrent_updates_take_distinct_version_numbers(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition())

    async def update(index: int) -> int:
        async with tenants.session() as session:
            _, version, made = await update_workflow(
                session,
                tenant_id="acme",
                workflow_id="order-sync",
                definition=definition(name=f"edit {index}"),
            )
            assert made
            return version.version

    numbers = await asyncio.gather(*(update(index) for index in range(5)))
    assert sorted(numbers) == [2, 3, 4, 5, 6]
    async with tenants.session() as session:
        workflow = await get_workflow(session, tenant_id="acme", workflow_id="order-sync")
        versions, count = await list_versions(session, tenant_id="acme", workflow_id="order-sync")
    assert workflow is not None
    assert workflow.current_version == 6
    assert count == 6
    assert [v.version for v in versions] == [6, 5, 4, 3, 2, 1]


async def test_list_versions_pages_newest_first(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition())
        for index in range(4):
            await update_workflow(
                session,
                tenant_id="acme",
                workflow_id="order-sync",
                definition=definition(name=str(index)),
            )
    async with tenants.session() as session:
        page, count = await list_versions(
            session, tenant_id="acme", workflow_id="order-sync", limit=2, offset=1
        )
        past_end, past_count = await list_versions(
            session, tenant_id="acme", workflow_id="order-sync", limit=2, offset=9
        )
    assert [v.version for v in page] == [4, 3]
    assert count == 5
    assert (past_end, past_count) == ([], 5)


async def test_list_workflows_filters_by_tag_and_enabled_and_pages(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("c-flow", tags=[]))
        await create_workflow(
            session, tenant_id="acme", definition=definition("a-flow", tags=["sales", "eu"])
        )
        await create_workflow(
            session, tenant_id="acme", definition=definition("b-flow", tags=["sales-eu"])
        )
        await create_workflow(
            session, tenant_id="acme", definition=definition("d-flow", tags=["eu", "sales"])
        )
        await create_workflow(
            session, tenant_id="beta", definition=definition("a-flow", tags=["sales"])
        )
        await set_enabled(session, tenant_id="acme", workflow_id="d-flow", enabled=False)

    async def ids(**filters: Any) -> tuple[list[str], int]:
        async with tenants.session() as session:
            rows, count = await list_workflows(session, tenant_id="acme", **filters)
        return [row.id for row in rows], count

    assert await ids() == (["a-flow", "b-flow", "c-flow", "d-flow"], 4)
    # An exact element of the tags array: "sales-eu" does not match "sales".
    assert await ids(tag="sales") == (["a-flow", "d-flow"], 2)
    assert await ids(tag="sales-eu") == (["b-flow"], 1)
    assert await ids(tag="nope") == ([], 0)
    assert await ids(enabled=False) == (["d-flow"], 1)
    assert await ids(enabled=True) == (["a-flow", "b-flow", "c-flow"], 3)
    assert await ids(tag="eu", enabled=True) == (["a-flow"], 1)
    assert await ids(limit=2, offset=1) == (["b-flow", "c-flow"], 4)
    assert await ids(limit=0) == ([], 4)


async def test_list_current_versions_gives_each_current_definition(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("one"))
        await create_workflow(session, tenant_id="acme", definition=definition("two"))
        await update_workflow(
            session, tenant_id="acme", workflow_id="two", definition=definition("two", name="2")
        )
        await create_workflow(session, tenant_id="beta", definition=definition("three"))
    async with tenants.session() as session:
        versions = await list_current_versions(
            session, tenant_id="acme", workflow_ids=["one", "two", "three", "zero"]
        )
        assert await list_current_versions(session, tenant_id="acme", workflow_ids=[]) == {}
    assert {key: (v.version, v.definition.get("name")) for key, v in versions.items()} == {
        "one": (1, None),
        "two": (2, "2"),
    }


async def test_set_enabled(tenants: Database) -> None:
    async with tenants.session() as session:
        created, _ = await create_workflow(session, tenant_id="acme", definition=definition())
    async with tenants.session() as session:
        disabled = await set_enabled(
            session, tenant_id="acme", workflow_id="order-sync", enabled=False
        )
        missing = await set_enabled(session, tenant_id="acme", workflow_id="nope", enabled=False)
    assert disabled is not None
    assert not disabled.enabled
    assert disabled.updated_at > created.updated_at
    assert missing is None
    async with tenants.session() as session:
        loaded = await get_workflow(session, tenant_id="acme", workflow_id="order-sync")
        assert loaded is not None
        assert not loaded.enabled
        enabled = await set_enabled(
            session, tenant_id="acme", workflow_id="order-sync", enabled=True
        )
    assert enabled is not None
    assert enabled.enabled


async def test_delete_removes_versions_and_keeps_runs(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition())
        await update_workflow(
            session, tenant_id="acme", workflow_id="order-sync", definition=definition(name="2")
        )
        run = await create_run(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            version=2,
            trigger_type=TriggerType.API,
        )
    async with tenants.session() as session:
        assert await delete_workflow(session, tenant_id="acme", workflow_id="order-sync")
        assert not await delete_workflow(session, tenant_id="acme", workflow_id="order-sync")
    async with tenants.session() as session:
        assert await get_workflow(session, tenant_id="acme", workflow_id="order-sync") is None
        assert (
            await get_workflow_version(
                session, tenant_id="acme", workflow_id="order-sync", version=1
            )
            is None
        )
        assert await list_versions(session, tenant_id="acme", workflow_id="order-sync") == ([], 0)
        kept = await get_run(session, tenant_id="acme", run_id=run.id)
    assert kept is not None
    assert (kept.workflow_id, kept.version) == ("order-sync", 2)

    # The id can be used again, starting over at version 1.
    async with tenants.session() as session:
        again, version = await create_workflow(session, tenant_id="acme", definition=definition())
    assert (again.current_version, version.version) == (1, 1)


async def test_list_enabled_workflows_of_one_or_all_tenants(tenants: Database) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("x"))
        await create_workflow(session, tenant_id="acme", definition=definition("off"))
        await create_workflow(session, tenant_id="beta", definition=definition("a"))
        await update_workflow(
            session, tenant_id="beta", workflow_id="a", definition=definition("a", name="new")
        )
        await set_enabled(session, tenant_id="acme", workflow_id="off", enabled=False)
    async with tenants.session() as session:
        everyone = await list_enabled_workflows(session)
        acme = await list_enabled_workflows(session, tenant_id="acme")
    assert [(w.tenant_id, w.id, v.version, v.definition.get("name")) for w, v in everyone] == [
        ("acme", "x", 1, None),
        ("beta", "a", 2, "new"),
    ]
    assert [(w.tenant_id, w.id) for w, _ in acme] == [("acme", "x")]
