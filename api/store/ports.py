"""The engine's ports backed by the store, for a worker that executes runs of many tenants.

Main entry: `store_run_services(database, box, registry, record_max_bytes=...)`, the
`RunServices` of a worker (`interpreter.run.services` defines the ports):

- `StoreSecrets`: `secrets.NAME` is the tenant's stored secret, decrypted with the `SecretBox`.
- `StoreResolver`: `core.subworkflow` calls the tenant's stored workflows, by number or current.
- `StoreRecorder`: a run's history lands in its run row (state, times, output, error) and in its
  node rows (`node_runs`), keyed by the run id the service gave the run.
- `StoreControl`: whether `pauseRun` asked a run to pause (its run row's flag).
- `StorePolicies`: the tenant's settings as the engine's `TenantPolicy`.
- `StoreInputs`: the parameters and event stored with a run; a record for a schedule's run.
- `StoreLoop`: the one event loop on which the ports use their `Database`.

Event loops: a worker executes each run on an event loop of its own (a thread per run, see
`deployments.runner`), and an asyncpg connection works only on the loop that opened it, while
SQLAlchemy's pool hands any connection to whoever asks. So the ports never use their `Database`
on the caller's loop: each call is handed to the database's `StoreLoop` (an event loop in a
daemon thread, shared by every port built on that `Database`), where it runs as one short
transaction; the pool's connections then serve every run of the process. Give the ports a
`Database` that nothing else uses on another loop, and close it with
`await StoreLoop.of(database).aclose()`, which also disposes its connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.store.crypto import SecretBox, SecretDecryptionError
from api.store.database import Database, json_dumps
from api.store.errors import NotFound
from api.store.models import NodeRun, NodeStatus, Run, RunState, TriggerType
from api.store.runs import (
    cap_record_value,
    get_run,
    pause_requested,
    record_flow_run,
    update_run_state,
    upsert_node_run,
)
from api.store.secrets import get_secret_ciphertext
from api.store.tenants import get_tenant
from api.store.workflows import get_current_version, get_workflow, get_workflow_version
from api.tenancy import TenantSettings
from interpreter.run.resolvers import ResolvedWorkflow
from interpreter.run.services import (
    NodeEvent,
    NodePhase,
    OpenedRun,
    RunChange,
    RunOpening,
    RunPhase,
    RunServices,
    TenantPolicy,
)
from pieces.base import PieceError
from pieces.registry import PieceRegistry

_log = logging.getLogger("altlas.store")

_T = TypeVar("_T")

MAX_VERSION: Final = 2**31 - 1
"""Versions are 32-bit integers in the store; a larger number names no version."""

RUN_STATES: Final[dict[RunPhase, RunState]] = {
    RunPhase.RUNNING: RunState.RUNNING,
    RunPhase.PAUSED: RunState.PAUSED,
    RunPhase.COMPLETED: RunState.COMPLETED,
    RunPhase.FAILED: RunState.FAILED,
    RunPhase.TIMED_OUT: RunState.TIMED_OUT,
    RunPhase.CANCELLED: RunState.CANCELLED,
}
"""The store's state for each phase an engine reports."""


