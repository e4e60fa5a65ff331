"""The engine's ports backed by the store (`api.store.ports`), on SQLite and PostgreSQL.

The ports get a `Database` of their own, as in a worker: they use it on their `StoreLoop`, while
the test sets up and reads back through the `database` fixture on its own loop, as the API does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.store.crypto import SecretBox, generate_secret_key
from api.store.database import Database
from api.store.models import NodeRun, Run, RunState, TriggerType
from api.store.ports import (
    StoreControl,
    StoreLoop,
    StorePolicies,
    StoreRecorder,
    StoreResolver,
    StoreSecrets,
    store_run_services,
)
from api.store.runs import create_run, get_run, list_node_runs, request_pause, set_flow_run
from api.store.secrets import put_secret
from api.store.tenants import create_tenant, update_tenant_settings
from api.store.workflows import create_workflow, set_enabled, update_workflow
from interpreter.definition.model import RetryPolicy
from interpreter.run.services import (
    NodeEvent,
    NodePhase,
    RunChange,
    RunPhase,
    RunRecorder,
    SecretProvider,
    TenantPolicy,
    WorkflowResolver,
)
from pieces.base import PieceError
from pieces.registry import default_registry
from tests.api.conftest import FAST_COMMITS

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def flow_run_of(run_id: str) -> str:
    """The Prefect flow run executing a run (one per run: the column is unique)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, run_id))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def tenants(database: Database) -> Database:
    async with database.session() as session:
        for tenant_id in ("acme", "beta"):
            await create_tenant(session, tenant_id=tenant_id)
    return database


@pytest.fixture
async def ports_database(tenants: Database, database_url: str) -> AsyncIterator[Database]:
    """The ports' own connection to the test's store (closed with its store loop)."""
    own = Database(database_url, **FAST_COMMITS.get(database_url.split(":", 1)[0], {}))
    yield own
    await StoreLoop.of(own).aclose()


def definition(workflow_id: str, value: Any = 1) -> dict[str, Any]:
    return {
        "format": 1,
        "id": workflow_id,
        "nodes": [{"id": "a", "piece": "core.transform", "input": {"value": value}}],
        "edges": [],
    }


async def new_run(database: Database, tenant_id: str = "acme") -> str:
    async with database.session() as session:
        run = await create_run(
            session,
            tenant_id=tenant_id,
            workflow_id="order-sync",
            version=1,
            trigger_type=TriggerType.API,
        )
        return run.id


async def read_run(database: Database, run_id: str, tenant_id: str = "acme") -> Run:
    async with database.session() as session:
        run = await get_run(session, tenant_id=tenant_id, run_id=run_id)
    assert run is not None
    return run


async def read_nodes(database: Database, run_id: str, tenant_id: str = "acme") -> list[NodeRun]:
    async with database.session() as session:
        return await list_node_runs(session, tenant_id=tenant_id, run_id=run_id)


def change(run_id: str, phase: RunPhase, seconds: float, **fields: Any) -> RunChange:
    return RunChange(
        run_id=run_id,
        flow_run_id=flow_run_of(run_id),
        workflow_id="order-sync",
        phase=phase,
        at=at(seconds),
        **fields,
    )


def event(
    run_id: str,
    node_id: str,
    kind: NodePhase,
    status: str,
    seconds: float,
    *,
    attempts: int = 1,
    started: float | None = None,
    **fields: Any,
) -> NodeEvent:
    """A node event as `Execution.transition` builds it: ends carry the finish time."""
    ends = kind in (NodePhase.FINISHED, NodePhase.SKIPPED)
    return NodeEvent(
        run_id=run_id,
        node_id=node_id,
        kind=kind,
        status=status,
        attempts=attempts,
        at=at(seconds),
        started_at=None if started is None else at(started),
        finished_at=at(seconds) if ends else None,
        **fields,
    )


async def replay(
    recorder: RunRecorder, tenant: str, history: Sequence[RunChange | NodeEvent]
) -> None:
    for item in history:
        if isinstance(item, RunChange):
            await recorder.run_changed(tenant, item)
        else:
            await recorder.node_changed(tenant, item)


