"""Reading runs: GetRun, ListRuns (active, by state, by workflow), ListRunNodes, WorkflowStats.

Everything comes from the store (the run recorder keeps it current), so a read costs a query or
two and no call to Prefect. Values pass through the tenant's redactor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import NotFoundProblem
from api.presenters import node_public, run_public
from api.schemas.common import Page
from api.schemas.runs import Durations, NodeRunPublic, RunPublic, WorkflowStatsPublic
from api.service import Service
from api.store import runs as store
from api.store.models import Run, RunState
from api.store.workflows import get_workflow


async def present_run(service: Service, run: Run, session: AsyncSession | None = None) -> RunPublic:
    redactor = await service.redactors.get(run.tenant_id, session)
    return run_public(run, redactor, service.prefect.ui_url(run.flow_run_id))


async def get_run(
    session: AsyncSession, service: Service, *, tenant_id: str, run_id: str
) -> RunPublic:
    run = await store.get_run(session, tenant_id=tenant_id, run_id=run_id)
    if run is None:
        raise NotFoundProblem(f"run {run_id!r}")
    return await present_run(service, run, session)


async def list_runs(
    session: AsyncSession,
    service: Service,
    *,
    tenant_id: str,
    workflow_id: str | None,
    states: Sequence[RunState] | None,
    active: bool | None,
    limit: int,
    offset: int,
) -> Page[RunPublic]:
    rows, total = await store.list_runs(
        session,
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        states=states or None,
        active=active,
        limit=limit,
        offset=offset,
    )
    redactor = await service.redactors.get(tenant_id, session)
    data = [run_public(row, redactor, service.prefect.ui_url(row.flow_run_id)) for row in rows]
    return Page[RunPublic](data=data, count=total)


async def list_run_nodes(
    session: AsyncSession,
    service: Service,
    *,
    tenant_id: str,
    run_id: str,
    limit: int = 200,
    offset: int = 0,
) -> Page[NodeRunPublic]:
    if await store.get_run(session, tenant_id=tenant_id, run_id=run_id) is None:
        raise NotFoundProblem(f"run {run_id!r}")
    nodes = await store.list_node_runs(session, tenant_id=tenant_id, run_id=run_id)
    redactor = await service.redactors.get(tenant_id, session)
    page = [node_public(n, redactor) for n in nodes[offset : offset + limit]]
    return Page[NodeRunPublic](data=page, count=len(nodes))


async def workflow_stats(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, since: datetime
) -> WorkflowStatsPublic:
    if await get_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id) is None:
        raise NotFoundProblem(f"workflow {workflow_id!r}")
    stats = await store.workflow_stats(
        session, tenant_id=tenant_id, workflow_id=workflow_id, since=since
    )
    return WorkflowStatsPublic(
        counts={str(state): count for state, count in stats.counts.items()},
        duration_seconds=Durations(p50=stats.p50_seconds, p95=stats.p95_seconds),
        success_rate=stats.success_rate,
    )
