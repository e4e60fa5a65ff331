"""Keeps each enabled workflow's Prefect deployment in step with the store.

Commands call `workflow_changed` / `workflow_removed` inside their transaction (when Prefect
refuses or cannot be reached, the change is not stored: 503); `reconcile_all` repairs any drift
at start-up. `deployment_id` finds the deployment runs are created from (cached per process).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

from prefect import get_client

from api.errors import PrefectUnavailableProblem, Problem
from api.prefect_gateway import is_transport_error
from api.service import Service
from api.store.models import Workflow, WorkflowVersion
from api.store.workflows import list_enabled_workflows
from deployments.sync import (
    ReconcileReport,
    SyncError,
    WorkflowDeployment,
    deployment_name,
    ensure_work_pool,
    reconcile,
    remove_workflow,
    sync_workflow,
)

PREFECT_TIMEOUT_SECONDS = 10.0
"""How long a change waits for Prefect to sync its deployment: the change's transaction is open
meanwhile (on SQLite it holds the write lock), so a hung Prefect answers 503, not never."""

SERVICE_ENTRYPOINT = "api.entrypoint.workflow_flow"
"""What Prefect's own workers load for the service's deployments (`api/entrypoint.py`: the
generic flow with the store-backed run services). Named, not imported: importing it sets those
services for the whole process."""

_deployment_ids: dict[tuple[str, str], UUID] = {}


def spec_of(row: Workflow, version: WorkflowVersion) -> WorkflowDeployment:
    return WorkflowDeployment(
        tenant=row.tenant_id,
        workflow_id=row.id,
        version=version.version,
        definition=version.definition,
        enabled=row.enabled,
    )


async def workflow_changed(service: Service, row: Workflow, version: WorkflowVersion) -> None:
    """Create or update the workflow's deployment (paused when the workflow is disabled)."""
    try:
        async with get_client() as client:
            deployment = await sync_workflow(
                client, spec_of(row, version), work_pool=service.work_pool
            )
    except SyncError as exc:
        raise Problem(422, "Unprocessable request", str(exc), slug="invalid-definition") from None
    except Exception as exc:
        if is_transport_error(exc) or isinstance(exc, TimeoutError):
            raise PrefectUnavailableProblem(exc) from None
        raise
    _deployment_ids[(row.tenant_id, row.id)] = deployment


async def workflow_removed(service: Service, tenant_id: str, workflow_id: str) -> None:
    """Delete the workflow's deployment (its scheduled runs go with it)."""
    _deployment_ids.pop((tenant_id, workflow_id), None)
    try:
        async with asyncio.timeout(PREFECT_TIMEOUT_SECONDS), get_client() as client:
            await remove_workflow(client, tenant_id, workflow_id)
    except Exception as exc:
        if is_transport_error(exc) or isinstance(exc, TimeoutError):
            raise PrefectUnavailableProblem(exc) from None
        raise


def forget_deployment_id(tenant_id: str, workflow_id: str) -> None:
    """Forget the workflow's deployment id: Prefect no longer knows it (the deployment was
    replaced through another API process); the next `deployment_id` reads it by name."""
    _deployment_ids.pop((tenant_id, workflow_id), None)


async def deployment_id(tenant_id: str, workflow_id: str) -> UUID:
    """The id of the workflow's deployment (read by name once, then kept)."""
    found = _deployment_ids.get((tenant_id, workflow_id))
    if found is None:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(
                deployment_name(tenant_id, workflow_id)
            )
        found = _deployment_ids[(tenant_id, workflow_id)] = deployment.id
    return found


async def prepare_prefect(service: Service) -> None:
    """Create the work pool the workflows' deployments use, if it does not exist."""
    async with get_client() as client:
        await ensure_work_pool(client, service.work_pool)


async def reconcile_all(service: Service) -> ReconcileReport:
    """Make Prefect's deployments match every workflow of every tenant (idempotent): one
    deployment each, paused for a disabled workflow; deployments of deleted workflows go."""
    read_at = datetime.now(UTC)
    async with service.database.session() as session:
        rows = await list_enabled_workflows(session, include_disabled=True)
    specs = [spec_of(row, version) for row, version in rows]
    async with get_client() as client:
        await ensure_work_pool(client, service.work_pool)
        return await reconcile(
            client,
            specs,
            work_pool=service.work_pool,
            entrypoint=SERVICE_ENTRYPOINT,
            specs_read_at=read_at,
        )
