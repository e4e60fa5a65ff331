"""Commands on runs: StartRun, CancelRun, PauseRun, ResumeRun.

StartRun checks the parameters against the workflow version's schema before anything is created,
honours the caller's idempotency key (per tenant and workflow: the same key and body give the
same run; another body is refused), records the run as `accepted`, and once that is committed
hands it to the dispatcher, which creates its Prefect flow run. Cancel, pause and resume act on
the run's flow run through Prefect and the run's control flag, which the engine reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema
from prefect.exceptions import NotPausedError, ObjectNotFound
from pydantic import Field

from api.commands.bus import Command, CommandContext
from api.errors import (
    ConflictProblem,
    InvalidProblem,
    NotFoundProblem,
    PrefectUnavailableProblem,
)
from api.prefect_gateway import is_transport_error
from api.store import runs as store
from api.store.crypto import json_digest
from api.store.models import NodeStatus, Run, RunState, TriggerType, new_run_id
from api.store.workflows import get_workflow, get_workflow_version
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.problems import ParameterError
from interpreter.run.approval import DEFAULT_INPUT_SCHEMA


class StartRun(Command):
    tenant_id: str
    workflow_id: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    version: int | None = None
    scheduled_at: datetime | None = None
    idempotency_key: str | None = Field(default=None, max_length=255)
    trigger_type: TriggerType = TriggerType.API
    trigger_id: str | None = None

    async def validate_in(self, context: CommandContext) -> None:
        session = context.session
        workflow = await get_workflow(
            session, tenant_id=self.tenant_id, workflow_id=self.workflow_id
        )
        if workflow is None:
            raise NotFoundProblem(f"workflow {self.workflow_id!r}")
        if not workflow.enabled:
            raise ConflictProblem(
                f"workflow {self.workflow_id!r} is disabled; enable it to start runs",
                slug="workflow-disabled",
            )
        number = self.version or workflow.current_version
        version = await get_workflow_version(
            session, tenant_id=self.tenant_id, workflow_id=self.workflow_id, version=number
        )
        if version is None:
            raise NotFoundProblem(f"version {number} of workflow {self.workflow_id!r}")
        try:
            prepare_parameters(version.definition.get("parameters"), self.parameters)
        except ParameterError as exc:
            raise InvalidProblem(
                "the parameters do not match the workflow's parameters schema",
                [{"path": "/parameters" + p.path, "message": p.message} for p in exc.problems],
                slug="invalid-parameters",
            ) from None
        context.found["version"] = number

    def request_digest(self) -> str:
        """What makes two requests with one idempotency key the same request."""
        return json_digest(
            {
                "parameters": self.parameters,
                "version": self.version,
                "scheduled_at": self.scheduled_at.isoformat() if self.scheduled_at else None,
            }
        )

    def audit_detail(self) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id, "trigger": self.trigger_type.value}


class CancelRun(Command):
    tenant_id: str
    run_id: str

    def audit_detail(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class PauseRun(Command):
    tenant_id: str
    run_id: str

    def audit_detail(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class ResumeRun(Command):
    tenant_id: str
    run_id: str
    input: dict[str, Any] | None = None

    def audit_detail(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


async def start_run(command: StartRun, context: CommandContext) -> Run:
    session = context.session
    run_id = new_run_id()
    if command.idempotency_key is not None:
        reservation = await store.reserve_idempotency_key(
            session,
            tenant_id=command.tenant_id,
            workflow_id=command.workflow_id,
            key=command.idempotency_key,
            request_digest=command.request_digest(),
            run_id=run_id,
        )
        if not reservation.is_new:
            if reservation.request_digest != command.request_digest():
                raise InvalidProblem(
                    "this Idempotency-Key was used with another request body; use a new key",
                    [{"path": "", "message": "the body differs from the first request's"}],
                    slug="idempotency-key-reused",
                )
            existing = await store.get_run(
                session, tenant_id=command.tenant_id, run_id=str(reservation.run_id)
            )
            if existing is None:  # reserved by a request that is still being handled
                raise ConflictProblem(
                    "a request with this Idempotency-Key is still being handled; retry",
                    slug="idempotency-key-in-use",
                )
            return existing
    run = await store.create_run(
        session,
        tenant_id=command.tenant_id,
        workflow_id=command.workflow_id,
        version=int(context.found["version"]),
        trigger_type=command.trigger_type,
        trigger_id=command.trigger_id,
        parameters=command.parameters,
        run_id=run_id,
        scheduled_at=command.scheduled_at,
    )
    accepted = context.service.run_accepted
    context.after_commit(lambda: accepted(run_id))
    return run


async def _active_run(context: CommandContext, tenant_id: str, run_id: str) -> Run:
    run = await store.get_run(context.session, tenant_id=tenant_id, run_id=run_id)
    if run is None:
        raise NotFoundProblem(f"run {run_id!r}")
    return run


async def cancel_run(command: CancelRun, context: CommandContext) -> Run:
    run = await _active_run(context, command.tenant_id, command.run_id)
    if run.state.is_finished:
        raise ConflictProblem(f"run {run.id!r} already finished ({run.state.value})")
    started = run.state in (RunState.RUNNING, RunState.PAUSED, RunState.CANCELLING)
    if run.flow_run_id is not None:
        try:
            await context.service.prefect.cancel(run.flow_run_id)
        except ObjectNotFound:  # its flow run is gone (deleted with its deployment)
            started = False
        except Exception as exc:
            if is_transport_error(exc):
                raise PrefectUnavailableProblem(exc) from None
            raise
    # A run that has not started is cancelled at once (no engine will report it); a running
    # one is `cancelling` until its engine has stopped it.
    target = RunState.CANCELLING if started else RunState.CANCELLED
    error = None if started else {"type": "Cancelled", "message": "cancelled before it started"}
    await store.update_run_state(
        context.session, run_id=run.id, tenant_id=command.tenant_id, state=target, error=error
    )
    await store.request_pause(
        context.session, tenant_id=command.tenant_id, run_id=run.id, paused=False
    )
    return await _active_run(context, command.tenant_id, command.run_id)


async def pause_run(command: PauseRun, context: CommandContext) -> Run:
    run = await _active_run(context, command.tenant_id, command.run_id)
    if run.state is not RunState.RUNNING or run.pause_requested:
        raise ConflictProblem(
            f"run {run.id!r} is {run.state.value}"
            + (" and already asked to pause" if run.pause_requested else "")
            + "; only a running run can be paused",
            slug="run-not-running",
        )
    await store.request_pause(
        context.session, tenant_id=command.tenant_id, run_id=run.id, paused=True
    )
    return run


async def resume_run(command: ResumeRun, context: CommandContext) -> Run:
    run = await _active_run(context, command.tenant_id, command.run_id)
    if run.state is not RunState.PAUSED and not run.pause_requested:
        raise ConflictProblem(
            f"run {run.id!r} is {run.state.value}; only a paused run can be resumed",
            slug="run-not-paused",
        )
    waiting = [
        node
        for node in await store.list_node_runs(
            context.session, tenant_id=command.tenant_id, run_id=run.id
        )
        if node.status is NodeStatus.WAITING
    ]
    if waiting and run.flow_run_id is not None:  # an approval: the approver's answer
        answer = command.input if command.input is not None else {}
        _check_approval_input(waiting[0].input, answer)
        try:
            await context.service.prefect.resume(run.flow_run_id, answer)
        except NotPausedError:
            raise ConflictProblem(
                f"run {run.id!r} is not paused in Prefect (any more)", slug="run-not-paused"
            ) from None
        except Exception as exc:
            if is_transport_error(exc):
                raise PrefectUnavailableProblem(exc) from None
            raise
    await store.request_pause(
        context.session, tenant_id=command.tenant_id, run_id=run.id, paused=False
    )
    return run


def _check_approval_input(node_input: Any, answer: dict[str, Any]) -> None:
    """The answer must match the approval node's `input_schema` (errors under `/input`)."""
    schema = DEFAULT_INPUT_SCHEMA
    if isinstance(node_input, dict) and isinstance(node_input.get("input_schema"), dict):
        schema = node_input["input_schema"]
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(answer), key=lambda e: list(e.path)
    )
    if errors:
        raise InvalidProblem(
            "the input does not match the approval's input_schema",
            [
                {
                    "path": "/input" + "".join(f"/{p}" for p in error.absolute_path),
                    "message": error.message,
                }
                for error in errors
            ],
            slug="invalid-approval-input",
        )
