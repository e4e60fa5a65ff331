"""What one run shares across its nodes: `Execution`, and each node's live `NodeRecord`.

`Execution` holds the workflow, parameters, trigger, secrets and their redactor, the run's
services, and how the run is stopped (cancelled or timed out: `stop`). Every change of a node
goes through `Execution.transition`, which updates its `NodeRecord` and feeds the run recorder,
in order, off the nodes' critical path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from interpreter.definition import templates
from interpreter.definition.model import Plan, Workflow
from interpreter.run.approval import hold_while
from interpreter.run.errors import RunStopped, StopReason
from interpreter.run.results import NodeResult, NodeStatus
from interpreter.run.secrets import Redactor
from interpreter.run.services import (
    NoControl,
    NodeEvent,
    NodePhase,
    NullRecorder,
    RunChange,
    RunPhase,
    RunServices,
)
from interpreter.settings import get_engine_settings
from pieces.base import PieceError, RunInfo, SecretNotFoundError
from pieces.registry import PieceRegistry
from pieces.settings import PieceSettings

CANCEL_GRACE_SECONDS = 0.5
"""On cancellation, how long a piece may take to notice and return before it is cancelled hard."""

_STOP = "altlas: the run was stopped"
"""The message of the cancellations the engine itself sends to running pieces."""

_log = logging.getLogger("altlas.engine")

LiveStatus = Literal["pending", "running", "waiting", "completed", "failed", "skipped", "cancelled"]
_FINAL_STATUS: dict[LiveStatus, NodeStatus] = {
    "pending": "cancelled",  # the run ended before the node could start
    "running": "cancelled",
    "waiting": "cancelled",
    "completed": "completed",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


@dataclass
class NodeRecord:
    """The live state of one node (or one `core.map` item) in one run.

    Changed only through `Execution.transition`; `NodeResult` is its public, redacted view.
    """

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
        return NodeResult(
            id=self.id,
            status=_FINAL_STATUS[self.status],
            output=redactor.value(self.output),
            error=redactor.value(self.error),
            attempts=self.attempts,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class ChildLauncher(Protocol):
    """Runs another workflow as a child of this run and returns its raw output."""

    async def __call__(
        self,
        definition: dict[str, Any],
        parameters: dict[str, Any],
        *,
        tenant: str,
        version: str,
        parent_run_id: str,
        services: RunServices,
    ) -> Any: ...


class SecretScope(Mapping[str, str]):
    """`secrets` in templates: resolved values; an unknown name fails the node that uses it."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        try:
            return self.known[name]
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
    services: RunServices
    redactor: Redactor
    launch_child: ChildLauncher
    registry: PieceRegistry
    """The pieces this run may use (the tenant's allowed ones)."""
    piece_settings: PieceSettings
    """What pieces see as `context.settings` (with the tenant's HTTP allow-list additions)."""
    flow_run_id: str = ""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: StopReason | None = None
    stop_message: str = ""
    approval_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.run_scope = self.run.as_scope()
        self.secret_scope = SecretScope()
        self.settings = get_engine_settings()
        self._subplans: dict[int, tuple[dict[str, Any], Plan]] = {}
        self._running: set[asyncio.Task[Any]] = set()
        # A run without a recorder builds no events at all (ad-hoc runs pay nothing).
        self._recording = not isinstance(self.services.recorder, NullRecorder)
        self._controlled = not isinstance(self.services.control, NoControl)
        self._pause_lock = asyncio.Lock()
        self._history: asyncio.Queue[NodeEvent | RunChange | None] = asyncio.Queue()
        self._historian: asyncio.Task[None] | None = None

    # --- secrets -----------------------------------------------------------------------------

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
        values = self.secret_scope.known
        if name not in values:
            value = await self.services.secrets.get(self.run.tenant, name)
            if value is None:
                raise SecretNotFoundError(name)
            values[name] = value
            self.redactor.add(value)
        return values[name]

    # --- stopping ----------------------------------------------------------------------------

    def stop(self, reason: StopReason, message: str) -> None:
        """Ask every running node to stop, and no new node to start.

        Running pieces get `CANCEL_GRACE_SECONDS` to notice (`cancel_requested`) and return by
        themselves; then they are cancelled.
        """
        if not self.stopped.is_set():
            self.stop_reason, self.stop_message = reason, message
            self.stopped.set()
            asyncio.get_running_loop().call_later(CANCEL_GRACE_SECONDS, self._stop_pieces)

    def stopped_error(self) -> RunStopped:
        return RunStopped(self.stop_reason or StopReason.CANCELLED, self.stop_message)

    def _stop_pieces(self) -> None:
        for running in list(self._running):
            running.cancel(_STOP)

    async def guarded(self, work: Awaitable[Any], limit: float | None, what: str) -> Any:
        """Await `work` in this task for at most `limit` seconds, stopping it if the run is
        stopped (`_stop_pieces` cancels the task with `_STOP`, and the cancellation is taken
        back here: the Prefect task run around it then ends `Cancelled`, not `Crashed`).

        Raises:
            RunStopped: the run was cancelled (or timed out) meanwhile.
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
            raise self.stopped_error() from None
        finally:
            self._running.discard(current)

    # --- pausing on request ------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Before a node starts: if the run was asked to pause, wait here until it is resumed
        (or stopped). Parallel branches reaching it meanwhile wait for the same resume."""
        if not self._controlled or self.stopped.is_set():
            return
        async with self._pause_lock:
            if not await self._pause_requested():
                return
            self.run_changed(RunPhase.PAUSED)
            await hold_while(UUID(self.flow_run_id), self._pause_requested, self.stopped)
            if not self.stopped.is_set():
                self.run_changed(RunPhase.RUNNING)

    async def _pause_requested(self) -> bool:
        return await self.services.control.pause_requested(self.run.tenant, self.run.id)

    # --- node history ------------------------------------------------------------------------

    def transition(
        self,
        record: NodeRecord,
        kind: NodePhase,
        status: LiveStatus,
        *,
        recorded_input: Any = None,
        **changes: Any,
    ) -> None:
        """The one way a node changes: update its record, then tell the recorder.

        `changes` are `NodeRecord` fields (`output`, `error`, `attempts`, ...). Starting stamps
        `started_at` once; every end stamps `finished_at`.
        """
        now = datetime.now(UTC)
        record.status = status
        for name, value in changes.items():
            setattr(record, name, value)
        if kind is NodePhase.STARTED and record.started_at is None:
            record.started_at = now
        if kind in (NodePhase.FINISHED, NodePhase.SKIPPED):
            record.finished_at = record.finished_at or now
        if self._recording:
            self._send(
                NodeEvent(
                    run_id=self.run.id,
                    node_id=record.label,
                    kind=kind,
                    status=_FINAL_STATUS[status] if kind is NodePhase.FINISHED else status,
                    attempts=record.attempts,
                    at=now,
                    input=self.redactor.value(recorded_input),
                    output=self.redactor.value(record.output),
                    error=self.redactor.value(record.error),
                    started_at=record.started_at,
                    finished_at=record.finished_at,
                )
            )

    def run_changed(
        self, phase: RunPhase, *, output: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """Tell the recorder the run moved to `phase` (values redacted here)."""
        if self._recording:
            self._send(
                RunChange(
                    run_id=self.run.id,
                    flow_run_id=self.flow_run_id,
                    workflow_id=self.workflow.id,
                    phase=phase,
                    at=datetime.now(UTC),
                    output=self.redactor.value(output),
                    error=self.redactor.value(error),
                )
            )

    def _send(self, item: NodeEvent | RunChange) -> None:
        if self._historian is None:
            self._historian = asyncio.ensure_future(self._keep_history())
        self._history.put_nowait(item)

    async def history_written(self) -> None:
        """Wait until the recorder has everything sent so far (called once, at the run's end)."""
        if self._historian is not None:
            self._history.put_nowait(None)
            await self._historian
            self._historian = None

    async def _keep_history(self) -> None:
        """Hand events to the recorder one at a time, in order; a failing recorder is logged,
        never allowed to fail the run."""
        recorder, tenant = self.services.recorder, self.run.tenant
        while (item := await self._history.get()) is not None:
            try:
                if isinstance(item, NodeEvent):
                    await recorder.node_changed(tenant, item)
                else:
                    await recorder.run_changed(tenant, item)
            except Exception:
                _log.warning("the run recorder failed; run history is incomplete", exc_info=True)

    # --- graphs and scope --------------------------------------------------------------------

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

    def error_record(self, record: NodeRecord, exc: BaseException) -> dict[str, Any]:
        """`{"node", "type", "message", "attempts"}`, secrets hidden."""
        if isinstance(exc, PieceError):
            kind, message = exc.error_type, exc.message
        else:
            kind, message = type(exc).__name__, str(exc) or type(exc).__name__
        return {
            "node": record.label,
            "type": kind,
            "message": self.redactor.text(message),
            "attempts": record.attempts,
        }


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
