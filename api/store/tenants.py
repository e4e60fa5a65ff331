"""Repository of tenants and their API keys (tables `tenants`, `api_keys`).

Key material never reaches this module: callers pass the keyed hash (`api.store.crypto`), and
authentication is `find_api_key` by the key's non-secret id followed by `verify_api_key`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.database import dialect_insert, fetch_page
from api.store.errors import AlreadyExists, NotFound
from api.store.models import ApiKey, Tenant, utcnow

# `touch_api_key` writes at most this often per key: a write per request would serialise every
# request on SQLite's single writer for a timestamp nobody needs to the second.
TOUCH_INTERVAL = timedelta(seconds=60)


async def create_tenant(
    session: AsyncSession, *, tenant_id: str, settings: dict[str, Any] | None = None
) -> Tenant:
    """A new tenant. Raises `AlreadyExists` if the id is taken (also by a concurrent call)."""
    inserted = await session.execute(
        dialect_insert(session, Tenant)
        .values(id=tenant_id, created_at=utcnow(), settings=settings or {})
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Tenant.id)
    )
    if inserted.first() is None:
        raise AlreadyExists("tenant", tenant_id)
    return await _require_tenant(session, tenant_id)


async def get_tenant(session: AsyncSession, *, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id, populate_existing=True)


async def list_tenants(
    session: AsyncSession, *, limit: int = 200, offset: int = 0
) -> tuple[list[Tenant], int]:
    """Tenants by id, and how many there are."""
    return await fetch_page(session, select(Tenant).order_by(Tenant.id), limit=limit, offset=offset)


async def update_tenant_settings(
    session: AsyncSession, *, tenant_id: str, settings: dict[str, Any]
) -> Tenant | None:
    """Replace a tenant's settings (the caller merges); None if there is no such tenant."""
    result = await session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(settings=settings).returning(Tenant.id)
    )
    if result.first() is None:
        return None
    return await _require_tenant(session, tenant_id)


async def _require_tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await get_tenant(session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant


# --- API keys -------------------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession, *, tenant_id: str, key_id: str, key_hash: str
) -> ApiKey:
    """Store a new key of a tenant. Raises `NotFound` without the tenant, `AlreadyExists` if the
    key id is taken."""
    await _require_tenant(session, tenant_id)
    inserted = await session.execute(
        dialect_insert(session, ApiKey)
        .values(id=key_id, tenant_id=tenant_id, hash=key_hash, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(ApiKey.id)
    )
    if inserted.first() is None:
        raise AlreadyExists("api key", key_id)
    key = await session.get(ApiKey, key_id, populate_existing=True)
    assert key is not None  # inserted by this transaction just above
    return key


async def find_api_key(session: AsyncSession, *, key_id: str) -> ApiKey | None:
    """The unrevoked key with this id, whichever its tenant (authentication: the id is parsed
    from the presented key, which then must pass `verify_api_key` against `ApiKey.hash`)."""
    query = (
        select(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one_or_none()


async def get_api_key(session: AsyncSession, *, tenant_id: str, key_id: str) -> ApiKey | None:
    """A key of this tenant, revoked or not."""
    query = (
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one_or_none()


async def list_api_keys(session: AsyncSession, *, tenant_id: str) -> list[ApiKey]:
    """Every key of a tenant (revoked ones too, with `revoked_at`), oldest first."""
    query = (
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id)
        .order_by(ApiKey.created_at, ApiKey.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(query)).all())


async def revoke_api_key(
    session: AsyncSession, *, tenant_id: str, key_id: str, at: datetime | None = None
) -> bool:
    """Revoke a key of this tenant. True if an active key was revoked now; False if the tenant
    has no such key or it was revoked already."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=at or utcnow())
        .returning(ApiKey.id)
    )
    return result.first() is not None


async def touch_api_key(
    session: AsyncSession,
    *,
    key_id: str,
    at: datetime | None = None,
    min_interval: timedelta = TOUCH_INTERVAL,
) -> bool:
    """Record that a key was used, unless that was recorded less than `min_interval` ago.
    True if the row was written."""
    now = at or utcnow()
    result = await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - min_interval),
        )
        .values(last_used_at=now)
        .returning(ApiKey.id)
    )
    return result.first() is not None
