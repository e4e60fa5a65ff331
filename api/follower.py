"""Keeps the store's run states in step with Prefect for what no engine reports: `RunFollower`.

The engine tells the store how a run goes (the run recorder). Some endings reach Prefect only:
a run whose worker died is marked Crashed by Prefect (its zombie automation), a run cancelled in
the Prefect UI before it started never runs. Every `FOLLOW_SECONDS` the follower reads the
Prefect states of the active runs that have a flow run, in one request, and moves each run whose
flow run ended to that end (only forward: a state the recorder wrote is never undone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prefect.client.schemas.objects import StateType

from api.service import Service
from api.store import runs as store
from api.store.models import RunState

_log = logging.getLogger("altlas.api.follower")

FOLLOW_SECONDS = 5.0
BATCH = 200

ENDINGS: dict[StateType, tuple[RunState, str]] = {
    StateType.CRASHED: (RunState.CRASHED, "the flow run crashed (its worker stopped)"),
    StateType.CANCELLED: (RunState.CANCELLED, "the flow run was cancelled in Prefect"),
    StateType.FAILED: (RunState.FAILED, "the flow run failed in Prefect"),
    StateType.COMPLETED: (RunState.COMPLETED, ""),
}
"""Prefect's terminal state types, as run states (with the error of a run that did not end
well, when the engine reported none)."""

FOLLOWED = (RunState.SCHEDULED, RunState.RUNNING, RunState.PAUSED, RunState.CANCELLING)


class RunFollower:
    """Moves active runs to the end Prefect recorded for them (see the module docstring)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Prefect or the database away: next round
                await self.follow_once()
            await asyncio.sleep(FOLLOW_SECONDS)

    async def follow_once(self) -> int:
        """One round; how many runs were moved."""
        async with self._service.database.session() as session:
            runs = await store.list_runs_by_state(session, states=FOLLOWED, limit=BATCH)
        followed = {run.flow_run_id: run for run in runs if run.flow_run_id}
        if not followed:
            return 0
        states = await self._service.prefect.states(list(followed))
        moved = 0
        async with self._service.database.session() as session:
            for flow_run_id, state_type in states.items():
                ending = ENDINGS.get(state_type) if state_type is not None else None
                if ending is None:
                    continue
                run_state, message = ending
                error = {"type": run_state.value.title(), "message": message} if message else None
                if await store.update_run_state(
                    session, run_id=followed[flow_run_id].id, state=run_state, error=error
                ):
                    moved += 1
                    _log.info("run %s is %s in Prefect", followed[flow_run_id].id, run_state)
        return moved
