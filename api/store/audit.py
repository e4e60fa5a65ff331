"""Repository of the audit trail (table `audit_records`): one row per command the service handled.

Records are written in the command's own transaction when it succeeds; a failed command is
recorded by the caller in a fresh session (its own transaction was rolled back). `detail` must
never hold a secret value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.database import fetch_page
from api.store.models import AuditRecord, utcnow


async def add_audit_record(
    session: AsyncSession,
    *,
    command: str,
    outcome: str = "ok",
    tenant_id: str | None = None,
    key_id: str | None = None,
    detail: Any | None = None,
    at: datetime | None = None,
) -> AuditRecord:
    """Append one record: `command` (e.g. `startRun`), `outcome` ("ok" or an error type)."""
    record = AuditRecord(
        tenant_id=tenant_id,
        key_id=key_id,
        command=command,
        outcome=outcome,
        detail=detail,
        at=at or utcnow(),
    )
    session.add(record)
    await session.flush()
    return record


async def list_audit_records(
    session: AsyncSession,
    *,
    tenant_id: str | None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditRecord], int]:
    """A tenant's records, newest first, and how many there are. `tenant_id=None` lists the
    operator's records (those without a tenant), not everyone's."""
    condition = (
        AuditRecord.tenant_id.is_(None) if tenant_id is None else AuditRecord.tenant_id == tenant_id
    )
    query = (
        select(AuditRecord)
        .where(condition)
        .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
        .execution_options(populate_existing=True)
    )
    return await fetch_page(session, query, limit=limit, offset=offset)
