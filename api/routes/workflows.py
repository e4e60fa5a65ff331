"""Stored workflows: CRUD into immutable versions, enable/disable, validation, starting runs,
statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response

from api.commands.runs import StartRun
from api.commands.workflows import (
    CreateWorkflow,
    DeleteWorkflow,
    SetWorkflowEnabled,
    UpdateWorkflow,
)
from api.deps import BusDep, PageDep, ServiceDep, SessionDep, TenantDep
from api.errors import problem_responses
from api.queries import runs as run_queries
from api.queries import workflows as queries
from api.schemas.common import MAX_VERSION, Page, ProblemItem, Rfc3339
from api.schemas.runs import RunPublic, RunStart, WorkflowStatsPublic
from api.schemas.workflows import (
    ValidationResult,
    VersionPublic,
    WorkflowPublic,
    WorkflowSummary,
)
from api.store.tenants import get_tenant
from api.tenancy import TenantSettings
from interpreter.definition.validation import validate_document

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

Definition = Annotated[
    dict[str, Any],
    Body(description="A workflow definition (see docs/definition-format.md)."),
]
WorkflowId = Annotated[str, Path(description="The workflow's id.")]


@router.post(
    "",
    status_code=201,
    operation_id="createWorkflow",
    responses=problem_responses(400, 401, 409, 413, 422, 503),
)
async def create_workflow(definition: Definition, bus: BusDep, caller: TenantDep) -> WorkflowPublic:
    """Store a new workflow (version 1, enabled) and create its Prefect deployment."""
    result: WorkflowPublic = await bus.dispatch(
        CreateWorkflow(tenant_id=caller.tenant, definition=definition), caller
    )
    return result


@router.get("", operation_id="listWorkflows", responses=problem_responses(401, 422))
async def list_workflows(
    session: SessionDep,
    service: ServiceDep,
    caller: TenantDep,
    page: PageDep,
    tag: Annotated[str | None, Query(description="Only workflows with this tag.")] = None,
    enabled: Annotated[bool | None, Query(description="Only enabled (or disabled) ones.")] = None,
) -> Page[WorkflowSummary]:
    """The tenant's workflows (current versions, without definitions)."""
    return await queries.list_workflows(
        session, service, tenant_id=caller.tenant, tag=tag, enabled=enabled,
        limit=page.limit, offset=page.offset,
    )  # fmt: skip


@router.post(
    "/validate",
    operation_id="validateWorkflow",
    responses=problem_responses(400, 401, 413, 422),
)
async def validate_workflow(
    definition: Definition, session: SessionDep, service: ServiceDep, caller: TenantDep
) -> ValidationResult:
    """Every problem `altlas-flows validate` would report, with the tenant's pieces."""
    tenant = await get_tenant(session, tenant_id=caller.tenant)
    policy = TenantSettings.of(tenant.settings if tenant is not None else None)
    problems = validate_document(
        definition, registry=policy.registry(service.registry, caller.tenant)
    )
    return ValidationResult(
        valid=not problems,
        problems=[ProblemItem(path=p.path, message=p.message) for p in problems],
    )


@router.get("/{workflow_id}", operation_id="getWorkflow", responses=problem_responses(401, 404))
async def get_workflow(
    workflow_id: WorkflowId, session: SessionDep, service: ServiceDep, caller: TenantDep
) -> WorkflowPublic:
    """The workflow at its current version."""
    return await queries.get_workflow(
        session, service, tenant_id=caller.tenant, workflow_id=workflow_id
    )


@router.put(
    "/{workflow_id}",
    operation_id="updateWorkflow",
    responses=problem_responses(400, 401, 404, 413, 422, 503),
)
async def update_workflow(
    workflow_id: WorkflowId, definition: Definition, bus: BusDep, caller: TenantDep
) -> WorkflowPublic:
    """Store the definition as the next version (an identical one makes no version)."""
    result: WorkflowPublic = await bus.dispatch(
        UpdateWorkflow(tenant_id=caller.tenant, workflow_id=workflow_id, definition=definition),
        caller,
    )
    return result


