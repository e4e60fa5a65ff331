"""The service on Prefect's distributed setup, as real processes on this machine.

Prefect on PostgreSQL with Redis messaging: two API replicas, its background services in a
process of their own; two facades (`altlas-flows api`, one per replica) and two workers
(`altlas-flows worker`, one per replica) on one work pool; the store on PostgreSQL
(`tests/support/topology.py` starts it all; docs/scaling.md describes it).

- 100 signed webhook deliveries spread over both facades make exactly 100 runs, each executed
  exactly once (one Running state in its Prefect history, one worker's log names it once), by
  both workers.
- A worker killed with SIGKILL with runs in their middle and one it has only just begun: each of
  them becomes Crashed in Prefect within the crash-detection bound and `crashed` in the store,
  and never runs again; the other worker runs everything else. A facade killed (SIGKILL) in the
  middle of a burst of deliveries to both facades, and restarted: the sender resends what got no
  answer, with the same delivery id, to the other facade; every delivery has exactly one run,
  which completes; nothing runs twice.

The figures each test measured are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

from api.follower import FOLLOW_SECONDS
from tests.distributed.conftest import ZOMBIE_AFTER_SECONDS
from tests.support.topology import Topology

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import State

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

T = TypeVar("T")

HOOK_SECRET = "hook_secret"
"""The tenant secret the workflows' webhook trigger is verified with."""
HOOK_TRIGGER = "hook"
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "crashed"}
SLOW_SECONDS = 8
"""How long a run of the slow workflow waits in its middle node (a worker is killed meanwhile)."""
PROACTIVE_SECONDS = 5
"""How often Prefect's triggers service evaluates proactive automations (the zombie one)."""
EVENT_LAG_SECONDS = 20
"""How late Prefect's triggers service may see a heartbeat event on a loaded 2-core machine
(measured: up to ~10 s while a burst of runs floods the event pipeline)."""
CRASH_BOUND_SECONDS = ZOMBIE_AFTER_SECONDS + PROACTIVE_SECONDS + EVENT_LAG_SECONDS
"""A killed worker's runs are Crashed in Prefect by then (after the kill): the automation fires
`ZOMBIE_AFTER_SECONDS` after a run's last heartbeat (sent before the kill) has been seen, on a
proactive evaluation."""
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
                "id": HOOK_TRIGGER,
                "type": "webhook",
                "verify": {"scheme": "hmac-sha256", "secret": HOOK_SECRET},
                "dedupe_key": "{{ trigger.headers['x-delivery-id'] }}",
                "parameters": {"n": "{{ trigger.payload.n }}"},
            }
        ],
        "nodes": [
            {"id": "take", "piece": "core.transform", "input": {"value": "{{ params.n }}"}},
            middle,
            {
                "id": "give",
                "piece": "core.transform",
                "input": {
                    "value": {"n": "{{ nodes.take.output }}", "double": "{{ params.n * 2 }}"}
                },
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
    client: httpx.AsyncClient,
    facade: str,
    tenant: Tenant,
    workflow_id: str,
    n: int,
    *,
    delivery_id: str,
) -> tuple[str, bool] | None:
    """Deliver the event `{"n": n}` to the workflow's webhook at `facade`, signed with the
    tenant's secret (hex HMAC-SHA256 of the raw body in `X-Signature`), as the sender's delivery
    `delivery_id` (`X-Delivery-Id`, the trigger's `dedupe_key`). The run it was accepted as,
    and whether the answer said it was a duplicate (200 for a delivery id seen before, with the
    first delivery's run; else 202); None when no answer came (the facade is down, or died
    meanwhile)."""
    body = json.dumps({"n": n}).encode()
    signature = hmac.new(tenant.secret_value.encode(), body, hashlib.sha256).hexdigest()
    try:
        answer = await client.post(
            f"{facade}/v1/hooks/{tenant.id}/{workflow_id}/{HOOK_TRIGGER}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Signature": signature,
                "X-Delivery-Id": delivery_id,
            },
        )
    except httpx.TransportError:
        return None
    assert answer.status_code in (200, 202), answer.text
    duplicate = answer.status_code == 200
    assert answer.json().get("duplicate", False) is duplicate, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id, duplicate


