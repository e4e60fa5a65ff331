"""What a running piece sees: `NodeContext`, the engine's `PieceContext` (and `EngineServices`).

Control-flow pieces reach the engine through it: `core.map` runs items (`run_piece_for_item`,
each a task run of its own) and sub-graphs (through the scheduler that owns the node, a
`SubgraphRunner`), `core.subworkflow` runs child workflows (through the run's `launch_child`),
and `core.approval` waits for a person.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from prefect import get_run_logger

from interpreter.definition import templates
from interpreter.run.approval import wait_for_approval
from interpreter.run.attempts import attempt_piece, failure
from interpreter.run.errors import RunStopped
from interpreter.run.execution import Execution, NodeRecord
from interpreter.run.services import (
    NodePhase,
    NoInputs,
    NullRecorder,
    RunPhase,
    StartRequest,
    current_services,
)
from interpreter.run.tasks import item_task
from pieces.base import Piece, PieceError, RunInfo
from pieces.settings import PieceSettings

START_WORKFLOW_POLL_SECONDS = 0.5
"""How often `core.start_workflow` with `wait` reads the started run's state."""


class SubgraphRunner(Protocol):
    """Runs a `core.map` sub-graph for one item (the scheduler of the node's own graph)."""

    async def run_subgraph(self, graph: dict[str, Any], names: dict[str, Any], label: str) -> Any:
        """The sub-graph's `output`; raises `PieceError` when one of its nodes failed."""
        ...


