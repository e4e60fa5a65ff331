"""The domain enums: run states move only forward; the sets of active and finished states."""

from __future__ import annotations

import pytest

from api.store.models import NodeStatus, RunState, TriggerType

S = RunState
FINISHED = [S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.CRASHED]

# Every allowed move, written out by hand from the REST contract: accepted → scheduled →
# running → finished, paused and cancelling between running and finished, paused ↔ running.
ALLOWED = {
    S.ACCEPTED: {S.SCHEDULED, S.RUNNING, S.PAUSED, S.CANCELLING, *FINISHED},
    S.SCHEDULED: {S.RUNNING, S.PAUSED, S.CANCELLING, *FINISHED},
    S.RUNNING: {S.PAUSED, S.CANCELLING, *FINISHED},
    S.PAUSED: {S.RUNNING, S.CANCELLING, *FINISHED},
    S.CANCELLING: set(FINISHED),
    **{state: set() for state in FINISHED},
}


def test_the_values_are_the_rest_names() -> None:
    assert [state.value for state in RunState] == [
        "accepted",
        "scheduled",
        "running",
        "paused",
        "completed",
        "failed",
        "timed_out",
        "cancelling",
        "cancelled",
        "crashed",
    ]
    assert [status.value for status in NodeStatus] == [
        "running",
        "completed",
        "failed",
        "skipped",
        "cancelled",
        "waiting",
    ]
    assert [kind.value for kind in TriggerType] == [
        "api",
        "schedule",
        "webhook",
        "manual",
        "workflow",
    ]


def test_active_and_finished_partition_the_states() -> None:
    assert {S.ACCEPTED, S.SCHEDULED, S.RUNNING, S.PAUSED, S.CANCELLING} == RunState.ACTIVE
    assert set(FINISHED) == RunState.FINISHED
    assert S.PAUSED.is_active
    assert not S.PAUSED.is_finished
    assert S.CRASHED.is_finished
    assert len(RunState) == 10  # ACTIVE and FINISHED are not members


@pytest.mark.parametrize("source", list(RunState))
def test_can_move_to(source: RunState) -> None:
    assert {target for target in RunState if source.can_move_to(target)} == ALLOWED[source]


@pytest.mark.parametrize("target", list(RunState))
def test_predecessors_are_the_states_that_can_move_to_the_target(target: RunState) -> None:
    expected = {source for source, targets in ALLOWED.items() if target in targets}
    assert RunState.predecessors(target) == expected
