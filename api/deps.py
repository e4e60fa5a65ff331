"""The routes' dependencies, named once: `ServiceDep`, `SessionDep`, `TenantDep`,
`OperatorDep`, `BusDep`, `PageDep`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal, authenticate_operator, authenticate_tenant
from api.commands.bus import CommandBus
from api.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_bus(request: Request) -> CommandBus:
    bus: CommandBus = request.app.state.bus
    return bus


BusDep = Annotated[CommandBus, Depends(get_bus)]


async def get_session(service: ServiceDep) -> AsyncIterator[AsyncSession]:
    """A read session for the request (commands open their own transactions)."""
    async with service.database.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

AuthorizationHeader = Annotated[
    str | None,
    Header(alias="Authorization", description="`Bearer <API key>`", include_in_schema=False),
]


async def tenant_principal(
    service: ServiceDep, authorization: AuthorizationHeader = None
) -> Principal:
    # A session of its own, closed before the route runs: a command opens its own transaction,
    # and a request holding a connection while it waits for a second one deadlocks the pool
    # once as many requests run at once as the pool has connections.
    async with service.database.session() as session:
        return await authenticate_tenant(session, authorization, server_keys=service.server_keys)


TenantDep = Annotated[Principal, Depends(tenant_principal)]


async def operator_principal(
    service: ServiceDep, authorization: AuthorizationHeader = None
) -> Principal:
    async with service.database.session() as session:  # closed before the route runs
        return await authenticate_operator(
            session,
            authorization,
            admin_key=service.settings.admin_key,
            server_keys=service.server_keys,
        )


OperatorDep = Annotated[Principal, Depends(operator_principal)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Page size (1-200).")] = 50,
    offset: Annotated[int, Query(ge=0, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]
