"""Reading stored workflows: the current version, one version, lists, versions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import NotFoundProblem
from api.presenters import workflow_public, workflow_summary
from api.schemas.common import Page
from api.schemas.workflows import VersionPublic, WorkflowPublic, WorkflowSummary
from api.service import Service
from api.store import workflows as store


async def get_workflow(
    session: AsyncSession, service: Service, *, tenant_id: str, workflow_id: str
) -> WorkflowPublic:
    found = await store.get_current_version(session, tenant_id=tenant_id, workflow_id=workflow_id)
    if found is None:
        raise NotFoundProblem(f"workflow {workflow_id!r}")
    return workflow_public(
        found[0], found[1], base_url=service.settings.public_url_resolved(),
        registry=service.registry,
    )  # fmt: skip


async def get_workflow_version(
    session: AsyncSession, service: Service, *, tenant_id: str, workflow_id: str, version: int
) -> WorkflowPublic:
    row = await store.get_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id)
    found = await store.get_workflow_version(
        session, tenant_id=tenant_id, workflow_id=workflow_id, version=version
    )
    if row is None or found is None:
        raise NotFoundProblem(f"version {version} of workflow {workflow_id!r}")
    return workflow_public(
        row, found, base_url=service.settings.public_url_resolved(), registry=service.registry
    )


async def list_workflows(
    session: AsyncSession,
    service: Service,
    *,
    tenant_id: str,
    tag: str | None,
    enabled: bool | None,
    limit: int,
    offset: int,
) -> Page[WorkflowSummary]:
    rows, total = await store.list_workflows(
        session, tenant_id=tenant_id, tag=tag, enabled=enabled, limit=limit, offset=offset
    )
    versions = await store.list_current_versions(
        session, tenant_id=tenant_id, workflow_ids=[row.id for row in rows]
    )
    base_url = service.settings.public_url_resolved()
    data = [
        workflow_summary(row, versions[row.id], base_url=base_url, registry=service.registry)
        for row in rows
        if row.id in versions
    ]
    return Page[WorkflowSummary](data=data, count=total)


async def list_versions(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, limit: int, offset: int
) -> Page[VersionPublic]:
    if await store.get_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id) is None:
        raise NotFoundProblem(f"workflow {workflow_id!r}")
    rows, total = await store.list_versions(
        session, tenant_id=tenant_id, workflow_id=workflow_id, limit=limit, offset=offset
    )
    data = [VersionPublic(version=r.version, created_at=r.created_at) for r in rows]
    return Page[VersionPublic](data=data, count=total)
