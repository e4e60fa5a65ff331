"""`deployments.runner`: the warm worker claims and executes a pool's runs, on a real server.

One runner serves the module (started once); the tests that need more start their own. The
module runner polls only every minute, so what it does sooner it learned from Prefect's events.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from deployments.runner import (
    ZOMBIE_AUTOMATION_NAME,
    WarmRunner,
    WorkerSettings,
    ensure_zombie_automation,
)
from deployments.sync import WorkflowDeployment, sync_workflow
from tests.deployments.conftest import chain_definition, unique
from tests.support.cli import ROOT
from tests.support.service import RunningService

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

POLL_SECONDS = 60.0
SETTINGS = WorkerSettings(poll_seconds=POLL_SECONDS, grace_seconds=1.0)


@pytest.fixture(scope="module")
async def runner(work_pool: str) -> AsyncIterator[WarmRunner]:
    async with WarmRunner(work_pool=work_pool, concurrency=4, settings=SETTINGS) as warm:
        assert warm.events_connected
        yield warm


async def deploy(client: PrefectClient, pool: str, definition: dict[str, Any]) -> UUID:
    spec = WorkflowDeployment(unique("acme"), definition["id"], 1, definition, True)
    return await sync_workflow(client, spec, work_pool=pool)


async def until(
    check: Callable[[], Awaitable[Any]], *, within: float = 60.0, every: float = 0.1
) -> Any:
    """Wait for `check()` to return something truthy; return it."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(every)


async def finished(client: PrefectClient, flow_run_id: UUID, within: float = 60.0) -> FlowRun:
    async def final() -> FlowRun | None:
        flow_run = await client.read_flow_run(flow_run_id)
        return flow_run if flow_run.state is not None and flow_run.state.is_final() else None

    result: FlowRun = await until(final, within=within)
    return result


