"""The command bus: one way every change is made, with one middleware chain. Main entry:
`CommandBus.dispatch`.

Every REST route that changes something, and the command line's run commands, dispatch a
`Command`. Each passes, in order:
1. **validation**: the command's own `validate` (e.g. a definition against the schema and the
   tenant's allowed pieces, parameters against the workflow's schema), inside the transaction;
2. **tenant scoping**: a command names the tenant it acts in; it must be the caller's (another
   tenant's resource answers as missing, 404);
3. **audit**: one record per command (tenant, key id, command, time, outcome), written in a
   transaction of its own so that refused and failed commands are recorded too;
4. **the handler**, in one database transaction that commits when it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.errors import NotFoundProblem, Problem
from api.service import Service
from api.store.audit import add_audit_record

_log = logging.getLogger("altlas.api.commands")


class Command(BaseModel):
    """A request to change something, in one tenant (`tenant_id`; None for operator commands)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    operator_only: ClassVar[bool] = False
    """Operator commands (tenants, keys) are refused to tenants' keys."""

    tenant_id: str | None

    @classmethod
    def command_name(cls) -> str:
        return cls.__name__

    async def validate_in(self, context: CommandContext) -> None:
        """Semantic checks that need the store; raise `InvalidProblem`. None by default."""

    def audit_detail(self) -> dict[str, Any]:
        """What the audit record keeps of the command (ids, never values)."""
        return {}


@dataclass
class CommandContext:
    """What a middleware and a handler work with: the caller, the transaction, the service."""

    principal: Principal
    session: AsyncSession
    service: Service
    found: dict[str, Any] = field(default_factory=dict)
    """What validation looked up, for the handler (so it is not looked up twice)."""
    committed: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Call `action` once the command's transaction has committed (e.g. hand a new run to
        the dispatcher, which must find it in the database)."""
        self.committed.append(action)


Handler = Callable[[Any, CommandContext], Awaitable[Any]]
Next = Callable[[Command, CommandContext], Awaitable[Any]]
Middleware = Callable[[Command, CommandContext, Next], Awaitable[Any]]


async def validation(command: Command, context: CommandContext, call_next: Next) -> Any:
    await command.validate_in(context)
    return await call_next(command, context)


async def tenant_scoping(command: Command, context: CommandContext, call_next: Next) -> Any:
    principal = context.principal
    if command.operator_only and not principal.operator:
        raise Problem(
            403, "Forbidden", f"{command.command_name()} needs the operator key", slug="forbidden"
        )
    if command.tenant_id is not None and command.tenant_id != principal.tenant_id:
        raise NotFoundProblem(f"tenant {command.tenant_id!r}")
    return await call_next(command, context)


class CommandBus:
    """Dispatches commands to their handlers through the middleware chain."""

    def __init__(
        self,
        service: Service,
        handlers: Mapping[type[Command], Handler],
        middleware: Sequence[Middleware] = (validation, tenant_scoping),
    ) -> None:
        self._service = service
        self._handlers = dict(handlers)
        self._middleware = list(middleware)

    async def dispatch(self, command: Command, principal: Principal) -> Any:
        """Run `command` for `principal`; its handler's result, or the `Problem` it raised."""
        handler = self._handlers.get(type(command))
        if handler is None:
            raise LookupError(f"no handler for {command.command_name()}")
        started = time.monotonic()
        outcome = "ok"
        try:
            async with self._service.database.session() as session:
                context = CommandContext(principal, session, self._service)
                result = await self._chain(handler)(command, context)
            for action in context.committed:
                action()
            return result
        except Problem as problem:
            outcome = problem.slug
            raise
        except Exception as exc:
            outcome = type(exc).__name__
            raise
        finally:
            await self._audit(command, principal, outcome, time.monotonic() - started)

    def _chain(self, handler: Handler) -> Next:
        call: Next = handler
        for middleware in reversed(self._middleware):
            call = _link(middleware, call)
        return call

    async def _audit(
        self, command: Command, principal: Principal, outcome: str, seconds: float
    ) -> None:
        detail = {**command.audit_detail(), "ms": round(seconds * 1000, 1)}
        try:
            async with self._service.database.session() as session:
                await add_audit_record(
                    session,
                    tenant_id=command.tenant_id or principal.tenant_id,
                    key_id=principal.key_id,
                    command=command.command_name(),
                    outcome=outcome,
                    detail=detail,
                )
        except Exception:  # the command's own outcome must not be lost to the audit log
            _log.exception("could not write the audit record of %s", command.command_name())


def _link(middleware: Middleware, call_next: Next) -> Next:
    async def linked(command: Command, context: CommandContext) -> Any:
        return await middleware(command, context, call_next)

    return linked