def engine_history(run_id: str) -> list[RunChange | NodeEvent]:
    """What the engine sends for `tests/interpreter/test_run_services.py`'s workflow: a node,
    a node that succeeds on its second attempt, a skipped node and a `core.map` of two items."""
    greet_input = {"value": "Bearer *** for Ada"}
    fetch_input = {"method": "GET", "url": "http://127.0.0.1:9/flaky"}
    http_error = {"node": "fetch", "type": "HttpStatusError", "message": "HTTP 503", "attempts": 1}
    return [
        change(run_id, RunPhase.RUNNING, 0),
        event(run_id, "greet", NodePhase.STARTED, "running", 1, started=1, input=greet_input),
        event(
            run_id,
            "greet",
            NodePhase.FINISHED,
            "completed",
            2,
            started=1,
            output="Bearer *** for Ada",
        ),
        event(run_id, "fetch", NodePhase.STARTED, "running", 3, started=3, input=fetch_input),
        event(run_id, "fetch", NodePhase.ATTEMPT_FAILED, "running", 4, started=3, error=http_error),
        event(
            run_id,
            "fetch",
            NodePhase.STARTED,
            "running",
            5,
            attempts=2,
            started=3,
            input={**fetch_input, "attempt": 2},
            error=http_error,
        ),
        event(
            run_id,
            "fetch",
            NodePhase.FINISHED,
            "completed",
            6,
            attempts=2,
            started=3,
            output={"status": 200},
        ),
        event(run_id, "never", NodePhase.SKIPPED, "skipped", 7, attempts=0),
        event(run_id, "loop", NodePhase.STARTED, "running", 8, started=8, input={"items": [1, 2]}),
        event(run_id, "loop[0]", NodePhase.STARTED, "running", 9, started=9, input={"value": 10}),
        event(run_id, "loop[1]", NodePhase.STARTED, "running", 9, started=9, input={"value": 20}),
        event(run_id, "loop[1]", NodePhase.FINISHED, "completed", 10, started=9, output=20),
        event(run_id, "loop[0]", NodePhase.FINISHED, "completed", 10, started=9, output=10),
        event(run_id, "loop", NodePhase.FINISHED, "completed", 11, started=8, output=[10, 20]),
        change(run_id, RunPhase.COMPLETED, 12, output="Bearer *** for Ada"),
    ]


# --- secrets --------------------------------------------------------------------------------------


async def test_secrets_of_the_tenant_only(tenants: Database, ports_database: Database) -> None:
    box = SecretBox(generate_secret_key())
    async with tenants.session() as session:
        await put_secret(session, tenant_id="acme", name="token", ciphertext=box.encrypt("s3-ü"))
    secrets: SecretProvider = StoreSecrets(ports_database, box)
    assert await secrets.get("acme", "token") == "s3-ü"
    assert await secrets.get("acme", "missing") is None
    assert await secrets.get("beta", "token") is None  # another tenant's name
    assert await secrets.get("nobody", "token") is None


async def test_a_secret_no_key_decrypts_is_a_clear_error(
    tenants: Database, ports_database: Database
) -> None:
    old_key = generate_secret_key()
    old = SecretBox(old_key)
    async with tenants.session() as session:
        await put_secret(
            session, tenant_id="acme", name="token", ciphertext=old.encrypt("plain-6f1d")
        )
    rotated_badly = StoreSecrets(ports_database, SecretBox(generate_secret_key()))
    with pytest.raises(PieceError) as raised:
        await rotated_badly.get("acme", "token")
    assert raised.value.error_type == "SecretUnreadable"
    assert not raised.value.retryable
    assert "ALTLAS_SECRET_KEY_PREVIOUS" in raised.value.message
    assert "plain-6f1d" not in raised.value.message
    rotated_well = StoreSecrets(
        ports_database, SecretBox(generate_secret_key(), [generate_secret_key(), old_key])
    )
    assert await rotated_well.get("acme", "token") == "plain-6f1d"


# --- workflows ------------------------------------------------------------------------------------


async def test_the_resolver_finds_current_and_numbered_versions(
    tenants: Database, ports_database: Database
) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("child", "v1"))
    async with tenants.session() as session:
        await update_workflow(
            session, tenant_id="acme", workflow_id="child", definition=definition("child", "v2")
        )
    resolver: WorkflowResolver = StoreResolver(ports_database)

    current = await resolver.resolve(tenant="acme", workflow_id="child", version=None)
    assert current.version == "2"
    assert current.definition == definition("child", "v2")
    first = await resolver.resolve(tenant="acme", workflow_id="child", version="1")
    assert (first.version, first.definition) == ("1", definition("child", "v1"))
    second = await resolver.resolve(tenant="acme", workflow_id="child", version="2")
    assert (second.version, second.definition) == ("2", definition("child", "v2"))