@dataclass
class Delivery:
    """One event a sender delivers, and what became of it."""

    n: int
    id: str
    run_id: str = ""
    """The run it was accepted as (empty until a facade accepted it)."""
    duplicate: bool = False
    """Accepted as a duplicate: an earlier attempt had been recorded, its answer was lost."""
    attempts: int = 0
    """How often it was sent (more than once when a facade gave no answer)."""


async def deliver_all(
    client: httpx.AsyncClient,
    facades: Sequence[str],
    tenant: Tenant,
    workflow_id: str,
    numbers: Sequence[int],
    *,
    answered: asyncio.Queue[Delivery] | None = None,
) -> list[Delivery]:
    """Deliver `{"n": n}` for each number, alternately to each facade, `IN_FLIGHT` at once,
    as a sender that retries does: a delivery that gets no answer is sent again, with the same
    delivery id, to the next facade (until one answers, for up to a minute). Each delivery is
    put on `answered` when it was answered."""
    places = asyncio.Semaphore(IN_FLIGHT)

    async def one(position: int, n: int) -> Delivery:
        delivery = Delivery(n, f"delivery-{uuid.uuid4().hex}")
        deadline = time.monotonic() + 60
        async with places:
            facade = position % len(facades)
            while not delivery.run_id:
                delivery.attempts += 1
                answer = await deliver(
                    client, facades[facade], tenant, workflow_id, n, delivery_id=delivery.id
                )
                if answer is not None:
                    delivery.run_id, delivery.duplicate = answer
                    break
                assert time.monotonic() < deadline, f"no facade answered delivery {n}"
                facade = (facade + 1) % len(facades)
                await asyncio.sleep(0.05)
        if answered is not None:
            answered.put_nowait(delivery)
        return delivery

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
    within: float,
) -> list[dict[str, Any]]:
    """The workflow's runs once there are `at_least` and every one has finished (within
    `within` seconds)."""
    deadline = time.monotonic() + within
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


async def final_in_prefect(
    client: PrefectClient, flow_run_ids: Sequence[str], *, within: float = 30
) -> dict[str, State]:
    """Each flow run's state once all are final. (The store may say `completed` a moment before
    Prefect does: the engine records the run's end, then reports its final state.)"""

    last: dict[str, State] = {}

    async def final() -> dict[str, State] | None:
        last.update(await current_states(client, flow_run_ids))
        return last if all(state.is_final() for state in last.values()) else None

    try:
        return await wait_for(final, within=within, what="the flow runs final in Prefect")
    except BaseException:
        stuck = {run: state.name for run, state in last.items() if not state.is_final()}
        print(f"flow runs not final after {within:g}s: {stuck}")
        raise


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


def expected_output(run: dict[str, Any]) -> dict[str, int]:
    """What a run of `workflow(...)` returns for its parameters."""
    n: int = run["parameters"]["n"]
    return {"n": n, "double": 2 * n}


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
    cpu_before = topology.cpu_seconds()
    async with httpx.AsyncClient(timeout=60) as client:
        began = time.monotonic()
        deliveries = await deliver_all(client, facades, tenant, workflow_id, range(100))
        accepting = time.monotonic() - began
        assert all(delivery.attempts == 1 for delivery in deliveries)  # both facades answer
        assert not any(delivery.duplicate for delivery in deliveries)
        accepted = {delivery.run_id for delivery in deliveries}
        assert len(accepted) == 100
        runs = await wait_until_finished(
            client, facades[0], tenant, workflow_id, at_least=100, within=120
        )
        done = time.monotonic() - began
    cpu_after = topology.cpu_seconds()
    # Exactly the 100 accepted runs, each with its own delivery's parameters and result.
    assert len(runs) == 100
    assert {run["id"] for run in runs} == accepted
    assert all(run["trigger"] == {"type": "webhook", "id": HOOK_TRIGGER} for run in runs)
    assert Counter(run["state"] for run in runs) == {"completed": 100}
    assert sorted(run["parameters"]["n"] for run in runs) == list(range(100))
    for run in runs:
        assert run["output"] == expected_output(run), run
    flow_run_ids = [run["flow_run_id"] for run in runs]
    assert None not in flow_run_ids
    assert len(set(flow_run_ids)) == 100

    # Prefect: each flow run was Running exactly once, and Completed.
    async with prefect_client(topology.prefect_api_urls[1]) as prefect:
        await final_in_prefect(prefect, flow_run_ids)
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
            "CPU ms per run": {
                name: round(1000 * (cpu_after[name] - cpu_before[name]) / 100) for name in cpu_after
            },
        },
    )


