"""Runs through the REST facade, executed by the service's warm worker: start, read, node
history, parameters refused, idempotency, cancel, pause, resume, approvals, secrets redacted.

Each test runs against the live API on SQLite and on PostgreSQL, with a worker on its pool.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.states import Crashed

from tests.api.conftest import LiveService
from tests.support.api import ApiClient, problem_of, unique

pytestmark = pytest.mark.usefixtures("live_worker")

FINISHED = {"completed", "failed", "timed_out", "cancelled", "crashed"}


def stored(client: ApiClient, nodes: list[dict[str, Any]], **top: Any) -> str:
    """Store a workflow for the client's tenant; its id."""
    workflow_id = unique("wf")
    definition = {"format": 1, "id": workflow_id, "nodes": nodes, **top}
    created = client.post("/v1/workflows", json=definition)
    assert created.status_code == 201, created.text
    return workflow_id


def wait_for(
    client: ApiClient, run_id: str, states: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["state"] in states:
            return run
        assert time.monotonic() < deadline, f"run still {run['state']}: {run}"
        time.sleep(0.1)


def node_status(client: ApiClient, run_id: str) -> dict[str, str]:
    nodes = client.get(f"/v1/runs/{run_id}/nodes").json()["data"]
    return {n["node_id"]: n["status"] for n in nodes}


def test_a_run_is_a_deployments_flow_run_with_its_node_history(
    live_service: LiveService,
) -> None:
    tenant_id, client = live_service.tenant()
    workflow_id = stored(
        client,
        [
            {"id": "greet", "piece": "core.transform", "input": {"value": "hi {{ params.who }}"}},
            {
                "id": "shout",
                "piece": "core.transform",
                "input": {"value": "{{ nodes.greet.output | upper }}"},
            },
        ],
        edges=[{"from": "greet", "to": "shout"}],
        parameters={
            "type": "object",
            "properties": {"who": {"type": "string", "default": "you"}},
        },
        output="{{ nodes.shout.output }}",
    )
    started = client.post(f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"who": "Ada"}})
    assert started.status_code == 202, started.text
    accepted = started.json()
    assert accepted["state"] in {"accepted", "scheduled"}
    assert accepted["trigger"] == {"type": "api", "id": None}
    assert accepted["version"] == 1
    run = wait_for(client, accepted["id"], FINISHED)
    assert run["state"] == "completed", run
    assert run["output"] == "HI ADA"
    assert run["started_at"] is not None
    assert run["finished_at"] >= run["started_at"]
    assert run["ui_url"].endswith(f"/runs/flow-run/{run['flow_run_id']}")
    nodes = client.get(f"/v1/runs/{run['id']}/nodes").json()
    assert nodes["count"] == 2
    assert [(n["node_id"], n["status"], n["attempts"]) for n in nodes["data"]] == [
        ("greet", "completed", 1),
        ("shout", "completed", 1),
    ]
    assert nodes["data"][1]["input"] == {"value": "HI ADA"}
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(UUID(run["flow_run_id"]))
        deployment = prefect.read_deployment(flow_run.deployment_id)  # type: ignore[arg-type]
    assert deployment.name == tenant_id  # the Prefect UI shows `<workflow>/<tenant>`
    assert deployment.work_pool_name == live_service.work_pool
    assert flow_run.parameters["run_id"] == run["id"]
    assert {f"workflow:{workflow_id}", "version:1"} <= set(flow_run.tags)
    listed = client.get("/v1/runs", params={"workflow_id": workflow_id}).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    assert (
        client.get("/v1/runs", params={"active": "true", "workflow_id": workflow_id}).json()[
            "count"
        ]
        == 0
    )
    stats = client.get(f"/v1/workflows/{workflow_id}/stats").json()
    assert stats["counts"]["completed"] == 1
    assert sum(stats["counts"].values()) == 1
    assert stats["success_rate"] == 1.0
    assert stats["duration_seconds"]["p50"] is not None


