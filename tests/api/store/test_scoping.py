"""Tenant scoping: no repository function gives one tenant another tenant's data or lets it
change that data. Tenant `acme` owns everything; `beta` asks for it by its exact ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from api.store.audit import add_audit_record, list_audit_records
from api.store.database import Database
from api.store.errors import NotFound
from api.store.models import NodeStatus, RunState, TriggerType
from api.store.runs import (
    create_run,
    get_run,
    list_node_runs,
    list_runs,
    reserve_idempotency_key,
    update_run_state,
    upsert_node_run,
    workflow_stats,
)
from api.store.secrets import (
    all_secret_ciphertexts,
    delete_secret,
    get_secret_ciphertext,
    list_secrets,
    put_secret,
)
from api.store.tenants import (
    create_api_key,
    create_tenant,
    get_api_key,
    list_api_keys,
    revoke_api_key,
)
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

WORKFLOW = {"format": 1, "id": "secret-flow", "nodes": [], "tags": ["t"]}
KEY_ID = "kaaaaaaaaaaaaaaa"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
async def owned(database: Database) -> str:
    """Everything of `acme`; returns its run id. `beta` exists and owns nothing."""
    run_id = str(uuid.uuid4())
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_tenant(session, tenant_id="beta")
        await create_api_key(session, tenant_id="acme", key_id=KEY_ID, key_hash="h" * 64)
        await create_workflow(session, tenant_id="acme", definition=WORKFLOW)
        await put_secret(session, tenant_id="acme", name="token", ciphertext=b"c")
        await create_run(
            session,
            run_id=run_id,
            tenant_id="acme",
            workflow_id="secret-flow",
            version=1,
            trigger_type=TriggerType.API,
            state=RunState.RUNNING,
        )
        await upsert_node_run(session, run_id=run_id, node_id="a", status=NodeStatus.RUNNING)
        await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="secret-flow",
            key="idem",
            request_digest="a" * 64,
            run_id=run_id,
        )
        await add_audit_record(session, tenant_id="acme", command="startRun")
    return run_id


async def test_reads_never_return_another_tenants_rows(database: Database, owned: str) -> None:
    run_id = owned
    async with database.session() as session:
        assert await get_api_key(session, tenant_id="beta", key_id=KEY_ID) is None
        assert await list_api_keys(session, tenant_id="beta") == []
        assert await get_workflow(session, tenant_id="beta", workflow_id="secret-flow") is None
        assert (
            await get_current_version(session, tenant_id="beta", workflow_id="secret-flow") is None
        )
        assert (
            await get_workflow_version(
                session, tenant_id="beta", workflow_id="secret-flow", version=1
            )
            is None
        )
        assert await list_workflows(session, tenant_id="beta") == ([], 0)
        assert await list_workflows(session, tenant_id="beta", tag="t") == ([], 0)
        assert (
            await list_current_versions(session, tenant_id="beta", workflow_ids=["secret-flow"])
            == {}
        )
        assert await list_enabled_workflows(session, tenant_id="beta") == []
        assert await list_versions(session, tenant_id="beta", workflow_id="secret-flow") == (
            [],
            0,
        )
        assert await get_secret_ciphertext(session, tenant_id="beta", name="token") is None
        assert await list_secrets(session, tenant_id="beta") == ([], 0)
        assert await all_secret_ciphertexts(session, tenant_id="beta") == {}
        assert await get_run(session, tenant_id="beta", run_id=run_id) is None
        assert await list_runs(session, tenant_id="beta") == ([], 0)
        assert await list_runs(session, tenant_id="beta", workflow_id="secret-flow") == ([], 0)
        assert await list_node_runs(session, tenant_id="beta", run_id=run_id) == []
        assert await list_audit_records(session, tenant_id="beta") == ([], 0)
        stats = await workflow_stats(
            session, tenant_id="beta", workflow_id="secret-flow", since=LONG_AGO
        )
        assert sum(stats.counts.values()) == 0

        # The same calls for the owner do find everything (so the above is not vacuous).
        assert await get_api_key(session, tenant_id="acme", key_id=KEY_ID) is not None
        assert (await list_workflows(session, tenant_id="acme", tag="t"))[1] == 1
        assert await all_secret_ciphertexts(session, tenant_id="acme") == {"token": b"c"}
        assert await get_run(session, tenant_id="acme", run_id=run_id) is not None
        assert len(await list_node_runs(session, tenant_id="acme", run_id=run_id)) == 1
        assert (await list_audit_records(session, tenant_id="acme"))[1] == 1
        owner_stats = await workflow_stats(
            session, tenant_id="acme", workflow_id="secret-flow", since=LONG_AGO
        )
        assert owner_stats.counts[RunState.RUNNING] == 1


async def test_writes_never_touch_another_tenants_rows(database: Database, owned: str) -> None:
    run_id = owned
    async with database.session() as session:
        assert not await revoke_api_key(session, tenant_id="beta", key_id=KEY_ID)
        assert (
            await set_enabled(session, tenant_id="beta", workflow_id="secret-flow", enabled=False)
            is None
        )
        with pytest.raises(NotFound):
            await update_workflow(
                session,
                tenant_id="beta",
                workflow_id="secret-flow",
                definition={**WORKFLOW, "name": "hijacked"},
            )
        assert not await delete_workflow(session, tenant_id="beta", workflow_id="secret-flow")
        assert not await delete_secret(session, tenant_id="beta", name="token")
        assert not await update_run_state(
            session, run_id=run_id, state=RunState.CANCELLING, tenant_id="beta"
        )
        # beta's own idempotency key of the same name is its own.
        reservation = await reserve_idempotency_key(
            session,
            tenant_id="beta",
            workflow_id="secret-flow",
            key="idem",
            request_digest="b" * 64,
            run_id="beta-run",
        )
        assert reservation.is_new
        # beta's secret of the same name does not replace acme's.
        await put_secret(session, tenant_id="beta", name="token", ciphertext=b"beta's")

    async with database.session() as session:
        key = await get_api_key(session, tenant_id="acme", key_id=KEY_ID)
        current = await get_current_version(session, tenant_id="acme", workflow_id="secret-flow")
        run = await get_run(session, tenant_id="acme", run_id=run_id)
        assert await get_secret_ciphertext(session, tenant_id="acme", name="token") == b"c"
    assert key is not None
    assert key.revoked_at is None
    assert current is not None
    assert current[0].enabled
    assert (current[0].current_version, current[1].definition) == (1, WORKFLOW)
    assert run is not None
    assert run.state is RunState.RUNNING
