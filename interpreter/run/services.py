"""The run's services and the ports through which the engine reaches the outside world.

Main entry: `RunServices`, and `current_services()` which every run reads once when it starts.

Each port is a `Protocol` that takes the tenant explicitly, so one process can execute runs of
many tenants with one set of services:
- `SecretProvider`: the value of `secrets.NAME` for a tenant;
- `WorkflowResolver`: another workflow of the tenant, for `core.subworkflow`;
- `RunRecorder`: what happened in a run (its state changes, and each node's start, failed
  attempts, end, skip or wait), with inputs and outputs already redacted;
- `RunControl`: whether someone asked the run to pause before its next node starts;
- `RunInputs`: the service's record of a run, opened as it starts: the parameters and event a
  run was started with, as the service stored them (the flow run's own parameters show secret
  values a caller pasted as `***`), or a new record for a run the service did not start (a
  deployment's schedule, the Prefect UI's "Run");
- `RunStarter`: runs of the tenant's stored workflows started by `core.start_workflow`;
- `TenantPolicies`: what a tenant's settings say for its runs (`TenantPolicy`: the pieces it
  may use, additions to the HTTP allow-list, its layer of execution defaults).

Ad-hoc runs (`run_workflow`) use the environment, files and no recorder; the service plugs in its
store. Services are found in this order: the ones set for the current context (`using_services`,
e.g. by `run_workflow`), the ones a worker process set once for every run it executes
(`set_process_services`), and the defaults.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from interpreter.definition.model import NO_DEFAULTS, ExecutionDefaults, Workflow
from interpreter.run.resolvers import FileResolver, ResolvedWorkflow
from interpreter.run.secrets import EnvironmentSecrets
from pieces.base import PieceError
from pieces.registry import PieceRegistry, default_registry


class SecretProvider(Protocol):
    """Looks a tenant's secrets up by name."""

    async def get(self, tenant: str, name: str) -> str | None:
        """The secret's value, or None when the tenant has no such secret."""
        ...


class WorkflowResolver(Protocol):
    """Finds a tenant's workflow by id (and optionally version)."""

    async def resolve(
        self, *, tenant: str, workflow_id: str, version: str | None
    ) -> ResolvedWorkflow:
        """The definition; raises `PieceError` (`WorkflowNotFound`) when there is none."""
        ...


class RunPhase(enum.StrEnum):
    """The states a run reports to its recorder, in the order they can happen."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunPhase.RUNNING, RunPhase.PAUSED)


class NodePhase(enum.StrEnum):
    """What happened to a node; `NodeEvent.kind`."""

    STARTED = "started"
    """An attempt began (its input is rendered); status `running`."""
    ATTEMPT_FAILED = "attempt_failed"
    """An attempt failed and another will follow; status stays `running`."""
    WAITING = "waiting"
    """The node waits for a person (`core.approval`); status `waiting`."""
    FINISHED = "finished"
    """The node ended: status `completed`, `failed` or `cancelled`."""
    SKIPPED = "skipped"
    """None of its incoming edges was taken; status `skipped`."""


@dataclass(frozen=True)
class RunChange:
    """A run moved to `phase`. `output` and `error` are redacted, set when it finished."""

    run_id: str
    flow_run_id: str
    workflow_id: str
    phase: RunPhase
    at: datetime
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class NodeEvent:
    """One node's (or one `core.map` item's) change; values redacted.

    `node_id` is the node's label: its id, `map_node[3]` for an item, `map_node[3].inner` for
    a node of a `core.map` sub-graph. `status` is the node's status after the event:
    `running`, `waiting`, `completed`, `failed`, `skipped` or `cancelled`.
    """

    run_id: str
    node_id: str
    kind: NodePhase
    status: str
    attempts: int
    at: datetime
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunRecorder(Protocol):
    """Receives a run's history. Calls for one run arrive in order, one at a time."""

    async def run_changed(self, tenant: str, change: RunChange) -> None: ...

    async def node_changed(self, tenant: str, event: NodeEvent) -> None: ...


class RunControl(Protocol):
    """Requests from outside a run that the engine reads at node boundaries."""

    async def pause_requested(self, tenant: str, run_id: str) -> bool:
        """Whether the run should pause (before its next node) or stay paused."""
        ...


class NoControl:
    """Nobody pauses ad-hoc runs from outside (a person can still pause through the UI's
    Prefect states, and `core.approval` pauses by itself)."""

    async def pause_requested(self, tenant: str, run_id: str) -> bool:
        return False


@dataclass(frozen=True)
class RunOpening:
    """A run as the engine starts it, before its parameters are checked."""

    run_id: str | None
    """The id the caller gave (`workflow_flow`'s `run_id`); None for a run nobody gave one (a
    deployment's schedule fired, someone pressed "Run" in the Prefect UI)."""
    flow_run_id: str
    workflow_id: str
    version: str
    trigger: dict[str, Any]
    parameters: dict[str, Any] | None
    scheduled_at: datetime


@dataclass(frozen=True)
class OpenedRun:
    """The service's record of a run: its id there, and what it stored for it."""

    run_id: str
    parameters: dict[str, Any] | None = None
    """The parameters as the caller gave them (None: the flow run's own)."""
    trigger: dict[str, Any] | None = None
    """The event that started it, as received (None: the flow run's own `trigger`)."""