async def wait_for(
    check: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.5
) -> T:
    """The first result of `check` that is not None, polled `every` seconds for `within`
    seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what}")
        await asyncio.sleep(every)


async def test_a_killed_worker_and_a_killed_facade_lose_no_delivery_and_run_nothing_twice(
    topology: Topology, tenant: Tenant
) -> None:
    slow = store_workflow(topology, tenant, workflow("slow", delay=SLOW_SECONDS))
    burst = store_workflow(topology, tenant, workflow("burst"))
    facades = topology.facade_urls
    figures: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(timeout=60) as client,
        prefect_client(topology.prefect_api_urls[0]) as prefect,
    ):
        # 1. Nine slow runs, all Running, each begun by one of the workers. Then a tenth: the
        # worker that begins it is killed (SIGKILL) the moment it does, with runs in their middle
        # and one that has only just begun.
        nine = await deliver_all(client, facades, tenant, slow, range(9))

        async def all_running() -> dict[str, str] | None:
            runs = {run["id"]: run for run in await runs_of(client, facades[0], tenant, slow)}
            flow_runs = {d.run_id: runs[d.run_id]["flow_run_id"] for d in nine if d.run_id in runs}
            if len(flow_runs) < 9 or None in flow_runs.values():
                return None
            states = await current_states(prefect, list(flow_runs.values()))
            began = executions(topology)
            if all(states[f].is_running() and f in began for f in flow_runs.values()):
                return flow_runs
            return None

        running = await wait_for(all_running, within=60, what="nine slow runs running")
        await asyncio.sleep(SLOW_SECONDS / 4)  # well into their middle node
        known = set(executions(topology))
        await deliver_all(client, facades, tenant, slow, [9])

        async def begun() -> tuple[int, str] | None:
            for index in range(len(topology.workers)):
                for flow_run_id in topology.flow_runs_of_worker(index):
                    if flow_run_id not in known:
                        return index, flow_run_id
            return None

        victim, fresh = await wait_for(begun, within=30, every=0.01, what="the tenth run begun")
        killed_at = time.time()
        topology.kill_worker(victim)
        survivor = 1 - victim
        began = executions(topology)
        owner = {flow_run: began[flow_run][0] for flow_run in [*running.values(), fresh]}
        doomed = {flow_run for flow_run, worker in owner.items() if worker == victim}

        # 2. A burst over both facades; one facade is killed in its middle, then restarted.
        answered: asyncio.Queue[Delivery] = asyncio.Queue()

        async def kill_and_restart_a_facade() -> float:
            for _ in range(20):
                await answered.get()
            topology.kill_facade(1)
            return await asyncio.to_thread(topology.restart_facade, 1)

        chaos = asyncio.ensure_future(kill_and_restart_a_facade())
        burst_began = time.monotonic()
        deliveries = await deliver_all(client, facades, tenant, burst, range(60), answered=answered)
        figures["burst accepted in"] = f"{time.monotonic() - burst_began:.1f}s"
        figures["facade ready again after"] = f"{await chaos:.1f}s"
        # The restarted facade serves again.
        again = await deliver_all(client, facades[1:], tenant, burst, range(60, 64))
        assert all(delivery.attempts == 1 for delivery in again)
        deliveries += again
        retried = [delivery for delivery in deliveries if delivery.attempts > 1]
        assert retried, "the facade died after the burst: nothing was tested"
        figures["deliveries resent to the other facade"] = len(retried)
        figures["of which recorded before the kill (answered as duplicates)"] = sum(
            delivery.duplicate for delivery in retried
        )
        assert not any(delivery.duplicate for delivery in deliveries if delivery.attempts == 1)

        # 3. Every delivery has exactly one run (a resent one too), and every run completes.
        burst_runs = await wait_until_finished(
            client, facades[0], tenant, burst, at_least=64, within=120
        )
        assert len(burst_runs) == 64
        assert {run["id"] for run in burst_runs} == {delivery.run_id for delivery in deliveries}
        assert sorted(run["parameters"]["n"] for run in burst_runs) == list(range(64))
        assert Counter(run["state"] for run in burst_runs) == {"completed": 64}
        for run in burst_runs:
            assert run["output"] == expected_output(run), run
        figures["burst finished after"] = f"{time.monotonic() - burst_began:.1f}s"
        restarting = asyncio.ensure_future(asyncio.to_thread(topology.restart_worker, victim))

        # 4. The dead worker's runs: Crashed in Prefect within the bound, then `crashed` in the
        # store; the surviving worker's slow runs completed.
        deadline = killed_at + CRASH_BOUND_SECONDS
        while True:
            crashed = await current_states(prefect, sorted(doomed))
            if all(state.is_crashed() for state in crashed.values()):
                break
            if time.time() > deadline:
                pytest.fail(
                    f"{CRASH_BOUND_SECONDS}s after its worker was killed, each run it ran is: "
                    + ", ".join(
                        f"{flow_run} ({'begun just before' if flow_run == fresh else 'mid-run'}) "
                        f"{crashed[flow_run].name}"
                        for flow_run in sorted(doomed)
                    )
                )
            await asyncio.sleep(0.5)
        detection = [state.timestamp.timestamp() - killed_at for state in crashed.values()]
        assert max(detection) <= CRASH_BOUND_SECONDS

        async def settled_in_store() -> list[dict[str, Any]] | None:
            runs = await runs_of(client, facades[1], tenant, slow)
            return runs if all(run["state"] in TERMINAL for run in runs) else None

        slow_runs = await wait_for(
            settled_in_store, within=FOLLOW_SECONDS + 10, what="the slow runs finished in the store"
        )
        in_store_after = time.time() - killed_at
        for run in slow_runs:
            if run["flow_run_id"] in doomed:
                assert run["state"] == "crashed", run
                assert run["error"], run
                assert run["finished_at"], run
            else:
                assert run["state"] == "completed", run
                assert run["output"] == expected_output(run), run
        figures["killed worker's runs"] = f"{len(doomed) - 1} mid-run + 1 just begun"
        figures["Crashed in Prefect after the kill"] = (
            f"{min(detection):.1f}-{max(detection):.1f}s (bound {CRASH_BOUND_SECONDS}s)"
        )
        figures["crashed in the store after the kill"] = f"≤{in_store_after:.1f}s"
        figures["worker ready again after"] = f"{await restarting:.1f}s"

        # 5. Nothing ran twice: one Running state per flow run, none after Crashed; each run was
        # begun by one worker once, the burst's by the survivor alone.
        burst_flow_runs = [run["flow_run_id"] for run in burst_runs]
        await final_in_prefect(prefect, [*owner, *burst_flow_runs])
        history = await histories(prefect, [*owner, *burst_flow_runs])
        for flow_run_id, states in history.items():
            assert running_states(states) == 1, (flow_run_id, [s.name for s in states])
            assert states[-1].is_crashed() == (flow_run_id in doomed), [s.name for s in states]
        began = executions(topology)
        assert all(began[f] == [owner[f]] for f in owner), began
        assert all(began.get(f) == [survivor] for f in burst_flow_runs)
    report("a killed worker and a killed facade", figures)