class NodeContext:
    """The `PieceContext` of one node attempt (or one `core.map` item)."""

    def __init__(
        self,
        *,
        execution: Execution,
        graphs: SubgraphRunner,
        record: NodeRecord,
        scope: dict[str, Any],
        piece: type[Piece[Any, Any]],
        label: str | None = None,
    ) -> None:
        self._execution = execution
        self._graphs = graphs
        self._record = record
        self._scope = scope
        self._piece = piece
        self._label = label or record.label

    @property
    def node_id(self) -> str:
        return self._label

    @property
    def attempt(self) -> int:
        return max(self._record.attempts, 1)

    @property
    def run(self) -> RunInfo:
        return self._execution.run

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
        return get_run_logger()

    @property
    def settings(self) -> PieceSettings:
        return self._execution.piece_settings

    @property
    def cancel_requested(self) -> bool:
        return self._execution.stopped.is_set()

    @property
    def engine(self) -> NodeContext:
        return self

    async def secret(self, name: str) -> str:
        """A tenant secret the piece declared in `secrets`; others are refused."""
        if not any(requirement.name == name for requirement in self._piece.secrets):
            raise PieceError(
                f"piece {self._piece.key!r} asked for secret {name!r} without declaring it; a "
                "piece can read only the secrets listed in its `secrets` (templates can use "
                "any secret of the tenant: `{{ secrets.NAME }}`)",
                error_type="UndeclaredSecret",
                retryable=False,
            )
        return await self._execution.secret(name)

    def render(self, value: Any, **names: Any) -> Any:
        return templates.render(value, {**self._scope, **names})

    # --- EngineServices ----------------------------------------------------------------------

    async def run_piece_for_item(
        self, *, piece: str, raw_input: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        """One item of a `core.map` that runs a piece per item: a task run named `label`."""
        execution = self._execution
        item_piece = execution.registry.instance(piece)
        record = NodeRecord(self._record.id, label, attempts=1)
        scope = {**self._scope, **names}

        def context_for(item_scope: dict[str, Any]) -> NodeContext:
            # The item's piece sees the map node's attempt number: a retried map re-runs items.
            return NodeContext(
                execution=execution,
                graphs=self._graphs,
                record=self._record,
                scope=item_scope,
                piece=type(item_piece),
                label=label,
            )

        async def work() -> Any:
            try:
                output = await attempt_piece(
                    execution, record, item_piece, raw_input, scope, limit=None,
                    context_for=context_for,
                )  # fmt: skip
            except RunStopped:
                execution.transition(record, NodePhase.FINISHED, "cancelled")
                raise
            except Exception as exc:
                failed = failure(execution, record, exc)
                execution.transition(record, NodePhase.FINISHED, "failed", error=failed.error)
                get_run_logger().debug("%s failed", label, exc_info=exc)
                raise failed from None
            execution.transition(record, NodePhase.FINISHED, "completed", output=output)
            return output

        return await item_task(label)(work, [])

    async def run_subgraph(
        self, *, graph: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        return await self._graphs.run_subgraph(graph, names, label)

    async def run_child_workflow(
        self, *, workflow_id: str, version: str | None, parameters: dict[str, Any]
    ) -> Any:
        execution = self._execution
        services = current_services()
        limit = execution.settings.max_subworkflow_depth
        if services.depth + 1 > limit:
            raise PieceError(
                f"sub-workflow {workflow_id!r} would nest {services.depth + 1} levels deep; "
                f"the limit is {limit} (ALTLAS_MAX_SUBWORKFLOW_DEPTH)",
                error_type="SubworkflowDepthExceeded",
                retryable=False,
            )
        resolved = await services.resolver.resolve(
            tenant=execution.run.tenant, workflow_id=workflow_id, version=version
        )
        return await execution.launch_child(
            resolved.definition,
            parameters,
            tenant=execution.run.tenant,
            version=resolved.version,
            parent_run_id=execution.run.id,
            # The child is a subflow run of this one: its history is its own flow run's, not
            # this run's record.
            services=replace(
                services,
                depth=services.depth + 1,
                prepared=None,
                recorder=NullRecorder(),
                inputs=NoInputs(),  # not a run of the service's own either
            ),
        )

    async def start_workflow(
        self,
        *,
        workflow_id: str,
        parameters: dict[str, Any],
        scheduled_at: datetime | None,
        wait: bool,
    ) -> dict[str, Any]:
        """A run of another stored workflow, through the `RunStarter` port; with `wait`, polled
        until it ends (a cancelled node stops waiting; the started run goes on)."""
        execution = self._execution
        starter = current_services().starter
        tenant = execution.run.tenant
        started = await starter.start(
            tenant,
            StartRequest(
                workflow_id=workflow_id,
                parameters=parameters,
                scheduled_at=scheduled_at,
                parent_run_id=execution.run.id,
                request_key=f"{execution.run.id}:{self._label}",
            ),
        )
        while wait and not started.finished:
            await asyncio.sleep(START_WORKFLOW_POLL_SECONDS)
            started = await starter.status(tenant, started.run_id)
        if wait and started.state != "completed":
            error = started.error or {}
            raise PieceError(
                f"run {started.run_id} of workflow {workflow_id!r} ended {started.state}: "
                f"{error.get('message') or 'no error recorded'}",
                error_type="StartedRunFailed",
                retryable=False,
            )
        return {
            "run_id": started.run_id,
            "state": started.state,
            "scheduled_at": started.scheduled_at.isoformat() if started.scheduled_at else None,
            "output": started.output,
            "error": started.error,
        }

    async def wait_for_approval(
        self, *, message: str, input_schema: dict[str, Any] | None, timeout_seconds: float
    ) -> Any:
        """Pause the run until a person resumes it; the node is `waiting` meanwhile."""
        execution = self._execution
        paused = False

        def now_paused() -> None:  # Prefect holds the run paused: it can be resumed now
            nonlocal paused
            paused = True
            execution.transition(self._record, NodePhase.WAITING, "waiting")
            execution.run_changed(RunPhase.PAUSED)

        async with execution.approval_lock:  # a flow run has one pause at a time
            try:
                return await wait_for_approval(
                    node_id=self._label,
                    message=message,
                    input_schema=input_schema,
                    timeout_seconds=timeout_seconds,
                    on_paused=now_paused,
                )
            finally:
                if paused:
                    execution.run_changed(RunPhase.RUNNING)
                    execution.transition(self._record, NodePhase.STARTED, "running")