class RunInputs(Protocol):
    """The service's record of each run, opened once as the run starts."""

    async def open(self, tenant: str, opening: RunOpening) -> OpenedRun | None:
        """For a run the service started (`opening.run_id` set): the parameters and event it
        stored (the flow run's own show pasted secret values as `***`). For one it did not
        start: a new record if the workflow is the service's (a schedule's run shows in its
        run history), under a run id it returns. None: the service keeps no record of it."""
        ...


class NoInputs:
    """Ad-hoc runs: nothing is recorded, the flow run's own parameters are the run's."""

    async def open(self, tenant: str, opening: RunOpening) -> OpenedRun | None:
        return None


@dataclass(frozen=True)
class StartRequest:
    """`core.start_workflow` asks for a run of another workflow of the tenant."""

    workflow_id: str
    parameters: dict[str, Any]
    scheduled_at: datetime | None
    """When it should start (None: now)."""
    parent_run_id: str
    """The run asking (the new run's `trigger.id`)."""
    request_key: str
    """Unique per asking node: a retried attempt gets the run the first attempt started."""


@dataclass(frozen=True)
class StartedRun:
    """A run of the service: its id and where it stands (`Run.state`, `output`, `error`)."""

    run_id: str
    state: str
    scheduled_at: datetime | None = None
    output: Any = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES


FINISHED_RUN_STATES = frozenset({"completed", "failed", "timed_out", "cancelled", "crashed"})


class RunStarter(Protocol):
    """Starts runs of a tenant's stored workflows as runs of their own (not subflows), now or
    at a later time, and reports how they end."""

    async def start(self, tenant: str, request: StartRequest) -> StartedRun:
        """Record the run (or find the one `request.request_key` started) and hand it on.

        Raises:
            PieceError: no such enabled workflow, or parameters its schema refuses.
        """
        ...

    async def status(self, tenant: str, run_id: str) -> StartedRun:
        """Where the run stands now."""
        ...


class NoStarter:
    """Ad-hoc runs have no stored workflows to start runs of."""

    async def start(self, tenant: str, request: StartRequest) -> StartedRun:
        raise PieceError(
            "core.start_workflow starts runs of stored workflows: run this workflow through "
            "the service (`altlas-flows up`, then the REST API), not as an ad-hoc run",
            error_type="NoWorkflowStore",
            retryable=False,
        )

    async def status(self, tenant: str, run_id: str) -> StartedRun:
        raise PieceError(f"run {run_id!r} is unknown here", retryable=False)


@dataclass(frozen=True)
class TenantPolicy:
    """A tenant's settings, as its runs apply them."""

    allowed_pieces: frozenset[str] | None = None
    """The action pieces its workflows may use (None: every installed piece)."""
    http_allow: tuple[str, ...] = ()
    """Networks `http.request` may reach, added to `ALTLAS_HTTP_ALLOW_PRIVATE`."""
    defaults: ExecutionDefaults = NO_DEFAULTS
    """Its layer of node `retry` and `timeout_seconds` (between the pieces' and the workflow's)."""


class TenantPolicies(Protocol):
    """Looks a tenant's `TenantPolicy` up (once per run)."""

    async def policy(self, tenant: str) -> TenantPolicy: ...


class OpenPolicies:
    """Every tenant may use every piece, with no additions and no defaults (ad-hoc runs)."""

    async def policy(self, tenant: str) -> TenantPolicy:
        return TenantPolicy()


class NullRecorder:
    """Records nothing: ad-hoc runs keep their history in the `RunResult` and in Prefect."""

    async def run_changed(self, tenant: str, change: RunChange) -> None:
        return None

    async def node_changed(self, tenant: str, event: NodeEvent) -> None:
        return None


@dataclass(frozen=True)
class RunServices:
    """The pluggable parts of a run (see the module docstring)."""

    registry: PieceRegistry = field(default_factory=default_registry)
    secrets: SecretProvider = field(default_factory=EnvironmentSecrets)
    resolver: WorkflowResolver = field(default_factory=FileResolver)
    recorder: RunRecorder = field(default_factory=NullRecorder)
    control: RunControl = field(default_factory=NoControl)
    policies: TenantPolicies = field(default_factory=OpenPolicies)
    inputs: RunInputs = field(default_factory=NoInputs)
    starter: RunStarter = field(default_factory=NoStarter)
    depth: int = 0
    """How many `core.subworkflow` levels this run is below the top-level run."""
    prepared: tuple[dict[str, Any], Workflow] | None = None
    """A definition the caller already validated, with its parsed form (saves doing it twice)."""

    def prepared_workflow(self, definition: dict[str, Any]) -> Workflow | None:
        """The parsed `definition` if the caller validated this very document, else None."""
        if self.prepared is not None and self.prepared[0] == definition:
            return self.prepared[1]
        return None


_context_services: contextvars.ContextVar[RunServices | None] = contextvars.ContextVar(
    "altlas_run_services", default=None
)
_process_services: RunServices | None = None


def current_services() -> RunServices:
    """The services for a run starting now (see the module docstring for the order)."""
    return _context_services.get() or _process_services or RunServices()


def set_process_services(services: RunServices | None) -> None:
    """Every run this process executes uses `services` unless its caller set others.

    A worker calls this once at start: the runs it executes are started by Prefect's engine, in
    threads and contexts of their own, where a context variable set by the worker is not seen.
    """
    global _process_services
    _process_services = services


@contextmanager
def using_services(services: RunServices) -> Iterator[None]:
    """Runs started inside (and their subflows) use `services`."""
    token = _context_services.set(services)
    try:
        yield
    finally:
        _context_services.reset(token)
