"""The service on Prefect's distributed setup, as real processes on this machine.

Prefect on PostgreSQL with Redis messaging: two API replicas, its background services in a
process of their own; two facades (`altlas-flows api`, one per replica) and two workers
(`altlas-flows worker`, one per replica) on one work pool; the store on PostgreSQL
(`tests/support/topology.py` starts it all; docs/scaling.md describes it).

- 100 deliveries spread over both facades make exactly 100 runs, each executed exactly once
  (one Running state in its Prefect history, one worker's log names it once), by both workers.
- A worker killed with SIGKILL mid-run: its runs become Crashed in Prefect and `crashed` in the
  store within the crash-detection bound, never run again; the other worker keeps running the
  rest. A facade killed in the middle of a burst of deliveries to both facades and restarted:
  every delivery answered 202 has exactly one run, which completes; nothing runs twice.

The figures each test measured are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.distributed.conftest import HEARTBEAT_SECONDS, ZOMBIE_AFTER_SECONDS
from tests.support.topology import Topology

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import State

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HOOK_SECRET = "hook_secret"
"""The tenant secret the workflows' webhook trigger is verified with."""
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "crashed"}
SLOW_SECONDS = 8
"""How long a run of the slow workflow waits in its middle node (a worker is killed meanwhile)."""
PROACTIVE_SECONDS = 5
"""How often Prefect's triggers service evaluates proactive automations (the zombie one)."""
FOLLOW_SECONDS = 5
"""How often a facade's follower copies Prefect's endings into the store (`api.follower`)."""
CRASH_BOUND_SECONDS = ZOMBIE_AFTER_SECONDS + PROACTIVE_SECONDS + 10
"""A killed worker's runs are Crashed in Prefect by then (after the kill): the automation fires
`ZOMBIE_AFTER_SECONDS` after a run's last heartbeat (sent before the kill), on a proactive
evaluation; plus 10 s for the event pipeline on a loaded 2-core machine."""
IN_FLIGHT = 16
"""Deliveries in flight at once."""


def workflow(workflow_id: str, *, delay: float = 0) -> dict[str, Any]:
    """Three core nodes in a row, started by a signed webhook; with `delay`, the middle node
    waits that long (`core.delay`)."""
    middle: dict[str, Any] = (
        {"id": "wait", "piece": "core.delay", "input": {"seconds": delay}}
        if delay
        else {"id": "wait", "piece": "core.transform", "input": {"value": "{{ params.n * 2 }}"}}
    )
    return {
        "format": 1,
        "id": workflow_id,
        "name": f"Topology {workflow_id}",
        "parameters": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
        "triggers": [
            {
                "id": "hook",
                "type": "webhook",
                "verify": {"scheme": "hmac-sha256", "secret": HOOK_SECRET},
                "parameters": {"n": "{{ trigger.payload.n }}"},
            }
        ],
        "nodes": [
            {"id": "take", "piece": "core.transform", "input": {"value": "{{ params.n }}"}},
            middle,
            {
                "id": "give",
                "piece": "core.transform",
                "input": {"value": {"n": "{{ nodes.take.output }}", "double": "{{ params.n * 2 }}"}},
            },
        ],
        "edges": [{"from": "take", "to": "wait"}, {"from": "wait", "to": "give"}],
        "output": "{{ nodes.give.output }}",
    }


@dataclass
class Tenant:
    id: str
    key: str
    secret_value: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def tenant(topology: Topology) -> Tenant:
    """A tenant made with the operator key, with the webhook's signing secret."""
    facade = topology.facade_urls[0]
    tenant_id = f"topo-{uuid.uuid4().hex[:8]}"
    operator = {"Authorization": f"Bearer {topology.settings.admin_key}"}
    created = httpx.post(f"{facade}/v1/tenants", json={"id": tenant_id}, headers=operator)
    assert created.status_code == 201, created.text
    made = Tenant(tenant_id, created.json()["api_key"], f"whsec-{uuid.uuid4().hex}")
    stored = httpx.put(
        f"{facade}/v1/secrets/{HOOK_SECRET}",
        json={"value": made.secret_value},
        headers=made.headers,
    )
    assert stored.status_code == 204, stored.text
    return made


def store_workflow(topology: Topology, tenant: Tenant, definition: dict[str, Any]) -> str:
    """Create the workflow (through the second facade: the first made the tenant)."""
    created = httpx.post(
        f"{topology.facade_urls[-1]}/v1/workflows",
        json=definition,
        headers=tenant.headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return str(definition["id"])


async def deliver(
    client: httpx.AsyncClient, facade: str, tenant: Tenant, workflow_id: str, n: int
) -> str | None:
    """Deliver one event `{"n": n}` for the workflow to `facade`; the id of the run it was
    accepted as (202), or None when no answer came (the facade is down or died meanwhile).

    The route: startRun (`POST /v1/workflows/{id}/runs`, 202 `Run`) until the webhook route
    (`POST /v1/hooks/{tenant}/{workflow}/{trigger}`, signed) exists.
    """
    try:
        answer = await client.post(
            f"{facade}/v1/workflows/{workflow_id}/runs",
            json={"parameters": {"n": n}},
            headers=tenant.headers,
        )
    except httpx.TransportError:
        return None
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["id"]
    return run_id


async def deliver_all(
    client: httpx.AsyncClient,
    facades: Sequence[str],
    tenant: Tenant,
    workflow_id: str,
    numbers: Sequence[int],
) -> list[str | None]:
    """Deliver `{"n": n}` for each number, alternately to each facade, `IN_FLIGHT` at once."""
    places = asyncio.Semaphore(IN_FLIGHT)

    async def one(position: int, n: int) -> str | None:
        async with places:
            return await deliver(client, facades[position % len(facades)], tenant, workflow_id, n)

    return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers))))


