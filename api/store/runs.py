"""Repository of runs, idempotency keys and node history (`runs`, `idempotency_keys`,
`node_runs`), and the workflow statistics computed from runs.

Race-safety: a run's state moves with one conditional UPDATE (`WHERE state IN (the states allowed
to move to the target)`), so concurrent writers cannot move it backwards; an idempotency key is
reserved with INSERT ... ON CONFLICT DO NOTHING on its primary key, so of concurrent
reservations exactly one wins; a node's start order comes from a counter on its run's row.

Reads of tenant data take `tenant_id` and filter by it. The worker-side functions that know a run
only by its id or its Prefect flow run (`get_run_by_flow_run`, `update_run_state` without
`tenant_id`, `set_flow_run`, `upsert_node_run`, `list_runs_by_state`) are not for request handlers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import CursorResult, delete, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.database import dialect_insert, fetch_page
from api.store.errors import NotFound
from api.store.models import (
    IdempotencyKey,
    NodeRun,
    NodeStatus,
    Run,
    RunState,
    TriggerType,
    UtcDateTime,
    new_run_id,
    utcnow,
)

IDEMPOTENCY_TTL = timedelta(hours=24)
# Providers retry failed deliveries for days (Stripe: up to 3), so a delivery id is remembered
# longer than an Idempotency-Key.
WEBHOOK_DEDUPE_TTL = timedelta(days=7)
PREVIEW_CHARS = 1000


# --- runs -----------------------------------------------------------------------------------------


async def create_run(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str,
    version: int,
    trigger_type: TriggerType,
    trigger_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    trigger_event: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    state: RunState = RunState.ACCEPTED,
    scheduled_at: datetime | None = None,
    created_at: datetime | None = None,
    flow_run_id: str | None = None,
) -> Run:
    """Record a new run (state `accepted` unless told otherwise) with the parameters as given
    and the event that started it (`trigger_event`, the runs' `trigger` scope)."""
    run = Run(
        id=run_id or new_run_id(),
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        version=version,
        state=state,
        trigger_type=trigger_type,
        trigger_id=trigger_id,
        parameters=dict(parameters or {}),
        trigger_event=dict(trigger_event) if trigger_event is not None else None,
        created_at=created_at or utcnow(),
        scheduled_at=scheduled_at,
        flow_run_id=flow_run_id,
        node_seq=0,
    )
    session.add(run)
    await session.flush()
    return run


async def record_flow_run(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str,
    version: int,
    flow_run_id: str,
    trigger_type: TriggerType,
    trigger_id: str | None,
    trigger_event: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    scheduled_at: datetime,
) -> Run:
    """The run of a flow run the service did not start (a deployment's schedule fired, someone
    pressed "Run" in the Prefect UI): the one recorded for that flow run already (a rerun of
    a crashed flow run), else a new `scheduled` one whose id is the flow run's (the engine
    knows it as `run.id` before the run is recorded)."""
    existing = await get_run_by_flow_run(session, flow_run_id=flow_run_id)
    if existing is not None:
        return existing
    return await create_run(
        session,
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        version=version,
        trigger_type=trigger_type,
        trigger_id=trigger_id,
        trigger_event=trigger_event,
        parameters=parameters,
        state=RunState.SCHEDULED,
        scheduled_at=scheduled_at,
        flow_run_id=flow_run_id,
        run_id=flow_run_id,
    )


async def get_run(session: AsyncSession, *, tenant_id: str, run_id: str) -> Run | None:
    """A run of this tenant; None when missing or another tenant's."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.id == run_id)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one_or_none()


async def get_run_by_id(session: AsyncSession, *, run_id: str) -> Run | None:
    """A run whichever its tenant (worker side: the run id comes from the flow run's
    parameters, not from a request)."""
    return await session.get(Run, run_id, populate_existing=True)


async def get_run_by_flow_run(session: AsyncSession, *, flow_run_id: str) -> Run | None:
    """The run a Prefect flow run executes, whichever its tenant (worker side)."""
    query = (
        select(Run).where(Run.flow_run_id == flow_run_id).execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one_or_none()


async def list_runs(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str | None = None,
    states: Iterable[RunState] | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """A tenant's runs, newest first, and the total count of matches. `states` keeps runs in any
    of them; `active=True` keeps active runs, `active=False` finished ones (both filters apply
    when both are given)."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .execution_options(populate_existing=True)
    )
    if workflow_id is not None:
        query = query.where(Run.workflow_id == workflow_id)
    if states is not None:
        query = query.where(Run.state.in_([RunState(state) for state in states]))
    if active is not None:
        query = query.where(Run.state.in_(sorted(RunState.ACTIVE if active else RunState.FINISHED)))
    return await fetch_page(session, query, limit=limit, offset=offset)