async def task_runs(client: PrefectClient, flow_run_id: UUID, count: int) -> list[Any]:
    """The run's task runs, once `count` of them arrived (they come through events)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def enough() -> list[Any] | None:
        found = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        return found if len(found) >= count else None

    result: list[Any] = await until(enough, within=30, every=0.3)
    return result


async def test_a_deployment_run_is_executed_with_its_task_runs_and_heartbeat(
    runner: WarmRunner, client: PrefectClient, work_pool: str
) -> None:
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

    workflow_id = unique("chain")
    deployment_id = await deploy(client, work_pool, chain_definition(workflow_id))

    created = await client.create_flow_run_from_deployment(deployment_id)
    flow_run = await finished(client, created.id)

    assert flow_run.state is not None
    assert flow_run.state.name == "Completed", flow_run.state.message
    assert flow_run.name == f"Chain {workflow_id}"  # renamed after the workflow
    assert f"workflow:{workflow_id}" in flow_run.tags
    assert flow_run.id in runner.stats.claimed
    names = sorted(t.name for t in await task_runs(client, flow_run.id, 3))
    assert names == ["first", "second", "third"]
    timeline = next(t for t in runner.timelines if t.flow_run_id == flow_run.id)
    assert timeline.found_by == "event"  # long before the next poll

    async def heartbeat() -> bool:
        page = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run.id}"]),
            ),
            limit=10,
        )
        return bool(page.events)

    assert await until(heartbeat, within=30, every=0.5)


async def test_two_runners_on_one_pool_run_each_of_20_runs_exactly_once(
    runner: WarmRunner, client: PrefectClient, work_pool: str, service: RunningService
) -> None:
    workflow_id = unique("hit")
    definition = {
        "format": 1,
        "id": workflow_id,
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}},
        "nodes": [
            {
                "id": "hit",
                "piece": "http.request",
                "input": {"method": "GET", "url": service.url + "/flaky/{{ params.key }}?fail=0"},
            }
        ],
    }
    deployment_id = await deploy(client, work_pool, definition)
    keys = [f"{workflow_id}-{n}" for n in range(20)]
    async with WarmRunner(work_pool=work_pool, concurrency=2, settings=SETTINGS) as second:
        created = await asyncio.gather(
            *(
                client.create_flow_run_from_deployment(
                    deployment_id, parameters={"parameters": {"key": key}}
                )
                for key in keys
            )
        )
        runs = await asyncio.gather(*(finished(client, run.id, within=120) for run in created))

    assert [run.state.name for run in runs if run.state] == ["Completed"] * 20
    assert {key: service.state.calls[key] for key in keys} == dict.fromkeys(keys, 1)
    ids = {run.id for run in created}
    by_first, by_second = ids & set(runner.stats.claimed), ids & set(second.stats.claimed)
    assert by_first | by_second == ids
    assert not by_first & by_second
    assert by_first, "the module's runner ran none"
    assert by_second, "the second runner ran none"


async def test_a_run_that_ended_meanwhile_is_not_claimed_again(
    runner: WarmRunner, client: PrefectClient, work_pool: str
) -> None:
    """Prefect accepts Pending from a finished run whose result is not persisted (a re-run):
    a runner holding a stale view of a run another worker finished must not run it again."""
    deployment_id = await deploy(client, work_pool, chain_definition(unique("stale")))
    created = await client.create_flow_run_from_deployment(deployment_id)
    stale_view = await client.read_flow_run(created.id)  # Scheduled, as a candidate saw it
    done = await finished(client, created.id)
    assert done.state is not None
    assert done.state.name == "Completed"

    assert await runner._claim(stale_view) is False  # what a stale candidate would attempt

    again = await client.read_flow_run(created.id)
    assert again.state is not None
    assert again.state.name == "Completed"  # put back, not left Pending
    assert again.run_count == 1


async def test_a_run_scheduled_ahead_starts_when_due_not_before(
    runner: WarmRunner, client: PrefectClient, work_pool: str
) -> None:
    from prefect.states import Scheduled

    deployment_id = await deploy(client, work_pool, chain_definition(unique("later")))
    due = datetime.now(UTC) + timedelta(seconds=2)

    created = await client.create_flow_run_from_deployment(
        deployment_id, state=Scheduled(scheduled_time=due)
    )
    flow_run = await finished(client, created.id)

    assert flow_run.state is not None
    assert flow_run.state.name == "Completed"
    assert flow_run.start_time is not None
    assert flow_run.start_time >= due  # not before it was due
    # ... and when due: the timer, not the next poll (a minute away), started it.
    assert flow_run.start_time.timestamp() - due.timestamp() < POLL_SECONDS


async def test_runs_created_before_the_worker_started_are_claimed_by_its_poll(
    client: PrefectClient,
) -> None:
    """The Scheduled events of these runs were sent before the runner listened: only its poll
    can find them (Prefect's pool endpoint answers runs without `state`, only `state_type`)."""
    from deployments.sync import ensure_work_pool

    pool = unique("poll-pool")
    await ensure_work_pool(client, pool)
    deployment_id = await deploy(client, pool, chain_definition(unique("early")))
    created = [await client.create_flow_run_from_deployment(deployment_id) for _ in range(3)]
    async with WarmRunner(work_pool=pool, concurrency=2, settings=SETTINGS):
        ended = [await finished(client, flow_run.id) for flow_run in created]
    assert [run.state.name if run.state else None for run in ended] == ["Completed"] * 3
    for flow_run in created:  # claimed by the first poll, not once Prefect called them Late
        names = [state.name for state in await client.read_flow_run_states(flow_run.id)]
        assert "Late" not in names, names


async def test_cancelling_in_prefect_stops_a_running_delay_at_once(
    runner: WarmRunner, client: PrefectClient, work_pool: str
) -> None:
    from prefect.states import Cancelling

    delay = 60
    definition = {
        "format": 1,
        "id": unique("sleepy"),
        "nodes": [{"id": "wait", "piece": "core.delay", "input": {"seconds": delay}}],
    }
    deployment_id = await deploy(client, work_pool, definition)
    created = await client.create_flow_run_from_deployment(deployment_id)
    await task_runs(client, created.id, 1)  # the delay node has started

    await client.set_flow_run_state(created.id, Cancelling())  # what the UI's Cancel does
    flow_run = await finished(client, created.id)

    assert flow_run.state is not None
    assert flow_run.state.type.value == "CANCELLED", flow_run.state
    (wait,) = await task_runs(client, created.id, 1)

    async def node_cancelled() -> bool:
        (node,) = await client.read_task_runs(
            task_run_filter=_task_run_filter(wait.id)  # its final state arrives by event
        )
        return node.state is not None and node.state.type.value == "CANCELLED"

    assert await until(node_cancelled, within=30, every=0.3)
    assert flow_run.start_time is not None
    assert flow_run.end_time is not None
    assert (flow_run.end_time - flow_run.start_time).total_seconds() < delay / 4


def _task_run_filter(task_run_id: UUID) -> Any:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId

    return TaskRunFilter(id=TaskRunFilterId(any_=[task_run_id]))


async def test_stop_claims_nothing_more_and_cancels_runs_that_outlast_the_grace(
    client: PrefectClient,
) -> None:
    from deployments.sync import ensure_work_pool

    pool = unique("stop-pool")  # the module's runner must not take these runs
    await ensure_work_pool(client, pool)
    definition = {
        "format": 1,
        "id": unique("long"),
        "nodes": [{"id": "wait", "piece": "core.delay", "input": {"seconds": 60}}],
    }
    deployment_id = await deploy(client, pool, definition)
    stopping = WarmRunner(work_pool=pool, concurrency=2, settings=SETTINGS)
    await stopping.start()
    try:
        created = await client.create_flow_run_from_deployment(deployment_id)
        await task_runs(client, created.id, 1)
    finally:
        await stopping.stop(grace=0.5)
    flow_run = await client.read_flow_run(created.id)
    assert flow_run.state is not None
    assert flow_run.state.type.value == "CANCELLED", flow_run.state

    after = await client.create_flow_run_from_deployment(deployment_id)
    await asyncio.sleep(1.0)  # a running worker would have claimed it by now
    state = (await client.read_flow_run(after.id)).state
    assert state is not None
    assert state.is_scheduled()
    await client.delete_flow_run(after.id)


async def test_the_zombie_automation_exists_once_after_two_ensure_calls(
    client: PrefectClient, runner: WarmRunner
) -> None:
    first = await ensure_zombie_automation(client)  # the runner's start made it already
    second = await ensure_zombie_automation(client)

    found = await client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
    assert [a.id for a in found] == [first] == [second]
    (automation,) = found
    trigger: Any = automation.trigger
    assert trigger.after == {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}
    assert trigger.posture == "Proactive"
    assert trigger.within == timedelta(seconds=SETTINGS.zombie_after_seconds)
    assert automation.actions[0].type == "change-flow-run-state"


def test_the_worker_command_runs_runs_and_stops_cleanly_on_sigterm(prefect_server: str) -> None:
    """The `worker` command in a process of its own: ready line, a run executed, SIGTERM →
    exit code 0 and no traceback."""
    from prefect import get_client

    pool = unique("cli-pool")  # the module's runner must not take this run
    script = (
        "import argparse, sys\n"
        "from deployments.runner import add_commands\n"
        "parser = argparse.ArgumentParser(prog='altlas-flows')\n"
        "add_commands(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.handler(args))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, "worker", "--pool", pool, "--concurrency", "2"],
        cwd=ROOT,
        env={**os.environ, "ALTLAS_WORKER_POLL_SECONDS": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _first_line(worker, timeout=120)
        assert f"runs work pool {pool!r}" in ready, ready

        async def one_run() -> FlowRun:
            async with get_client() as client:
                deployment_id = await deploy(client, pool, chain_definition(unique("cli")))
                created = await client.create_flow_run_from_deployment(deployment_id)
                return await finished(client, created.id)

        flow_run = asyncio.run(one_run())
        assert flow_run.state is not None
        assert flow_run.state.name == "Completed"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    errors = worker.stderr.read() if worker.stderr else ""
    assert "Traceback" not in errors, errors


def _first_line(process: subprocess.Popen[str], *, timeout: float) -> str:
    """The first line the process prints, or what it wrote to stderr when it exits first."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output within {timeout:g}s")
    line = process.stdout.readline()
    if not line and process.stderr is not None:
        return process.stderr.read()
    return line