class StoreLoop:
    """The event loop, in a daemon thread of its own, on which the ports use one `Database`.

    `StoreLoop.of(database)` is the same object for every port built on `database`; its thread
    starts with the first call. `call` awaits a coroutine there from any thread and loop.
    """

    _loops: ClassVar[dict[int, StoreLoop]] = {}
    _loops_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, database: Database) -> None:
        """Use `StoreLoop.of(database)`: two loops on one `Database` would share its pool."""
        self.database = database
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False

    @classmethod
    def of(cls, database: Database) -> StoreLoop:
        """The store loop of `database` (a new one after `close`)."""
        with cls._loops_lock:
            # The entry holds the database, so its id cannot be reused while the entry exists.
            found = cls._loops.get(id(database))
            if found is None:
                found = cls._loops[id(database)] = cls(database)
            return found

    def _submit(self, work: Callable[[], Awaitable[_T]]) -> concurrent.futures.Future[_T] | None:
        """Hand `work` to the loop (started on first use); None when the caller is on it."""

        async def job() -> _T:
            return await work()

        with self._lock:  # so that `close` sees every call it must wait for
            if self._closed:
                raise RuntimeError("this store loop is closed; use StoreLoop.of(database) again")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve_forever, args=(loop,), name="altlas-store", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            if asyncio.get_running_loop() is self._loop:
                return None
            future = asyncio.run_coroutine_threadsafe(job(), self._loop)
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    async def call(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """`await work()` on this loop (directly when the caller is on it already).

        Cancelling the caller cancels the work, whose transaction then rolls back.
        """
        future = self._submit(work)
        if future is None:
            return await work()
        return await asyncio.wrap_future(future)

    def close(self, timeout: float = 30) -> None:
        """Let the calls under way finish (for up to `timeout` seconds), dispose the database's
        connections on this loop and stop its thread. Idempotent; later calls raise.

        Call it from another thread than the loop's own; a later `StoreLoop.of(database)`
        starts a new loop (the pool opens new connections there).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread, pending = self._loop, self._thread, list(self._pending)
        with StoreLoop._loops_lock:
            if StoreLoop._loops.get(id(self.database)) is self:
                del StoreLoop._loops[id(self.database)]
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("a store loop cannot close itself from its own thread")
        try:
            concurrent.futures.wait(pending, timeout)
            for late in pending:
                late.cancel()
            asyncio.run_coroutine_threadsafe(self.database.dispose(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    async def aclose(self) -> None:
        """`close`, awaited from an event loop (it blocks a worker thread, not the loop)."""
        await asyncio.to_thread(self.close)


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


# --- secrets --------------------------------------------------------------------------------------


class StoreSecrets:
    """`SecretProvider`: the tenant's stored secrets, decrypted with `box`; one query a call
    (the engine asks once per name per run)."""

    def __init__(self, database: Database, box: SecretBox) -> None:
        self.database = database
        self._box = box
        self._store = StoreLoop.of(database)

    async def get(self, tenant: str, name: str) -> str | None:
        """The value of the tenant's secret `name`; None when the tenant has none of that name.

        Raises:
            PieceError: `SecretUnreadable` when no configured key decrypts the stored value
                (a key rotated without listing the old one in `ALTLAS_SECRET_KEY_PREVIOUS`).
        """

        async def read() -> bytes | None:
            async with self.database.session() as session:
                return await get_secret_ciphertext(session, tenant_id=tenant, name=name)

        ciphertext = await self._store.call(read)
        if ciphertext is None:
            return None
        try:
            return self._box.decrypt(ciphertext)
        except SecretDecryptionError as exc:
            _log.error("secret %r of tenant %r cannot be decrypted: %s", name, tenant, exc)
            raise PieceError(
                f"secret {name!r} cannot be decrypted: {exc}",
                error_type="SecretUnreadable",
                retryable=False,
            ) from None


# --- workflows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    enabled: bool
    current: int
    definition: dict[str, Any] | None  # None: no such version


def _not_found(message: str) -> PieceError:
    return PieceError(message, error_type="WorkflowNotFound", retryable=False)


def _version_number(workflow_id: str, version: str | None) -> int | None:
    """The stored version a `core.subworkflow` call names (None: the current one)."""
    if version is None:
        return None
    text = str(version).strip()
    if not (text.isascii() and text.isdigit()):
        raise _not_found(
            f"workflow {workflow_id!r} has no version {version!r}: stored workflows have "
            "numbered versions (1, 2, ...); leave `version` out for the current one"
        )
    return int(text)


class StoreResolver:
    """`WorkflowResolver`: the tenant's stored workflows, for `core.subworkflow`.

    `version` None is the workflow's current version, else the version with that number
    (`"3"`). A missing workflow, another tenant's, an unknown or non-numeric version, and a
    disabled workflow all raise `PieceError` `WorkflowNotFound` (not retryable): a disabled
    workflow starts no runs, and a sub-workflow call is a run.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._store = StoreLoop.of(database)

    async def resolve(
        self, *, tenant: str, workflow_id: str, version: str | None
    ) -> ResolvedWorkflow:
        number = _version_number(workflow_id, version)

        async def find() -> _Found | None:
            async with self.database.session() as session:
                found = await get_current_version(
                    session, tenant_id=tenant, workflow_id=workflow_id
                )
                if found is None:
                    return None
                workflow, current = found
                definition: dict[str, Any] | None = current.definition
                if number is not None and number != workflow.current_version:
                    other = None
                    if 0 < number <= MAX_VERSION:
                        other = await get_workflow_version(
                            session, tenant_id=tenant, workflow_id=workflow_id, version=number
                        )
                    definition = None if other is None else other.definition
                return _Found(workflow.enabled, workflow.current_version, definition)

        found = await self._store.call(find)
        if found is None:
            raise _not_found(f"workflow {workflow_id!r} not found among the tenant's workflows")
        if not found.enabled:
            raise _not_found(
                f"workflow {workflow_id!r} is disabled: a disabled workflow starts no runs, "
                "sub-workflow runs included; enable it to call it"
            )
        if found.definition is None:
            raise _not_found(
                f"workflow {workflow_id!r} has no version {version!r} "
                f"(its versions are 1 to {found.current})"
            )
        return ResolvedWorkflow(found.definition, str(number or found.current))


# --- run history ----------------------------------------------------------------------------------

_UNSEEN: Final = object()
_NODE_ENDS: Final = (NodePhase.FINISHED, NodePhase.SKIPPED)


class StoreRecorder:
    """`RunRecorder`: a run's history in its run row and node rows.

    - `run_changed` moves the run row with `update_run_state`, only forward (a late `running`
      after `completed` changes nothing): `running` sets `started_at` (the first start only),
      `paused` pauses, a finished phase sets `finished_at`, `output` and `error`; the Prefect
      flow run id is filled in when the row has none yet.
    - `node_changed` writes the node's row with `upsert_node_run` (rows keep their start
      order): status, attempts, input, output, error and times as the event gives them, except
      that an event without an input keeps the input of the node's last `started` event.
    - Values over `record_max_bytes` as JSON become `{truncated, bytes, preview}`
      (`cap_record_value`); values JSON cannot hold (NaN, a date) are stored as near as JSON
      allows (null, text). This applies to the run's output and error too.

    Runs are found by the run id the engine reports: the id the service gave the run. An event
    of a run the store does not know (an ad-hoc run) is ignored (debug log); so is an event
    whose `tenant` is not the run row's tenant (a warning, once per run: tenant isolation).

    Each call is one short transaction on the database's `StoreLoop`. The tenant of each run
    is looked up once and kept (also "not stored"), and the input of each running node is kept
    until the node ends, so a node event usually costs a single UPDATE; both are forgotten when
    the run finishes, and at most `cache_size` runs are remembered.
    """

    def __init__(
        self, database: Database, *, record_max_bytes: int, cache_size: int = 10_000
    ) -> None:
        if record_max_bytes <= 0:
            raise ValueError(f"record_max_bytes must be positive, got {record_max_bytes}")
        self.database = database
        self.record_max_bytes = record_max_bytes
        self.cache_size = max(cache_size, 1)
        self._store = StoreLoop.of(database)
        # Touched only on the store loop, so never from two threads at once.
        self._owners: OrderedDict[str, str | None] = OrderedDict()  # run id → tenant, None
        self._inputs: dict[str, dict[str, Any]] = {}  # run id → node id → last started input
        self._warned: set[str] = set()

    async def run_changed(self, tenant: str, change: RunChange) -> None:
        await self._store.call(lambda: self._run_changed(tenant, change))

    async def node_changed(self, tenant: str, event: NodeEvent) -> None:
        await self._store.call(lambda: self._node_changed(tenant, event))

    async def _run_changed(self, tenant: str, change: RunChange) -> None:
        if self._owners.get(change.run_id, _UNSEEN) is None:
            self._ignore_unknown(change.run_id, change.phase.value)
            return
        finished = change.phase.finished
        async with self.database.session() as session:
            if not await self._owned(session, tenant, change.run_id, change.phase.value):
                return
            state = RUN_STATES[change.phase]
            moved = await update_run_state(
                session,
                run_id=change.run_id,
                tenant_id=tenant,
                state=state,
                started_at=change.at if state is RunState.RUNNING else None,
                finished_at=change.at if finished else None,
                output=self._value(change.output) if finished else None,
                error=self._value(change.error) if finished else None,
            )
            if moved and change.flow_run_id:
                # The dispatcher records the flow run it creates; this fills in a run it did
                # not record (never replacing one: the column is unique).
                await session.execute(
                    update(Run)
                    .where(Run.id == change.run_id, Run.flow_run_id.is_(None))
                    .values(flow_run_id=change.flow_run_id)
                    .execution_options(synchronize_session=False)
                )
        if not moved:
            _log.debug(
                "run %s: %s is not forward of its state; left as it is", change.run_id, state
            )
        if finished:
            self._forget(change.run_id)

    async def _node_changed(self, tenant: str, event: NodeEvent) -> None:
        run_id, node_id = event.run_id, event.node_id
        if self._owners.get(run_id, _UNSEEN) is None:
            self._ignore_unknown(run_id, f"node {node_id!r} {event.kind.value}")
            return
        try:
            status = NodeStatus(event.status)
        except ValueError:
            _log.warning("run %s: node %r has an unknown status %r", run_id, node_id, event.status)
            return
        async with self.database.session() as session:
            if not await self._owned(session, tenant, run_id, f"node {node_id!r}"):
                return
            kept = self._inputs.setdefault(run_id, {})
            if event.input is not None:
                input_value = kept[node_id] = self._value(event.input)
            elif node_id in kept:
                input_value = kept[node_id]
            elif event.kind is NodePhase.SKIPPED:
                input_value = None  # never started: no input
            else:  # started before this recorder knew the run (e.g. a restarted worker)
                input_value = await session.scalar(
                    select(NodeRun.input).where(
                        NodeRun.run_id == run_id, NodeRun.node_id == node_id
                    )
                )
            try:
                await upsert_node_run(
                    session,
                    run_id=run_id,
                    node_id=node_id,
                    status=status,
                    attempts=event.attempts,
                    input=input_value,
                    output=self._value(event.output),
                    error=self._value(event.error),
                    started_at=event.started_at,
                    finished_at=event.finished_at,
                )
            except NotFound:  # the run was deleted meanwhile (its tenant was)
                _log.debug("run %s is gone; node %r not recorded", run_id, node_id)
                self._forget(run_id)
                return
        if event.kind in _NODE_ENDS:
            kept.pop(node_id, None)

    async def _owned(self, session: AsyncSession, tenant: str, run_id: str, what: str) -> bool:
        """Whether `run_id` is a stored run of `tenant` (its tenant is looked up once)."""
        owner = self._owners.get(run_id, _UNSEEN)
        if owner is _UNSEEN:
            owner = await session.scalar(select(Run.tenant_id).where(Run.id == run_id))
            self._remember(run_id, owner)
        else:
            self._owners.move_to_end(run_id)
        if owner is None:
            self._ignore_unknown(run_id, what)
            return False
        if owner != tenant:
            if run_id not in self._warned:
                self._warned.add(run_id)
                _log.warning(
                    "run %s belongs to tenant %r, but its history was reported for tenant %r; "
                    "ignored (tenant isolation)",
                    run_id,
                    owner,
                    tenant,
                )
            return False
        return True

    def _remember(self, run_id: str, owner: str | None) -> None:
        self._owners[run_id] = owner
        while len(self._owners) > self.cache_size:
            oldest, _ = self._owners.popitem(last=False)
            self._inputs.pop(oldest, None)  # kept inputs are in the rows as well
            self._warned.discard(oldest)

    def _forget(self, run_id: str) -> None:
        self._owners.pop(run_id, None)
        self._inputs.pop(run_id, None)
        self._warned.discard(run_id)

    @staticmethod
    def _ignore_unknown(run_id: str, what: str) -> None:
        _log.debug("run %s is not a stored run (an ad-hoc run?); %s not recorded", run_id, what)

    def _value(self, value: Any) -> Any:
        """`value` as the store keeps it: capped, and JSON the database accepts."""
        if value is None:
            return None
        try:
            capped = cap_record_value(value, self.record_max_bytes)
            if capped is value:
                json_dumps(capped)  # the store's own spelling: refuses NaN and Infinity
            return capped
        except (TypeError, ValueError, RecursionError):
            return cap_record_value(_json_safe(value), self.record_max_bytes)


def _json_safe(value: Any) -> Any:
    """The nearest JSON value: NaN and infinities become null, other objects their text."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
        return json.loads(text, parse_constant=lambda _constant: None)
    except (TypeError, ValueError, RecursionError):
        return {"unrecordable": f"a {type(value).__name__} that JSON cannot hold"}


# --- composition ----------------------------------------------------------------------------------


class StoreControl:
    """`RunControl`: the pause request `pauseRun` sets on the run row (one query a node)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._loop = StoreLoop.of(database)

    async def pause_requested(self, tenant: str, run_id: str) -> bool:
        async def read() -> bool:
            async with self.database.session() as session:
                return await pause_requested(session, tenant_id=tenant, run_id=run_id)

        return await self._loop.call(read)


class StoreInputs:
    """`RunInputs`: a run the service started reads the parameters and event stored with it
    (the flow run's show pasted secret values as `***`); a flow run of a stored workflow that
    the service did not start (a schedule's, the Prefect UI's "Run") is recorded as a run of
    its own, so that it shows in the run history like any other."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._loop = StoreLoop.of(database)

    async def open(self, tenant: str, opening: RunOpening) -> OpenedRun | None:
        async def read() -> OpenedRun | None:
            async with self.database.session() as session:
                if opening.run_id is not None:
                    run = await get_run(session, tenant_id=tenant, run_id=opening.run_id)
                    if run is None:
                        return None
                    return OpenedRun(run.id, dict(run.parameters), run.trigger_event)
                workflow = await get_workflow(
                    session, tenant_id=tenant, workflow_id=opening.workflow_id
                )
                if workflow is None:  # not the service's workflow (an ad-hoc deployment)
                    return None
                trigger = opening.trigger
                run = await record_flow_run(
                    session,
                    tenant_id=tenant,
                    workflow_id=opening.workflow_id,
                    version=_stored_version(opening.version, workflow.current_version),
                    flow_run_id=opening.flow_run_id,
                    trigger_type=_trigger_type(trigger.get("type")),
                    trigger_id=trigger.get("id"),
                    trigger_event=trigger,
                    parameters=opening.parameters,
                    scheduled_at=opening.scheduled_at,
                )
                return OpenedRun(run.id)

        return await self._loop.call(read)


def _stored_version(version: str, current: int) -> int:
    """The stored version a deployment's run names (its pinned `version` parameter)."""
    return int(version) if version.isdigit() and int(version) <= MAX_VERSION else current


def _trigger_type(kind: Any) -> TriggerType:
    """How a run the service did not start shows its trigger: a schedule's, else manual."""
    return TriggerType.SCHEDULE if kind == TriggerType.SCHEDULE.value else TriggerType.MANUAL


class StorePolicies:
    """`TenantPolicies`: the tenant's stored settings (allowed pieces, HTTP allow-list
    additions, default retry and time-out), read once per run."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._loop = StoreLoop.of(database)

    async def policy(self, tenant: str) -> TenantPolicy:
        async def read() -> dict[str, Any] | None:
            async with self.database.session() as session:
                found = await get_tenant(session, tenant_id=tenant)
                return found.settings if found is not None else None

        return TenantSettings.of(await self._loop.call(read)).policy()


def store_run_services(
    database: Database, box: SecretBox, registry: PieceRegistry, *, record_max_bytes: int
) -> RunServices:
    """The run services of a worker: secrets, workflows and run history from the store.

    ```
    database = Database.from_settings(settings)  # the worker's own: used on the store loop
    services = store_run_services(
        database, SecretBox.from_settings(settings), default_registry(),
        record_max_bytes=settings.record_max_bytes,
    )
    set_process_services(services)  # or WarmRunner(services=services)
    ...
    await StoreLoop.of(database).aclose()  # at exit
    ```
    """
    return RunServices(
        registry=registry,
        secrets=StoreSecrets(database, box),
        resolver=StoreResolver(database),
        recorder=StoreRecorder(database, record_max_bytes=record_max_bytes),
        control=StoreControl(database),
        policies=StorePolicies(database),
        inputs=StoreInputs(database),
    )


__all__ = [
    "RUN_STATES",
    "StoreControl",
    "StoreInputs",
    "StoreLoop",
    "StorePolicies",
    "StoreRecorder",
    "StoreResolver",
    "StoreSecrets",
    "store_run_services",
]
