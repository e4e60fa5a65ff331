"""Operator commands: create a tenant (with its first API key), change its settings, create and
revoke API keys.

Keys are shown once: the store keeps their keyed hash, found by the key's non-secret id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, ValidationError

from api.commands.bus import Command, CommandContext
from api.errors import ConflictProblem, InvalidProblem, NotFoundProblem, pointer
from api.schemas.tenants import TENANT_ID_PATTERN
from api.store import tenants as store
from api.store.crypto import hash_api_key, new_api_key
from api.store.errors import AlreadyExists, NotFound
from api.tenancy import TenantSettings


@dataclass(frozen=True)
class IssuedKey:
    tenant_id: str
    key_id: str
    api_key: str
    created_at: datetime


class CreateTenant(Command):
    operator_only: ClassVar[bool] = True
    tenant_id: None = None
    new_tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    settings: dict[str, Any] | None = None

    def audit_detail(self) -> dict[str, Any]:
        return {"tenant": self.new_tenant_id}


class CreateApiKey(Command):
    operator_only: ClassVar[bool] = True
    tenant_id: None = None
    for_tenant: str

    def audit_detail(self) -> dict[str, Any]:
        return {"tenant": self.for_tenant}


class UpdateTenantSettings(Command):
    """Replace a tenant's settings (`api.tenancy.TenantSettings`: allowed pieces, HTTP
    allow-list additions, default retry and time-out)."""

    operator_only: ClassVar[bool] = True
    tenant_id: None = None
    for_tenant: str
    settings: dict[str, Any]

    async def validate_in(self, context: CommandContext) -> None:
        try:
            TenantSettings.of(self.settings)
        except ValidationError as exc:
            raise InvalidProblem(
                "the tenant settings are invalid; see `errors`",
                [
                    {"path": pointer(list(e["loc"])), "message": e["msg"]}
                    for e in exc.errors(include_url=False)
                ],
                slug="invalid-tenant-settings",
            ) from None

    def audit_detail(self) -> dict[str, Any]:
        return {"tenant": self.for_tenant}


class RevokeApiKey(Command):
    operator_only: ClassVar[bool] = True
    tenant_id: None = None
    for_tenant: str
    key_id: str

    def audit_detail(self) -> dict[str, Any]:
        return {"tenant": self.for_tenant, "key_id": self.key_id}


async def _issue(context: CommandContext, tenant_id: str) -> IssuedKey:
    key_id, full_key = new_api_key()
    row = await store.create_api_key(
        context.session,
        tenant_id=tenant_id,
        key_id=key_id,
        key_hash=hash_api_key(full_key, context.service.server_keys[0]),
    )
    return IssuedKey(tenant_id, key_id, full_key, row.created_at)


async def create_tenant(command: CreateTenant, context: CommandContext) -> IssuedKey:
    try:
        await store.create_tenant(
            context.session, tenant_id=command.new_tenant_id, settings=command.settings
        )
    except AlreadyExists:
        raise ConflictProblem(
            f"tenant {command.new_tenant_id!r} exists", slug="tenant-exists"
        ) from None
    return await _issue(context, command.new_tenant_id)


async def create_api_key(command: CreateApiKey, context: CommandContext) -> IssuedKey:
    try:
        return await _issue(context, command.for_tenant)
    except NotFound:
        raise NotFoundProblem(f"tenant {command.for_tenant!r}") from None


async def update_tenant_settings(command: UpdateTenantSettings, context: CommandContext) -> None:
    canonical = TenantSettings.of(command.settings).model_dump(mode="json", exclude_defaults=True)
    updated = await store.update_tenant_settings(
        context.session, tenant_id=command.for_tenant, settings=canonical
    )
    if updated is None:
        raise NotFoundProblem(f"tenant {command.for_tenant!r}")


async def revoke_api_key(command: RevokeApiKey, context: CommandContext) -> None:
    revoked = await store.revoke_api_key(
        context.session, tenant_id=command.for_tenant, key_id=command.key_id
    )
    if not revoked:
        raise NotFoundProblem(f"API key {command.key_id!r} of tenant {command.for_tenant!r}")
