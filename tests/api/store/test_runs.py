"""Runs, idempotency keys, node history and statistics, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from api.store.crypto import json_digest
from api.store.database import Database
from api.store.errors import NotFound
from api.store.models import IdempotencyKey, NodeStatus, Run, RunState, TriggerType
from api.store.runs import (
    cap_record_value,
    create_run,
    get_run,
    get_run_by_flow_run,
    get_run_by_id,
    list_node_runs,
    list_runs,
    list_runs_by_state,
    percentile,
    purge_idempotency_keys,
    reserve_idempotency_key,
    reserve_webhook_delivery,
    set_flow_run,
    update_run_state,
    upsert_node_run,
    workflow_stats,
)
from api.store.tenants import create_tenant

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
PLUS_5 = timezone(timedelta(hours=5))


@pytest.fixture
async def tenants(database: Database) -> Database:
    async with database.session() as session:
        for tenant_id in ("acme", "beta"):
            await create_tenant(session, tenant_id=tenant_id)
    return database


async def new_run(database: Database, tenant_id: str = "acme", **fields: Any) -> Run:
    fields.setdefault("workflow_id", "order-sync")
    fields.setdefault("version", 1)
    fields.setdefault("trigger_type", TriggerType.API)
    async with database.session() as session:
        return await create_run(session, tenant_id=tenant_id, **fields)


async def state_of(database: Database, run_id: str) -> RunState:
    async with database.session() as session:
        run = await get_run_by_id(session, run_id=run_id)
    assert run is not None
    return run.state


# --- runs -----------------------------------------------------------------------------------------


async def test_create_and_get_a_run(tenants: Database) -> None:
    run_id = str(uuid.uuid4())
    parameters = {"order": {"id": 7, "lines": [1, 2]}, "note": "ü"}
    run = await new_run(
        tenants,
        run_id=run_id,
        trigger_type=TriggerType.WEBHOOK,
        trigger_id="github-push",
        parameters=parameters,
        scheduled_at=T0,
    )
    assert run.id == run_id
    async with tenants.session() as session:
        loaded = await get_run(session, tenant_id="acme", run_id=run_id)
        foreign = await get_run(session, tenant_id="beta", run_id=run_id)
    assert foreign is None
    assert loaded is not None
    assert (loaded.state, loaded.trigger_type, loaded.trigger_id) == (
        RunState.ACCEPTED,
        TriggerType.WEBHOOK,
        "github-push",
    )
    assert isinstance(loaded.state, RunState)
    assert loaded.parameters == parameters
    assert (loaded.output, loaded.error, loaded.flow_run_id, loaded.deployment_id) == (
        None,
        None,
        None,
        None,
    )
    assert loaded.scheduled_at == T0
    assert loaded.started_at is None
    assert loaded.finished_at is None


async def test_a_run_gets_a_uuid_when_the_caller_gives_none(tenants: Database) -> None:
    run = await new_run(tenants)
    assert str(uuid.UUID(run.id)) == run.id
    assert uuid.UUID(run.id).version == 4


async def test_list_runs_newest_first_with_filters_and_counts(tenants: Database) -> None:
    ids: dict[str, str] = {}
    plan = [
        ("r1", "order-sync", RunState.COMPLETED),
        ("r2", "order-sync", RunState.RUNNING),
        ("r3", "billing", RunState.FAILED),
        ("r4", "order-sync", RunState.PAUSED),
        ("r5", "billing", RunState.ACCEPTED),
    ]
    for minute, (label, workflow_id, state) in enumerate(plan):
        run = await new_run(
            tenants,
            workflow_id=workflow_id,
            state=state,
            created_at=T0 + timedelta(minutes=minute),
        )
        ids[run.id] = label
    await new_run(tenants, tenant_id="beta", created_at=T0 + timedelta(hours=1))

    async def labels(**filters: Any) -> tuple[list[str], int]:
        async with tenants.session() as session:
            rows, count = await list_runs(session, tenant_id="acme", **filters)
        return [ids[row.id] for row in rows], count

    assert await labels() == (["r5", "r4", "r3", "r2", "r1"], 5)
    assert await labels(workflow_id="order-sync") == (["r4", "r2", "r1"], 3)
    assert await labels(states=[RunState.FAILED, RunState.COMPLETED]) == (["r3", "r1"], 2)
    assert await labels(active=True) == (["r5", "r4", "r2"], 3)
    assert await labels(active=False) == (["r3", "r1"], 2)
    assert await labels(active=True, workflow_id="billing") == (["r5"], 1)
    assert await labels(active=True, states=[RunState.COMPLETED]) == ([], 0)
    assert await labels(limit=2, offset=1) == (["r4", "r3"], 5)


async def test_runs_created_in_the_same_instant_have_a_stable_order(tenants: Database) -> None:
    made = [await new_run(tenants, created_at=T0) for _ in range(4)]
    async with tenants.session() as session:
        first, _ = await list_runs(session, tenant_id="acme", limit=2)
        second, _ = await list_runs(session, tenant_id="acme", limit=2, offset=2)
    listed = [run.id for run in first + second]
    assert sorted(listed) == sorted(run.id for run in made)
    assert listed == sorted(listed, reverse=True)


async def test_a_run_moves_forward_and_records_times_and_results(tenants: Database) -> None:
    run = await new_run(tenants)
    async with tenants.session() as session:
        assert await update_run_state(session, run_id=run.id, state=RunState.SCHEDULED)
        # Any offset is stored as the same instant.
        assert await update_run_state(
            session, run_id=run.id, state=RunState.RUNNING, started_at=T0.astimezone(PLUS_5)
        )
        assert await update_run_state(session, run_id=run.id, state=RunState.PAUSED)
        # Resuming keeps the first start time.
        assert await update_run_state(
            session, run_id=run.id, state=RunState.RUNNING, started_at=T0 + timedelta(hours=1)
        )
        assert await update_run_state(
            session,
            run_id=run.id,
            state=RunState.COMPLETED,
            output={"total": 3},
            finished_at=(T0 + timedelta(seconds=90)).astimezone(PLUS_5),
        )
    async with tenants.session() as session:
        done = await get_run(session, tenant_id="acme", run_id=run.id)
    assert done is not None
    assert done.state is RunState.COMPLETED
    assert (done.started_at, done.finished_at) == (T0, T0 + timedelta(seconds=90))
    assert (done.output, done.error) == ({"total": 3}, None)


async def test_default_times_are_set_when_moving_to_running_and_to_a_finished_state(
    tenants: Database,
) -> None:
    run = await new_run(tenants)
    before = datetime.now(UTC)
    async with tenants.session() as session:
        await update_run_state(session, run_id=run.id, state=RunState.RUNNING)
        await update_run_state(
            session, run_id=run.id, state=RunState.FAILED, error={"node": "a", "message": "x"}
        )
    async with tenants.session() as session:
        failed = await get_run(session, tenant_id="acme", run_id=run.id)
    assert failed is not None
    assert failed.started_at is not None
    assert failed.finished_at is not None
    assert before <= failed.started_at <= failed.finished_at <= datetime.now(UTC)
    assert (failed.output, failed.error) == (None, {"node": "a", "message": "x"})


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([RunState.RUNNING], RunState.SCHEDULED),
        ([RunState.RUNNING], RunState.ACCEPTED),
        ([RunState.CANCELLING], RunState.RUNNING),
        ([RunState.CANCELLING], RunState.PAUSED),
        ([RunState.COMPLETED], RunState.RUNNING),
        ([RunState.COMPLETED], RunState.FAILED),
        ([RunState.CANCELLED], RunState.CANCELLING),
        ([RunState.RUNNING, RunState.PAUSED], RunState.SCHEDULED),
        ([RunState.RUNNING], RunState.RUNNING),
    ],
)
async def test_a_run_never_moves_backwards(
    tenants: Database, path: list[RunState], refused: RunState
) -> None:
    run = await new_run(tenants)
    async with tenants.session() as session:
        for state in path:
            assert await update_run_state(session, run_id=run.id, state=state)
        assert not await update_run_state(
            session, run_id=run.id, state=refused, output={"late": True}
        )
    assert await state_of(tenants, run.id) is path[-1]
    async with tenants.session() as session:
        loaded = await get_run_by_id(session, run_id=run.id)
    assert loaded is not None
    assert loaded.output is None  # a refused move writes nothing


async def test_concurrent_writers_never_move_a_run_backwards(tenants: Database) -> None:
    # The run is completed while slower writers still report "running" or "scheduled".
    run = await new_run(tenants, state=RunState.RUNNING)

    async def move(state: RunState) -> bool:
        async with tenants.session() as session:
            return await update_run_state(session, run_id=run.id, state=state)

    targets = [RunState.COMPLETED] + [RunState.RUNNING, RunState.SCHEDULED, RunState.PAUSED] * 3
    results = await asyncio.gather(*(move(state) for state in targets))
    assert results[0] or results.count(True) >= 1
    assert await state_of(tenants, run.id) is RunState.COMPLETED
    # Whatever interleaving happened, once completed nothing else could move it.
    assert not await move(RunState.RUNNING)


async def test_forced_moves_and_tenant_scoped_moves(tenants: Database) -> None:
    run = await new_run(tenants, state=RunState.CRASHED)
    async with tenants.session() as session:
        # A tenant cannot move another tenant's run.
        assert not await update_run_state(
            session, run_id=run.id, state=RunState.CANCELLED, tenant_id="beta"
        )
        assert not await update_run_state(session, run_id=run.id, state=RunState.RUNNING)
        # An operator's repair may set any state.
        assert await update_run_state(
            session, run_id=run.id, state=RunState.SCHEDULED, only_forward=False
        )
        assert not await update_run_state(session, run_id="no-such-run", state=RunState.RUNNING)
    assert await state_of(tenants, run.id) is RunState.SCHEDULED
    async with tenants.session() as session:
        assert await update_run_state(
            session, run_id=run.id, state=RunState.CANCELLING, tenant_id="acme"
        )
    assert await state_of(tenants, run.id) is RunState.CANCELLING


async def test_flow_runs_link_back_to_runs(tenants: Database) -> None:
    run = await new_run(tenants)
    flow_run_id, deployment_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with tenants.session() as session:
        assert await set_flow_run(
            session, run_id=run.id, flow_run_id=flow_run_id, deployment_id=deployment_id
        )
        assert not await set_flow_run(session, run_id="missing", flow_run_id=str(uuid.uuid4()))
    async with tenants.session() as session:
        found = await get_run_by_flow_run(session, flow_run_id=flow_run_id)
        assert await get_run_by_flow_run(session, flow_run_id=str(uuid.uuid4())) is None
    assert found is not None
    assert (found.id, found.tenant_id, found.deployment_id) == (run.id, "acme", deployment_id)
    # update_run_state can also record the flow run.
    other = await new_run(tenants)
    other_flow = str(uuid.uuid4())
    async with tenants.session() as session:
        await update_run_state(
            session, run_id=other.id, state=RunState.SCHEDULED, flow_run_id=other_flow
        )
        linked = await get_run_by_flow_run(session, flow_run_id=other_flow)
    assert linked is not None
    assert linked.id == other.id


async def test_list_runs_by_state_across_tenants_oldest_first(tenants: Database) -> None:
    a = await new_run(tenants, created_at=T0 + timedelta(minutes=2))
    b = await new_run(tenants, tenant_id="beta", created_at=T0 + timedelta(minutes=1))
    later = await new_run(tenants, created_at=T0, scheduled_at=T0 + timedelta(days=1))
    await new_run(tenants, state=RunState.RUNNING, created_at=T0)
    async with tenants.session() as session:
        accepted = await list_runs_by_state(session, states=[RunState.ACCEPTED])
        due = await list_runs_by_state(
            session, states=[RunState.ACCEPTED], due_before=T0 + timedelta(hours=1)
        )
        limited = await list_runs_by_state(session, states=[RunState.ACCEPTED], limit=1)
    assert [run.id for run in accepted] == [later.id, b.id, a.id]
    assert [run.id for run in due] == [b.id, a.id]
    assert [run.id for run in limited] == [later.id]


# --- idempotency ----------------------------------------------------------------------------------


async def test_a_key_is_new_once_then_names_the_first_run(tenants: Database) -> None:
    digest = json_digest({"parameters": {"x": 1}})
    async with tenants.session() as session:
        first = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            key="k-1",
            request_digest=digest,
            run_id="run-1",
        )
    assert first.is_new
    assert first == ("new", None, None)
    async with tenants.session() as session:
        again = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            key="k-1",
            request_digest="other-digest",
            run_id="run-2",
        )
        # The same key for another workflow or tenant is another key.
        other_workflow = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="billing",
            key="k-1",
            request_digest=digest,
            run_id="run-3",
        )
        other_tenant = await reserve_idempotency_key(
            session,
            tenant_id="beta",
            workflow_id="order-sync",
            key="k-1",
            request_digest=digest,
            run_id="run-4",
        )
    assert not again.is_new
    assert again == ("existing", "run-1", digest)
    assert other_workflow.is_new
    assert other_tenant.is_new


async def test_concurrent_reservations_of_one_key_give_exactly_one_new(
    tenants: Database,
) -> None:
    async def reserve(index: int) -> tuple[str, str | None, str]:
        run_id = f"run-{index}"
        async with tenants.session() as session:
            reservation = await reserve_idempotency_key(
                session,
                tenant_id="acme",
                workflow_id="order-sync",
                key="same-key",
                request_digest="d" * 64,
                run_id=run_id,
            )
            if reservation.is_new:
                await create_run(
                    session,
                    run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, run_id)),
                    tenant_id="acme",
                    workflow_id="order-sync",
                    version=1,
                    trigger_type=TriggerType.API,
                )
        return reservation.outcome, reservation.run_id, run_id

    results = await asyncio.gather(*(reserve(index) for index in range(10)))
    winners = [own for outcome, _, own in results if outcome == "new"]
    assert len(winners) == 1
    assert {existing for outcome, existing, _ in results if outcome == "existing"} == {winners[0]}
    async with tenants.session() as session:
        _, count = await list_runs(session, tenant_id="acme")
    assert count == 1


async def test_an_expired_key_is_taken_over(tenants: Database) -> None:
    async with tenants.session() as session:
        await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            key="old",
            request_digest="a" * 64,
            run_id="run-old",
        )
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old")
            .values(created_at=datetime.now(UTC) - timedelta(hours=24, seconds=1))
        )
    async with tenants.session() as session:
        taken = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            key="old",
            request_digest="b" * 64,
            run_id="run-new",
        )
        after = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="order-sync",
            key="old",
            request_digest="c" * 64,
            run_id="run-third",
        )
    assert taken.is_new
    assert after == ("existing", "run-new", "b" * 64)


async def test_a_key_younger_than_its_time_to_live_is_kept(tenants: Database) -> None:
    async with tenants.session() as session:
        await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="w",
            key="young",
            request_digest="a" * 64,
            run_id="run-1",
        )
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "young")
            .values(created_at=datetime.now(UTC) - timedelta(hours=23, minutes=59))
        )
    async with tenants.session() as session:
        kept = await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="w",
            key="young",
            request_digest="b" * 64,
            run_id="run-2",
        )
    assert kept == ("existing", "run-1", "a" * 64)


async def test_concurrent_takeovers_of_an_expired_key_give_exactly_one_new(
    tenants: Database,
) -> None:
    async with tenants.session() as session:
        await reserve_idempotency_key(
            session,
            tenant_id="acme",
            workflow_id="w",
            key="stale",
            request_digest="a" * 64,
            run_id="run-old",
        )
        await session.execute(
            update(IdempotencyKey).values(created_at=datetime.now(UTC) - timedelta(days=2))
        )

    async def reserve(index: int) -> str:
        async with tenants.session() as session:
            reservation = await reserve_idempotency_key(
                session,
                tenant_id="acme",
                workflow_id="w",
                key="stale",
                request_digest="b" * 64,
                run_id=f"run-{index}",
            )
        return reservation.outcome

    outcomes = await asyncio.gather(*(reserve(index) for index in range(10)))
    assert sorted(outcomes) == ["existing"] * 9 + ["new"]


async def test_keys_longer_than_255_characters_are_refused(tenants: Database) -> None:
    async with tenants.session() as session:
        with pytest.raises(ValueError, match="1 to 255"):
            await reserve_idempotency_key(
                session,
                tenant_id="acme",
                workflow_id="w",
                key="k" * 256,
                request_digest="a",
                run_id="r",
            )


async def test_webhook_deliveries_are_deduplicated_per_trigger(tenants: Database) -> None:
    long_id = "delivery-" + "x" * 1000  # any length of delivery id fits

    async def deliver(trigger_id: str, delivery_id: str, run_id: str) -> tuple[str, str | None]:
        async with tenants.session() as session:
            reservation = await reserve_webhook_delivery(
                session,
                tenant_id="acme",
                workflow_id="w",
                trigger_id=trigger_id,
                delivery_id=delivery_id,
                run_id=run_id,
            )
        return reservation.outcome, reservation.run_id

    assert await deliver("github", long_id, "run-1") == ("new", None)
    assert await deliver("github", long_id, "run-2") == ("existing", "run-1")
    assert await deliver("stripe", long_id, "run-3") == ("new", None)
    assert await deliver("github", "another", "run-4") == ("new", None)
    outcomes = await asyncio.gather(*(deliver("github", "burst", f"b{i}") for i in range(10)))
    assert sorted(outcome for outcome, _ in outcomes) == ["existing"] * 9 + ["new"]


async def test_purge_deletes_old_reservations_only(tenants: Database) -> None:
    async with tenants.session() as session:
        for key in ("old", "new"):
            await reserve_idempotency_key(
                session,
                tenant_id="acme",
                workflow_id="w",
                key=key,
                request_digest="a",
                run_id=key,
            )
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old")
            .values(created_at=datetime.now(UTC) - timedelta(days=8))
        )
    async with tenants.session() as session:
        assert await purge_idempotency_keys(session) == 1
        assert await purge_idempotency_keys(session) == 0
        new = await reserve_idempotency_key(
            session, tenant_id="acme", workflow_id="w", key="new", request_digest="b", run_id="x"
        )
    assert new == ("existing", "new", "a")


# --- node history ---------------------------------------------------------------------------------


async def test_node_runs_are_listed_in_start_order_and_updated_in_place(
    tenants: Database,
) -> None:
    run = await new_run(tenants)
    async with tenants.session() as session:
        assert (
            await upsert_node_run(
                session,
                run_id=run.id,
                node_id="fetch",
                status=NodeStatus.RUNNING,
                input={"url": "https://example.com"},
                started_at=T0,
            )
            == 1
        )
        assert (
            await upsert_node_run(
                session, run_id=run.id, node_id="loop[1]", status=NodeStatus.RUNNING
            )
            == 2
        )
        assert (
            await upsert_node_run(
                session, run_id=run.id, node_id="loop[0]", status=NodeStatus.RUNNING
            )
            == 3
        )
    async with tenants.session() as session:
        # A later write of the same node keeps its place and replaces its fields.
        seq = await upsert_node_run(
            session,
            run_id=run.id,
            node_id="fetch",
            status=NodeStatus.FAILED,
            attempts=3,
            input={"url": "https://example.com"},
            error={"type": "HttpError", "status": 503},
            started_at=T0,
            finished_at=T0 + timedelta(seconds=4),
        )
        assert seq == 1
        await upsert_node_run(
            session,
            run_id=run.id,
            node_id="loop[0]",
            status=NodeStatus.COMPLETED,
            output=[1, 2],
        )
    async with tenants.session() as session:
        nodes = await list_node_runs(session, tenant_id="acme", run_id=run.id)
        assert await list_node_runs(session, tenant_id="beta", run_id=run.id) == []
    assert [(n.node_id, n.seq, n.status) for n in nodes] == [
        ("fetch", 1, NodeStatus.FAILED),
        ("loop[1]", 2, NodeStatus.RUNNING),
        ("loop[0]", 3, NodeStatus.COMPLETED),
    ]
    fetch = nodes[0]
    assert (fetch.attempts, fetch.input, fetch.output, fetch.error) == (
        3,
        {"url": "https://example.com"},
        None,
        {"type": "HttpError", "status": 503},
    )
    assert (fetch.started_at, fetch.finished_at) == (T0, T0 + timedelta(seconds=4))
    assert nodes[2].output == [1, 2]


async def test_concurrent_first_writes_get_distinct_start_numbers(tenants: Database) -> None:
    run = await new_run(tenants)

    async def start(node_id: str) -> int:
        async with tenants.session() as session:
            return await upsert_node_run(
                session, run_id=run.id, node_id=node_id, status=NodeStatus.RUNNING
            )

    numbers = await asyncio.gather(*(start(f"map[{index}]") for index in range(10)))
    assert sorted(numbers) == list(range(1, 11))
    async with tenants.session() as session:
        nodes = await list_node_runs(session, tenant_id="acme", run_id=run.id)
    assert [node.seq for node in nodes] == list(range(1, 11))


async def test_a_node_of_a_missing_run_is_refused(tenants: Database) -> None:
    with pytest.raises(NotFound):
        async with tenants.session() as session:
            await upsert_node_run(session, run_id="missing", node_id="a", status=NodeStatus.RUNNING)


async def test_large_values_are_stored_truncated(tenants: Database) -> None:
    run = await new_run(tenants)
    big = {"text": "é" * 100}  # 200 bytes of UTF-8 in the string alone
    async with tenants.session() as session:
        await upsert_node_run(
            session,
            run_id=run.id,
            node_id="a",
            status=NodeStatus.COMPLETED,
            input={"small": 1},
            output=big,
            max_bytes=150,
        )
    async with tenants.session() as session:
        [node] = await list_node_runs(session, tenant_id="acme", run_id=run.id)
    assert node.input == {"small": 1}
    assert node.output == {
        "truncated": True,
        "bytes": len(b'{"text": "') + 200 + len('"}'),
        "preview": ('{"text": "' + "é" * 100 + '"}')[:150],
    }


def test_cap_record_value_keeps_values_within_the_limit() -> None:
    assert cap_record_value(None, 1) is None
    assert cap_record_value([1, 2, 3], 9) == [1, 2, 3]  # "[1, 2, 3]" is 9 bytes
    capped = cap_record_value([1, 2, 3], 8)
    assert capped == {"truncated": True, "bytes": 9, "preview": "[1, 2, 3"}


async def test_deleting_a_run_deletes_its_nodes(tenants: Database) -> None:
    run = await new_run(tenants)
    async with tenants.session() as session:
        await upsert_node_run(session, run_id=run.id, node_id="a", status=NodeStatus.RUNNING)
    async with tenants.session() as session:
        loaded = await get_run_by_id(session, run_id=run.id)
        await session.delete(loaded)
    async with tenants.session() as session:
        assert await list_node_runs(session, tenant_id="acme", run_id=run.id) == []


# --- statistics -----------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 0.95) == pytest.approx(48.0)


async def test_workflow_stats(tenants: Database) -> None:
    finished = [
        (RunState.COMPLETED, 10.0),
        (RunState.COMPLETED, 20.0),
        (RunState.COMPLETED, 30.0),
        (RunState.FAILED, 40.0),
        (RunState.TIMED_OUT, 100.0),
    ]
    for index, (state, seconds) in enumerate(finished):
        run = await new_run(tenants, created_at=T0 + timedelta(minutes=index))
        async with tenants.session() as session:
            await update_run_state(session, run_id=run.id, state=RunState.RUNNING, started_at=T0)
            await update_run_state(
                session, run_id=run.id, state=state, finished_at=T0 + timedelta(seconds=seconds)
            )
    # Cancelled before it started: counted, but it has no duration.
    never_started = await new_run(tenants, created_at=T0)
    async with tenants.session() as session:
        await update_run_state(session, run_id=never_started.id, state=RunState.CANCELLED)
    await new_run(tenants, state=RunState.RUNNING, created_at=T0)
    # Outside the window, another workflow, another tenant: not counted.
    await new_run(tenants, state=RunState.COMPLETED, created_at=T0 - timedelta(seconds=1))
    await new_run(tenants, workflow_id="other", state=RunState.FAILED, created_at=T0)
    await new_run(tenants, tenant_id="beta", state=RunState.FAILED, created_at=T0)

    async with tenants.session() as session:
        stats = await workflow_stats(session, tenant_id="acme", workflow_id="order-sync", since=T0)
        empty = await workflow_stats(session, tenant_id="beta", workflow_id="nope", since=T0)
    assert stats.counts == {
        RunState.ACCEPTED: 0,
        RunState.SCHEDULED: 0,
        RunState.RUNNING: 1,
        RunState.PAUSED: 0,
        RunState.COMPLETED: 3,
        RunState.FAILED: 1,
        RunState.TIMED_OUT: 1,
        RunState.CANCELLING: 0,
        RunState.CANCELLED: 1,
        RunState.CRASHED: 0,
    }
    assert stats.durations == [10.0, 20.0, 30.0, 40.0, 100.0]
    assert stats.p50_seconds == 30.0
    assert stats.p95_seconds == pytest.approx(88.0)
    assert stats.success_rate == pytest.approx(3 / 6)
    assert set(empty.counts.values()) == {0}
    assert (empty.p50_seconds, empty.p95_seconds, empty.success_rate) == (None, None, None)
