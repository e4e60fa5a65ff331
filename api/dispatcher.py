"""Hands accepted runs to Prefect: `Dispatcher`. Main entries: `submit` and `run_forever`.

A run is recorded (`accepted`) and committed before anyone is told about it; the dispatcher then
creates its Prefect flow run from the workflow's deployment, with the run's parameters, trigger
and id, and records the flow run (`scheduled`). Accepting never waits for Prefect.

- `submit(run_id)` wakes the dispatcher at once (the process that accepted the run);
- a sweep finds accepted runs nobody submitted in this process (accepted by a process that
  died, or before a restart) every `SWEEP_SECONDS`;
- dispatching is idempotent: the flow run's idempotency key is the run id, so two processes
  dispatching one run create one flow run;
- while Prefect cannot be reached, runs stay `accepted` and are tried again; a run whose
  workflow or deployment is gone fails with an error saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from api.deployment_sync import deployment_id, forget_deployment_id
from api.prefect_gateway import is_transport_error
from api.service import Service
from api.store import runs as store
from api.store.models import Run, RunState
from api.store.workflows import get_workflow, get_workflow_version
from interpreter.run.launch import run_tags
from pieces.triggers.event import trigger_scope

_log = logging.getLogger("altlas.api.dispatcher")

SWEEP_SECONDS = 5.0
RETRY_SECONDS = 2.0
CONCURRENCY = 8
"""Flow runs created at once (Prefect's server takes ~25 ms of CPU for each)."""


class Dispatcher:
    """Creates the Prefect flow runs of accepted runs (see the module docstring)."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, run_id: str) -> None:
        """Dispatch `run_id` soon (it must be committed)."""
        if run_id not in self._queued:
            self._queued.add(run_id)
            self._queue.put_nowait(run_id)

    async def run_forever(self) -> None:
        """Dispatch submitted runs as they come, and sweep for forgotten ones. One Prefect
        client serves every dispatch meanwhile (a new one per run cost 25-75 ms a creation)."""
        async with self._service.prefect.connected():
            sweeper = asyncio.ensure_future(self._sweep_forever())
            try:
                while True:
                    run_id = await self._queue.get()
                    await self._slots.acquire()
                    task = asyncio.ensure_future(self._dispatch_and_release(run_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            finally:
                sweeper.cancel()
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(sweeper, *self._tasks, return_exceptions=True)

    async def _dispatch_and_release(self, run_id: str) -> None:
        try:
            if not await self.dispatch(run_id):
                await asyncio.sleep(RETRY_SECONDS)
                self._queued.discard(run_id)
                self.submit(run_id)
                return
        except Exception:
            _log.exception("could not dispatch run %s; the sweep tries again", run_id)
        finally:
            self._slots.release()
        self._queued.discard(run_id)

    async def _sweep_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sweep()
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self, *, older_than: float = 1.0) -> int:
        """Submit accepted runs older than `older_than` seconds; how many were found."""
        due = datetime.now(UTC) - timedelta(seconds=older_than)
        async with self._service.database.session() as session:
            runs = await store.list_runs_by_state(
                session, states=[RunState.ACCEPTED], due_before=due, limit=500
            )
        # In random order: with several API processes, each one's sweep finds the backlog the
        # others are working through in order; dispatched in the same order, most runs were
        # created twice (the second request answered by Prefect's idempotency key, at the
        # server's full cost).
        random.shuffle(runs)
        for run in runs:
            self.submit(run.id)
        return len(runs)

    async def dispatch(self, run_id: str) -> bool:
        """Create the run's flow run unless it has one; False when Prefect could not be
        reached (try again later)."""
        service = self._service
        async with service.database.session() as session:
            run = await store.get_run_by_id(session, run_id=run_id)
            if run is None or run.state is not RunState.ACCEPTED:
                return True
            workflow = await get_workflow(
                session, tenant_id=run.tenant_id, workflow_id=run.workflow_id
            )
            version = await get_workflow_version(
                session, tenant_id=run.tenant_id, workflow_id=run.workflow_id, version=run.version
            )
        if workflow is None or version is None:
            await self._fail(run, "the run's workflow was deleted before the run could start")
            return True
        # A secret value a caller pasted into a parameter must not reach Prefect: the flow run
        # shows it as `***`, and the worker reads the real parameters from the store.
        redactor = await service.redactors.get(run.tenant_id)
        parameters: dict[str, Any] = {
            "parameters": redactor.value(run.parameters),
            "trigger": redactor.value(_trigger(run)),
            "run_id": run.id,
        }
        if run.version != workflow.current_version:  # the deployment pins the current one
            parameters |= {"definition": version.definition, "version": str(run.version)}
        try:
            deployment = await deployment_id(run.tenant_id, run.workflow_id)
            flow_run = await service.prefect.create_flow_run(
                deployment_id=deployment,
                run_id=run.id,
                parameters=parameters,
                tags=run_tags(
                    tenant=run.tenant_id, workflow_id=run.workflow_id, version=str(run.version)
                ),
                scheduled_at=run.scheduled_at,
                name=str(version.definition.get("name") or run.workflow_id),
            )
        except ObjectNotFound:
            await self._fail(run, "the workflow has no Prefect deployment (was it deleted?)")
            return True
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
            # The deployment id this process kept is gone (replaced through another process):
            # the next try reads it by name, and fails the run if there is none.
            forget_deployment_id(run.tenant_id, run.workflow_id)
            return False
        except Exception as exc:
            if is_transport_error(exc):
                _log.warning("Prefect unreachable; run %s stays accepted", run.id)
                return False
            raise
        async with service.database.session() as session:
            await store.set_flow_run(
                session, run_id=run.id, flow_run_id=str(flow_run.id), deployment_id=str(deployment)
            )
            moved = await store.update_run_state(session, run_id=run.id, state=RunState.SCHEDULED)
            now = None if moved else await store.get_run_by_id(session, run_id=run.id)
        if now is not None and now.state is RunState.CANCELLED:
            # Cancelled while its flow run was being created: that flow run must not run. Any
            # other state means another process dispatched it meanwhile and it went on (it may
            # even be `completed` in the store while Prefect still has it Running: cancelling
            # it then left it Cancelling for ever): left alone.
            with contextlib.suppress(Exception):
                await service.prefect.cancel(str(flow_run.id))
        return True

    async def _fail(self, run: Run, message: str) -> None:
        async with self._service.database.session() as session:
            await store.update_run_state(
                session,
                run_id=run.id,
                state=RunState.FAILED,
                error={"type": "NotDispatched", "message": message},
            )


def _trigger(run: Run) -> dict[str, Any]:
    """The `trigger` a run's flow run shows in Prefect: its event as received, without the raw
    body (the payload shows it parsed; the engine reads the whole event from the store)."""
    if run.trigger_event is not None:
        return {**run.trigger_event, "body": None}
    return trigger_scope(
        trigger_type=run.trigger_type.value,
        trigger_id=run.trigger_id,
        payload={},
        received_at=run.created_at,
    )
