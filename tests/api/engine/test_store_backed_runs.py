"""End to end: the real engine on the session's Prefect server, with the store-backed run
services (`api.store.ports`), on SQLite and PostgreSQL.

A tenant, a secret and workflows are stored; a run row is created as the API would; the workflow
executes with `store_run_services(...)` under the row's id; then the run row and its node rows are
read back, and everything Prefect holds about the run is searched for the secret's value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from api.store.crypto import SecretBox, generate_secret_key
from api.store.database import Database
from api.store.models import RunState, TriggerType
from api.store.ports import StoreLoop, store_run_services
from api.store.runs import create_run, get_run, list_node_runs
from api.store.secrets import put_secret
from api.store.tenants import create_tenant
from api.store.workflows import create_workflow, update_workflow
from interpreter.run.flow import RunOutcome, named_flow
from interpreter.run.launch import call_flow
from interpreter.run.services import RunServices, using_services
from pieces.registry import default_registry
from tests.api.conftest import FAST_COMMITS
from tests.support.definitions import edge, node

pytestmark = pytest.mark.usefixtures("engine")

PLANTED = "tok-5e2d-planted-in-the-store"


def doubler(factor: int) -> dict[str, Any]:
    """The child workflow; version 1 doubles, version 2 triples (and reads the secret too)."""
    nodes = [node("multiply", value=f"{{{{ params.n * {factor} }}}}")]
    if factor == 3:
        nodes.append(node("peek", value="child sees {{ secrets.token }}"))
    return {
        "format": 1,
        "id": "doubler",
        "name": "Doubler",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": nodes,
        "edges": [],
        "output": "{{ nodes.multiply.output }}",
    }


GREETER: dict[str, Any] = {
    "format": 1,
    "id": "greeter",
    "name": "Greeter",
    "parameters": {"type": "object", "properties": {"who": {"type": "string"}}},
    "nodes": [
        node("greet", value="Bearer {{ secrets.token }} for {{ params.who }}"),
        # Fails while rendering, with the secret's value in Jinja's message; the run goes on.
        node("leak", value="{{ params[secrets.token] }}", on_error="continue"),
        node(
            "child_now",
            "core.subworkflow",
            input={"workflow_id": "doubler", "parameters": {"n": 21}},
        ),
        node(
            "child_v1",
            "core.subworkflow",
            input={"workflow_id": "doubler", "version": "1", "parameters": {"n": 21}},
        ),
    ],
    "edges": [edge("greet", "leak"), edge("leak", "child_now"), edge("child_now", "child_v1")],
    "output": {
        "greeting": "{{ nodes.greet.output }}",
        "now": "{{ nodes.child_now.output }}",
        "v1": "{{ nodes.child_v1.output }}",
    },
}


@pytest.fixture
async def services(database: Database, database_url: str) -> AsyncIterator[RunServices]:
    """Tenant `acme` with the secret `token` and the workflows `greeter` (v1) and `doubler`
    (v1 doubles, v2 triples); the worker's run services on their own connection."""
    box = SecretBox(generate_secret_key())
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_tenant(session, tenant_id="beta")
        await put_secret(session, tenant_id="acme", name="token", ciphertext=box.encrypt(PLANTED))
        await create_workflow(session, tenant_id="acme", definition=GREETER)
        await create_workflow(session, tenant_id="acme", definition=doubler(2))
        # Another tenant's workflow of the same id must never be the one called.
        await create_workflow(session, tenant_id="beta", definition=doubler(1000))
    async with database.session() as session:
        await update_workflow(
            session, tenant_id="acme", workflow_id="doubler", definition=doubler(3)
        )
    own = Database(database_url, **FAST_COMMITS.get(database_url.split(":", 1)[0], {}))
    yield store_run_services(own, box, default_registry(), record_max_bytes=65536)
    await StoreLoop.of(own).aclose()


async def execute(
    services: RunServices, definition: dict[str, Any], run_id: str, **parameters: Any
) -> RunOutcome:
    with using_services(services):
        state = await call_flow(
            named_flow(definition["id"]),
            run_name=definition["name"],
            definition=definition,
            parameters=parameters,
            tenant="acme",
            version="1",
            run_id=run_id,
        )
    outcome = await state.aresult(raise_on_failure=False)
    assert isinstance(outcome, RunOutcome)
    return outcome


