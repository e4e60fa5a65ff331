"""The engine's runtime: runs a `Plan` as Prefect task runs, one per node. Main entry: `Execution`.

How a run proceeds:
- `Execution` holds what the whole run shares: the workflow, parameters, trigger, secrets and
  their redactor, the piece registry, and the cancellation event.
- `PlanRun` schedules one graph (the workflow body, or one item of a `core.map` sub-graph). It keeps
  a counter of undecided incoming edges per node; when a node finishes it decides the node's
  outgoing edges, and a target whose edges are all decided either starts (join rule satisfied) or
  is skipped, and the skip flows on. Only started nodes have an asyncio task, so a 1,000-node
  graph costs a dict of small records, not a thread or a coroutine per waiting node.
- Each node runs as a Prefect task run named after the node, with Prefect's retries mapped from
  the node's retry policy. One attempt renders the input templates, validates them against the
  piece's input model, and runs the piece under the attempt's time-out while watching the run's
  cancellation event; the piece is cancelled cooperatively so the task run ends `Cancelled`,
  not `Crashed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect import State, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import RunInput, TaskRun, TaskRunResult
from prefect.states import Cancelled, Completed
from prefect.task_engine import run_task_async
from prefect.tasks import Task
from pydantic import ValidationError as PydanticValidationError

from interpreter.definition import templates
from interpreter.definition.model import Node, Plan, RetryPolicy, Workflow
from interpreter.run.results import NodeResult, NodeStatus
from interpreter.run.secrets import Redactor, SecretProvider
from interpreter.settings import get_engine_settings
from pieces.base import PieceError, RunInfo, SecretNotFoundError, json_output
from pieces.registry import PieceRegistry

CANCEL_GRACE_SECONDS = 0.5
"""On cancellation, how long a piece may take to notice and return before it is cancelled hard."""

_STOP = "altlas: the run was cancelled"
"""The message of the cancellations the engine itself sends to running pieces."""


class RunCancelledError(Exception):
    """Raised inside a node attempt when the run is cancelled or timed out."""


class NodeFailure(Exception):
    """What a failed attempt raises to Prefect: type and message only, secrets redacted.

    `retryable` is what Prefect's retry condition reads (`_retry_condition`).
    """

    def __init__(self, error: dict[str, Any], *, retryable: bool = True) -> None:
        super().__init__(f"{error['type']}: {error['message']}")
        self.error = error
        self.retryable = retryable


LiveStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
_FINAL_STATUS: dict[LiveStatus, NodeStatus] = {
    "pending": "cancelled",  # the run ended before the node could start
    "running": "cancelled",
    "completed": "completed",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


@dataclass
class NodeRecord:
    """The live state of one node in one run (internal; `NodeResult` is the public view)."""

    id: str
    label: str
    status: LiveStatus = "pending"
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retryable: bool = True
    taken: dict[int, bool] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """What templates see as `nodes.<id>`."""
        return {"output": self.output, "status": self.status, "error": self.error}

    def result(self, redactor: Redactor) -> NodeResult:
        status: NodeStatus = _FINAL_STATUS[self.status]
        return NodeResult(
            id=self.id,
            status=status,
            output=redactor.value(self.output),
            error=redactor.value(self.error),
            attempts=self.attempts,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class SecretScope(Mapping[str, str]):
    """`secrets` in templates: resolved values; an unknown name fails the node that uses it."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise SecretNotFoundError(name) from None

    def __iter__(self) -> Any:
        return iter(())  # never enumerate secrets into a template's output

    def __len__(self) -> int:
        return 0


