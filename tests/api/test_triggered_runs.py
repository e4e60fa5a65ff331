"""Runs started by something other than a REST call, executed by the service's worker: a
deployment's schedule (Prefect's own scheduler), `core.start_workflow` (a run starting another,
now or later, with or without waiting), and startRun's `scheduled_at`.

Each test runs against the live API on SQLite and on PostgreSQL, with a worker on its pool.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import get_client

from deployments.sync import deployment_name
from tests.api.conftest import LiveService
from tests.api.test_runs_api import FINISHED, stored, wait_for
from tests.support.api import ApiClient

pytestmark = pytest.mark.usefixtures("live_worker")


def runs_of(client: ApiClient, workflow_id: str) -> list[dict[str, Any]]:
    listed = client.get("/v1/runs", params={"workflow_id": workflow_id})
    assert listed.status_code == 200, listed.text
    runs: list[dict[str, Any]] = listed.json()["data"]
    return runs


def fire_schedule_now(tenant: str, workflow_id: str) -> None:
    """Have Prefect's scheduler create the deployment's next scheduled run now (what its
    scheduler service does every minute), through Prefect's own endpoint."""

    async def schedule() -> None:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(deployment_name(tenant, workflow_id))
            answer = await client._client.post(
                f"/deployments/{deployment.id}/schedule", json={"max_runs": 1, "min_runs": 1}
            )
            answer.raise_for_status()

    asyncio.run(schedule())


def test_a_schedule_runs_with_its_own_tenants_secrets_and_shows_in_the_run_history(
    live_service: LiveService,
) -> None:
    nodes = [
        {
            "id": "check",
            "piece": "core.transform",
            "input": {
                "value": {"mine": "{{ secrets.token == 'alpha' }}", "day": "{{ params.day }}"}
            },
        }
    ]
    schedule = {
        "id": "every-few-seconds",
        "type": "schedule",
        "interval_seconds": 5,
        "parameters": {"day": "{{ run.scheduled_at[:10] }}", "run": "{{ run.id }}"},
    }
    top = {
        "parameters": {
            "type": "object",
            "properties": {"day": {"type": "string"}, "run": {"type": "string"}},
            "required": ["day"],
        },
        "triggers": [schedule],
        "output": {"check": "{{ nodes.check.output }}", "at": "{{ run.scheduled_at }}"},
    }
    tenant_a, client_a = live_service.tenant("sched")
    tenant_b, client_b = live_service.tenant("sched")
    for client, value in ((client_a, "alpha"), (client_b, "beta")):
        assert client.put("/v1/secrets/token", json={"value": value}).status_code == 204
    workflow_id = stored(client_a, nodes, **top)
    created = client_b.post(
        "/v1/workflows", json={"format": 1, "id": workflow_id, "nodes": nodes, **top}
    )
    assert created.status_code == 201, created.text

    try:
        for tenant in (tenant_a, tenant_b):
            fire_schedule_now(tenant, workflow_id)
        for client, mine in ((client_a, True), (client_b, False)):
            deadline = datetime.now(UTC) + timedelta(seconds=60)
            while not (runs := runs_of(client, workflow_id)):
                assert datetime.now(UTC) < deadline, "the scheduled run never showed"
                time.sleep(0.1)
            run = wait_for(client, runs[-1]["id"], FINISHED)
            assert run["state"] == "completed", run
            assert run["trigger"] == {"type": "schedule", "id": "every-few-seconds"}
            scheduled_at = run["output"]["at"]
            # The run's id is its flow run's: known to the trigger's templates when it fires.
            assert run["parameters"] == {"day": scheduled_at[:10], "run": run["id"]}
            assert run["id"] == run["flow_run_id"]
            assert run["output"]["check"] == {"mine": mine, "day": scheduled_at[:10]}
            assert run["flow_run_id"] is not None
            nodes_seen = client.get(f"/v1/runs/{run['id']}/nodes").json()["data"]
            assert [n["node_id"] for n in nodes_seen] == ["check"]
    finally:  # no more runs from this schedule
        for client in (client_a, client_b):
            assert client.post(f"/v1/workflows/{workflow_id}/disable").status_code == 200


def test_a_run_starts_another_workflow_and_waits_for_it(live_service: LiveService) -> None:
    _, client = live_service.tenant("start")
    child = stored(
        client,
        [{"id": "double", "piece": "core.transform", "input": {"value": "{{ params.n * 2 }}"}}],
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        output="{{ nodes.double.output }}",
    )
    parent = stored(
        client,
        [
            {
                "id": "later",
                "piece": "core.start_workflow",
                "input": {
                    "workflow_id": child,
                    "parameters": {"n": 21},
                    "delay_seconds": 1,
                    "wait": True,
                },
            },
            {
                "id": "now",
                "piece": "core.start_workflow",
                "input": {"workflow_id": child, "parameters": {"n": 1}},
            },
        ],
        output={"later": "{{ nodes.later.output }}", "now": "{{ nodes.now.output.run_id }}"},
    )
    started = client.post(f"/v1/workflows/{parent}/runs", json={})
    assert started.status_code == 202, started.text
    run = wait_for(client, started.json()["id"], FINISHED, timeout=90)
    assert run["state"] == "completed", run
    later = run["output"]["later"]
    assert later["state"] == "completed"
    assert later["output"] == 42
    assert later["scheduled_at"] is not None
    children = {r["id"]: r for r in runs_of(client, child)}
    assert set(children) == {later["run_id"], run["output"]["now"]}
    for child_run in children.values():
        assert child_run["trigger"] == {"type": "workflow", "id": run["id"]}
    waited = children[later["run_id"]]
    assert waited["started_at"] >= later["scheduled_at"].replace("+00:00", "Z")
    other = wait_for(client, run["output"]["now"], FINISHED)
    assert other["output"] == 2


def test_a_start_the_workflow_refuses_fails_the_node_naming_the_parameter(
    live_service: LiveService,
) -> None:
    _, client = live_service.tenant("start")
    child = stored(
        client,
        [{"id": "a", "piece": "core.transform", "input": {"value": "{{ params.n }}"}}],
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    parent = stored(
        client,
        [
            {
                "id": "start",
                "piece": "core.start_workflow",
                "input": {"workflow_id": child, "parameters": {"n": "not a number"}},
            }
        ],
    )
    started = client.post(f"/v1/workflows/{parent}/runs", json={})
    run = wait_for(client, started.json()["id"], FINISHED, timeout=60)
    assert run["state"] == "failed", run
    nodes = client.get(f"/v1/runs/{run['id']}/nodes").json()["data"]
    assert nodes[0]["error"]["type"] == "StartRefused"
    assert "/parameters/n" in nodes[0]["error"]["message"]
    assert runs_of(client, child) == []


def test_start_run_at_a_later_time(live_service: LiveService) -> None:
    _, client = live_service.tenant("later")
    workflow_id = stored(
        client,
        [{"id": "a", "piece": "core.transform", "input": {"value": "{{ run.scheduled_at }}"}}],
        output="{{ nodes.a.output }}",
    )
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    started = client.post(
        f"/v1/workflows/{workflow_id}/runs",
        json={"parameters": {}, "scheduled_at": at.isoformat().replace("+00:00", "Z")},
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert wait_for(client, run_id, {"scheduled"}, timeout=20)["started_at"] is None
    run = wait_for(client, run_id, FINISHED, timeout=60)
    assert run["state"] == "completed", run
    assert datetime.fromisoformat(run["started_at"]) >= at
    assert datetime.fromisoformat(run["output"]) == at
