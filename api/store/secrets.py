"""Repository of tenant secrets (table `secrets`): ciphertexts in, ciphertexts out.

Encryption is the caller's (`api.store.crypto.SecretBox`): this module never sees a value, and its
list returns names and times only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.database import dialect_insert, fetch_row_page
from api.store.models import Secret, utcnow


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What the secret list shows: never the value, nor the ciphertext."""

    name: str
    created_at: datetime
    updated_at: datetime


async def put_secret(
    session: AsyncSession, *, tenant_id: str, name: str, ciphertext: bytes
) -> bool:
    """Create or replace a secret in one statement (two concurrent puts never conflict).
    True if it was created, False if it replaced one."""
    now = utcnow()
    statement = dialect_insert(session, Secret).values(
        tenant_id=tenant_id, name=name, ciphertext=ciphertext, created_at=now, updated_at=now
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["tenant_id", "name"],
        set_={"ciphertext": statement.excluded.ciphertext, "updated_at": now},
    ).returning(Secret.created_at)
    created_at = (await session.execute(upsert)).scalar_one()
    # A replaced row keeps its first `created_at`, which is older than `now`.
    return bool(created_at == now)


async def get_secret_ciphertext(
    session: AsyncSession, *, tenant_id: str, name: str
) -> bytes | None:
    query = select(Secret.ciphertext).where(Secret.tenant_id == tenant_id, Secret.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def list_secrets(
    session: AsyncSession, *, tenant_id: str, limit: int = 50, offset: int = 0
) -> tuple[list[SecretInfo], int]:
    """A tenant's secrets by name (names and times only) and how many there are."""
    query = (
        select(Secret.name, Secret.created_at, Secret.updated_at)
        .where(Secret.tenant_id == tenant_id)
        .order_by(Secret.name)
    )
    rows, total = await fetch_row_page(session, query, limit=limit, offset=offset)
    return [SecretInfo(*row) for row in rows], total


async def delete_secret(session: AsyncSession, *, tenant_id: str, name: str) -> bool:
    """Delete a secret; False when the tenant had none of that name."""
    result = await session.execute(
        delete(Secret)
        .where(Secret.tenant_id == tenant_id, Secret.name == name)
        .returning(Secret.name)
    )
    return result.first() is not None


async def all_secret_ciphertexts(session: AsyncSession, *, tenant_id: str) -> dict[str, bytes]:
    """Every secret of a tenant, name → ciphertext: for resolving and redacting in one read."""
    query = select(Secret.name, Secret.ciphertext).where(Secret.tenant_id == tenant_id)
    return {row[0]: row[1] for row in (await session.execute(query)).all()}
