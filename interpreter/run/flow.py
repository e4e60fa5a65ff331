"""The one generic Prefect flow that interprets any workflow. Main entry: `workflow_flow`.

No code is generated per workflow: `workflow_flow` takes the definition, parameters and trigger
event as flow parameters, validates them, and drives an `Execution` whose nodes become task runs.
What Prefect shows:
- the flow is named after the workflow's `id`, the flow run after its `name`; the flow run (not its
  task runs) carries the tags `tenant:…`, `workflow:…`, `version:…`;
- one task run per executed node, named by node id; skipped nodes appear as "Skipped";
- one table artifact per run summarising every node (status, attempts, duration), delivered in
  the background like Prefect's own logs (`interpreter.run.background`).
The flow returns a state computed from the nodes' outcome, whose data is the `RunOutcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from prefect import State, flow, get_client, get_run_logger, tags
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.concurrency.asyncio import concurrency
from prefect.context import FlowRunContext, TagsContext
from prefect.exceptions import ObjectAlreadyExists
from prefect.flows import Flow
from prefect.states import Cancelled, Completed, Failed

from interpreter.definition.events import EventMapping, EventMappingError
from interpreter.definition.model import Workflow
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.problems import DefinitionError, ParameterError
from interpreter.definition.validation import validate_document
from interpreter.run.background import deliver_later, register_exit_flush
from interpreter.run.errors import StopReason, quiet_expected_failures
from interpreter.run.execution import Execution
from interpreter.run.launch import call_flow, manual_trigger, run_tags
from interpreter.run.resolvers import definition_version
from interpreter.run.results import NodeResult, RunResult, RunState
from interpreter.run.scheduler import PlanRun
from interpreter.run.secrets import Redactor, redacting
from interpreter.run.services import (
    RunChange,
    RunOpening,
    RunPhase,
    RunServices,
    TenantPolicy,
    current_services,
    using_services,
)
from interpreter.settings import get_engine_settings
from pieces.base import PieceError, RunInfo, TriggerStrategy
from pieces.registry import PieceRegistry
from pieces.settings import PieceSettings, get_piece_settings


class RunOutcome:
    """What the flow returns as its state's data: the public result and the raw output.

    Deliberately a plain class, not a dataclass: Prefect walks a flow's return value looking for
    futures to resolve, and descends into dataclasses and pydantic models, which for a result
    of 100 nodes cost ~7 ms per run. A plain object is one leaf to it.
    """

    __slots__ = ("raw_output", "result")

    def __init__(self, result: RunResult, raw_output: Any) -> None:
        self.result = result
        self.raw_output = raw_output


@flow(name="altlas-workflow", persist_result=False, validate_parameters=False, log_prints=False)
async def workflow_flow(
    definition: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    tenant: str = "default",
    version: str | None = None,
    run_id: str | None = None,
) -> State:
    """Interpret one workflow definition as this flow run.

    Args:
        definition: the workflow document (validated again here: deployments call this directly).
        parameters: the run's parameters, before defaults are applied.
        trigger: the event that started the run (`{"type", "id", "payload", "headers",
            "received_at"}`); a manual trigger when omitted.
        tenant: whose run this is (secrets, sub-workflows, tags).
        version: the definition's stored version; a content hash when omitted.
        run_id: the id the caller knows the run by (the service's run id: `run.id` in
            templates and the recorder's key); the flow run's id when omitted.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("workflow_flow must run as a Prefect flow")
    flow_run = context.flow_run
    started = datetime.now(UTC)
    services = current_services()
    quiet_expected_failures()
    version = version or definition_version(definition)
    info = RunInfo(
        id=run_id or str(flow_run.id),
        workflow_id=str(definition.get("id", "")),
        version=version,
        tenant=tenant,
        started_at=started.isoformat(),
        scheduled_at=(flow_run.expected_start_time or started).isoformat(),
    )

    async def refused(error_type: str, message: str) -> State:
        get_run_logger().error("%s", message)
        error = {"type": error_type, "message": message}
        result = RunResult(
            state="failed",
            output=None,
            flow_run_id=str(flow_run.id),
            workflow_id=info.workflow_id,
            version=version,
            tenant=tenant,
            error=error,
            started_at=started,
            finished_at=datetime.now(UTC),
        )
        change = RunChange(
            run_id=info.id,
            flow_run_id=str(flow_run.id),
            workflow_id=info.workflow_id,
            phase=RunPhase.FAILED,
            at=datetime.now(UTC),
            error=error,
        )
        await services.recorder.run_changed(tenant, change)
        return Failed(message=message, data=RunOutcome(result, None))

    policy = await services.policies.policy(tenant)
    registry = services.registry
    if policy.allowed_pieces is not None:
        registry = registry.restricted(policy.allowed_pieces, where=f"for tenant {tenant!r}")
    workflow = services.prepared_workflow(definition)
    if workflow is None:
        problems = validate_document(definition, registry=registry)
        if problems:
            return await refused("InvalidDefinition", str(DefinitionError(problems)))
        workflow = Workflow.parse(definition, registry=registry, tenant_defaults=policy.defaults)
    event = _event(trigger, info)
    mapping_error = None
    if parameters is None:
        try:
            parameters = _fired_parameters(workflow, registry, event, info)
        except EventMappingError as exc:
            mapping_error = f"trigger {event.get('id')!r}: {exc}"
    opened = await services.inputs.open(
        tenant,
        RunOpening(
            run_id=run_id,
            flow_run_id=str(flow_run.id),
            workflow_id=info.workflow_id,
            version=version,
            trigger=event,
            parameters=parameters,
            scheduled_at=datetime.fromisoformat(info.scheduled_at or info.started_at),
        ),
    )
    if opened is not None:  # the caller's own copy: secret values are not masked in it
        info = replace(info, id=opened.run_id)
        parameters = opened.parameters if opened.parameters is not None else parameters
        event = opened.trigger if opened.trigger is not None else event
    if mapping_error is not None:
        return await refused("InvalidParameters", mapping_error)
    try:
        params = prepare_parameters(workflow.parameters_schema, parameters)
    except ParameterError as exc:
        return await refused("InvalidParameters", str(exc))

    redactor = Redactor()
    execution = Execution(
        workflow=workflow,
        parameters=params,
        trigger=event,
        run=info,
        services=services,
        redactor=redactor,
        launch_child=run_child,
        registry=registry,
        piece_settings=_piece_settings(policy),
        flow_run_id=str(flow_run.id),
    )
    await _name_flow_run(context.client, flow_run, workflow.name)
    # Tags belong to the flow run only: each tag on a task costs a concurrency look-up.
    with redacting(redactor), TagsContext(current_tags=set()):
        async with _concurrency_slot(workflow, tenant):
            execution.run_changed(RunPhase.RUNNING)
            plan_run = PlanRun(execution, workflow.plan)
            async with (
                _deadline(execution),
                _cancellation_watch(execution, str(flow_run.id)),
                _live(execution),
            ):
                await execution.resolve_secrets()
                await plan_run.run()
            outcome = _outcome(execution, plan_run, started)
            result = outcome.result
            execution.run_changed(
                RunPhase(result.state), output=outcome.raw_output, error=result.error
            )
            await execution.history_written()
        if get_engine_settings().summary_artifact:
            deliver_later(lambda: _summary_artifact(result))
    # Deliver this run's queued events before Prefect's exit hooks stop its events worker (a
    # short process otherwise ends with "EventsWorker - Still processing items").
    register_exit_flush()
    return _final_state(outcome)


def _event(trigger: dict[str, Any] | None, info: RunInfo) -> dict[str, Any]:
    """The run's `trigger` scope: as given (a schedule's gets its fire time as `received_at`),
    else a manual trigger."""
    if trigger is None:
        return manual_trigger()
    if trigger.get("received_at") is None:
        return {"body": None, **trigger, "received_at": info.scheduled_at}
    return trigger


def _fired_parameters(
    workflow: Workflow, registry: PieceRegistry, event: dict[str, Any], info: RunInfo
) -> dict[str, Any] | None:
    """The parameters a trigger maps for a run its event started inside Prefect (a schedule:
    only when it fires is `run.scheduled_at` known); None when the run is no such run.

    Raises:
        EventMappingError: a template of the trigger's `parameters` failed.
    """
    entry = next((t for t in workflow.triggers if t.id == event.get("id")), None)
    if entry is None or entry.type != event.get("type"):
        return None
    if registry.trigger(entry.type).strategy is not TriggerStrategy.SCHEDULE:
        return None
    return EventMapping(entry, {"trigger": event, "run": info.as_scope()}).parameters()


def _piece_settings(policy: TenantPolicy) -> PieceSettings:
    """The process's piece settings, with the tenant's additions to the HTTP allow-list."""
    settings = get_piece_settings()
    if not policy.http_allow:
        return settings
    allowed = [*settings.http_allow_private, *policy.http_allow]
    return settings.model_copy(update={"http_allow_private": allowed})


async def _name_flow_run(
    client: PrefectClient | SyncPrefectClient, flow_run: FlowRun, name: str
) -> None:
    """Give the flow run the workflow's name (shown in the Prefect UI's run list), with the
    run's own client (a new client costs an SSL context and file look-ups on every run)."""
    if flow_run.name != name:
        if isinstance(client, PrefectClient):
            await client.set_flow_run_name(flow_run.id, name)
        else:  # a sync engine's client (not how this async flow runs, but typed so)
            client.set_flow_run_name(flow_run.id, name)
        flow_run.name = name


def _outcome(execution: Execution, plan_run: PlanRun, started: datetime) -> RunOutcome:
    state: RunState = "completed"
    error: dict[str, Any] | None = None
    raw_output: Any = None
    if execution.stop_reason is not None:
        timed_out = execution.stop_reason is StopReason.TIMED_OUT
        state = "timed_out" if timed_out else "cancelled"
        error = {"type": "Timeout" if timed_out else "Cancelled", "message": execution.stop_message}
    elif failed := plan_run.failed_nodes():
        state = "failed"
        first = failed[0].error or {}
        names = ", ".join(repr(r.id) for r in failed)
        message = f"node(s) {names} failed; first: {first.get('type')}: {first.get('message')}"
        error = {"type": "NodeFailed", "message": message}
    else:
        try:
            raw_output = plan_run.output()
        except PieceError as exc:
            state = "failed"
            error = {"type": exc.error_type, "message": f"`output`: {exc.message}"}
    redactor = execution.redactor
    result = RunResult(
        state=state,
        output=redactor.value(raw_output),
        flow_run_id=execution.flow_run_id,
        workflow_id=execution.workflow.id,
        version=execution.run.version,
        tenant=execution.run.tenant,
        nodes=plan_run.results(),
        error=redactor.value(error),
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    return RunOutcome(result, raw_output)


def _final_state(outcome: RunOutcome) -> State:
    result = outcome.result
    message = (result.error or {}).get("message")
    if result.state == "completed":
        return Completed(data=outcome)
    if result.state == "cancelled":
        return Cancelled(message=message, data=outcome)
    if result.state == "timed_out":
        return Failed(name="TimedOut", message=message, data=outcome)
    return Failed(message=message, data=outcome)


@contextlib.asynccontextmanager
async def _deadline(execution: Execution) -> AsyncIterator[None]:
    """Past the workflow's `timeout_seconds`, cancel every running node."""
    limit = execution.workflow.timeout_seconds
    if limit is None:
        yield
        return
    loop = asyncio.get_running_loop()
    message = f"timed out: the run exceeded timeout_seconds={limit:g}"
    timer = loop.call_later(limit, execution.stop, StopReason.TIMED_OUT, message)
    try:
        yield
    finally:
        timer.cancel()


_CANCELLED_IN_PREFECT = "cancelled: the flow run was cancelled in Prefect"
_live_runs: dict[str, tuple[asyncio.AbstractEventLoop, Execution]] = {}
_live_lock = threading.Lock()


@contextlib.asynccontextmanager
async def _live(execution: Execution) -> AsyncIterator[None]:
    """Make the run reachable by `request_cancel` while its nodes run."""
    with _live_lock:
        _live_runs[execution.flow_run_id] = (asyncio.get_running_loop(), execution)
    try:
        yield
    finally:
        with _live_lock:
            _live_runs.pop(execution.flow_run_id, None)


def request_cancel(flow_run_id: str) -> bool:
    """Stop the run this process executes as `flow_run_id` now, from any thread (a worker that
    learns of a cancellation from Prefect's events need not wait for the run's own poll).

    Returns:
        False when no run of this process has that flow run id.
    """
    with _live_lock:
        found = _live_runs.get(flow_run_id)
    if found is None:
        return False
    loop, execution = found
    loop.call_soon_threadsafe(execution.stop, StopReason.CANCELLED, _CANCELLED_IN_PREFECT)
    return True


@contextlib.asynccontextmanager
async def _cancellation_watch(execution: Execution, flow_run_id: str) -> AsyncIterator[None]:
    """Stop the run when someone cancels its flow run in Prefect (UI, CLI or API).

    Prefect does not interrupt an in-process run; it moves it to `Cancelling`. This polls the
    flow run's state and cancels the nodes cooperatively.
    """
    interval = get_engine_settings().cancel_poll_seconds

    async def watch() -> None:
        async with contextlib.AsyncExitStack() as stack:
            client: PrefectClient | None = None
            while not execution.stopped.is_set():
                await asyncio.sleep(interval)  # most runs end before the first poll: no client
                with contextlib.suppress(Exception):  # a missed poll is retried next time
                    if client is None:  # one client for every later poll
                        client = await stack.enter_async_context(get_client())
                    flow_run = await client.read_flow_run(UUID(flow_run_id))
                    if flow_run.state and flow_run.state.type in (
                        StateType.CANCELLING,
                        StateType.CANCELLED,
                    ):
                        execution.stop(StopReason.CANCELLED, _CANCELLED_IN_PREFECT)

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


@contextlib.asynccontextmanager
async def _concurrency_slot(workflow: Workflow, tenant: str) -> AsyncIterator[None]:
    """Hold one of the workflow's `concurrency.limit` slots for the whole run (others wait)."""
    if workflow.concurrency_limit is None:
        yield
        return
    name = f"altlas:{tenant}:{workflow.id}"
    async with get_client() as client:
        try:
            await client.upsert_global_concurrency_limit_by_name(name, workflow.concurrency_limit)
        except ObjectAlreadyExists:  # another run created it between Prefect's read and create
            await client.upsert_global_concurrency_limit_by_name(name, workflow.concurrency_limit)
    get_run_logger().info("waiting for a slot of concurrency limit %r", name)
    async with concurrency(name, occupy=1, strict=True):
        yield


async def _summary_artifact(result: RunResult) -> None:
    """One table artifact per run: every node's status, attempts, duration and error."""
    rows = [_summary_row(node_id, node) for node_id, node in result.nodes.items()]
    key = re.sub(r"[^a-z0-9-]+", "-", f"{result.tenant}-{result.workflow_id}-summary".lower())
    artifact = ArtifactCreate(
        key=key[:200],
        type="table",
        data=json.dumps(rows),
        description=f"Nodes of workflow `{result.workflow_id}` (version {result.version}): "
        f"run {result.state}.",
        flow_run_id=UUID(result.flow_run_id),
    )
    async with get_client() as client:
        await client.create_artifact(artifact)


def _summary_row(node_id: str, node: NodeResult) -> dict[str, Any]:
    duration = node.duration_seconds
    return {
        "node": node_id,
        "status": node.status,
        "attempts": node.attempts,
        "duration_s": round(duration, 3) if duration is not None else None,
        "error": f"{node.error['type']}: {node.error['message']}"[:300] if node.error else "",
    }


@lru_cache(maxsize=1024)
def named_flow(workflow_id: str) -> Flow[..., Any]:
    """`workflow_flow` named for one workflow: in the Prefect UI the flow is the workflow's id.

    Cached: Prefect sets up a flow object it has seen before faster (about 50 ms per run here).
    The flow *run* is named by the flow itself (`_name_flow_run`), not with Prefect's
    `flow_run_name` option: that option formats the name with the run's parameters (a workflow
    named "Sync {orders}" would break) and costs a synchronous call on every run.
    """
    return workflow_flow.with_options(name=workflow_id)


async def run_child(
    definition: dict[str, Any],
    parameters: dict[str, Any],
    *,
    tenant: str,
    version: str,
    parent_run_id: str,
    services: RunServices,
) -> Any:
    """Run another workflow as a Prefect subflow of the current run, with `services`; return
    its raw output (an `Execution`'s `launch_child`).

    Raises:
        PieceError: `SubworkflowFailed` when the child run does not complete.
    """
    workflow_id = str(definition.get("id", "workflow"))
    child = named_flow(workflow_id)
    trigger = {
        **manual_trigger({"parent_run_id": parent_run_id}),
        "type": "subworkflow",
        "id": parent_run_id,
    }
    with (
        using_services(services),
        tags(*run_tags(tenant=tenant, workflow_id=workflow_id, version=version)),
    ):
        state = await call_flow(
            child,
            definition=definition,
            parameters=parameters,
            trigger=trigger,
            tenant=tenant,
            version=version,
        )
    outcome = await state.aresult(raise_on_failure=False) if state.data is not None else None
    if not isinstance(outcome, RunOutcome):
        raise PieceError(
            f"sub-workflow {workflow_id!r} crashed: {state.message}", error_type="SubworkflowFailed"
        )
    if outcome.result.state != "completed":
        error = outcome.result.error or {}
        raise PieceError(
            f"sub-workflow {workflow_id!r} {outcome.result.state}: {error.get('message')}",
            error_type="SubworkflowFailed",
            retryable=False,
            details={"flow_run_id": outcome.result.flow_run_id},
        )
    return outcome.raw_output
