"""The warm worker: runs a work pool's flow runs inside this long-lived process. Main entry:
`WarmRunner` (and `run_worker`, the core of `altlas-flows worker`).

Prefect's own process worker polls its pool every 10 s and starts a new Python process per
flow run (`import prefect` alone takes ~1.8 s here): 4-8 s from a run's creation to Running.
`WarmRunner` keeps Prefect, the pieces and the flow objects loaded, and:

- **finds** runs at once through Prefect's event stream: one websocket subscription to the
  `prefect.flow-run.Scheduled` (also `Late`, `AwaitingRetry`, `AwaitingConcurrencySlot`) and
  `prefect.flow-run.Cancelling` events whose related resources include its work pool; and,
  as a safety net for missed events, polls the pool as Prefect's workers do
  (`get_scheduled_flow_runs_for_work_pool`, every `poll_seconds`, with the worker's heartbeat,
  so the worker shows in the UI's work pool page);
- **waits** for runs scheduled later: a run is claimed when its `expected_start_time` comes
  (a timer), not before; runs further ahead than `prefetch_seconds` are left to a later poll;
- **claims** a run exactly like Prefect's workers: it proposes a `Pending` state; the server
  accepts one proposal and aborts the others, so two runners on one pool never run one run
  twice;
- **runs** it with `prefect.flow_engine.run_flow(named_flow(<workflow id>), flow_run=...)` in a
  thread of its own with its own event loop (several flows on one loop serialise), at most
  `concurrency` at a time; the parameters are the flow run's own (Prefect merged the
  deployment's into them when it created the run), so the Prefect UI shows exactly what ran;
- **cancels** at once: a `Cancelling` event for a run it executes asks the engine to stop the
  run (`interpreter.run.flow.request_cancel`); the engine's own watch, which polls every
  `ALTLAS_CANCEL_POLL_SECONDS`, remains the safety net;
- **watches suspensions** for all its runs through the same subscription (`Suspended` events,
  and a check of its running runs whenever the stream was lost), and passes them to the
  engines as Prefect's own per-run observer would; the engines therefore start without that
  observer, which cost every run a thread, a client, a websocket subscription and a read
  (~0.16 s before Running, and server CPU);
- **reports** crashes: its runs send Prefect's flow-run heartbeats every `heartbeat_seconds`,
  and `ensure_zombie_automation` creates the automation that marks a run Crashed when its
  heartbeats stop (its worker died); a run whose engine fails outside the flow is marked
  Crashed by the runner itself;
- **stops** gracefully (`stop()`, SIGTERM): it claims nothing more, lets running runs finish
  within `grace_seconds`, then cancels them, and marks Crashed any that still do not end.

The run services (secrets, workflow resolver, recorder) come from the caller:
`WarmRunner(services=...)` sets them for the whole process (`set_process_services`), so this
module never imports `api`. Importing it does not import Prefect (the CLI parser imports it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import count
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.sync import FLOW_HEARTBEAT_SECONDS

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.events import Event
    from prefect.settings import Profile, Settings

    from interpreter.run.services import RunServices

SCHEDULED_EVENTS = (
    "prefect.flow-run.Scheduled",
    "prefect.flow-run.Late",
    "prefect.flow-run.AwaitingRetry",
    "prefect.flow-run.AwaitingConcurrencySlot",
)
"""Events that say a flow run of the pool may be ready to claim (Scheduled-type states)."""

CANCELLING_EVENT = "prefect.flow-run.Cancelling"

SUSPENDED_EVENT = "prefect.flow-run.Suspended"
"""A run suspended from outside (`suspend_flow_run`): its engine stops at the next boundary."""

SUSPENSION_RETRY_SECONDS = 0.5
"""How soon a Suspended event whose state is not visible yet is checked again (doubling)."""

WARM_SLOTS = 2
"""Slots (threads with a loop and a client) made at start; more are made when needed."""

FRESH_SECONDS = 0.1
"""A run's state is read again before it is claimed when the last read is older than this.

