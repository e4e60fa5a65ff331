"""Operator routes: create tenants and API keys, revoke keys (`ALTLAS_ADMIN_KEY`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from api.commands.tenants import CreateApiKey, CreateTenant, IssuedKey, RevokeApiKey
from api.deps import BusDep, OperatorDep
from api.errors import problem_responses
from api.schemas.tenants import (
    TENANT_ID_PATTERN,
    ApiKeyCreate,
    ApiKeyCreated,
    TenantCreate,
    TenantCreated,
)

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN, description="The tenant's id.")]


@router.post(
    "",
    status_code=201,
    operation_id="createTenant",
    responses=problem_responses(401, 403, 409, 413, 422),
)
async def create_tenant(body: TenantCreate, bus: BusDep, caller: OperatorDep) -> TenantCreated:
    """Create a tenant; the answer holds its first API key (shown once)."""
    issued: IssuedKey = await bus.dispatch(CreateTenant(new_tenant_id=body.id), caller)
    return TenantCreated(id=issued.tenant_id, created_at=issued.created_at, api_key=issued.api_key)


@router.post(
    "/{tenant}/keys",
    status_code=201,
    operation_id="createApiKey",
    responses=problem_responses(401, 403, 404, 413, 422),
)
async def create_api_key(
    tenant: TenantId,
    bus: BusDep,
    caller: OperatorDep,
    body: Annotated[ApiKeyCreate, Body(default_factory=ApiKeyCreate)],
) -> ApiKeyCreated:
    """A new API key for the tenant (shown once)."""
    issued: IssuedKey = await bus.dispatch(CreateApiKey(for_tenant=tenant), caller)
    return ApiKeyCreated(id=issued.key_id, api_key=issued.api_key, created_at=issued.created_at)


@router.delete(
    "/{tenant}/keys/{key_id}",
    status_code=204,
    operation_id="revokeApiKey",
    responses=problem_responses(401, 403, 404, 422),
)
async def revoke_api_key(
    tenant: TenantId, key_id: str, bus: BusDep, caller: OperatorDep
) -> Response:
    """Revoke an API key: it answers 401 from now on."""
    await bus.dispatch(RevokeApiKey(for_tenant=tenant, key_id=key_id), caller)
    return Response(status_code=204)
