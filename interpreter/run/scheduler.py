"""Schedules one graph's nodes as Prefect task runs: `PlanRun`.

A `PlanRun` runs one `Plan` (the workflow body, or one item of a `core.map` sub-graph). It keeps
a counter of undecided incoming edges per node; when a node finishes it decides the node's
outgoing edges, and a target whose edges are all decided either starts (join rule satisfied) or
is skipped, and the skip flows on. Only started nodes have an asyncio task, so a 1,000-node graph
costs a dict of small records, not a thread or a coroutine per waiting node.

Each node runs as a Prefect task run named after the node, with Prefect's retries mapped from the
node's retry policy; one try is `run_attempt` (the piece itself runs in `attempts.attempt_piece`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from functools import partial
from typing import Any
from uuid import UUID

from prefect import State, get_run_logger
from prefect.client.schemas.objects import TaskRunResult
from prefect.states import Cancelled

from interpreter.definition import templates
from interpreter.definition.model import Node, Plan
from interpreter.run.attempts import attempt_piece, failure, log_failure
from interpreter.run.errors import RunStopped, node_failure
from interpreter.run.execution import Execution, NodeRecord
from interpreter.run.node_context import NodeContext
from interpreter.run.results import NodeResult
from interpreter.run.services import NodePhase
from interpreter.run.tasks import mark_skipped, node_task, run_task
from pieces.base import Piece, PieceError


class PlanRun:
    """Schedules the nodes of one `Plan` until each is completed, failed, skipped or cancelled."""

    def __init__(
        self,
        execution: Execution,
        plan: Plan,
        *,
        names: Mapping[str, Any] | None = None,
        label_prefix: str = "",
    ) -> None:
        self.execution = execution
        self.plan = plan
        self.names = dict(names or {})
        self.records = {
            node_id: NodeRecord(node_id, f"{label_prefix}{node_id}") for node_id in plan.nodes
        }
        self.nodes_view: dict[str, dict[str, Any]] = {}
        self._undecided = {node_id: len(edges) for node_id, edges in plan.incoming.items()}
        self._taken = dict.fromkeys(plan.nodes, 0)
        self._errors_in: dict[str, dict[str, Any]] = {}
        self._open = len(plan.nodes)
        self._all_decided = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_run_ids: dict[str, UUID | None] = {}  # of the nodes that ran

    # --- scheduling --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the plan to the end; returns early only when the run is stopped."""
        if not self.plan.nodes:
            return
        for node_id in self.plan.graph.entries:
            self._start(node_id)
        stopped = asyncio.ensure_future(self.execution.stopped.wait())
        try:
            await asyncio.wait(
                [asyncio.ensure_future(self._all_decided.wait()), stopped],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopped.cancel()
            # Every started node (and every "Skipped" marker) finishes before the plan returns:
            # nothing is left pending for Prefect to cancel behind our back.
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start(self, node_id: str) -> None:
        if self.execution.stopped.is_set():
            self._settle(node_id)
            return
        self._spawn(self._execute(node_id))

    def _spawn(self, work: Awaitable[None]) -> None:
        future = asyncio.ensure_future(work)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    def _settle(self, node_id: str) -> None:
        """One more node has its final status."""
        self.nodes_view[node_id] = self.records[node_id].view()
        self._open -= 1
        if self._open == 0:
            self._all_decided.set()

    async def _execute(self, node_id: str | None) -> None:
        """Run a node; then run on, in this same task, the first node its outcome made ready
        (a chain costs one asyncio task, not one per node) and start the others beside it."""
        execution = self.execution
        while node_id is not None:
            node = self.plan.nodes[node_id]
            record = self.records[node_id]
            await execution.checkpoint()  # a run paused on request waits here
            if execution.stopped.is_set():  # stopped meanwhile: the node never starts
                self._settle(node_id)
                ready: list[str] = []
                self._propagate(node, record, ready)
                for next_id in ready:
                    self._start(next_id)
                return
            upstream, links = self._upstream(node_id)
            state = await run_task(
                node_task(record.label, node.retry.max_attempts),
                {"work": partial(self.run_attempt, node_id), "upstream": upstream},
                links,
            )
            self._task_run_ids[node_id] = state.state_details.task_run_id
            if record.status not in ("completed", "failed", "cancelled"):
                # The task run ended without our attempt recording how (Prefect stopped it).
                error = record.error or execution.error_record(
                    record, RuntimeError(state.message or "task ended unexpectedly")
                )
                execution.transition(
                    record,
                    NodePhase.FINISHED,
                    "cancelled" if state.is_cancelled() else "failed",
                    error=error,
                )
            if record.status == "failed" and node.on_error == "continue":
                output = {"error": record.error}
                execution.transition(
                    record,
                    NodePhase.FINISHED,
                    "completed",
                    output=output,
                    taken=self._decide_quietly(node, output),
                )
            self._settle(node_id)
            ready = []
            self._propagate(node, record, ready)
            node_id = None
            for next_id in ready:
                if node_id is None and not execution.stopped.is_set():
                    node_id = next_id
                else:
                    self._start(next_id)

    def _propagate(self, node: Node, record: NodeRecord, ready: list[str]) -> None:
        """Decide the edges leaving a settled node; nodes that may now run go into `ready`."""
        for edge in self.plan.outgoing[node.id]:
            taken = record.taken.get(edge.index, False)
            if edge.on == "error":
                taken = record.status == "failed"
                if taken and record.error is not None:
                    self._errors_in.setdefault(edge.target, record.error)
            if taken:
                self._taken[edge.target] += 1
            self._undecided[edge.target] -= 1
            if self._undecided[edge.target] == 0:
                self._ready(self.plan.nodes[edge.target], ready)

    def _ready(self, node: Node, ready: list[str]) -> None:
        """All edges into `node` are decided: it runs (into `ready`) or is skipped."""
        record = self.records[node.id]
        if self.execution.stopped.is_set():  # stays "pending": reported as cancelled
            self._settle(node.id)
            self._propagate(node, record, ready)
            return
        incoming = len(self.plan.incoming[node.id])
        taken = self._taken[node.id]
        runs = taken == incoming if node.join == "all" else taken > 0
        if runs:
            ready.append(node.id)
            return
        self.execution.transition(record, NodePhase.SKIPPED, "skipped")
        self._settle(node.id)
        reason = (
            "join 'all': not every incoming edge was taken"
            if node.join == "all" and taken
            else "no incoming edge was taken"
        )
        self._spawn(mark_skipped(record.label, reason, *self._upstream(node.id)))
        self._propagate(node, record, ready)

    def _upstream(self, node_id: str) -> tuple[list[str], set[TaskRunResult]]:
        """The node's sources that ran: their ids, and links to their task runs (which is how
        the Prefect UI draws the graph's edges)."""
        sources = [e.source for e in self.plan.incoming[node_id] if e.source in self._task_run_ids]
        links = {
            TaskRunResult(id=task_run_id)
            for source in sources
            if (task_run_id := self._task_run_ids[source]) is not None
        }
        return sources, links

    # --- edges -------------------------------------------------------------------------------

    def decide_success_edges(self, node: Node, output: Any) -> dict[int, bool]:
        """Evaluate the `when` of each success edge leaving `node`; raises on a bad template."""
        decisions: dict[int, bool] = {}
        scope: dict[str, Any] | None = None
        for edge in self.plan.outgoing[node.id]:
            if edge.on == "error":
                continue
            if edge.when is None:
                decisions[edge.index] = True
                continue
            if scope is None:
                scope = {**self.scope_for(node), "output": output}
            decisions[edge.index] = templates.truthy(templates.render_string(edge.when, scope))
        return decisions

    def _decide_quietly(self, node: Node, output: Any) -> dict[int, bool]:
        try:
            return self.decide_success_edges(node, output)
        except PieceError as exc:
            get_run_logger().error(
                "node %r: an edge condition failed, so its success edges are not taken: %s",
                node.id,
                exc.message,
            )
            return {}

    # --- scope -------------------------------------------------------------------------------

    def scope_for(self, node: Node) -> dict[str, Any]:
        """The names a template of `node` may use."""
        scope = self.execution.base_scope()
        scope["nodes"] = self.nodes_view
        scope.update(self.names)
        error = self._errors_in.get(node.id)
        if error is not None:
            scope["error"] = error
        return scope

    # --- one attempt -------------------------------------------------------------------------

    async def run_attempt(self, node_id: str) -> State | None:
        """One attempt of one node: the body of its task run.

        Returns a `Cancelled` state when the run stopped, None when the node completed; raises
        `NodeFailure` when it failed (Prefect retries it when the policy and the failure allow).
        """
        execution = self.execution
        node = self.plan.nodes[node_id]
        record = self.records[node_id]
        if execution.stopped.is_set():  # a retry that the run's end overtook
            return self._cancelled(record)
        record.attempts += 1
        scope = self.scope_for(node)
        try:
            piece = execution.registry.instance(node.piece)
            output = await attempt_piece(
                execution, record, piece, node.input, scope,
                limit=node.timeout_seconds, context_for=partial(self._context, record, type(piece)),
            )  # fmt: skip
            taken = self.decide_success_edges(node, output)
        except RunStopped:
            return self._cancelled(record)
        except Exception as exc:
            failed = failure(execution, record, exc)
            record.retryable = failed.retryable
            last = record.attempts >= node.retry.max_attempts or not failed.retryable
            logger = get_run_logger()
            if last:
                execution.transition(record, NodePhase.FINISHED, "failed", error=failed.error)
                log_failure(logger, execution, record, exc, level=logging.ERROR)
            else:
                execution.transition(
                    record, NodePhase.ATTEMPT_FAILED, "running", error=failed.error
                )
                wait = self._retry_wait(node, record, exc)
                log_failure(
                    logger, execution, record, exc,
                    level=logging.INFO, retry_in=wait, of=node.retry.max_attempts,
                )  # fmt: skip
                if await self._stopped_within(wait):
                    return self._cancelled(record)
            raise node_failure(failed.error, retryable=not last) from None
        execution.transition(
            record, NodePhase.FINISHED, "completed", output=output, taken=taken, error=None
        )
        return None

    def _context(
        self, record: NodeRecord, piece: type[Piece[Any, Any]], scope: dict[str, Any]
    ) -> NodeContext:
        return NodeContext(
            execution=self.execution, graphs=self, record=record, scope=scope, piece=piece
        )

    def _retry_wait(self, node: Node, record: NodeRecord, exc: Exception) -> float:
        """The retry policy's delay, longer when the piece asked to (`Retry-After`)."""
        wait = node.retry.wait_before(record.attempts)
        if wanted := getattr(exc, "retry_after_seconds", None):
            cap = node.retry.max_delay_seconds
            wait = max(wait, min(wanted, cap) if cap is not None else wanted)
        return wait

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait out a retry delay; True when the run was stopped meanwhile.

        The wait happens here, inside the attempt, rather than as Prefect's retry delay (which
        nothing interrupts): a run's deadline or cancellation must not wait for a retry.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.execution.stopped.wait(), timeout=seconds)
        return self.execution.stopped.is_set()

    def _cancelled(self, record: NodeRecord) -> State:
        self.execution.transition(record, NodePhase.FINISHED, "cancelled")
        return Cancelled(message=self.execution.stop_message)

    # --- sub-graphs (`core.map` with a `workflow`) ---------------------------------------------

    async def run_subgraph(self, graph: dict[str, Any], names: dict[str, Any], label: str) -> Any:
        """Run a `core.map` item's sub-graph; its nodes are labelled `label.<id>`."""
        execution = self.execution
        sub = PlanRun(execution, execution.subplan(graph), names=names, label_prefix=f"{label}.")
        await sub.run()
        if execution.stopped.is_set():
            raise execution.stopped_error()
        failed = sub.failed_nodes()
        if failed:
            first = failed[0].error or {}
            raise PieceError(
                f"{label} failed: node {first.get('node')!r}: {first.get('message')}",
                error_type=str(first.get("type", "SubgraphFailed")),
                retryable=False,
                details={"failed_nodes": [r.label for r in failed]},
            )
        return sub.output()

    # --- results -----------------------------------------------------------------------------

    def results(self) -> dict[str, NodeResult]:
        """Every node's public result, redacted."""
        return {n: r.result(self.execution.redactor) for n, r in self.records.items()}

    def failed_nodes(self) -> list[NodeRecord]:
        """Failed nodes that fail their graph: those with no error edge leaving them."""
        return [
            record
            for node_id, record in self.records.items()
            if record.status == "failed"
            and not any(e.on == "error" for e in self.plan.outgoing[node_id])
        ]

    def output(self) -> Any:
        """The plan's `output` template evaluated (raises `PieceError` on a template error)."""
        if self.plan.output is None:
            return None
        scope = {**self.execution.base_scope(), "nodes": self.nodes_view, **self.names}
        return templates.render(self.plan.output, scope)
