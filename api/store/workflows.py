"""Repository of stored workflows and their immutable versions (`workflows`,
`workflow_versions`).

A workflow row points at its current version and copies what lists show (name, description,
tags) out of that version's definition. Versions are numbered 1, 2, ... per workflow; the number
comes from an UPDATE of the workflow row (`current_version + 1`), so concurrent updates never
collide. Every function is scoped by `tenant_id`, except `list_enabled_workflows(tenant_id=None)`,
which serves the deployment sync across all tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.crypto import json_digest
from api.store.database import dialect_insert, fetch_page, fetch_row_page, json_array_contains
from api.store.errors import AlreadyExists, NotFound
from api.store.models import Workflow, WorkflowVersion, utcnow


@dataclass(frozen=True, slots=True)
class VersionSummary:
    """A version without its definition (the version list)."""

    version: int
    digest: str
    created_at: datetime


def _listed_fields(definition: dict[str, Any]) -> dict[str, Any]:
    """The columns of `workflows` copied from a definition (validated by the caller)."""
    workflow_id = definition["id"]
    return {
        "name": definition.get("name") or workflow_id,
        "description": definition.get("description"),
        "tags": list(definition.get("tags") or []),
    }


async def create_workflow(
    session: AsyncSession, *, tenant_id: str, definition: dict[str, Any]
) -> tuple[Workflow, WorkflowVersion]:
    """Store a new workflow (id from `definition["id"]`), enabled, at version 1.
    Raises `AlreadyExists` when the tenant has a workflow with that id."""
    workflow_id: str = definition["id"]
    now = utcnow()
    inserted = await session.execute(
        dialect_insert(session, Workflow)
        .values(
            tenant_id=tenant_id,
            id=workflow_id,
            current_version=1,
            enabled=True,
            created_at=now,
            updated_at=now,
            **_listed_fields(definition),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "id"])
        .returning(Workflow.id)
    )
    if inserted.first() is None:
        raise AlreadyExists("workflow", workflow_id)
    version = WorkflowVersion(
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        version=1,
        definition=definition,
        digest=json_digest(definition),
        created_at=now,
    )
    session.add(version)
    await session.flush()
    return await _require_workflow(session, tenant_id, workflow_id), version


async def get_workflow(
    session: AsyncSession, *, tenant_id: str, workflow_id: str
) -> Workflow | None:
    return await session.get(Workflow, (tenant_id, workflow_id), populate_existing=True)


async def get_current_version(
    session: AsyncSession, *, tenant_id: str, workflow_id: str
) -> tuple[Workflow, WorkflowVersion] | None:
    """A workflow with its current version (definition included); None when missing."""
    query = _with_current_version().where(
        Workflow.tenant_id == tenant_id, Workflow.id == workflow_id
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def get_workflow_version(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, version: int
) -> WorkflowVersion | None:
    return await session.get(
        WorkflowVersion, (tenant_id, workflow_id, version), populate_existing=True
    )


async def list_workflows(
    session: AsyncSession,
    *,
    tenant_id: str,
    tag: str | None = None,
    enabled: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Workflow], int]:
    """A tenant's workflows by id, optionally only those with `tag` / in the `enabled` state;
    and the total count of matches. Definitions: `list_current_versions`."""
    query = (
        select(Workflow)
        .where(Workflow.tenant_id == tenant_id)
        .order_by(Workflow.id)
        .execution_options(populate_existing=True)
    )
    if tag is not None:
        query = query.where(json_array_contains(session, Workflow.tags, tag))
    if enabled is not None:
        query = query.where(Workflow.enabled.is_(enabled))
    return await fetch_page(session, query, limit=limit, offset=offset)


async def list_current_versions(
    session: AsyncSession, *, tenant_id: str, workflow_ids: Sequence[str]
) -> dict[str, WorkflowVersion]:
    """The current version of each of these workflows of the tenant, by workflow id (a list page
    needs the definitions to show triggers)."""
    if not workflow_ids:
        return {}
    query = _with_current_version().where(
        Workflow.tenant_id == tenant_id, Workflow.id.in_(list(workflow_ids))
    )
    return {row[0].id: row[1] for row in (await session.execute(query)).all()}


async def list_enabled_workflows(
    session: AsyncSession, *, tenant_id: str | None = None, include_disabled: bool = False
) -> list[tuple[Workflow, WorkflowVersion]]:
    """Enabled workflows (and disabled ones too with `include_disabled`) with their current
    definitions, of one tenant or (None) of all tenants, by tenant and id: what the deployment
    sync turns into Prefect deployments (a disabled workflow's deployment is paused)."""
    query = _with_current_version()
    if not include_disabled:
        query = query.where(Workflow.enabled.is_(True))
    if tenant_id is not None:
        query = query.where(Workflow.tenant_id == tenant_id)
    query = query.order_by(Workflow.tenant_id, Workflow.id)
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


def _with_current_version() -> Select[tuple[Workflow, WorkflowVersion]]:
    return (
        select(Workflow, WorkflowVersion)
        .join(
            WorkflowVersion,
            and_(
                WorkflowVersion.tenant_id == Workflow.tenant_id,
                WorkflowVersion.workflow_id == Workflow.id,
                WorkflowVersion.version == Workflow.current_version,
            ),
        )
        .execution_options(populate_existing=True)
    )


async def update_workflow(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, definition: dict[str, Any]
) -> tuple[Workflow, WorkflowVersion, bool]:
    """Make `definition` the workflow's current version: `(workflow, version, created)`.

    A definition equal to the current one (same JSON value, key order ignored) creates no
    version: `created` is False and the current version is returned. Raises `NotFound` when the
    tenant has no such workflow. The caller checks that `definition["id"] == workflow_id`.
    """
    current = await get_current_version(session, tenant_id=tenant_id, workflow_id=workflow_id)
    if current is None:
        raise NotFound("workflow", workflow_id)
    digest = json_digest(definition)
    if current[1].digest == digest:
        return current[0], current[1], False
    now = utcnow()
    # The increment happens in the database, under the row's lock: two concurrent updates take
    # two different numbers (two identical concurrent updates may both make a version).
    bumped = await session.execute(
        update(Workflow)
        .where(Workflow.tenant_id == tenant_id, Workflow.id == workflow_id)
        .values(
            current_version=Workflow.current_version + 1,
            updated_at=now,
            **_listed_fields(definition),
        )
        .returning(Workflow.current_version)
        .execution_options(synchronize_session=False)
    )
    number = bumped.scalar_one_or_none()
    if number is None:
        raise NotFound("workflow", workflow_id)  # deleted since it was read
    version = WorkflowVersion(
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        version=number,
        definition=definition,
        digest=digest,
        created_at=now,
    )
    session.add(version)
    await session.flush()
    return await _require_workflow(session, tenant_id, workflow_id), version, True


async def set_enabled(
    session: AsyncSession, *, tenant_id: str, workflow_id: str, enabled: bool
) -> Workflow | None:
    """Enable or disable a workflow; the updated row, or None when missing."""
    result = await session.execute(
        update(Workflow)
        .where(Workflow.tenant_id == tenant_id, Workflow.id == workflow_id)
        .values(enabled=enabled, updated_at=utcnow())
        .returning(Workflow.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        return None
    return await _require_workflow(session, tenant_id, workflow_id)


async def delete_workflow(session: AsyncSession, *, tenant_id: str, workflow_id: str) -> bool:
    """Delete a workflow and its versions (runs stay); False when there was none."""
    result = await session.execute(
        delete(Workflow)
        .where(Workflow.tenant_id == tenant_id, Workflow.id == workflow_id)
        .returning(Workflow.id)
    )
    # The versions go with it: ON DELETE CASCADE (enforced on SQLite by `Database`).
    return result.first() is not None


async def list_versions(
    session: AsyncSession,
    *,
    tenant_id: str,
    workflow_id: str,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[VersionSummary], int]:
    """A workflow's versions, newest first, without definitions; and how many there are."""
    query = (
        select(WorkflowVersion.version, WorkflowVersion.digest, WorkflowVersion.created_at)
        .where(WorkflowVersion.tenant_id == tenant_id, WorkflowVersion.workflow_id == workflow_id)
        .order_by(WorkflowVersion.version.desc())
    )
    rows, total = await fetch_row_page(session, query, limit=limit, offset=offset)
    return [VersionSummary(*row) for row in rows], total


async def _require_workflow(session: AsyncSession, tenant_id: str, workflow_id: str) -> Workflow:
    workflow = await get_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id)
    if workflow is None:
        raise NotFound("workflow", workflow_id)
    return workflow
