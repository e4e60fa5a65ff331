"""Who is calling: `Principal`, and how a request's key becomes one (`authenticate`).

A tenant's API key (`Authorization: Bearer altlas_<id>_<secret>`, the scheme name in any case)
is found by its non-secret id and compared as a keyed hash in constant time. The operator key
(`ALTLAS_ADMIN_KEY`) is the one key of the tenant routes; a tenant's key there is 403.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ForbiddenProblem, UnauthorizedProblem
from api.store.crypto import key_id_of, verify_api_key
from api.store.tenants import find_api_key


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant's key (`tenant_id`, `key_id`), or the operator."""

    tenant_id: str | None
    key_id: str | None
    operator: bool = False

    @classmethod
    def for_operator(cls) -> Principal:
        return cls(tenant_id=None, key_id=None, operator=True)

    @classmethod
    def webhook(cls, tenant_id: str) -> Principal:
        """A signed webhook delivery to one of the tenant's triggers (no key)."""
        return cls(tenant_id=tenant_id, key_id=None)

    @classmethod
    def acting_for(cls, tenant_id: str) -> Principal:
        """The operator acting inside one tenant (the command line on the server)."""
        return cls(tenant_id=tenant_id, key_id=None, operator=True)

    @property
    def tenant(self) -> str:
        """The tenant this caller acts for (a tenant-scoped route needs one)."""
        if self.tenant_id is None:
            raise ForbiddenProblem("the operator key manages tenants; use a tenant's API key")
        return self.tenant_id


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header; 401 when there is none."""
    if not authorization:
        raise UnauthorizedProblem("send an API key: `Authorization: Bearer <key>`")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedProblem("the Authorization header must be `Bearer <key>`")
    return token.strip()


async def authenticate_tenant(
    session: AsyncSession, authorization: str | None, *, server_keys: list[str]
) -> Principal:
    """The tenant whose live key the request carries; 401 for no key, or a key that is not a
    live tenant key (an unknown or revoked one, or the operator key)."""
    token = bearer_token(authorization)
    key_id = key_id_of(token)
    key = await find_api_key(session, key_id=key_id) if key_id is not None else None
    if key is None or not verify_api_key(token, key.hash, server_keys):
        raise UnauthorizedProblem("the API key is unknown or revoked")
    return Principal(tenant_id=key.tenant_id, key_id=key.id)


async def authenticate_operator(
    session: AsyncSession,
    authorization: str | None,
    *,
    admin_key: str | None,
    server_keys: list[str],
) -> Principal:
    """The operator, for the tenant routes; a live tenant key there is 403, anything else 401."""
    token = bearer_token(authorization)
    if admin_key is not None and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal.for_operator()
    await authenticate_tenant(session, authorization, server_keys=server_keys)  # 401 if not
    raise ForbiddenProblem("tenant routes need the operator key (ALTLAS_ADMIN_KEY)")


SIGNED_PATHS = ("/v1/hooks/",)
"""Routes authenticated by the sender's signature (a webhook trigger's scheme), not a key."""


class RequireBearer:
    """ASGI middleware: a `/v1` request without a Bearer token is 401 before its body is
    parsed (webhook deliveries, `/v1/hooks/...`, are signed instead). Which key it is, and
    whether it may do this, the route's dependencies decide."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v1/") and not path.startswith(SIGNED_PATHS):
            header = next(
                (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"),
                None,
            )
            try:
                bearer_token(header)
            except UnauthorizedProblem as problem:
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