async def list_runs_by_state(
    session: AsyncSession,
    *,
    states: Iterable[RunState],
    due_before: datetime | None = None,
    limit: int = 100,
) -> list[Run]:
    """Runs of every tenant in these states, oldest first (dispatcher side: runs still
    `accepted` after a restart, or active runs to reconcile with Prefect). With `due_before`,
    only runs without `scheduled_at` or scheduled at or before it."""
    query = (
        select(Run)
        .where(Run.state.in_([RunState(state) for state in states]))
        .order_by(Run.created_at, Run.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if due_before is not None:
        query = query.where(or_(Run.scheduled_at.is_(None), Run.scheduled_at <= due_before))
    return list((await session.scalars(query)).all())


async def update_run_state(
    session: AsyncSession,
    *,
    run_id: str,
    state: RunState,
    tenant_id: str | None = None,
    only_forward: bool = True,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    output: Any | None = None,
    error: Any | None = None,
    flow_run_id: str | None = None,
) -> bool:
    """Move a run to `state`; True if it moved, False if it does not exist (for `tenant_id`, when
    given) or `state` is not forward of its current state (`RunState.can_move_to`).

    One conditional UPDATE decides, so of concurrent writers none moves the run backwards.
    `output`, `error`, `flow_run_id` and the times are written only when given. Moving to
    `running` sets `started_at` (to now by default) unless the run has one already (a resumed
    run keeps its start); moving to a finished state sets `finished_at` (to now by default).
    `only_forward=False` sets the state whatever it was (repairs by an operator).
    """
    state = RunState(state)
    now = utcnow()
    values: dict[str, Any] = {"state": state}
    if state is RunState.RUNNING:
        # The literal is typed explicitly: inside a function it would not get the column's type,
        # and SQLite would store a non-UTC time as if it were UTC.
        values["started_at"] = func.coalesce(
            Run.started_at, literal(started_at or now, UtcDateTime())
        )
    elif started_at is not None:
        values["started_at"] = started_at
    if finished_at is not None or state in RunState.FINISHED:
        values["finished_at"] = finished_at or now
    if output is not None:
        values["output"] = output
    if error is not None:
        values["error"] = error
    if flow_run_id is not None:
        values["flow_run_id"] = flow_run_id
    statement = update(Run).where(Run.id == run_id)
    if tenant_id is not None:
        statement = statement.where(Run.tenant_id == tenant_id)
    if only_forward:
        statement = statement.where(Run.state.in_(sorted(RunState.predecessors(state))))
    result = await session.execute(
        statement.values(**values).returning(Run.id).execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def cancel_unstarted_runs(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, error: Any
) -> int:
    """Cancel the workflow's runs that have not started (`accepted`, `scheduled`); how many."""
    result = await session.execute(
        update(Run)
        .where(
            Run.tenant_id == tenant_id,
            Run.workflow_id == workflow_id,
            Run.state.in_([RunState.ACCEPTED, RunState.SCHEDULED]),
        )
        .values(state=RunState.CANCELLED, error=error, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def request_pause(
    session: AsyncSession, *, tenant_id: str, run_id: str, paused: bool
) -> bool:
    """Ask the run's engine to pause before its next node (`paused`) or to go on; False when
    the tenant has no such run."""
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.tenant_id == tenant_id)
        .values(pause_requested=paused)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def pause_requested(session: AsyncSession, *, tenant_id: str, run_id: str) -> bool:
    """Whether the run was asked to pause (False for a run the store does not know)."""
    found = await session.execute(
        select(Run.pause_requested).where(Run.id == run_id, Run.tenant_id == tenant_id)
    )
    return bool(found.scalar_one_or_none())


async def set_flow_run(
    session: AsyncSession,
    *,
    run_id: str,
    flow_run_id: str,
    deployment_id: str | None = None,
) -> bool:
    """Record the Prefect flow run (and deployment) executing a run; False if no such run."""
    values: dict[str, Any] = {"flow_run_id": flow_run_id}
    if deployment_id is not None:
        values["deployment_id"] = deployment_id
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(**values)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


# --- idempotency ----------------------------------------------------------------------------------


class Reservation(NamedTuple):
    """What `reserve_idempotency_key` found: `("new", None, None)` when this call reserved the key
    (the caller now creates the run it named), else `("existing", run_id, request_digest)` of the
    request that reserved it first."""

    outcome: Literal["new", "existing"]
    run_id: str | None
    request_digest: str | None

    @property
    def is_new(self) -> bool:
        return self.outcome == "new"


async def reserve_idempotency_key(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str,
    key: str,
    request_digest: str,
    run_id: str,
    ttl: timedelta = IDEMPOTENCY_TTL,
) -> Reservation:
    """Reserve `key` for the run `run_id` unless a reservation younger than `ttl` exists.

    Race-safe on both dialects: the INSERT of the primary key either inserts or (ON CONFLICT DO
    NOTHING) does nothing; a concurrent reservation waits for the first transaction and then
    finds its row. An expired row is taken over with a conditional UPDATE, which only one of
    several concurrent callers can win. Reserve and create the run in the same transaction.
    """
    if not key or len(key) > 255:
        raise ValueError("an idempotency key has 1 to 255 characters")
    now = utcnow()
    inserted = await session.execute(
        dialect_insert(session, IdempotencyKey)
        .values(
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            key=key,
            request_digest=request_digest,
            run_id=run_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "workflow_id", "key"])
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is not None:
        return Reservation("new", None, None)
    where = (
        IdempotencyKey.tenant_id == tenant_id,
        IdempotencyKey.workflow_id == workflow_id,
        IdempotencyKey.key == key,
    )
    replaced = await session.execute(
        update(IdempotencyKey)
        .where(*where, IdempotencyKey.created_at <= now - ttl)
        .values(request_digest=request_digest, run_id=run_id, created_at=now)
        .returning(IdempotencyKey.key)
        .execution_options(synchronize_session=False)
    )
    if replaced.first() is not None:
        return Reservation("new", None, None)
    existing = (
        await session.execute(
            select(IdempotencyKey.run_id, IdempotencyKey.request_digest).where(*where)
        )
    ).one()
    return Reservation("existing", existing[0], existing[1])


async def reserve_webhook_delivery(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str,
    trigger_id: str,
    delivery_id: str,
    run_id: str,
    ttl: timedelta = WEBHOOK_DEDUPE_TTL,
) -> Reservation:
    """`reserve_idempotency_key` for a webhook delivery id (`dedupe_key` or the scheme's own).

    The key is `webhook:<trigger_id>:<sha256 of the delivery id>` (any length of id fits, and
    it cannot collide with an `Idempotency-Key`, which the API takes as given). The request
    digest is unused for deliveries: a redelivery is a duplicate whatever its body.
    """
    digest = hashlib.sha256(delivery_id.encode("utf-8")).hexdigest()
    return await reserve_idempotency_key(
        session,
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        key=f"webhook:{trigger_id}:{digest}"[:255],
        request_digest=digest,
        run_id=run_id,
        ttl=ttl,
    )


async def purge_idempotency_keys(
    session: AsyncSession, *, older_than: timedelta = WEBHOOK_DEDUPE_TTL
) -> int:
    """Delete reservations older than `older_than` (housekeeping); how many were deleted."""
    result = await session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at <= utcnow() - older_than)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)  # a DELETE without RETURNING
    return result.rowcount


# --- node history ---------------------------------------------------------------------------------


def cap_record_value(value: Any, max_bytes: int) -> Any:
    """`value` itself if its JSON is at most `max_bytes` bytes, else the REST placeholder
    `{"truncated": true, "bytes": n, "preview": "<first characters of the JSON>"}`."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return value
    return {"truncated": True, "bytes": size, "preview": text[: min(PREVIEW_CHARS, max_bytes)]}


async def upsert_node_run(
    session: AsyncSession,
    *,
    run_id: str,
    node_id: str,
    status: NodeStatus,
    attempts: int = 1,
    input: Any | None = None,
    output: Any | None = None,
    error: Any | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    max_bytes: int | None = None,
) -> int:
    """Write the whole record of one node of a run (a later call replaces every field but `seq`);
    returns its `seq`, the start order within the run, assigned on the first write.

    With `max_bytes`, `input`, `output` and `error` are capped by `cap_record_value`. Raises
    `NotFound` without the run. Values are written as given: redact secrets first.
    """
    if max_bytes is not None:
        input, output, error = (cap_record_value(v, max_bytes) for v in (input, output, error))
    fields: dict[str, Any] = {
        "status": NodeStatus(status),
        "attempts": attempts,
        "input": input,
        "output": output,
        "error": error,
        "started_at": started_at,
        "finished_at": finished_at,
    }
    updated = await session.execute(
        update(NodeRun)
        .where(NodeRun.run_id == run_id, NodeRun.node_id == node_id)
        .values(**fields)
        .returning(NodeRun.seq)
        .execution_options(synchronize_session=False)
    )
    seq = updated.scalar_one_or_none()
    if seq is not None:
        return int(seq)
    # First write of this node: take the next number from the run's counter. The UPDATE locks
    # the run's row until commit, so concurrent first writes of one run get distinct numbers.
    counted = await session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(node_seq=Run.node_seq + 1)
        .returning(Run.node_seq)
        .execution_options(synchronize_session=False)
    )
    seq = counted.scalar_one_or_none()
    if seq is None:
        raise NotFound("run", run_id)
    statement = dialect_insert(session, NodeRun).values(run_id=run_id, node_id=node_id, seq=seq)
    statement = statement.values(**fields).on_conflict_do_update(
        index_elements=["run_id", "node_id"],
        # A concurrent first write of the same node won the insert: keep its seq.
        set_={name: getattr(statement.excluded, name) for name in fields},
    )
    final = await session.execute(statement.returning(NodeRun.seq))
    return int(final.scalar_one())


async def list_node_runs(session: AsyncSession, *, tenant_id: str, run_id: str) -> list[NodeRun]:
    """The nodes of a run of this tenant in start order; empty for another tenant's run."""
    query = (
        select(NodeRun)
        .join(Run, Run.id == NodeRun.run_id)
        .where(Run.tenant_id == tenant_id, NodeRun.run_id == run_id)
        .order_by(NodeRun.seq, NodeRun.node_id)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(query)).all())


# --- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowStats:
    """`getWorkflowStats`: runs created since a time, by state; durations of the finished ones."""

    counts: dict[RunState, int]
    p50_seconds: float | None
    p95_seconds: float | None
    success_rate: float | None
    durations: list[float]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The `fraction` quantile (0-1) of sorted values, interpolated linearly between closest
    ranks (as PostgreSQL's `percentile_cont`); None for no values."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return sorted_values[low]
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


async def workflow_stats(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, since: datetime
) -> WorkflowStats:
    """Statistics of a workflow's runs created at or after `since`: a count for every state
    (zeros included), p50 and p95 of the durations (`finished_at - started_at`) of finished runs
    that started, and `success_rate` = completed ÷ finished (None when none finished)."""
    scope = (Run.tenant_id == tenant_id, Run.workflow_id == workflow_id, Run.created_at >= since)
    counts = dict.fromkeys(RunState, 0)
    by_state = await session.execute(
        select(Run.state, func.count()).where(*scope).group_by(Run.state)
    )
    for state, count in by_state.all():
        counts[RunState(state)] = int(count)
    # Durations are computed here rather than in SQL: date arithmetic differs per dialect, and a
    # window of runs of one workflow is small.
    times = await session.execute(
        select(Run.started_at, Run.finished_at).where(
            *scope,
            Run.state.in_(sorted(RunState.FINISHED)),
            Run.started_at.is_not(None),
            Run.finished_at.is_not(None),
        )
    )
    durations = sorted(
        max((finished - started).total_seconds(), 0.0)
        for started, finished in times.all()
        if started is not None and finished is not None
    )
    finished_count = sum(counts[state] for state in RunState.FINISHED)
    return WorkflowStats(
        counts=counts,
        p50_seconds=percentile(durations, 0.5),
        p95_seconds=percentile(durations, 0.95),
        success_rate=(counts[RunState.COMPLETED] / finished_count) if finished_count else None,
        durations=durations,
    )