@router.delete(
    "/{workflow_id}",
    status_code=204,
    operation_id="deleteWorkflow",
    responses=problem_responses(401, 404, 503),
)
async def delete_workflow(workflow_id: WorkflowId, bus: BusDep, caller: TenantDep) -> Response:
    """Delete the workflow, its versions and its deployment; its runs stay readable."""
    await bus.dispatch(DeleteWorkflow(tenant_id=caller.tenant, workflow_id=workflow_id), caller)
    return Response(status_code=204)


@router.get(
    "/{workflow_id}/versions",
    operation_id="listWorkflowVersions",
    responses=problem_responses(401, 404, 422),
)
async def list_versions(
    workflow_id: WorkflowId, session: SessionDep, caller: TenantDep, page: PageDep
) -> Page[VersionPublic]:
    """The workflow's versions, newest first."""
    return await queries.list_versions(
        session, tenant_id=caller.tenant, workflow_id=workflow_id,
        limit=page.limit, offset=page.offset,
    )  # fmt: skip


@router.get(
    "/{workflow_id}/versions/{version}",
    operation_id="getWorkflowVersion",
    responses=problem_responses(401, 404, 422),
)
async def get_version(
    workflow_id: WorkflowId,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    session: SessionDep,
    service: ServiceDep,
    caller: TenantDep,
) -> WorkflowPublic:
    """The workflow as it was at `version`."""
    return await queries.get_workflow_version(
        session, service, tenant_id=caller.tenant, workflow_id=workflow_id, version=version
    )


async def _set_enabled(
    workflow_id: str, enabled: bool, bus: BusDep, caller: TenantDep
) -> WorkflowPublic:
    command = SetWorkflowEnabled(tenant_id=caller.tenant, workflow_id=workflow_id, enabled=enabled)
    result: WorkflowPublic = await bus.dispatch(command, caller)
    return result


@router.post(
    "/{workflow_id}/enable",
    operation_id="enableWorkflow",
    responses=problem_responses(401, 404, 503),
)
async def enable_workflow(
    workflow_id: WorkflowId, bus: BusDep, caller: TenantDep
) -> WorkflowPublic:
    """Enable the workflow: it starts runs again and its schedules resume."""
    return await _set_enabled(workflow_id, True, bus, caller)


@router.post(
    "/{workflow_id}/disable",
    operation_id="disableWorkflow",
    responses=problem_responses(401, 404, 503),
)
async def disable_workflow(
    workflow_id: WorkflowId, bus: BusDep, caller: TenantDep
) -> WorkflowPublic:
    """Disable the workflow: no new runs (409), webhooks 404, schedules paused."""
    return await _set_enabled(workflow_id, False, bus, caller)


@router.post(
    "/{workflow_id}/runs",
    status_code=202,
    operation_id="startRun",
    responses=problem_responses(400, 401, 404, 409, 413, 422),
)
async def start_run(
    workflow_id: WorkflowId,
    bus: BusDep,
    service: ServiceDep,
    caller: TenantDep,
    body: Annotated[RunStart, Body(default_factory=RunStart)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Makes retries safe (1-255 characters).",
        ),
    ] = None,
) -> RunPublic:
    """Start a run: validated, recorded and answered at once; Prefect runs it."""
    command = StartRun(
        tenant_id=caller.tenant,
        workflow_id=workflow_id,
        parameters=body.parameters,
        version=body.version,
        scheduled_at=body.scheduled_at,
        idempotency_key=idempotency_key,
    )
    run = await bus.dispatch(command, caller)
    return await run_queries.present_run(service, run)


@router.get(
    "/{workflow_id}/stats",
    operation_id="getWorkflowStats",
    responses=problem_responses(401, 404, 422),
)
async def workflow_stats(
    workflow_id: WorkflowId,
    session: SessionDep,
    caller: TenantDep,
    since: Annotated[
        Rfc3339 | None, Query(description="RFC 3339 with an offset; default 7 days ago.")
    ] = None,
) -> WorkflowStatsPublic:
    """Runs since `since` by state; durations of the finished ones; success rate."""
    start = since or datetime.now(UTC) - timedelta(days=7)
    return await run_queries.workflow_stats(
        session, tenant_id=caller.tenant, workflow_id=workflow_id, since=start
    )