@pytest.mark.parametrize(
    ("tenant", "workflow_id", "version", "says"),
    [
        ("acme", "missing", None, "'missing' not found"),
        ("beta", "child", None, "'child' not found"),  # another tenant's workflow
        ("beta", "child", "1", "'child' not found"),
        ("acme", "child", "9", "no version '9' (its versions are 1 to 1)"),
        ("acme", "child", "0", "no version '0'"),
        ("acme", "child", "99999999999999999999", "no version"),  # beyond the column's range
        ("acme", "child", "sha-1a2b3c4d5e6f", "numbered versions"),  # a file's content hash
        ("acme", "child", "v1", "numbered versions"),
        ("acme", "child", "-1", "numbered versions"),
        ("acme", "child", "", "numbered versions"),
    ],
)
async def test_the_resolver_refuses_what_the_tenant_cannot_call(
    tenants: Database,
    ports_database: Database,
    tenant: str,
    workflow_id: str,
    version: str | None,
    says: str,
) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("child"))
    with pytest.raises(PieceError) as raised:
        await StoreResolver(ports_database).resolve(
            tenant=tenant, workflow_id=workflow_id, version=version
        )
    assert raised.value.error_type == "WorkflowNotFound"
    assert not raised.value.retryable
    assert says in raised.value.message


async def test_a_disabled_workflow_cannot_be_called(
    tenants: Database, ports_database: Database
) -> None:
    async with tenants.session() as session:
        await create_workflow(session, tenant_id="acme", definition=definition("child"))
        await set_enabled(session, tenant_id="acme", workflow_id="child", enabled=False)
    resolver = StoreResolver(ports_database)
    for version in (None, "1"):
        with pytest.raises(PieceError) as raised:
            await resolver.resolve(tenant="acme", workflow_id="child", version=version)
        assert raised.value.error_type == "WorkflowNotFound"
        assert "disabled" in raised.value.message
    async with tenants.session() as session:
        await set_enabled(session, tenant_id="acme", workflow_id="child", enabled=True)
    resolved = await resolver.resolve(tenant="acme", workflow_id="child", version=None)
    assert resolved.version == "1"


# --- run history ----------------------------------------------------------------------------------


