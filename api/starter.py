"""Runs that runs start (`core.start_workflow`), in a worker process: `ServiceStarter`.

The engine's `RunStarter` port, implemented with the service's own StartRun command, so a run
started by another run is checked, recorded, audited and dispatched exactly like one started
over REST: the parameters against the workflow's schema, the node's key as its idempotency key
(a retried attempt never starts a second run), trigger `{"type": "workflow", "id": <the asking
run>}`, and handed to Prefect by a dispatcher that runs in the worker process (its sweep, and the
API's, pick up a run a crash left `accepted`).

Everything here runs on the store loop of the service's database (`api.store.ports.StoreLoop`):
the engine calls from each run's own event loop.
"""

from __future__ import annotations

import asyncio
import hashlib

from api.auth import Principal
from api.commands import build_bus
from api.commands.runs import StartRun
from api.dispatcher import Dispatcher
from api.errors import Problem
from api.service import Service
from api.store import runs as store
from api.store.models import Run, TriggerType
from api.store.ports import StoreLoop
from interpreter.run.services import StartedRun, StartRequest
from pieces.base import PieceError


class ServiceStarter:
    """`RunStarter` through the command bus (see the module docstring)."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._bus = build_bus(service)
        self._dispatcher = Dispatcher(service)
        service.run_accepted = self._dispatcher.submit
        self._loop = StoreLoop.of(service.database)
        self._dispatching: asyncio.Task[None] | None = None

    async def start(self, tenant: str, request: StartRequest) -> StartedRun:
        key = "start:" + hashlib.sha256(request.request_key.encode()).hexdigest()
        command = StartRun(
            tenant_id=tenant,
            workflow_id=request.workflow_id,
            parameters=request.parameters,
            scheduled_at=request.scheduled_at,
            idempotency_key=key,
            trigger_type=TriggerType.WORKFLOW,
            trigger_id=request.parent_run_id,
        )

        async def dispatch() -> Run:
            self._ensure_dispatching()
            try:
                run: Run = await self._bus.dispatch(command, Principal.acting_for(tenant))
            except Problem as problem:
                raise _piece_error(problem, request) from None
            return run

        return _started(await self._loop.call(dispatch))

    async def status(self, tenant: str, run_id: str) -> StartedRun:
        async def read() -> Run | None:
            async with self._service.database.session() as session:
                return await store.get_run(session, tenant_id=tenant, run_id=run_id)

        run = await self._loop.call(read)
        if run is None:
            raise PieceError(f"run {run_id!r} is gone", error_type="RunNotFound", retryable=False)
        return _started(run)

    def _ensure_dispatching(self) -> None:
        """The dispatcher runs on the store loop from the first start on."""
        if self._dispatching is None or self._dispatching.done():
            self._dispatching = asyncio.ensure_future(self._dispatcher.run_forever())

    async def aclose(self) -> None:
        """Stop the dispatcher, then the store loop (disposing the service's database)."""

        async def stop() -> None:
            if self._dispatching is not None:
                self._dispatching.cancel()
                await asyncio.gather(self._dispatching, return_exceptions=True)

        await self._loop.call(stop)
        await self._loop.aclose()


def _started(run: Run) -> StartedRun:
    return StartedRun(
        run_id=run.id,
        state=run.state.value,
        scheduled_at=run.scheduled_at,
        output=run.output,
        error=run.error,
    )


def _piece_error(problem: Problem, request: StartRequest) -> PieceError:
    """A refused start as the node's error: what was wrong, and where in the parameters."""
    where = "; ".join(f"{e['path'] or '(parameters)'}: {e['message']}" for e in problem.errors)
    if problem.slug == "idempotency-key-reused":
        detail = "an earlier attempt of this node started a run with other inputs"
    else:
        detail = problem.detail + (f" ({where})" if where else "")
    return PieceError(
        f"could not start workflow {request.workflow_id!r}: {detail}",
        error_type="StartRefused",
        retryable=problem.status >= 500,
    )