def test_parameters_are_refused_before_anything_is_created(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    workflow_id = stored(
        client,
        [{"id": "a", "piece": "core.transform", "input": {"value": "{{ params.n }}"}}],
        parameters={
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    )
    refused = client.post(f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"n": "x"}})
    problem = problem_of(refused)
    assert problem["status"] == 422
    assert problem["errors"][0]["path"] == "/parameters/n"
    missing = problem_of(client.post(f"/v1/workflows/{workflow_id}/runs", json={}))
    assert missing["status"] == 422
    assert client.get("/v1/runs", params={"workflow_id": workflow_id}).json()["count"] == 0
    unknown_version = {"parameters": {"n": 1}, "version": 9}
    assert client.post(f"/v1/workflows/{workflow_id}/runs", json=unknown_version).status_code == 404
    assert client.post(f"/v1/workflows/{workflow_id}/disable").status_code == 200
    disabled = client.post(f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"n": 1}})
    assert problem_of(disabled)["status"] == 409


def test_idempotency_keys_give_one_run_per_key_and_body(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    workflow_id = stored(client, [{"id": "a", "piece": "core.transform", "input": {"value": 1}}])
    path = f"/v1/workflows/{workflow_id}/runs"
    key = {"Idempotency-Key": unique("key")}
    first = client.post(path, json={"parameters": {}}, headers=key)
    again = client.post(path, json={"parameters": {}}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.post(path, json={"parameters": {"x": 1}}, headers=key)
    assert problem_of(other)["type"].endswith("/idempotency-key-reused")
    # Ten at once with one key: never a second run.
    empty = client.post(path, json={}, headers={"Idempotency-Key": ""})
    assert problem_of(empty)["status"] == 422
    burst_key = {"Idempotency-Key": unique("burst")}
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: client.post(path, json={}, headers=burst_key), range(10)))
    ids = {a.json()["id"] for a in answers if a.status_code == 202}
    assert len(ids) == 1, [a.text for a in answers]
    assert all(a.status_code in (202, 409) for a in answers)
    # Keys are per tenant: another tenant's identical key is its own.
    _, stranger = live_service.tenant()
    mine = stored(stranger, [{"id": "a", "piece": "core.transform", "input": {"value": 1}}])
    theirs = stranger.post(f"/v1/workflows/{mine}/runs", json={"parameters": {}}, headers=key)
    assert theirs.status_code == 202
    assert theirs.json()["id"] != first.json()["id"]