The claim proposes `Pending`, which Prefect accepts from `Scheduled` and also from a finished
run whose result is not persisted (that is how a finished run is re-run). A candidate that
waited for a free place may have been run meanwhile by another worker: it is claimed only if a
read at most this old says it is still Scheduled. Running a flow run to its end takes another
worker several sequential API calls, far longer than this (and `_claim` checks afterwards).
"""

ZOMBIE_AUTOMATION_NAME = "altlas: crash flow runs whose heartbeats stopped"

FINAL_RUN_EVENTS = frozenset(
    {
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.TimedOut",  # the engine's Failed state named TimedOut
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
    }
)

_log = logging.getLogger("altlas.worker")
_names = count(1)


class WorkerSettings(BaseSettings):
    """Settings of the warm worker (`ALTLAS_WORKER_*`). `docs/worker.md` describes them."""

    model_config = SettingsConfigDict(env_prefix="ALTLAS_WORKER_", extra="ignore")

    pool: str = Field(default="altlas", min_length=1, description="The work pool to run.")
    concurrency: int = Field(
        default=8, ge=1, le=512, description="How many flow runs execute at once."
    )
    poll_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often the pool is polled (a safety net for missed events; it also "
        "sends the worker's heartbeat).",
    )
    prefetch_seconds: float = Field(
        default=15.0,
        ge=0,
        description="Runs due within this many seconds are held on a timer and claimed when "
        "due; later ones are left for a later poll.",
    )
    grace_seconds: float = Field(
        default=30.0, ge=0, description="On stop, how long running runs may take to finish."
    )
    heartbeat_seconds: int | None = Field(
        default=FLOW_HEARTBEAT_SECONDS,
        ge=30,
        description="Flow-run heartbeat interval of the runs this worker executes (Prefect's "
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY; 30 is its minimum). None: Prefect's setting.",
    )
    zombie_automation: bool = Field(
        default=True,
        description="Create (once) the automation that marks runs Crashed when their "
        "heartbeats stop.",
    )
    zombie_after_seconds: int = Field(
        default=90,
        ge=31,
        description="How long without a heartbeat before a run is marked Crashed; must exceed "
        "heartbeat_seconds (three heartbeats by default).",
    )


@dataclass
class RunTimeline:
    """When one run passed each step in this runner (`time.time()` seconds, comparable with
    Prefect's timestamps on the same machine; None when it did not). For profiling:
    `bench/latency.py` prints where the time goes."""

    flow_run_id: UUID
    found_by: str
    offered: float
    read: float | None = None
    claimed: float | None = None
    started: float | None = None
    """The run's thread began (the engine is about to set the run up)."""
    finished: float | None = None
    state: str | None = None


@dataclass
class _ActiveRun:
    flow_run: FlowRun
    done: asyncio.Future[object]
    cancel_requested: bool = False


@dataclass
class RunnerStats:
    """What a runner did since it started."""

    claimed: list[UUID] = field(default_factory=list)
    """Runs it claimed (and executed), in order."""
    lost: int = 0
    """Claims another worker won (or the run had moved on)."""
    crashed: int = 0
    """Runs it marked Crashed (the engine failed outside the flow, or the worker stopped)."""


class WarmRunner:
    """Claims and executes the flow runs of one work pool in this process (module docstring).

    Use it as an async context manager, or `start()` / `stop()`:

    Example:
        ```python
        async with WarmRunner(work_pool="altlas", services=my_services, concurrency=8):
            await stopped.wait()
        ```

    Args:
        work_pool: the pool whose runs to execute (created, type `process`, if missing).
        services: the run services for every run of this process (`None`: the defaults:
            environment secrets, file resolver, no recorder).
        concurrency: at most this many runs at once (default: the settings').
        work_queues: only runs of these queues of the pool (default: every queue).
        name: the worker's name in the Prefect UI (default `altlas-<host>-<pid>`).
        settings: the other settings (default: from `ALTLAS_WORKER_*`).
    """

    def __init__(
        self,
        *,
        work_pool: str,
        services: RunServices | None = None,
        concurrency: int | None = None,
        work_queues: Sequence[str] | None = None,
        name: str | None = None,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self.work_pool = work_pool
        self.services = services
        self.concurrency = concurrency or self.settings.concurrency
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {self.concurrency}")
        self.work_queues = list(work_queues) if work_queues else None
        number = next(_names)
        suffix = "" if number == 1 else f"-{number}"
        self.name = name or f"altlas-{socket.gethostname()}-{os.getpid()}{suffix}"
        self.stats = RunnerStats()
        self.timelines: deque[RunTimeline] = deque(maxlen=1000)
        self._stack = contextlib.AsyncExitStack()
        self._client: PrefectClient | None = None
        self._pool: WorkPool | None = None
        self._places = asyncio.Semaphore(self.concurrency)
        self._idle: list[_Slot] = []
        self._slots_made: list[_Slot] = []
        self._considering: dict[UUID, asyncio.Task[None]] = {}
        self._claiming: set[UUID] = set()
        self._no_claims = asyncio.Event()  # set while no claim is in flight
        self._no_claims.set()
        self._active: dict[UUID, _ActiveRun] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._events_connected = asyncio.Event()
        self._overflowed = False
        self._started = False
        self._stopped = False
        self._run_profile: Profile | None = None
        self._run_settings: Settings | None = None

    # --- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> WarmRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self, *, events_timeout: float = 15.0) -> None:
        """Set the process's run services, make sure the pool exists, subscribe to its events,
        poll it once, and return: from now on new runs are picked up at once.

        If the event stream cannot be reached within `events_timeout` seconds the runner
        still starts and finds runs by polling (and keeps trying to subscribe).
        """
        if self._started:
            raise RuntimeError("this runner was started already")
        self._started = True
        try:
            await self._start(events_timeout)
        except BaseException:
            await self.stop(grace=0)
            raise
        _log.info(
            "worker %s runs pool %r (%d at a time)", self.name, self.work_pool, self.concurrency
        )

    async def _start(self, events_timeout: float) -> None:
        from prefect import get_client
        from prefect.context import get_settings_context
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

        from deployments.sync import ensure_work_pool
        from interpreter.run.services import set_process_services

        set_process_services(self.services)
        # The runs' threads get the caller's Prefect settings (API URL included), with the
        # heartbeat interval the zombie automation relies on.
        context = get_settings_context()
        self._run_profile = context.profile
        heartbeat = self.settings.heartbeat_seconds
        self._run_settings = (
            context.settings.copy_with_update(
                updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: heartbeat}
            )
            if heartbeat is not None
            else context.settings
        )
        self._client = await self._stack.enter_async_context(get_client())
        self._pool = await ensure_work_pool(self._client, self.work_pool)
        if self.settings.zombie_automation:
            try:
                await ensure_zombie_automation(
                    self._client, within_seconds=self.settings.zombie_after_seconds
                )
            except Exception as exc:  # crash detection is an extra: never stop the worker
                _log.warning("could not create the zombie-run automation: %s", exc)
        # Warm slots: the first runs need not wait for a thread, loop and client.
        for _ in range(min(self.concurrency, WARM_SLOTS)):
            self._idle.append(await self._new_slot())
        self._spawn(self._events_loop(), "events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events_connected.wait(), events_timeout)
        if not self._events_connected.is_set():
            _log.warning(
                "worker %s: Prefect's event stream is not reachable; finding runs by polling "
                "every %gs until it is",
                self.name,
                self.settings.poll_seconds,
            )
        await self._poll_once_logged()
        self._spawn(self._poll_loop(), "poll")

    async def stop(self, *, grace: float | None = None) -> None:
        """Claim nothing more; let running runs finish within `grace` seconds (default: the
        settings'), then cancel them; mark Crashed those that still do not end; disconnect."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self._stopping.set()
        grace = self.settings.grace_seconds if grace is None else grace
        for flow_run_id, task in list(self._considering.items()):
            if flow_run_id not in self._active and flow_run_id not in self._claiming:
                task.cancel()  # never in the middle of a claim: the run would stay Pending
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_claims.wait(), 10)
        await asyncio.sleep(0)  # a run just claimed registers itself
        running = {run.done for run in self._active.values()}
        if running:
            _log.info("worker %s: waiting up to %gs for %d run(s)", self.name, grace, len(running))
            await asyncio.wait(running, timeout=grace)
        left = [run for run in self._active.values() if not run.done.done()]
        if left:
            await asyncio.gather(*(self._cancel(run) for run in left))
            await asyncio.wait({run.done for run in left}, timeout=self._cancel_wait())
        for run in self._active.values():
            if not run.done.done():
                await self._mark_crashed(
                    run.flow_run, "the worker stopped before the run ended (it was cancelled)"
                )
        pending = [t for t in self._considering.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
            for task in pending:  # runs abandoned above: stop waiting for their threads
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for slot in self._slots_made:
            slot.close()
        await self._stack.aclose()
        _log.info("worker %s stopped", self.name)

    def _cancel_wait(self) -> float:
        from interpreter.run.execution import CANCEL_GRACE_SECONDS
        from interpreter.settings import get_engine_settings

        return get_engine_settings().cancel_poll_seconds + CANCEL_GRACE_SECONDS + 5.0

    @property
    def running(self) -> list[UUID]:
        """The flow runs executing now."""
        return [k for k, v in self._active.items() if not v.done.done()]

    @property
    def events_connected(self) -> bool:
        """Whether the event stream subscription is up (else runs are found by polling)."""
        return self._events_connected.is_set()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=f"{self.name}:{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- finding runs ------------------------------------------------------------------------

    async def _events_loop(self) -> None:
        """Keep one subscription to the pool's run events; reconnect with a back-off."""
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        assert self._pool is not None
        event_filter = EventFilter(
            event=EventNameFilter(name=[*SCHEDULED_EVENTS, CANCELLING_EVENT, SUSPENDED_EVENT]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{self._pool.id}"]),
        )
        backoff, lost = 1.0, False
        while not self._stopped:
            try:
                async with get_events_subscriber(
                    filter=event_filter, reconnect_on_clean_close=True
                ) as subscriber:
                    self._events_connected.set()
                    if lost:  # suspensions the stream missed meanwhile
                        self._spawn(self._check_suspensions(), "suspensions")
                    backoff = 1.0
                    async for event in subscriber:
                        self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("worker %s: event stream lost (%s); polling meanwhile", self.name, exc)
            self._events_connected.clear()
            lost = True
            self._poll_now.set()  # catch up on what the stream missed
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _on_event(self, event: Event) -> None:
        resource_id = event.resource.id
        if not resource_id.startswith("prefect.flow-run."):
            return
        try:
            flow_run_id = UUID(resource_id.removeprefix("prefect.flow-run."))
        except ValueError:
            return
        if event.event == CANCELLING_EVENT:
            self._on_cancelling(flow_run_id)
        elif event.event == SUSPENDED_EVENT:
            self._on_suspended(flow_run_id, event.id, event.occurred)
        else:
            self._offer(flow_run_id, None, "event")

    async def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), self.settings.poll_seconds)
            self._poll_now.clear()
            if not self._stopping.is_set():
                await self._poll_once_logged()

    async def _poll_once_logged(self) -> None:
        try:
            await self._poll_once()
        except Exception as exc:  # the next poll tries again
            _log.warning("worker %s: polling pool %r failed: %s", self.name, self.work_pool, exc)

    async def _poll_once(self) -> None:
        assert self._client is not None
        await self._client.send_worker_heartbeat(
            work_pool_name=self.work_pool,
            worker_name=self.name,
            heartbeat_interval_seconds=self.settings.poll_seconds,
        )
        due_before = datetime.now(UTC) + timedelta(seconds=self.settings.prefetch_seconds)
        responses = await self._scheduled_runs(due_before)
        for response in sorted(responses, key=_due):
            self._offer(response.flow_run.id, response.flow_run, "poll")
        if not self._events_connected.is_set():
            await self._check_suspensions()

    async def _scheduled_runs(self, due_before: datetime) -> list[Any]:
        """The pool's Scheduled runs due before `due_before`, the earliest first: at most as
        many as this runner considers at once (`get_scheduled_flow_runs_for_work_pool`
        without its limit answers up to 200 runs, each with its whole definition, and during
        a backlog the runner polls each time a place frees up)."""
        from prefect.client.schemas.responses import WorkerFlowRunResponse
        from pydantic import TypeAdapter

        assert self._client is not None
        body: dict[str, Any] = {
            "scheduled_before": str(due_before),
            "limit": self._backlog_limit(),
        }
        if self.work_queues is not None:
            body["work_queue_names"] = list(self.work_queues)
        response = await self._client.request(
            "POST",
            "/work_pools/{name}/get_scheduled_flow_runs",
            path_params={"name": self.work_pool},
            json=body,
        )
        adapter = TypeAdapter(list[WorkerFlowRunResponse])
        return adapter.validate_python(response.json())

    def _offer(self, flow_run_id: UUID, flow_run: FlowRun | None, found_by: str) -> None:
        """Consider a run that may be claimable (known already: ignored)."""
        if self._stopping.is_set() or flow_run_id in self._considering:
            return
        if len(self._considering) >= self._backlog_limit():
            self._overflowed = True  # a later poll brings it back
            return
        timeline = RunTimeline(flow_run_id, found_by, time.time())
        task = asyncio.create_task(self._consider(flow_run_id, flow_run, timeline))
        self._considering[flow_run_id] = task

    def _backlog_limit(self) -> int:
        return max(4 * self.concurrency, 32)

    # --- claiming and running ----------------------------------------------------------------

    async def _consider(
        self, flow_run_id: UUID, flow_run: FlowRun | None, timeline: RunTimeline
    ) -> None:
        from prefect.exceptions import ObjectNotFound

        assert self._client is not None
        try:
            read_at = time.monotonic()
            if flow_run is None and self._places.locked():
                # Every place is taken: read the run once one is free. (Read now, it would be
                # stale by then and read again before the claim: two reads a run.)
                async with self._places:
                    if self._stopping.is_set():
                        return
                    flow_run = await self._client.read_flow_run(flow_run_id)
                    read_at, timeline.read = time.monotonic(), time.time()
                    if self._claimable(flow_run) and _seconds_until(flow_run) <= 0:
                        await self._claim_and_execute(flow_run, timeline)
                        return
                # Not claimable (the loop below says so), or due later: as if read at once.
            if flow_run is None:
                flow_run = await self._client.read_flow_run(flow_run_id)
                read_at, timeline.read = time.monotonic(), time.time()
            while True:
                if not self._claimable(flow_run):
                    return
                wait = _seconds_until(flow_run)
                if wait > self.settings.prefetch_seconds:
                    return  # a later poll brings it back
                if wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
                if self._stopping.is_set():
                    return
                # It may have been rescheduled, cancelled or taken meanwhile.
                flow_run = await self._client.read_flow_run(flow_run_id)
                read_at = time.monotonic()
            async with self._places:
                if self._stopping.is_set():
                    return
                if time.monotonic() - read_at > FRESH_SECONDS:
                    # Prefect accepts Pending from a finished run whose result is not
                    # persisted (a re-run): claim only what is still Scheduled right now.
                    flow_run = await self._client.read_flow_run(flow_run_id)
                    if not self._claimable(flow_run) or _seconds_until(flow_run) > 0:
                        return
                await self._claim_and_execute(flow_run, timeline)
        except ObjectNotFound:
            return  # deleted meanwhile
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("worker %s: flow run %s could not be run", self.name, flow_run_id)
        finally:
            self._considering.pop(flow_run_id, None)
            if self._overflowed and not self._stopping.is_set():
                self._overflowed = False
                self._poll_now.set()

    async def _claim_and_execute(self, flow_run: FlowRun, timeline: RunTimeline) -> None:
        """Claim a run just read as Scheduled and due, and run it if this runner won it. The
        caller holds one of the `concurrency` places."""
        self._claiming.add(flow_run.id)
        self._no_claims.clear()
        try:
            claimed = await self._claim(flow_run)
        finally:
            self._claiming.discard(flow_run.id)
            if not self._claiming:
                self._no_claims.set()
        if not claimed:
            return
        # Claimed: it runs even if the worker is stopping now (within the grace).
        timeline.claimed = time.time()
        self.timelines.append(timeline)
        await self._execute(flow_run, timeline)

    def _claimable(self, flow_run: FlowRun) -> bool:
        """A Scheduled run of an ALT_LAS deployment of this pool (and queues)."""
        from prefect.client.schemas.objects import StateType

        # The pool's scheduled-runs endpoint answers runs without `state`, only `state_type`.
        state_type = flow_run.state.type if flow_run.state is not None else flow_run.state_type
        if state_type is not StateType.SCHEDULED:
            return False
        if self.work_queues and flow_run.work_queue_name not in self.work_queues:
            return False
        if flow_run.deployment_id is None or not isinstance(
            flow_run.parameters.get("definition"), dict
        ):
            _warn_not_ours(flow_run.id, self.work_pool)
            return False
        return True

    async def _claim(self, flow_run: FlowRun) -> bool:
        """Propose Pending, as Prefect's workers do: True when this runner won the run.

        Prefect accepts the proposal from one worker only, but it also accepts it from a
        finished run whose result is not persisted (a re-run). So the state the claim replaced
        is checked: if it was not a Scheduled one, the run had been run meanwhile by another
        worker, and its state is put back.
        """
        from prefect.exceptions import Abort, ObjectNotFound
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state

        assert self._client is not None
        try:
            state = await propose_state(self._client, Pending(), flow_run_id=flow_run.id)
        except (Abort, ObjectNotFound):
            self.stats.lost += 1
            return False
        if not state.is_pending():
            self.stats.lost += 1
            return False
        if await self._claimed_a_finished_run(flow_run, state):
            self.stats.lost += 1
            return False
        flow_run.state = state
        self.stats.claimed.append(flow_run.id)
        return True

    async def _claimed_a_finished_run(self, flow_run: FlowRun, claim: Any) -> bool:
        """Whether the state before `claim` was not Scheduled-type; if so, restore it."""
        from prefect.client.schemas.objects import State
        from prefect.utilities.engine import propose_state

        assert self._client is not None
        history = sorted(
            await self._client.read_flow_run_states(flow_run.id), key=lambda s: s.timestamp
        )
        ids = [state.id for state in history]
        if claim.id not in ids:
            return False
        position = ids.index(claim.id)
        before = history[position - 1] if position > 0 else None
        if before is None or before.is_scheduled():
            return False
        _log.warning(
            "worker %s: flow run %s had already ended (%s) when it was claimed; its state is "
            "restored and it is not run again",
            self.name,
            flow_run.id,
            before.name,
        )
        restored = State(type=before.type, name=before.name, message=before.message)
        with contextlib.suppress(Exception):
            await propose_state(self._client, restored, flow_run.id, force=True)
        return True

    async def _execute(self, flow_run: FlowRun, timeline: RunTimeline) -> None:
        """Run the claimed flow run on an idle slot (a thread with its own event loop) and
        wait for it. The caller holds one of the `concurrency` places."""
        loop = asyncio.get_running_loop()
        active = _ActiveRun(flow_run, loop.create_future())
        self._active[flow_run.id] = active
        slot = self._idle.pop() if self._idle else await self._new_slot()
        outcome: object = None
        try:
            slot.submit(flow_run, active.done, timeline)
            outcome = await asyncio.shield(active.done)
        finally:
            timeline.finished = time.time()
            if active.done.done():
                self._active.pop(flow_run.id, None)
                self._idle.append(slot)  # else it is still busy: abandoned at stop
        final = getattr(outcome, "is_final", None)
        timeline.state = getattr(outcome, "name", None) or type(outcome).__name__
        if final is None or not final():
            await self._after_unfinished(flow_run, outcome)

    async def _new_slot(self) -> _Slot:
        assert self._run_settings is not None
        assert self._run_profile is not None
        slot = _Slot(f"{self.name}-slot-{len(self._slots_made) + 1}")
        self._slots_made.append(slot)
        await asyncio.to_thread(slot.start, self._run_profile, self._run_settings)
        return slot

    async def _after_unfinished(self, flow_run: FlowRun, outcome: object) -> None:
        """The engine returned without a final state (or raised): mark the run Crashed unless
        Prefect already holds a final state for it."""
        from prefect.exceptions import ObjectNotFound

        assert self._client is not None
        try:
            current = await self._client.read_flow_run(flow_run.id)
        except ObjectNotFound:
            return
        if current.state is not None and (current.state.is_final() or current.state.is_paused()):
            return
        detail = (
            f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, BaseException) else ""
        )
        await self._mark_crashed(flow_run, f"the engine stopped outside the flow. {detail}")

    async def _mark_crashed(self, flow_run: FlowRun, message: str) -> None:
        from prefect.exceptions import Abort, ObjectNotFound
        from prefect.states import Crashed
        from prefect.utilities.engine import propose_state

        assert self._client is not None
        try:
            state = await propose_state(self._client, Crashed(message=message), flow_run.id)
        except (Abort, ObjectNotFound):
            return
        except Exception as exc:
            _log.warning("worker %s: could not mark %s Crashed: %s", self.name, flow_run.id, exc)
            return
        if state.is_crashed():
            self.stats.crashed += 1
            _log.warning("worker %s: flow run %s crashed: %s", self.name, flow_run.id, message)

    # --- suspensions -------------------------------------------------------------------------

    def _on_suspended(self, flow_run_id: UUID, state_id: UUID, occurred: datetime) -> None:
        """A run of this pool was suspended from outside: if it runs here, stop its engine."""
        run = self._active.get(flow_run_id)
        if run is None or run.done.done():
            return
        self._spawn(self._confirm_suspension(flow_run_id, state_id, occurred), "suspension")

    async def _confirm_suspension(
        self, flow_run_id: UUID, state_id: UUID, occurred: datetime
    ) -> None:
        """What Prefect's per-run observer does with a Suspended event: confirm it with a read
        (retried, doubling, while the state is not visible), then mark the engine's suspension
        request; a state superseded meanwhile (resumed) still stops the engine, or the run
        could execute twice alongside its resumed submission."""
        from prefect._flow_run_suspension import is_suspended_flow_run_state
        from prefect.client.schemas.objects import State, StateType
        from prefect.exceptions import ObjectNotFound

        assert self._client is not None
        interval = SUSPENSION_RETRY_SECONDS
        while self._is_running_here(flow_run_id):
            try:
                current = (await self._client.read_flow_run(flow_run_id)).state
            except ObjectNotFound:
                return
            except Exception as exc:  # tried again below
                _log.debug("worker %s: could not read %s: %s", self.name, flow_run_id, exc)
                current = None
            if current is not None:
                if current.id == state_id or is_suspended_flow_run_state(current):
                    await self._suspend_engine(flow_run_id, current)
                    return
                if current.timestamp >= occurred:
                    superseded = State(
                        id=state_id, type=StateType.PAUSED, name="Suspended", timestamp=occurred
                    )
                    await self._suspend_engine(flow_run_id, superseded)
                    return
            await asyncio.sleep(interval)
            interval = min(interval * 2, 10.0)

    async def _check_suspensions(self) -> None:
        """Stop the engines of this runner's runs that are Suspended in Prefect (one request):
        after the event stream was lost, as Prefect's observer polls when its stream is."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateName,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        running = self.running
        if not running or self._client is None:
            return
        try:
            suspended = await self._client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=running),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.PAUSED]),
                        name=FlowRunFilterStateName(any_=["Suspended"]),
                    ),
                )
            )
        except Exception as exc:  # the next poll tries again
            _log.warning("worker %s: could not check for suspended runs: %s", self.name, exc)
            return
        for flow_run in suspended:
            if flow_run.state is not None:
                await self._suspend_engine(flow_run.id, flow_run.state)

    async def _suspend_engine(self, flow_run_id: UUID, state: Any) -> None:
        """Hand the engine of a run of this process its suspension (it raises Prefect's `Pause`
        at its next boundary). A run handed to its slot registers its request as its engine
        sets up: until then, try again shortly."""
        from prefect._flow_run_suspension import mark_flow_run_suspension_requested

        while self._is_running_here(flow_run_id):
            if mark_flow_run_suspension_requested(flow_run_id, state):
                _log.info("worker %s: flow run %s was suspended", self.name, flow_run_id)
                return
            await asyncio.sleep(0.05)

    def _is_running_here(self, flow_run_id: UUID) -> bool:
        run = self._active.get(flow_run_id)
        return run is not None and not run.done.done()

    # --- cancelling --------------------------------------------------------------------------

    def _on_cancelling(self, flow_run_id: UUID) -> None:
        run = self._active.get(flow_run_id)
        if run is None or run.done.done():
            return
        run.cancel_requested = True
        if not _request_engine_cancel(flow_run_id):
            _log.debug("flow run %s is cancelling; the engine's own watch stops it", flow_run_id)

    async def _cancel(self, run: _ActiveRun) -> None:
        """Move a run to Cancelling in Prefect (the engine then stops it)."""
        from prefect.states import Cancelling

        assert self._client is not None
        try:
            await self._client.set_flow_run_state(
                run.flow_run.id, Cancelling(message=f"worker {self.name} stopped")
            )
        except Exception as exc:
            _log.warning("worker %s: could not cancel %s: %s", self.name, run.flow_run.id, exc)
        self._on_cancelling(run.flow_run.id)


class _Slot:
    """A thread with its own event loop and Prefect client that executes one flow run at a time.

    Runs of one slot share its client (no new client, SSL context and connection per run: the
    engine reuses the client of the context it runs in) and its event loop. Each run executes
    in a fresh copy of the slot's context (the Prefect settings and the client), so nothing a
    run leaves in its context reaches the next one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[_Work | None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, profile: Profile, settings: Settings) -> None:
        """Start the thread and wait until it can take runs (blocking)."""
        thread = threading.Thread(
            target=contextvars.Context().run,  # nothing of the caller's context
            args=(self._main, profile, settings),
            name=self.name,
            daemon=True,  # a run stuck past the worker's stop is abandoned, not awaited at exit
        )
        thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self, profile: Profile, settings: Settings) -> None:
        from prefect.context import SettingsContext

        try:
            with SettingsContext(profile=profile, settings=settings):
                asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from prefect.context import AsyncClientContext

        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        async with AsyncClientContext():
            context = contextvars.copy_context()
            self._ready.set()
            while (work := await self._inbox.get()) is not None:
                flow_run, done, timeline = work
                timeline.started = time.time()
                outcome: object
                try:
                    run = self._loop.create_task(_run_flow(flow_run), context=context.copy())
                    outcome = await run
                except BaseException as exc:  # reported as the run's outcome
                    outcome = exc
                with contextlib.suppress(RuntimeError):  # the runner's loop is gone
                    done.get_loop().call_soon_threadsafe(_resolve, done, outcome)

    def submit(
        self, flow_run: FlowRun, done: asyncio.Future[object], timeline: RunTimeline
    ) -> None:
        """Hand a claimed run to this (idle) slot; `done` gets its final state or exception."""
        loop, inbox = self._loop, self._inbox
        assert loop is not None
        assert inbox is not None
        loop.call_soon_threadsafe(inbox.put_nowait, (flow_run, done, timeline))

    def close(self) -> None:
        """Let the thread end once its current run (if any) has."""
        loop, inbox = self._loop, self._inbox
        if loop is not None and inbox is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                loop.call_soon_threadsafe(inbox.put_nowait, None)