async def test_a_stored_workflow_runs_with_the_store_services(
    database: Database, services: RunServices
) -> None:
    async with database.session() as session:
        row = await create_run(
            session,
            tenant_id="acme",
            workflow_id="greeter",
            version=1,
            trigger_type=TriggerType.API,
            parameters={"who": "Ada"},
        )
    outcome = await execute(services, GREETER, row.id, who="Ada")
    assert outcome.result.state == "completed", outcome.result.error

    async with database.session() as session:
        run = await get_run(session, tenant_id="acme", run_id=row.id)
        nodes = await list_node_runs(session, tenant_id="acme", run_id=row.id)
    assert run is not None
    assert run.state is RunState.COMPLETED
    assert run.output == {"greeting": "Bearer *** for Ada", "now": 63, "v1": 42}
    assert run.error is None
    assert run.flow_run_id == outcome.result.flow_run_id
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.created_at <= run.started_at <= run.finished_at

    # Only the parent's nodes: sub-workflow runs keep their history in their own flow runs.
    assert [n.node_id for n in nodes] == ["greet", "leak", "child_now", "child_v1"]
    by_id = {n.node_id: n for n in nodes}
    assert all(n.status == "completed" for n in nodes)
    assert all(n.attempts == 1 for n in nodes)
    assert all(n.started_at is None or n.started_at <= n.finished_at for n in nodes)  # type: ignore[operator]
    assert by_id["greet"].input == {"value": "Bearer *** for Ada"}
    assert by_id["greet"].output == "Bearer *** for Ada"
    leak = by_id["leak"]
    assert leak.input is None  # its input never rendered
    assert isinstance(leak.output, dict)
    assert leak.output["error"]["type"] == "TemplateError"
    assert "'***'" in leak.output["error"]["message"]
    assert by_id["child_now"].input == {"workflow_id": "doubler", "parameters": {"n": 21}}
    assert by_id["child_now"].output == 63  # the current version (2) of acme's doubler
    assert by_id["child_v1"].input == {
        "workflow_id": "doubler",
        "version": "1",
        "parameters": {"n": 21},
    }
    assert by_id["child_v1"].output == 42
    stored = json.dumps([run.output, run.error] + [[n.input, n.output, n.error] for n in nodes])
    assert PLANTED not in stored

    await assert_prefect_never_saw(PLANTED, outcome.result.flow_run_id)


async def test_a_failing_stored_run_records_its_error(
    database: Database, services: RunServices
) -> None:
    definition = {
        "format": 1,
        "id": "calls-missing",
        "name": "Calls a missing workflow",
        "nodes": [
            node("call", "core.subworkflow", input={"workflow_id": "nowhere"}),
        ],
        "edges": [],
    }
    async with database.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition)
        row = await create_run(
            session,
            tenant_id="acme",
            workflow_id="calls-missing",
            version=1,
            trigger_type=TriggerType.API,
        )
    outcome = await execute(services, definition, row.id)
    assert outcome.result.state == "failed"

    async with database.session() as session:
        run = await get_run(session, tenant_id="acme", run_id=row.id)
        [call] = await list_node_runs(session, tenant_id="acme", run_id=row.id)
    assert run is not None
    assert (run.state, run.output) == (RunState.FAILED, None)
    assert run.error is not None
    assert "'call'" in run.error["message"]
    assert (call.status, call.attempts) == ("failed", 1)
    assert isinstance(call.error, dict)
    assert call.error["type"] == "WorkflowNotFound"
    assert "'nowhere' not found" in call.error["message"]


async def assert_prefect_never_saw(secret: str, flow_run_id: str) -> None:
    """Neither the flow runs (the run's and its sub-workflows'), their task runs, their logs
    nor their artifacts hold `secret`."""
    from prefect import get_client
    from prefect._internal.concurrency.services import QueueService
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from interpreter.run.background import drain

    assert await asyncio.to_thread(drain, 30)  # summary artifacts are delivered in background
    await asyncio.to_thread(QueueService.drain_all, 30)  # and logs in batches
    async with get_client() as client:
        parent = await client.read_flow_run(UUID(flow_run_id))
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])
            )
        )
        flow_runs = [parent, *children]
        ids = [flow_run.id for flow_run in flow_runs]
        assert len(ids) == 3  # the run and its two sub-workflow runs
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )

    assert {str(fr.parameters["tenant"]) for fr in flow_runs} == {"acme"}
    assert len(artifacts) == 3  # one summary per run
    messages = [log.message for log in logs]
    # The failure of `leak` was logged, with the value hidden.
    assert any("'leak'" in m and "'***'" in m for m in messages), messages
    for what, values in {
        "flow run": [fr.model_dump_json() for fr in flow_runs],
        "task run": [tr.model_dump_json() for tr in task_runs],
        "log": messages,
        "artifact": [a.model_dump_json() for a in artifacts],
    }.items():
        leaked = [value for value in values if secret in value]
        assert leaked == [], f"a {what} holds the secret: {leaked[0][:500]}"