async def test_the_history_the_engine_sends_lands_in_the_run_and_node_rows(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await replay(recorder, "acme", engine_history(run_id))

    run = await read_run(tenants, run_id)
    assert run.state is RunState.COMPLETED
    assert (run.started_at, run.finished_at) == (at(0), at(12))
    assert (run.output, run.error) == ("Bearer *** for Ada", None)
    assert run.flow_run_id == flow_run_of(run_id)

    nodes = await read_nodes(tenants, run_id)
    assert [n.node_id for n in nodes] == ["greet", "fetch", "never", "loop", "loop[0]", "loop[1]"]
    by_id = {n.node_id: n for n in nodes}
    greet = by_id["greet"]
    assert (greet.status, greet.attempts, greet.output, greet.error) == (
        "completed",
        1,
        "Bearer *** for Ada",
        None,
    )
    assert greet.input == {"value": "Bearer *** for Ada"}  # kept from its start
    assert (greet.started_at, greet.finished_at) == (at(1), at(2))
    fetch = by_id["fetch"]
    assert (fetch.status, fetch.attempts, fetch.output, fetch.error) == (
        "completed",
        2,
        {"status": 200},
        None,
    )
    assert fetch.input == {"method": "GET", "url": "http://127.0.0.1:9/flaky", "attempt": 2}
    assert (fetch.started_at, fetch.finished_at) == (at(3), at(6))
    never = by_id["never"]
    assert (never.status, never.attempts, never.input, never.started_at) == (
        "skipped",
        0,
        None,
        None,
    )
    assert never.finished_at == at(7)
    assert [(by_id[i].status, by_id[i].input, by_id[i].output) for i in ("loop[0]", "loop[1]")] == [
        ("completed", {"value": 10}, 10),
        ("completed", {"value": 20}, 20),
    ]
    assert by_id["loop"].output == [10, 20]


async def test_an_attempt_failure_is_visible_while_the_node_runs(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    history = engine_history(run_id)
    await replay(recorder, "acme", history[:5])  # up to fetch's first failed attempt
    fetch = {n.node_id: n for n in await read_nodes(tenants, run_id)}["fetch"]
    assert (fetch.status, fetch.attempts, fetch.finished_at) == ("running", 1, None)
    assert fetch.error is not None
    assert fetch.error["type"] == "HttpStatusError"
    assert fetch.input == {"method": "GET", "url": "http://127.0.0.1:9/flaky"}
    assert (await read_run(tenants, run_id)).state is RunState.RUNNING


async def test_a_failed_run_keeps_its_error_and_no_output(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    error = {"type": "NodeFailed", "message": "node(s) 'boom' failed; first: SecretNotFound"}
    node_error = {"node": "boom", "type": "SecretNotFound", "message": "secret", "attempts": 1}
    await replay(
        StoreRecorder(ports_database, record_max_bytes=65536),
        "acme",
        [
            change(run_id, RunPhase.RUNNING, 0),
            event(run_id, "boom", NodePhase.STARTED, "running", 1, started=1, input={"v": 1}),
            event(run_id, "boom", NodePhase.FINISHED, "failed", 2, started=1, error=node_error),
            change(run_id, RunPhase.FAILED, 3, error=error),
        ],
    )
    run = await read_run(tenants, run_id)
    assert (run.state, run.output, run.error, run.finished_at) == (
        RunState.FAILED,
        None,
        error,
        at(3),
    )
    [boom] = await read_nodes(tenants, run_id)
    assert (boom.status, boom.input, boom.error) == ("failed", {"v": 1}, node_error)


async def test_a_refused_run_fails_without_having_started(
    tenants: Database, ports_database: Database
) -> None:
    """Invalid parameters: the engine reports `failed` and nothing before it."""
    run_id = await new_run(tenants)
    error = {"type": "InvalidParameters", "message": "/who: 1 is not of type 'string'"}
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await recorder.run_changed("acme", change(run_id, RunPhase.FAILED, 1, error=error))
    run = await read_run(tenants, run_id)
    assert (run.state, run.started_at, run.finished_at, run.error) == (
        RunState.FAILED,
        None,
        at(1),
        error,
    )


async def test_an_approval_pauses_the_run_and_keeps_the_node_input(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    asked = {"message": "Ship order 7?"}
    await replay(
        recorder,
        "acme",
        [
            change(run_id, RunPhase.RUNNING, 0),
            event(run_id, "approve", NodePhase.STARTED, "running", 1, started=1, input=asked),
            event(run_id, "approve", NodePhase.WAITING, "waiting", 2, started=1),
            change(run_id, RunPhase.PAUSED, 2),
        ],
    )
    run = await read_run(tenants, run_id)
    [approve] = await read_nodes(tenants, run_id)
    assert run.state is RunState.PAUSED
    assert (approve.status, approve.input, approve.output, approve.finished_at) == (
        "waiting",
        asked,
        None,
        None,
    )

    await replay(
        recorder,
        "acme",
        [
            change(run_id, RunPhase.RUNNING, 30),  # resumed
            event(run_id, "approve", NodePhase.STARTED, "running", 30, started=1),  # no input
            event(
                run_id,
                "approve",
                NodePhase.FINISHED,
                "completed",
                31,
                started=1,
                output={"approved": True},
            ),
            change(run_id, RunPhase.COMPLETED, 32, output={"approved": True}),
        ],
    )
    run = await read_run(tenants, run_id)
    [approve] = await read_nodes(tenants, run_id)
    assert (run.state, run.started_at, run.finished_at) == (RunState.COMPLETED, at(0), at(32))
    assert (approve.status, approve.input, approve.output) == (
        "completed",
        asked,
        {"approved": True},
    )


async def test_a_new_recorder_keeps_the_input_a_node_started_with(
    tenants: Database, ports_database: Database
) -> None:
    """A recorder that did not see the start (another instance) keeps the stored input."""
    run_id = await new_run(tenants)
    started = event(run_id, "a", NodePhase.STARTED, "running", 1, started=1, input={"v": "in"})
    await StoreRecorder(ports_database, record_max_bytes=65536).node_changed("acme", started)
    finished = event(run_id, "a", NodePhase.FINISHED, "completed", 2, started=1, output="out")
    await StoreRecorder(ports_database, record_max_bytes=65536).node_changed("acme", finished)
    [node] = await read_nodes(tenants, run_id)
    assert (node.status, node.input, node.output) == ("completed", {"v": "in"}, "out")


async def test_a_run_state_never_moves_backwards(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await replay(
        recorder,
        "acme",
        [
            change(run_id, RunPhase.RUNNING, 0),
            change(run_id, RunPhase.COMPLETED, 5, output="done"),
            change(run_id, RunPhase.RUNNING, 6),  # late
            change(run_id, RunPhase.PAUSED, 7),
            change(run_id, RunPhase.FAILED, 8, error={"type": "X", "message": "late"}),
        ],
    )
    run = await read_run(tenants, run_id)
    assert (run.state, run.started_at, run.finished_at, run.output, run.error) == (
        RunState.COMPLETED,
        at(0),
        at(5),
        "done",
        None,
    )


async def test_a_cancelling_run_is_not_moved_back_to_running(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await recorder.run_changed("acme", change(run_id, RunPhase.RUNNING, 0))
    async with tenants.session() as session:  # the API's cancelRun
        from api.store.runs import update_run_state

        assert await update_run_state(session, run_id=run_id, state=RunState.CANCELLING)
    await recorder.run_changed("acme", change(run_id, RunPhase.RUNNING, 1))
    assert (await read_run(tenants, run_id)).state is RunState.CANCELLING
    error = {"type": "Cancelled", "message": "cancelled"}
    await recorder.run_changed("acme", change(run_id, RunPhase.CANCELLED, 2, error=error))
    run = await read_run(tenants, run_id)
    assert (run.state, run.error, run.finished_at) == (RunState.CANCELLED, error, at(2))


async def test_events_of_runs_the_store_does_not_know_are_ignored(
    tenants: Database, ports_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    known = await new_run(tenants)
    with caplog.at_level(logging.DEBUG, logger="altlas.store"):
        await replay(recorder, "acme", engine_history("9d1c0c54-adhoc-run"))
        await replay(recorder, "acme", engine_history(known))
    assert "not a stored run" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (await read_run(tenants, known)).state is RunState.COMPLETED
    async with tenants.session() as session:
        from sqlalchemy import func, select

        assert await session.scalar(select(func.count()).select_from(Run)) == 1
        assert len(await list_node_runs(session, tenant_id="acme", run_id=known)) == 6


async def test_history_reported_for_another_tenant_is_ignored(
    tenants: Database, ports_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = await new_run(tenants, tenant_id="acme")
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    with caplog.at_level(logging.WARNING, logger="altlas.store"):
        await replay(recorder, "beta", engine_history(run_id))
    run = await read_run(tenants, run_id)
    assert (run.state, run.started_at, run.output, run.flow_run_id) == (
        RunState.ACCEPTED,
        None,
        None,
        None,
    )
    assert await read_nodes(tenants, run_id) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "altlas.store"]
    assert len(warnings) == 1  # once per run, not once per event
    assert "tenant isolation" in warnings[0]
    assert "'acme'" in warnings[0]
    assert "'beta'" in warnings[0]
    # The run's own tenant is still heard.
    await replay(recorder, "acme", engine_history(run_id))
    assert (await read_run(tenants, run_id)).state is RunState.COMPLETED


async def test_oversized_values_are_stored_truncated(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=200)
    big = {"rows": ["x" * 50] * 20}
    await replay(
        recorder,
        "acme",
        [
            change(run_id, RunPhase.RUNNING, 0),
            event(run_id, "a", NodePhase.STARTED, "running", 1, started=1, input=big),
            event(run_id, "a", NodePhase.FINISHED, "completed", 2, started=1, output=big),
            event(run_id, "small", NodePhase.STARTED, "running", 3, started=3, input={"v": 1}),
            change(run_id, RunPhase.COMPLETED, 4, output=big),
        ],
    )
    text = json.dumps(big)
    [a, small] = await read_nodes(tenants, run_id)
    run = await read_run(tenants, run_id)
    for value in (a.input, a.output, run.output):
        assert isinstance(value, dict)
        assert value["truncated"] is True
        assert value["bytes"] == len(text) > 200
        assert value["preview"] == text[:200]
    assert small.input == {"v": 1}


async def test_values_json_cannot_hold_are_stored_as_near_as_it_can(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    odd = {"ratio": math.nan, "limit": math.inf, "when": T0, "ok": [1, "ü"]}
    await replay(
        recorder,
        "acme",
        [
            event(run_id, "a", NodePhase.STARTED, "running", 1, started=1, input=odd),
            event(run_id, "a", NodePhase.FINISHED, "completed", 2, started=1, output=math.nan),
        ],
    )
    [a] = await read_nodes(tenants, run_id)
    assert a.input == {"ratio": None, "limit": None, "when": str(T0), "ok": [1, "ü"]}
    assert a.output is None
    assert a.status == "completed"


async def test_runs_on_other_threads_event_loops_share_the_store_loop(
    tenants: Database, ports_database: Database
) -> None:
    """A worker runs each run on an event loop of its own, in its own thread: the ports must
    not hand those loops each other's database connections (asyncpg refuses that)."""
    run_ids = [await new_run(tenants) for _ in range(4)]
    services = store_run_services(
        ports_database, SecretBox(generate_secret_key()), default_registry(), record_max_bytes=1000
    )
    await services.recorder.run_changed("acme", change(run_ids[0], RunPhase.RUNNING, 0))
    failures: list[BaseException] = []

    def worker_thread(run_id: str) -> None:
        async def one_run() -> None:
            for _ in range(2):  # twice: the second time the pool has connections to reuse
                await replay(services.recorder, "acme", engine_history(run_id))
                assert await services.secrets.get("acme", "absent") is None

        try:
            asyncio.run(one_run())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker_thread, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()

    def join_all() -> None:
        for thread in threads:
            thread.join(60)

    await asyncio.to_thread(join_all)
    assert failures == []
    for run_id in run_ids:
        assert (await read_run(tenants, run_id)).state is RunState.COMPLETED
        assert len(await read_nodes(tenants, run_id)) == 6


async def test_ports_on_one_database_share_one_store_loop(ports_database: Database) -> None:
    loop = StoreLoop.of(ports_database)
    services = store_run_services(
        ports_database, SecretBox(generate_secret_key()), default_registry(), record_max_bytes=1000
    )
    assert isinstance(services.secrets, StoreSecrets)
    assert isinstance(services.resolver, StoreResolver)
    assert isinstance(services.recorder, StoreRecorder)
    assert services.recorder.record_max_bytes == 1000
    assert StoreLoop.of(ports_database) is loop
    assert await services.secrets.get("acme", "absent") is None
    await loop.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await loop.call(lambda: asyncio.sleep(0))
    assert StoreLoop.of(ports_database) is not loop  # a new one, with new connections
    assert (
        await StoreSecrets(ports_database, SecretBox(generate_secret_key())).get("acme", "absent")
        is None
    )


async def test_recorder_cost_per_event(
    tenants: Database, ports_database: Database, database_url: str
) -> None:
    """A timing loop (printed with `-s`): 100 nodes started and finished, and two run changes."""
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await replay(recorder, "acme", engine_history(await new_run(tenants)))  # warm the pool
    run_id = await new_run(tenants)
    history: list[RunChange | NodeEvent] = [change(run_id, RunPhase.RUNNING, 0)]
    for index in range(100):
        label = f"n{index:03}"
        history.append(
            event(run_id, label, NodePhase.STARTED, "running", 1, started=1, input={"i": index})
        )
        history.append(
            event(run_id, label, NodePhase.FINISHED, "completed", 2, started=1, output=index)
        )
    history.append(change(run_id, RunPhase.COMPLETED, 3))
    began = time.perf_counter()
    await replay(recorder, "acme", history)
    per_event_ms = (time.perf_counter() - began) / len(history) * 1000

    unknown = [
        event("not-stored", f"n{i}", NodePhase.STARTED, "running", 1, input={"i": i})
        for i in range(200)
    ]
    began = time.perf_counter()
    await replay(recorder, "acme", unknown)
    unknown_ms = (time.perf_counter() - began) / len(unknown) * 1000

    dialect = database_url.split("+", 1)[0]
    print(
        f"\n[recorder cost] {dialect}: {per_event_ms:.2f} ms per event of a stored run "
        f"({len(history)} events), {unknown_ms:.3f} ms per event of an unknown run"
    )
    nodes = await read_nodes(tenants, run_id)
    assert [n.node_id for n in nodes] == [f"n{i:03}" for i in range(100)]
    assert all(n.input == {"i": i} and n.output == i for i, n in enumerate(nodes))
    # Generous bounds (a loaded CI machine), far below what a query per read would cost.
    assert per_event_ms < 25
    assert unknown_ms < 2


async def test_the_flow_run_the_dispatcher_recorded_is_kept(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    dispatched = str(uuid.uuid4())
    async with tenants.session() as session:
        assert await set_flow_run(session, run_id=run_id, flow_run_id=dispatched)
    recorder = StoreRecorder(ports_database, record_max_bytes=65536)
    await recorder.run_changed("acme", change(run_id, RunPhase.RUNNING, 0))
    run = await read_run(tenants, run_id)
    assert (run.state, run.flow_run_id) == (RunState.RUNNING, dispatched)


def test_the_store_package_exports_the_ports_without_importing_them_eagerly() -> None:
    """`api.store` names the ports, but importing it does not load the engine's services."""
    import subprocess
    import sys

    check = (
        "import sys, api.store as store\n"
        "assert 'api.store.ports' not in sys.modules, 'imported eagerly'\n"
        "assert 'interpreter.run.services' not in sys.modules, 'imported the engine'\n"
        "from api.store import StoreRecorder, store_run_services\n"
        "from api.store.ports import StoreRecorder as Direct\n"
        "assert StoreRecorder is Direct and callable(store_run_services)\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=root, check=False
    )
    assert done.returncode == 0, done.stderr


async def test_closing_the_store_loop_lets_calls_under_way_finish(
    ports_database: Database,
) -> None:
    loop = StoreLoop.of(ports_database)
    started = threading.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(0.3)
        async with ports_database.session() as session:
            from sqlalchemy import text

            return str((await session.execute(text("SELECT 'done'"))).scalar_one())

    under_way = asyncio.ensure_future(loop.call(slow))
    await asyncio.to_thread(started.wait, 10)
    await loop.aclose()  # waits for `slow`, then disposes the connections
    assert await under_way == "done"
    with pytest.raises(RuntimeError, match="closed"):
        await loop.call(slow)


# --- control and tenant policies ---------------------------------------------------------------


async def test_control_reads_the_pause_request_of_the_tenants_run(
    tenants: Database, ports_database: Database
) -> None:
    run_id = await new_run(tenants)
    control = StoreControl(ports_database)
    assert await control.pause_requested("acme", run_id) is False
    async with tenants.session() as session:
        assert await request_pause(session, tenant_id="acme", run_id=run_id, paused=True)
    assert await control.pause_requested("acme", run_id) is True
    assert await control.pause_requested("beta", run_id) is False  # another tenant's run
    assert await control.pause_requested("acme", "no-such-run") is False
    async with tenants.session() as session:
        assert not await request_pause(session, tenant_id="beta", run_id=run_id, paused=False)
        assert await request_pause(session, tenant_id="acme", run_id=run_id, paused=False)
    assert await control.pause_requested("acme", run_id) is False


async def test_policies_turn_tenant_settings_into_the_engines_policy(
    tenants: Database, ports_database: Database
) -> None:
    policies = StorePolicies(ports_database)
    assert await policies.policy("acme") == TenantPolicy()
    settings = {
        "allowed_pieces": ["core.transform"],
        "http_allow": ["10.1.0.0/16"],
        "defaults": {"retry": {"max_attempts": 4}, "timeout_seconds": 12},
    }
    async with tenants.session() as session:
        await update_tenant_settings(session, tenant_id="acme", settings=settings)
    policy = await policies.policy("acme")
    assert policy.allowed_pieces == frozenset({"core.transform"})
    assert policy.http_allow == ("10.1.0.0/16",)
    assert policy.defaults.retry == RetryPolicy(max_attempts=4)
    assert policy.defaults.timeout_seconds == 12
    assert await policies.policy("beta") == TenantPolicy()  # settings are per tenant
    async with tenants.session() as session:
        await update_tenant_settings(session, tenant_id="beta", settings={"allowed_pieces": []})
    nothing = await policies.policy("beta")
    assert nothing.allowed_pieces == frozenset()  # an empty list allows no piece at all