async def runs_of(
    client: httpx.AsyncClient, facade: str, tenant: Tenant, workflow_id: str
) -> list[dict[str, Any]]:
    """Every run of the workflow in the store (listRuns, page by page)."""
    runs: list[dict[str, Any]] = []
    while True:
        page = await client.get(
            f"{facade}/v1/runs",
            params={"workflow_id": workflow_id, "limit": 200, "offset": len(runs)},
            headers=tenant.headers,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        runs.extend(body["data"])
        if len(runs) >= body["count"] or not body["data"]:
            return runs


async def wait_until_finished(
    client: httpx.AsyncClient,
    facade: str,
    tenant: Tenant,
    workflow_id: str,
    *,
    at_least: int,
    timeout: float,
) -> list[dict[str, Any]]:
    """The workflow's runs once there are `at_least` and every one has finished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = await runs_of(client, facade, tenant, workflow_id)
        if len(runs) >= at_least and all(run["state"] in TERMINAL for run in runs):
            return runs
        if time.monotonic() > deadline:
            states = Counter(run["state"] for run in runs)
            pytest.fail(f"{workflow_id}: {len(runs)} runs, not all finished: {dict(states)}")
        await asyncio.sleep(0.5)


@asynccontextmanager
async def prefect_client(api_url: str) -> AsyncIterator[PrefectClient]:
    """A Prefect client of one API replica."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api_url) as client:
        yield client


async def histories(client: PrefectClient, flow_run_ids: Sequence[str]) -> dict[str, list[State]]:
    """Each flow run's state history, oldest first."""
    from uuid import UUID

    places = asyncio.Semaphore(8)

    async def one(flow_run_id: str) -> tuple[str, list[State]]:
        async with places:
            states = await client.read_flow_run_states(UUID(flow_run_id))
        return flow_run_id, sorted(states, key=lambda state: state.timestamp)

    return dict(await asyncio.gather(*(one(i) for i in flow_run_ids)))


async def current_states(client: PrefectClient, flow_run_ids: Sequence[str]) -> dict[str, State]:
    """Each flow run's current state (one request)."""
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids])),
        limit=len(flow_run_ids),
    )
    return {str(run.id): run.state for run in runs if run.state is not None}


def running_states(history: Sequence[State]) -> int:
    return sum(1 for state in history if state.type.value == "RUNNING")


def executions(topology: Topology) -> dict[str, list[int]]:
    """Which worker began each flow run, as the workers' logs say (a run begun twice, by one
    worker or by both, is listed twice)."""
    began: dict[str, list[int]] = {}
    for index in range(len(topology.workers)):
        for flow_run_id in topology.flow_runs_of_worker(index):
            began.setdefault(flow_run_id, []).append(index)
    return began


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def report(title: str, figures: dict[str, Any]) -> None:
    sys.stdout.write(
        f"\n{title}: " + ", ".join(f"{name} {value}" for name, value in figures.items()) + "\n"
    )


async def test_100_deliveries_over_two_facades_make_100_runs_each_run_once_by_both_workers(
    topology: Topology, tenant: Tenant
) -> None:
    workflow_id = store_workflow(topology, tenant, workflow("fanout"))
    facades = topology.facade_urls
    async with httpx.AsyncClient(timeout=60) as client:
        began = time.monotonic()
        accepted = await deliver_all(client, facades, tenant, workflow_id, range(100))
        accepting = time.monotonic() - began
        assert None not in accepted
        assert len(set(accepted)) == 100
        runs = await wait_until_finished(
            client, facades[0], tenant, workflow_id, at_least=100, timeout=120
        )
        done = time.monotonic() - began
    # Exactly the 100 accepted runs, each with its own delivery's parameters and result.
    assert len(runs) == 100
    assert {run["id"] for run in runs} == set(accepted)
    assert Counter(run["state"] for run in runs) == {"completed": 100}
    assert sorted(run["parameters"]["n"] for run in runs) == list(range(100))
    for run in runs:
        n = run["parameters"]["n"]
        assert run["output"] == {"n": n, "double": 2 * n}, run
    flow_run_ids = [run["flow_run_id"] for run in runs]
    assert len(set(flow_run_ids)) == 100 and None not in flow_run_ids

    # Prefect: each flow run was Running exactly once, and Completed.
    async with prefect_client(topology.prefect_api_urls[1]) as prefect:
        history = await histories(prefect, flow_run_ids)
    for flow_run_id, states in history.items():
        assert running_states(states) == 1, (flow_run_id, [s.name for s in states])
        assert states[-1].is_completed(), (flow_run_id, [s.name for s in states])

    # The workers: each run begun once, by one of them; both took runs.
    began_by = executions(topology)
    assert {i: began_by.get(i) for i in flow_run_ids if len(began_by.get(i, [])) != 1} == {}
    per_worker = Counter(began_by[i][0] for i in flow_run_ids)
    assert set(per_worker) == {0, 1}, per_worker

    latencies = [seconds_between(run["created_at"], run["finished_at"]) for run in runs]
    span = seconds_between(
        min(run["created_at"] for run in runs), max(run["finished_at"] for run in runs)
    )
    report(
        "100 deliveries",
        {
            "accepted in": f"{accepting:.2f}s ({100 / accepting:.0f}/s)",
            "all finished after": f"{done:.1f}s",
            "runs/s (first accepted to last finished)": f"{100 / span:.1f}",
            "accepted-to-finished p50": f"{statistics.median(latencies):.2f}s",
            "max": f"{max(latencies):.2f}s",
            "runs per worker": dict(sorted(per_worker.items())),
        },
    )
