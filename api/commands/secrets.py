"""Commands on a tenant's secrets: put (create or replace) and delete. Values are encrypted
before they reach the store and never leave it in clear, except to the worker's runs."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.commands.bus import Command, CommandContext
from api.errors import NotFoundProblem
from api.schemas.secrets import SECRET_NAME_PATTERN
from api.store import secrets as store


class PutSecret(Command):
    tenant_id: str
    name: str = Field(pattern=SECRET_NAME_PATTERN)
    value: str = Field(repr=False)

    def audit_detail(self) -> dict[str, Any]:
        return {"secret": self.name}


class DeleteSecret(Command):
    tenant_id: str
    name: str

    def audit_detail(self) -> dict[str, Any]:
        return {"secret": self.name}


async def put_secret(command: PutSecret, context: CommandContext) -> None:
    await store.put_secret(
        context.session,
        tenant_id=command.tenant_id,
        name=command.name,
        ciphertext=context.service.box.encrypt(command.value),
    )
    _forget_secrets(context, command.tenant_id)


async def delete_secret(command: DeleteSecret, context: CommandContext) -> None:
    deleted = await store.delete_secret(
        context.session, tenant_id=command.tenant_id, name=command.name
    )
    if not deleted:
        raise NotFoundProblem(f"secret {command.name!r}")
    _forget_secrets(context, command.tenant_id)


def _forget_secrets(context: CommandContext, tenant_id: str) -> None:
    """Once committed, this process's caches of the tenant's secret values go (another
    process's within their time to live), so no request re-reads the old value meanwhile."""
    service = context.service

    def forget() -> None:
        service.redactors.forget(tenant_id)
        service.triggers.forget(tenant_id)

    context.after_commit(forget)