_Work = tuple["FlowRun", "asyncio.Future[object]", RunTimeline]


async def _run_flow(flow_run: FlowRun) -> object:
    """Execute one claimed flow run on this thread's event loop; return its final state."""
    from prefect.flow_engine import run_flow

    from interpreter.run.flow import named_flow

    workflow_id = str(flow_run.parameters["definition"].get("id") or "altlas-workflow")
    # Without its deployment id the engine starts no suspension observer of its own: the
    # runner watches suspensions for all its runs (`WarmRunner._on_suspended`). The engine
    # reads the run again, with its deployment, before the flow starts (its context, the
    # heartbeats and the logs have it).
    engine_view = flow_run.model_copy(update={"deployment_id": None})
    result: Any = run_flow(named_flow(workflow_id), flow_run=engine_view, return_type="state")
    if inspect.isawaitable(result):
        result = await result
    return result


def _resolve(done: asyncio.Future[object], outcome: object) -> None:
    if not done.done():
        done.set_result(outcome)


def _request_engine_cancel(flow_run_id: UUID) -> bool:
    """Ask the engine to stop a run of this process now (it would notice by its own poll)."""
    from interpreter.run.flow import request_cancel

    return request_cancel(str(flow_run_id))


def _due(response: Any) -> datetime:
    start = response.flow_run.expected_start_time
    return start if start is not None else datetime.min.replace(tzinfo=UTC)