@dataclass
class Execution:
    """Everything one run shares across its nodes."""

    workflow: Workflow
    parameters: dict[str, Any]
    trigger: dict[str, Any]
    run: RunInfo
    registry: PieceRegistry
    secrets: SecretProvider
    redactor: Redactor
    services: Any  # interpreter.run.context.RunServices; typed loosely to avoid an import cycle
    secret_values: dict[str, str] = field(default_factory=dict)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""
    approval_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.run_scope = self.run.as_scope()
        self.secret_scope = SecretScope(self.secret_values)
        self.settings = get_engine_settings()
        self._subplans: dict[int, tuple[dict[str, Any], Plan]] = {}
        self._running: set[asyncio.Task[Any]] = set()

    async def resolve_secrets(self) -> None:
        """Look up every secret the definition names literally (`secrets.NAME`), once per run."""
        names: set[str] = set()
        for source in _template_sources(self.workflow.document):
            if templates.syntax_error(source) is None:
                names |= templates.references(source).secrets
        for name in sorted(names):
            with contextlib.suppress(SecretNotFoundError):  # fails the node that uses it
                await self.secret(name)

    async def secret(self, name: str) -> str:
        """A secret's value (cached for the run, and hidden from then on)."""
        if name not in self.secret_values:
            value = await self.secrets.get(name)
            if value is None:
                raise SecretNotFoundError(name)
            self.secret_values[name] = value
            self.redactor.add(value)
        return self.secret_values[name]

    def cancel(self, reason: str) -> None:
        """Ask every running node to stop, and no new node to start.

        Running pieces get `CANCEL_GRACE_SECONDS` to notice (`cancel_requested`) and return by
        themselves; then they are cancelled.
        """
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()
            asyncio.get_running_loop().call_later(CANCEL_GRACE_SECONDS, self._stop_pieces)

    def _stop_pieces(self) -> None:
        for running in list(self._running):
            running.cancel(_STOP)

    async def guarded(self, work: Awaitable[Any], limit: float | None, what: str) -> Any:
        """Await `work` in this task for at most `limit` seconds, stopping it if the run is
        cancelled (`_stop_pieces` cancels the task with `_STOP`, and the cancellation is
        taken back here: the Prefect task run around it then ends `Cancelled`, not `Crashed`).

        Raises:
            RunCancelledError: the run was cancelled (or timed out) meanwhile.
            PieceError: `Timeout` when `limit` seconds passed first.
        """
        current = asyncio.current_task()
        if current is None:
            raise RuntimeError("pieces run inside an asyncio task")
        self._running.add(current)
        try:
            if limit is None:
                return await work
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError:
            raise PieceError(
                f"{what} took longer than timeout_seconds={limit:g}", error_type="Timeout"
            ) from None
        except asyncio.CancelledError as exc:
            if _STOP not in exc.args:
                raise  # cancelled by someone else: not ours to translate
            current.uncancel()
            raise RunCancelledError(self.cancel_reason) from None
        finally:
            self._running.discard(current)

    def subplan(self, raw: dict[str, Any]) -> Plan:
        """The parsed form of a `core.map` sub-graph, parsed once per run."""
        key = id(raw)
        found = self._subplans.get(key)
        if found is None or found[0] is not raw:
            found = self._subplans[key] = (raw, self.workflow.subplan(raw))
        return found[1]

    def base_scope(self) -> dict[str, Any]:
        return {
            "params": self.parameters,
            "trigger": self.trigger,
            "secrets": self.secret_scope,
            "run": self.run_scope,
        }


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
        self.label_prefix = label_prefix
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
        """Run the plan to the end; returns early only when the run is cancelled."""
        if not self.plan.nodes:
            return
        for node_id in self.plan.graph.entries:
            self._start(node_id)
        cancelled = asyncio.ensure_future(self.execution.cancelled.wait())
        try:
            await asyncio.wait(
                [asyncio.ensure_future(self._all_decided.wait()), cancelled],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancelled.cancel()
            # Every started node (and every "Skipped" marker) finishes before the plan returns:
            # nothing is left pending for Prefect to cancel behind our back.
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start(self, node_id: str) -> None:
        if self.execution.cancelled.is_set():
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
        while node_id is not None:
            node = self.plan.nodes[node_id]
            record = self.records[node_id]
            upstream, links = self._upstream(node_id)
            state = await _run_task(
                self._task_for(node),
                {"plan_run": self, "node_id": node_id, "upstream": upstream},
                links,
            )
            self._task_run_ids[node_id] = state.state_details.task_run_id
            if record.status == "running":  # the task ended without our attempt recording it
                record.status = "cancelled" if state.is_cancelled() else "failed"
                record.error = record.error or self.error_record(
                    node, RuntimeError(state.message or "task ended unexpectedly")
                )
            record.finished_at = record.finished_at or datetime.now(UTC)
            if record.status == "failed" and node.on_error == "continue":
                record.status = "completed"
                record.output = {"error": record.error}
                record.taken = self._decide_quietly(node, record.output)
            self._settle(node_id)
            ready: list[str] = []
            self._propagate(node, record, ready)
            node_id = None
            for next_id in ready:
                if node_id is None and not self.execution.cancelled.is_set():
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
        if self.execution.cancelled.is_set():  # stays "pending": reported as cancelled
            self._settle(node.id)
            self._propagate(node, record, ready)
            return
        incoming = len(self.plan.incoming[node.id])
        taken = self._taken[node.id]
        runs = taken == incoming if node.join == "all" else taken > 0
        if runs:
            ready.append(node.id)
            return
        record.status = "skipped"
        self._settle(node.id)
        reason = (
            "join 'all': not every incoming edge was taken"
            if node.join == "all" and taken
            else "no incoming edge was taken"
        )
        self._spawn(_mark_skipped(record.label, reason, *self._upstream(node.id)))
        self._propagate(node, record, ready)

    def _upstream(self, node_id: str) -> tuple[list[str], set[TaskRunResult]]:
        """The node's sources that ran: their ids, and links to their task runs.

        The links are declared to Prefect as the task run's `upstream` input, which is how the
        Prefect UI draws the graph's edges. (Prefect's `wait_for` would do the same but resolves
        every upstream state synchronously first: 1.6 ms per node.)
        """
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

    # --- scope and errors --------------------------------------------------------------------

    def scope_for(self, node: Node) -> dict[str, Any]:
        """The names a template of `node` may use."""
        scope = self.execution.base_scope()
        scope["nodes"] = self.nodes_view
        scope.update(self.names)
        error = self._errors_in.get(node.id)
        if error is not None:
            scope["error"] = error
        return scope

    def error_record(self, node: Node, exc: BaseException) -> dict[str, Any]:
        """`{"node", "type", "message", "attempts"}`, secrets hidden."""
        record = self.records[node.id]
        if isinstance(exc, PieceError):
            kind, message = exc.error_type, exc.message
        elif isinstance(exc, NodeFailure):
            return exc.error
        else:
            kind, message = type(exc).__name__, str(exc) or type(exc).__name__
        return {
            "node": record.label,
            "type": kind,
            "message": self.execution.redactor.text(message),
            "attempts": record.attempts,
        }

    # --- Prefect tasks -----------------------------------------------------------------------

    def _task_for(self, node: Node) -> Task[Any, Any]:
        return _node_task(self.records[node.id].label, node.retry)

    async def run_attempt(self, node_id: str) -> State | None:
        """One attempt of one node; the body of the `attempt_node` task."""
        node = self.plan.nodes[node_id]
        record = self.records[node_id]
        if self.execution.cancelled.is_set():  # a retry that the run's end overtook
            return self._cancelled(record)
        record.attempts += 1
        record.status = "running"
        record.started_at = record.started_at or datetime.now(UTC)
        try:
            output, taken = await self._attempt(node, record)
        except RunCancelledError:
            return self._cancelled(record)
        except Exception as exc:
            record.error = self.error_record(node, exc)
            record.retryable = bool(getattr(exc, "retryable", True))
            if isinstance(exc, PieceError) and exc.details:
                details = self.execution.redactor.value(exc.details)
                get_run_logger().warning("node %r failed; details: %s", node.id, details)
            last = record.attempts >= node.retry.max_attempts or not record.retryable
            if last:
                record.status = "failed"
                record.finished_at = datetime.now(UTC)
            elif await self._wait_before_retry(node, record, exc):
                return self._cancelled(record)
            raise NodeFailure(record.error, retryable=not last) from None
        record.output, record.taken = output, taken
        record.error = None
        record.status = "completed"
        record.finished_at = datetime.now(UTC)
        return None

    async def _attempt(self, node: Node, record: NodeRecord) -> tuple[Any, dict[int, bool]]:
        registry = self.execution.registry
        piece = registry.instance(node.piece)
        scope = self.scope_for(node)
        raw = templates.render(node.input, scope, skip=piece.deferred_inputs)
        try:
            model = piece.Input.model_validate(raw)
        except PydanticValidationError as exc:
            raise input_error(node.piece, exc) from None
        from interpreter.run.context import NodeContext

        context = NodeContext(
            plan_run=self, node=node, record=record, scope=scope, piece=type(piece)
        )
        work = piece.run(context, model)
        output = json_output(
            await self.execution.guarded(work, node.timeout_seconds, f"attempt {record.attempts}")
        )
        return output, self.decide_success_edges(node, output)

    async def _wait_before_retry(self, node: Node, record: NodeRecord, exc: Exception) -> bool:
        """Wait out the retry policy's delay (longer when the piece asked to, `Retry-After`);
        True when the run was cancelled or timed out meanwhile.

        The wait happens here, inside the attempt, rather than as Prefect's retry delay (which
        nothing interrupts): a run's deadline or cancellation must not wait for a retry.
        """
        wait = node.retry.wait_before(record.attempts)
        if wanted := getattr(exc, "retry_after_seconds", None):
            cap = node.retry.max_delay_seconds
            wait = max(wait, min(wanted, cap) if cap is not None else wanted)
        get_run_logger().info(
            "attempt %d of %d failed; retrying in %.1fs",
            record.attempts,
            node.retry.max_attempts,
            wait,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.execution.cancelled.wait(), timeout=wait)
        return self.execution.cancelled.is_set()

    def _cancelled(self, record: NodeRecord) -> State:
        record.status = "cancelled"
        record.finished_at = datetime.now(UTC)
        return Cancelled(message=self.execution.cancel_reason)

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


@task(cache_policy=NO_CACHE, persist_result=False, log_prints=False)
async def attempt_node(plan_run: PlanRun, node_id: str, upstream: list[str]) -> State | None:
    """One attempt of one workflow node (the task run is named after the node; `upstream`
    names the nodes it came after, shown as its inputs in the Prefect UI)."""
    return await plan_run.run_attempt(node_id)


@task(cache_policy=NO_CACHE, persist_result=False)
async def skipped_node(reason: str, upstream: list[str]) -> State:
    """Marks a skipped node in the Prefect UI: a Completed state named "Skipped"."""
    return Completed(name="Skipped", message=reason)


async def _run_task(
    task_object: Task[Any, Any], parameters: dict[str, Any], links: set[TaskRunResult]
) -> State:
    """Run a task in this flow run and return its final state; `links` are upstream task runs
    recorded as the task run's `upstream` input."""
    dependencies: dict[str, set[RunInput]] = {"upstream": set(links)}
    state = await run_task_async(
        task_object,
        parameters=parameters,
        return_type="state",
        dependencies=dependencies if links else None,
    )
    if not isinstance(state, State):
        raise TypeError(f"Prefect returned {type(state).__name__}, not a task run state")
    return state


def _retry_condition(task: Task[Any, Any], task_run: TaskRun, state: State) -> bool:
    """Prefect retries a node's attempt only when the failure says another try could help."""
    failure = state.data
    return not isinstance(failure, NodeFailure) or failure.retryable


_TASK_CACHE: OrderedDict[tuple[str, int], Task[Any, Any]] = OrderedDict()
_TASK_CACHE_SIZE = 4096


def _node_task(label: str, retry: RetryPolicy) -> Task[Any, Any]:
    """`attempt_node` named for one node with its number of retries, reused across runs.

    Prefect retries immediately: the delay is waited out inside the failed attempt
    (`PlanRun._wait_before_retry`), where a run's deadline or cancellation can cut it short.
    """
    key = (label, retry.max_attempts)
    found = _TASK_CACHE.get(key)
    if found is None:
        found = attempt_node.with_options(
            name=label,
            task_run_name=label,
            retries=retry.max_attempts - 1,
            retry_delay_seconds=0,
            retry_condition_fn=_retry_condition,
        )
        _TASK_CACHE[key] = found
        if len(_TASK_CACHE) > _TASK_CACHE_SIZE:
            _TASK_CACHE.popitem(last=False)
    else:
        _TASK_CACHE.move_to_end(key)
    return found


async def _mark_skipped(
    label: str, reason: str, upstream: list[str], links: set[TaskRunResult]
) -> None:
    marker = skipped_node.with_options(name=label, task_run_name=label)
    await _run_task(marker, {"reason": reason, "upstream": upstream}, links)


def input_error(piece: str, exc: PydanticValidationError) -> PieceError:
    """The node error for an input that fails the piece's model once templates are evaluated."""
    details = "; ".join(
        f"{'/'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
    return PieceError(
        f"input of piece {piece!r} is invalid after evaluating templates: {details}",
        error_type="InvalidInput",
        retryable=False,
    )


def _template_sources(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if templates.is_template(item):
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
