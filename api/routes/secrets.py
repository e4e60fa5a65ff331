"""A tenant's secrets: put, list (names only), delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.commands.secrets import DeleteSecret, PutSecret
from api.deps import BusDep, PageDep, SessionDep, TenantDep
from api.errors import problem_responses
from api.presenters import secret_public
from api.schemas.common import Page
from api.schemas.secrets import SECRET_NAME_PATTERN, SecretPublic, SecretPut
from api.store.secrets import list_secrets as stored_secrets

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])

SecretName = Annotated[str, Path(pattern=SECRET_NAME_PATTERN, description="The secret's name.")]


@router.put(
    "/{name}",
    status_code=204,
    operation_id="putSecret",
    responses=problem_responses(401, 413, 422),
)
async def put_secret(name: SecretName, body: SecretPut, bus: BusDep, caller: TenantDep) -> Response:
    """Create or replace a secret (encrypted at rest; never answered)."""
    await bus.dispatch(PutSecret(tenant_id=caller.tenant, name=name, value=body.value), caller)
    return Response(status_code=204)


@router.get("", operation_id="listSecrets", responses=problem_responses(401, 422))
async def list_secrets(session: SessionDep, caller: TenantDep, page: PageDep) -> Page[SecretPublic]:
    """The tenant's secrets: names and when each was last set, never a value."""
    rows, total = await stored_secrets(
        session, tenant_id=caller.tenant, limit=page.limit, offset=page.offset
    )
    return Page[SecretPublic](data=[secret_public(r) for r in rows], count=total)


@router.delete(
    "/{name}",
    status_code=204,
    operation_id="deleteSecret",
    responses=problem_responses(401, 404, 422),
)
async def delete_secret(name: SecretName, bus: BusDep, caller: TenantDep) -> Response:
    """Delete a secret; runs that need it fail from then on with `SecretNotFound`."""
    await bus.dispatch(DeleteSecret(tenant_id=caller.tenant, name=name), caller)
    return Response(status_code=204)