def test_cancel_stops_a_running_workflow_within_seconds(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    workflow_id = stored(
        client,
        [
            {"id": "wait", "piece": "core.delay", "input": {"seconds": 30}},
            {"id": "after", "piece": "core.transform", "input": {"value": 1}},
        ],
        edges=[{"from": "wait", "to": "after"}],
    )
    run = client.post(f"/v1/workflows/{workflow_id}/runs", json={}).json()
    wait_for(client, run["id"], {"running"})
    deadline = time.monotonic() + 10
    while node_status(client, run["id"]).get("wait") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    asked = time.monotonic()
    cancelled = client.post(f"/v1/runs/{run['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelling"
    final = wait_for(client, run["id"], FINISHED, timeout=30)
    took = time.monotonic() - asked
    assert final["state"] == "cancelled", final
    assert took < 10, took  # far sooner than the 30 s delay (2 s poll + 0.5 s grace + I/O)
    assert node_status(client, run["id"]) == {"wait": "cancelled"}
    assert problem_of(client.post(f"/v1/runs/{run['id']}/cancel"))["status"] == 409
    # A run that has not started yet is cancelled at once.
    later = client.post(
        f"/v1/workflows/{workflow_id}/runs", json={"scheduled_at": "2099-01-01T00:00:00Z"}
    ).json()
    gone = client.post(f"/v1/runs/{later['id']}/cancel").json()
    assert gone["state"] == "cancelled"
    # Deleting a workflow ends its runs that had not started (Prefect deletes their flow runs).
    pending = client.post(
        f"/v1/workflows/{workflow_id}/runs", json={"scheduled_at": "2099-01-01T00:00:00Z"}
    ).json()
    wait_for(client, pending["id"], {"scheduled"})
    assert client.delete(f"/v1/workflows/{workflow_id}").status_code == 204
    ended = client.get(f"/v1/runs/{pending['id']}").json()
    assert ended["state"] == "cancelled"
    assert ended["error"]["message"] == "its workflow was deleted before it started"
    assert problem_of(client.post(f"/v1/runs/{pending['id']}/cancel"))["status"] == 409


def test_pause_holds_the_next_node_and_resume_goes_on(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    workflow_id = stored(
        client,
        [
            {"id": "first", "piece": "core.delay", "input": {"seconds": 1}},
            {"id": "second", "piece": "core.transform", "input": {"value": 2}},
        ],
        edges=[{"from": "first", "to": "second"}],
        output="{{ nodes.second.output }}",
    )
    run = client.post(f"/v1/workflows/{workflow_id}/runs", json={}).json()
    wait_for(client, run["id"], {"running"})
    paused = client.post(f"/v1/runs/{run['id']}/pause")
    assert paused.status_code == 202, paused.text
    assert problem_of(client.post(f"/v1/runs/{run['id']}/pause"))["status"] == 409
    wait_for(client, run["id"], {"paused"}, timeout=20)
    time.sleep(1.0)
    assert "second" not in node_status(client, run["id"])  # held before it started
    resumed = client.post(f"/v1/runs/{run['id']}/resume", json={})
    assert resumed.status_code == 202, resumed.text
    final = wait_for(client, run["id"], FINISHED)
    assert final["state"] == "completed"
    assert final["output"] == 2
    assert problem_of(client.post(f"/v1/runs/{run['id']}/resume"))["status"] == 409
    assert problem_of(client.post(f"/v1/runs/{run['id']}/pause"))["status"] == 409


def test_an_approval_is_a_paused_run_resumed_with_checked_input(
    live_service: LiveService,
) -> None:
    _, client = live_service.tenant()
    schema = {
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "amount": {"type": "integer"}},
        "required": ["approved"],
    }
    workflow_id = stored(
        client,
        [
            {
                "id": "ask",
                "piece": "core.approval",
                "input": {"message": "ok?", "input_schema": schema, "timeout_seconds": 60},
            }
        ],
        output="{{ nodes.ask.output }}",
    )
    run = client.post(f"/v1/workflows/{workflow_id}/runs", json={}).json()
    wait_for(client, run["id"], {"paused"})
    waiting = client.get(f"/v1/runs/{run['id']}/nodes").json()["data"][0]
    assert waiting["status"] == "waiting"
    assert waiting["output"] is None
    assert waiting["finished_at"] is None
    assert problem_of(client.post(f"/v1/runs/{run['id']}/pause"))["status"] == 409
    wrong = client.post(f"/v1/runs/{run['id']}/resume", json={"input": {"approved": "yes"}})
    assert problem_of(wrong)["errors"][0]["path"] == "/input/approved"
    answer = {"approved": True, "amount": 5}
    ok = client.post(f"/v1/runs/{run['id']}/resume", json={"input": answer})
    assert ok.status_code == 202, ok.text
    final = wait_for(client, run["id"], FINISHED)
    assert final["state"] == "completed", final
    assert final["output"] == answer


def test_secrets_are_redacted_everywhere_and_never_reach_prefect(
    live_service: LiveService,
) -> None:
    _, client = live_service.tenant()
    planted = "planted-" + unique("secret")
    assert client.put("/v1/secrets/token", json={"value": planted}).status_code == 204
    workflow_id = stored(
        client,
        [
            {
                "id": "use",
                "piece": "core.transform",
                "input": {"value": "Bearer {{ secrets.token }} / {{ params.note }}"},
            },
            {
                "id": "size",
                "piece": "core.transform",
                "input": {"value": "{{ params.note | length }}"},
            },
        ],
        parameters={"type": "object", "properties": {"note": {"type": "string"}}},
        output="{{ nodes.use.output }}",
    )
    run = client.post(
        f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"note": "plain"}}
    ).json()
    final = wait_for(client, run["id"], FINISHED)
    assert final["state"] == "completed", final
    assert final["output"] == "Bearer *** / plain"
    node = client.get(f"/v1/runs/{run['id']}/nodes").json()["data"][0]
    assert node["input"] == {"value": "Bearer *** / plain"}
    assert planted not in client.get(f"/v1/runs/{run['id']}").text
    # Pasted into a parameter, a secret's value shows as *** too.
    pasted = client.post(
        f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"note": planted}}
    ).json()
    assert pasted["parameters"] == {"note": "***"}
    pasted_final = wait_for(client, pasted["id"], FINISHED)
    assert pasted_final["state"] == "completed", pasted_final
    sizes = {n["node_id"]: n["output"] for n in
             client.get(f"/v1/runs/{pasted['id']}/nodes").json()["data"]}  # fmt: skip
    assert sizes["size"] == len(planted)  # the engine had the real value, not "***"
    # Nowhere in Prefect: the flow run's parameters, its logs, its artifacts.
    with get_client(sync_client=True) as prefect:
        pasted_run = prefect.read_flow_run(UUID(pasted_final["flow_run_id"]))
        flow_run_id = UUID(final["flow_run_id"])
        flow_run = prefect.read_flow_run(flow_run_id)
        logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert planted not in repr(flow_run.parameters)
    assert planted not in repr(pasted_run.parameters)
    assert pasted_run.parameters["parameters"] == {"note": "***"}
    assert all(planted not in log.message for log in logs)
    assert all(planted not in repr(artifact.data) for artifact in artifacts)


