"""What a user sees in the Prefect UI, read back through the Prefect client."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

import pytest

from interpreter import arun_workflow
from interpreter.run.background import drain
from tests.support.definitions import edge, node, workflow

pytestmark = pytest.mark.usefixtures("engine")


async def test_flow_run_task_runs_tags_skips_and_summary_artifact() -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    result = await arun_workflow(
        workflow(
            [
                node("fetch", value={"n": 1}),
                node("taken", value="yes"),
                node("not_taken", value="no"),
                node("downstream_of_skip", value="no"),
                node("fails", value="{{ params.nope }}", on_error="continue"),
            ],
            [
                edge("fetch", "taken", when="{{ output.n == 1 }}"),
                edge("fetch", "not_taken", when="{{ output.n == 2 }}"),
                edge("not_taken", "downstream_of_skip"),
            ],
            id="presentation",
            name="Presentation check",
        ),
        tenant="acme",
        version="v7",
    )
    assert result.state == "completed"
    expected = {"fetch", "taken", "not_taken", "downstream_of_skip", "fails"}
    assert await asyncio.to_thread(drain, 30)  # the summary artifact is delivered in background
    async with get_client() as client:
        flow_run = await client.read_flow_run(UUID(result.flow_run_id))
        flow = await client.read_flow(flow_run.flow_id)
        # Task runs reach the server through Prefect's event stream: wait until all arrived.
        for _ in range(100):
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
            if {t.name for t in task_runs} == expected and all(
                t.state is not None and t.state.is_final() for t in task_runs
            ):
                break
            await asyncio.sleep(0.1)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
        beginning = "Beginning flow run 'Presentation check' for flow 'presentation'"
        for _ in range(100):  # logs arrive in batches, every couple of seconds
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
            )
            if any(log.message == beginning for log in logs):
                break
            await asyncio.sleep(0.1)

    assert flow.name == "presentation"
    assert flow_run.name == "Presentation check"
    # The run is created under the workflow's name: Prefect's own lines name it from the first.
    assert any(log.message == beginning for log in logs), [log.message for log in logs]
    assert set(flow_run.tags) == {"tenant:acme", "workflow:presentation", "version:v7"}
    assert flow_run.state is not None
    assert flow_run.state.is_completed()

    by_name = {task_run.name: task_run for task_run in task_runs}
    assert set(by_name) == expected
    assert all(task_run.tags == [] for task_run in task_runs)  # tags live on the flow run only
    for skipped in ("not_taken", "downstream_of_skip"):
        state = by_name[skipped].state
        assert state is not None
        assert (state.type.value, state.name) == ("COMPLETED", "Skipped")
    assert by_name["taken"].state.name == "Completed"  # type: ignore[union-attr]
    # Each task run lists its upstream task run, so the Prefect UI draws the graph's edges.
    upstream = {link.id for link in by_name["taken"].task_inputs.get("upstream", [])}
    assert upstream == {by_name["fetch"].id}
    assert by_name["fetch"].task_inputs.get("upstream", []) == []
    skipped_upstream = {link.id for link in by_name["not_taken"].task_inputs.get("upstream", [])}
    assert skipped_upstream == {by_name["fetch"].id}  # a skip is drawn from its cause
    assert by_name["fails"].state.type.value == "FAILED"  # type: ignore[union-attr]

    assert len(artifacts) == 1
    artifact = artifacts[0]
    assert artifact.type == "table"
    rows = artifact.data if isinstance(artifact.data, list) else json.loads(str(artifact.data))
    by_node = {row["node"]: row for row in rows}
    assert set(by_node) == {"fetch", "taken", "not_taken", "downstream_of_skip", "fails"}
    assert by_node["not_taken"]["status"] == "skipped"
    assert by_node["fails"]["attempts"] == 1
    assert by_node["taken"]["duration_s"] is not None


async def test_failed_and_timed_out_runs_show_as_failed_states() -> None:
    from prefect import get_client

    failed = await arun_workflow(workflow([node("x", value="{{ params.nope }}")]))
    timed_out = await arun_workflow(
        workflow([node("slow", "core.delay", input={"seconds": 20})], timeout_seconds=0.5)
    )
    async with get_client() as client:
        failed_run = await client.read_flow_run(UUID(failed.flow_run_id))
        timed_out_run = await client.read_flow_run(UUID(timed_out.flow_run_id))
    assert failed_run.state is not None
    assert failed_run.state.type.value == "FAILED"
    assert timed_out_run.state is not None
    assert (timed_out_run.state.type.value, timed_out_run.state.name) == ("FAILED", "TimedOut")