def _seconds_until(flow_run: FlowRun) -> float:
    start = flow_run.expected_start_time
    if start is None:
        return 0.0
    return float(start.timestamp() - time.time())


@lru_cache(maxsize=256)
def _warn_not_ours(flow_run_id: UUID, pool: str) -> None:
    _log.warning(
        "flow run %s in pool %r is not an ALT_LAS workflow run (no deployment, or no "
        "`definition` parameter): left for another worker",
        flow_run_id,
        pool,
    )


# --- crash detection ---------------------------------------------------------------------------


def zombie_automation_spec(*, within_seconds: int = 90) -> Any:
    """The automation (`AutomationCore`) that marks an ALT_LAS flow run Crashed when no
    heartbeat, and no final state, follows its last heartbeat (or its start) within
    `within_seconds`.

    Prefect's documented "zombie flows" automation, limited to runs tagged `altlas` (other
    runs on the server may send heartbeats at other intervals).
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    from deployments.sync import ALTLAS_TAG

    return AutomationCore(
        name=ZOMBIE_AUTOMATION_NAME,
        description=(
            f"Marks an ALT_LAS flow run Crashed when {within_seconds}s pass after a heartbeat "
            "without another heartbeat or a final state: its worker died. Created by "
            "deployments.runner.ensure_zombie_automation."
        ),
        trigger=EventTrigger(
            # From Running too: a worker killed before the run's first heartbeat reached
            # Prefect would otherwise leave it Running for ever.
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={"prefect.flow-run.heartbeat", *FINAL_RUN_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{ALTLAS_TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within_seconds}s: the worker running it is gone",
            )
        ],
    )


async def ensure_zombie_automation(client: PrefectClient, *, within_seconds: int = 90) -> UUID:
    """Create the zombie-run automation (`zombie_automation_spec`) unless it exists; update it
    when it differs; remove duplicates (two workers starting at once). Returns its id."""
    wanted = zombie_automation_spec(within_seconds=within_seconds)
    found = await client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
    if not found:
        automation_id: UUID = await client.create_automation(wanted)
        found = await client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
        if len(found) <= 1:
            return automation_id
    # Every worker keeps the same one (the smallest id) and deletes the others.
    keep, *extra = sorted(found, key=lambda automation: str(automation.id))
    for duplicate in extra:
        with contextlib.suppress(Exception):
            await client.delete_automation(duplicate.id)
    fields = ("name", "description", "enabled", "trigger", "actions")
    if keep.model_dump(mode="json", include=set(fields)) != wanted.model_dump(
        mode="json", include=set(fields)
    ):
        await client.update_automation(keep.id, wanted)
    return keep.id


# --- the command --------------------------------------------------------------------------------


def run_worker(
    services: RunServices | None,
    *,
    work_pool: str,
    concurrency: int,
    ready: Callable[[WarmRunner], object] | None = None,
    settings: WorkerSettings | None = None,
) -> int:
    """Run a `WarmRunner` until SIGTERM or SIGINT (Ctrl-C), then stop it gracefully; the core
    of `altlas-flows worker`, which the service calls with its store-backed services.

    Args:
        services: the run services for every run (`None`: environment secrets, file resolver).
        work_pool: the pool to run.
        concurrency: at most this many runs at once.
        ready: called once the runner is up (subscribed and polled once).
        settings: the other settings (default: from `ALTLAS_WORKER_*`).

    Returns:
        The process exit code (0).
    """
    from interpreter.settings import apply_prefect_defaults

    apply_prefect_defaults()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, stop.set)
        runner = WarmRunner(
            work_pool=work_pool, services=services, concurrency=concurrency, settings=settings
        )
        await runner.start()
        try:
            if ready is not None:
                ready(runner)
            await stop.wait()
        finally:
            await runner.stop()

    try:
        asyncio.run(serve())
    finally:
        from interpreter.run.background import flush

        flush()  # the runs' summary artifacts and Prefect's queued events
    return 0


def cmd_worker(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`altlas-flows worker`: run the pool's flow runs in this process until stopped."""

    def ready(runner: WarmRunner) -> None:
        how = "events and polling" if runner.events_connected else "polling only"
        out.write(
            f"worker {runner.name} runs work pool {runner.work_pool!r}, "
            f"{runner.concurrency} at a time ({how}). Stop it with Ctrl-C or SIGTERM.\n"
        )
        out.flush()

    return run_worker(None, work_pool=args.pool, concurrency=args.concurrency, ready=ready)


