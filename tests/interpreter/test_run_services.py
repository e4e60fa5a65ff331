"""The run side's ports: a run recorder receives the run's history in order, redacted; services
set once for a process reach runs started without any context of the caller's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from interpreter.run.flow import RunOutcome, named_flow
from interpreter.run.launch import call_flow
from interpreter.run.secrets import MappingSecrets
from interpreter.run.services import (
    NodeEvent,
    NodePhase,
    RunChange,
    RunPhase,
    RunServices,
    set_process_services,
    using_services,
)
from tests.support.definitions import edge, node, workflow
from tests.support.service import RunningService

pytestmark = pytest.mark.usefixtures("engine")

TOKEN = "tok-7c1e-planted"


class ListRecorder:
    """Keeps what it is told, with the tenant of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, RunChange | NodeEvent]] = []

    async def run_changed(self, tenant: str, change: RunChange) -> None:
        self.calls.append((tenant, change))

    async def node_changed(self, tenant: str, event: NodeEvent) -> None:
        self.calls.append((tenant, event))

    def runs(self) -> list[RunChange]:
        return [c for _, c in self.calls if isinstance(c, RunChange)]

    def nodes(self, node_id: str) -> list[NodeEvent]:
        return [e for _, e in self.calls if isinstance(e, NodeEvent) and e.node_id == node_id]


def _definition(service: RunningService) -> dict[str, Any]:
    return workflow(
        [
            node("greet", value="Bearer {{ secrets.token }} for {{ params.who }}"),
            node(
                "fetch",
                "http.request",
                input={"method": "GET", "url": f"{service.url}/flaky/recorder?fail=1"},
                retry={"max_attempts": 2, "delay_seconds": 0},
            ),
            node("never", value=1),
            node(
                "loop",
                "core.map",
                input={
                    "items": [1, 2],
                    "piece": "core.transform",
                    "input": {"value": "{{ item * 10 }}"},
                },
            ),
        ],
        [edge("greet", "fetch"), edge("fetch", "never", when="{{ false }}")],
        parameters={"type": "object", "properties": {"who": {"type": "string"}}},
        output="{{ nodes.greet.output }}",
    )


async def _run(definition: dict[str, Any], **extra: Any) -> RunOutcome:
    state = await call_flow(
        named_flow(definition["id"]),
        run_name="recorded",
        definition=definition,
        parameters={"who": "Ada"},
        tenant="acme",
        **extra,
    )
    outcome = await state.aresult(raise_on_failure=False)
    assert isinstance(outcome, RunOutcome)
    return outcome


async def test_the_recorder_gets_the_history_in_order_redacted(service: RunningService) -> None:
    recorder = ListRecorder()
    services = RunServices(secrets=MappingSecrets({"token": TOKEN}), recorder=recorder)
    with using_services(services):
        outcome = await _run(_definition(service), run_id="run-0001")
    assert outcome.result.state == "completed"
    assert {tenant for tenant, _ in recorder.calls} == {"acme"}
    assert all(c.run_id == "run-0001" for _, c in recorder.calls)
    assert TOKEN not in repr(recorder.calls)

    runs = recorder.runs()
    assert [r.phase for r in runs] == [RunPhase.RUNNING, RunPhase.COMPLETED]
    assert runs[-1].output == "Bearer *** for Ada"
    assert runs[-1].flow_run_id == outcome.result.flow_run_id
    assert recorder.calls[0][1] == runs[0]  # the run starts before any node
    assert recorder.calls[-1][1] == runs[-1]  # and ends after every node

    greet = recorder.nodes("greet")
    assert [(e.kind, e.status) for e in greet] == [
        (NodePhase.STARTED, "running"),
        (NodePhase.FINISHED, "completed"),
    ]
    assert greet[0].input == {"value": "Bearer *** for Ada"}
    assert greet[1].output == "Bearer *** for Ada"
    assert greet[1].started_at is not None
    assert greet[1].finished_at is not None

    fetch = recorder.nodes("fetch")
    assert [(e.kind, e.status, e.attempts) for e in fetch] == [
        (NodePhase.STARTED, "running", 1),
        (NodePhase.ATTEMPT_FAILED, "running", 1),
        (NodePhase.STARTED, "running", 2),
        (NodePhase.FINISHED, "completed", 2),
    ]
    assert fetch[1].error is not None
    assert fetch[1].error["type"] == "HttpStatusError"
    assert fetch[3].error is None

    assert [(e.kind, e.status) for e in recorder.nodes("never")] == [(NodePhase.SKIPPED, "skipped")]
    # Map items are recorded under their labels, after the map node started.
    items = [e for _, e in recorder.calls if isinstance(e, NodeEvent) and "[" in e.node_id]
    assert sorted({e.node_id for e in items}) == ["loop[0]", "loop[1]"]
    assert sorted(e.output for e in items if e.kind is NodePhase.FINISHED) == [10, 20]