def test_a_run_prefect_marks_crashed_shows_crashed(live_service: LiveService) -> None:
    """What Prefect's zombie automation does to a run whose worker died, the API follows."""
    _, client = live_service.tenant()
    workflow_id = stored(client, [{"id": "a", "piece": "core.transform", "input": {"value": 1}}])
    later = {"scheduled_at": "2099-01-01T00:00:00Z"}  # never run by the worker meanwhile
    run = client.post(f"/v1/workflows/{workflow_id}/runs", json=later).json()
    scheduled = wait_for(client, run["id"], {"scheduled"})
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(
            UUID(scheduled["flow_run_id"]), Crashed(message="no heartbeat"), force=True
        )
    crashed = wait_for(client, run["id"], {"crashed"}, timeout=20)
    assert crashed["error"]["type"] == "Crashed"
    assert crashed["finished_at"] is not None


@pytest.mark.parametrize("depth", [65, 300, 5000])
def test_parameters_nested_too_deeply_are_refused_not_a_500(
    live_service: LiveService, depth: int
) -> None:
    """Data deeper than 64 levels could be accepted but never reach Prefect (its serialisers
    stop near 250): refused at once, however deep, and nothing is recorded."""
    _, client = live_service.tenant()
    workflow_id = stored(client, [{"id": "a", "piece": "core.delay", "input": {"seconds": 0}}])
    body = '{"parameters": {"x": ' + "[" * depth + "1" + "]" * depth + "}}"  # beyond json.dumps
    answer = client.post(
        f"/v1/workflows/{workflow_id}/runs",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in (400, 422), answer.text
    problem = problem_of(answer)
    if answer.status_code == 422:
        assert problem["errors"][0]["path"] == "/parameters"
        assert "more than 64 levels" in problem["errors"][0]["message"]
    assert client.get("/v1/runs", params={"workflow_id": workflow_id}).json()["count"] == 0
    # At the limit it is accepted.
    ok: Any = 1
    for _ in range(63):
        ok = [ok]
    accepted = client.post(f"/v1/workflows/{workflow_id}/runs", json={"parameters": {"x": ok}})
    assert accepted.status_code == 202, accepted.text


def test_a_deployment_replaced_through_another_process_still_gets_its_runs(
    live_service: LiveService,
) -> None:
    """The API keeps each workflow's deployment id; when another process replaced the
    deployment (a new id), a run's dispatch reads the id again instead of retrying for ever."""
    import asyncio

    from deployments.sync import WorkflowDeployment, deployment_name, sync_workflow

    tenant, client = live_service.tenant()
    definition = {
        "format": 1,
        "id": unique("wf"),
        "nodes": [{"id": "a", "piece": "core.transform", "input": {"value": 1}}],
    }
    assert client.post("/v1/workflows", json=definition).status_code == 201
    workflow_id = str(definition["id"])

    async def replace_deployment() -> None:
        async with get_client() as prefect:
            old = await prefect.read_deployment_by_name(deployment_name(tenant, workflow_id))
            await prefect.delete_deployment(old.id)
            spec = WorkflowDeployment(tenant, workflow_id, 1, definition, True)
            new = await sync_workflow(prefect, spec, work_pool=live_service.work_pool)
            assert new != old.id

    asyncio.run(replace_deployment())
    started = client.post(f"/v1/workflows/{workflow_id}/runs", json={})
    assert started.status_code == 202, started.text
    run = wait_for(client, started.json()["id"], {"completed", "failed"}, timeout=60)
    assert run["state"] == "completed", run