def add_commands(subparsers: Any) -> None:
    """Add `worker` to the `altlas-flows` command parser (`subparsers` from
    `ArgumentParser.add_subparsers`)."""
    defaults = WorkerSettings()
    worker = subparsers.add_parser(
        "worker",
        help="run a work pool's flow runs in this process (the warm worker)",
        description="Execute the flow runs of a Prefect work pool in this long-lived process: "
        "new runs are found at once through Prefect's event stream (and by polling as a "
        "safety net), claimed like Prefect's own workers claim them, and run in threads of "
        "this process, without a new Python process per run. Runs use the default run "
        "services (secrets from ALTLAS_SECRET_* variables, sub-workflows from "
        "ALTLAS_WORKFLOW_DIRS). SIGTERM or Ctrl-C stops it gracefully. Settings: "
        "ALTLAS_WORKER_* (docs/worker.md).",
    )
    worker.add_argument(
        "--pool",
        default=defaults.pool,
        help=f"the work pool to run, created if missing (default {defaults.pool!r}: "
        "ALTLAS_WORKER_POOL)",
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        default=defaults.concurrency,
        help=f"how many runs at once (default {defaults.concurrency}: ALTLAS_WORKER_CONCURRENCY)",
    )
    worker.set_defaults(handler=cmd_worker)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