async def test_a_failed_run_reports_its_error() -> None:
    recorder = ListRecorder()
    definition = workflow([node("boom", value="{{ secrets.missing }}")])
    with using_services(RunServices(recorder=recorder)):
        outcome = await _run(definition)
    assert outcome.result.state == "failed"
    last = recorder.runs()[-1]
    assert last.phase is RunPhase.FAILED
    assert last.error is not None
    assert "'boom'" in last.error["message"]
    # Without a run_id the run is known by its flow run's id.
    assert last.run_id == outcome.result.flow_run_id
    assert [e.status for e in recorder.nodes("boom")] == ["failed"]


class BrokenRecorder(ListRecorder):
    async def node_changed(self, tenant: str, event: NodeEvent) -> None:
        raise RuntimeError("the database is down")


async def test_a_failing_recorder_never_fails_the_run() -> None:
    recorder = BrokenRecorder()
    definition = workflow([node("a", value=1)], output="{{ nodes.a.output }}")
    with using_services(RunServices(recorder=recorder)):
        outcome = await _run(definition)
    assert outcome.result.state == "completed"
    assert [r.phase for r in recorder.runs()] == [RunPhase.RUNNING, RunPhase.COMPLETED]


@pytest.fixture
def process_recorder() -> Iterator[ListRecorder]:
    recorder = ListRecorder()
    set_process_services(RunServices(recorder=recorder))
    try:
        yield recorder
    finally:
        set_process_services(None)


async def test_process_services_reach_runs_started_without_a_context(
    process_recorder: ListRecorder,
) -> None:
    definition = workflow([node("a", value=1)])
    outcome = await _run(definition, run_id="run-process")
    assert outcome.result.state == "completed"
    assert [r.phase for r in process_recorder.runs()] == [RunPhase.RUNNING, RunPhase.COMPLETED]
    # A caller's own services still win over the process's.
    mine = ListRecorder()
    with using_services(RunServices(recorder=mine)):
        await _run(definition, run_id="run-mine")
    assert {c.run_id for _, c in mine.calls} == {"run-mine"}
    assert "run-mine" not in {c.run_id for _, c in process_recorder.calls}


class SwitchControl:
    """Asks for a pause until `resume()`; counts how often the engine asked."""

    def __init__(self) -> None:
        self.paused = True
        self.asked = 0

    async def pause_requested(self, tenant: str, run_id: str) -> bool:
        self.asked += 1
        return self.paused


async def test_a_pause_request_holds_the_next_node_until_resumed() -> None:
    import asyncio

    from prefect import get_client

    recorder, control = ListRecorder(), SwitchControl()
    definition = workflow(
        [node("first", value=1), node("second", value="{{ nodes.first.output + 1 }}")],
        [edge("first", "second")],
        output="{{ nodes.second.output }}",
    )

    async def resume_later() -> float:
        await asyncio.sleep(1.5)
        control.paused = False
        return asyncio.get_running_loop().time()

    with using_services(RunServices(recorder=recorder, control=control)):
        resumer = asyncio.ensure_future(resume_later())
        outcome = await _run(definition, run_id="run-paused")
        resumed_at = await resumer
    assert outcome.result.state == "completed"
    assert outcome.raw_output == 2
    phases = [r.phase for r in recorder.runs()]
    assert phases == [RunPhase.RUNNING, RunPhase.PAUSED, RunPhase.RUNNING, RunPhase.COMPLETED]
    # No node started while the run was paused: the first start follows the resume.
    first_start = recorder.nodes("first")[0]
    paused_at = recorder.runs()[1].at
    assert first_start.at > recorder.runs()[2].at > paused_at
    assert control.asked >= 3  # asked at each node, and while paused
    assert resumed_at > 0
    async with get_client() as client:
        history = await client.read_flow_run_states(UUID(outcome.result.flow_run_id))
    names = [state.type.value for state in history]
    assert "PAUSED" in names
    assert names[-1] == "COMPLETED"
