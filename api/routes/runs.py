"""Runs: read one, list, read its nodes; cancel, pause, resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from api.commands.runs import CancelRun, PauseRun, ResumeRun
from api.deps import BusDep, PageDep, ServiceDep, SessionDep, TenantDep
from api.errors import problem_responses
from api.queries import runs as queries
from api.schemas.common import Page
from api.schemas.runs import NodeRunPublic, RunPublic, RunResume
from api.store.models import RunState

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.get("", operation_id="listRuns", responses=problem_responses(401, 422))
async def list_runs(
    session: SessionDep,
    service: ServiceDep,
    caller: TenantDep,
    page: PageDep,
    workflow_id: Annotated[str | None, Query(description="Only this workflow's runs.")] = None,
    state: Annotated[list[RunState] | None, Query(description="Only runs in these states.")] = None,
    active: Annotated[bool | None, Query(description="Only active (or finished) runs.")] = None,
) -> Page[RunPublic]:
    """The tenant's runs, newest first."""
    return await queries.list_runs(
        session, service, tenant_id=caller.tenant, workflow_id=workflow_id, states=state,
        active=active, limit=page.limit, offset=page.offset,
    )  # fmt: skip


@router.get("/{run_id}", operation_id="getRun", responses=problem_responses(401, 404))
async def get_run(
    run_id: str, session: SessionDep, service: ServiceDep, caller: TenantDep
) -> RunPublic:
    """One run."""
    return await queries.get_run(session, service, tenant_id=caller.tenant, run_id=run_id)


@router.get(
    "/{run_id}/nodes", operation_id="listRunNodes", responses=problem_responses(401, 404, 422)
)
async def list_run_nodes(
    run_id: str, session: SessionDep, service: ServiceDep, caller: TenantDep, page: PageDep
) -> Page[NodeRunPublic]:
    """The run's nodes in the order they started: input, output, error, timing."""
    return await queries.list_run_nodes(
        session, service, tenant_id=caller.tenant, run_id=run_id,
        limit=page.limit, offset=page.offset,
    )  # fmt: skip


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    operation_id="cancelRun",
    responses=problem_responses(401, 404, 409, 503),
)
async def cancel_run(run_id: str, bus: BusDep, service: ServiceDep, caller: TenantDep) -> RunPublic:
    """Cancel the run: no node starts any more, running ones are stopped."""
    run = await bus.dispatch(CancelRun(tenant_id=caller.tenant, run_id=run_id), caller)
    return await queries.present_run(service, run)


@router.post(
    "/{run_id}/pause",
    status_code=202,
    operation_id="pauseRun",
    responses=problem_responses(401, 404, 409),
)
async def pause_run(run_id: str, bus: BusDep, service: ServiceDep, caller: TenantDep) -> RunPublic:
    """Pause the run before its next node starts."""
    run = await bus.dispatch(PauseRun(tenant_id=caller.tenant, run_id=run_id), caller)
    return await queries.present_run(service, run)


@router.post(
    "/{run_id}/resume",
    status_code=202,
    operation_id="resumeRun",
    responses=problem_responses(400, 401, 404, 409, 413, 422, 503),
)
async def resume_run(
    run_id: str,
    bus: BusDep,
    service: ServiceDep,
    caller: TenantDep,
    body: Annotated[RunResume, Body(default_factory=RunResume)],
) -> RunPublic:
    """Resume a paused run; for a run waiting in `core.approval`, `input` is the answer."""
    command = ResumeRun(tenant_id=caller.tenant, run_id=run_id, input=body.input)
    run = await bus.dispatch(command, caller)
    return await queries.present_run(service, run)
