"""The REST facade over HTTP: tenants and keys, stored workflows, secrets, the catalogue, errors.

Each test runs against the live API on SQLite and on PostgreSQL (`live_service`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import get_client

from interpreter import validate
from tests.api.conftest import LiveService
from tests.support.api import problem_of, unique

EXAMPLES = Path(__file__).resolve().parents[2] / "definitions" / "examples"


def hooked(workflow_id: str) -> dict[str, Any]:
    """A small valid workflow with a webhook and a manual trigger."""
    return {
        "format": 1,
        "id": workflow_id,
        "name": "Hooked",
        "tags": ["sales"],
        "parameters": {"type": "object", "properties": {"who": {"type": "string"}}},
        "triggers": [
            {"id": "by-hand", "type": "manual"},
            {"id": "shop", "type": "webhook", "verify": {"scheme": "none"}},
        ],
        "nodes": [{"id": "greet", "piece": "core.transform", "input": {"value": "hi"}}],
    }


def test_keys_decide_who_may_call(live_service: LiveService) -> None:
    tenant_id, client = live_service.tenant()
    anonymous = client.as_key(None)
    assert problem_of(anonymous.get("/v1/workflows"))["status"] == 401
    assert anonymous.get("/v1/workflows").headers["www-authenticate"] == "Bearer"
    assert client.as_key("altlas_knope_nope").get("/v1/workflows").status_code == 401
    # The scheme name is case-insensitive.
    key = str(client.headers["authorization"]).split(" ", 1)[1]
    lower = httpx.get(
        f"{live_service.url}/v1/workflows", headers={"Authorization": f"bearer {key}"}
    )
    assert lower.status_code == 200
    # Tenant routes: the operator key only; a tenant's key is 403, no key 401.
    assert problem_of(client.post("/v1/tenants", json={"id": unique("x")}))["status"] == 403
    assert anonymous.post("/v1/tenants", json={"id": unique("x")}).status_code == 401
    # A second key works; revoked, it is 401 at once.
    issued = live_service.admin.post(f"/v1/tenants/{tenant_id}/keys", json={})
    assert issued.status_code == 201, issued.text
    second = client.as_key(issued.json()["api_key"])
    assert second.get("/v1/workflows").status_code == 200
    revoked = live_service.admin.delete(f"/v1/tenants/{tenant_id}/keys/{issued.json()['id']}")
    assert revoked.status_code == 204
    assert second.get("/v1/workflows").status_code == 401
    assert client.get("/v1/workflows").status_code == 200  # the first key still works
    again = live_service.admin.delete(f"/v1/tenants/{tenant_id}/keys/{issued.json()['id']}")
    assert again.status_code == 404
    assert live_service.admin.post("/v1/tenants", json={"id": tenant_id}).status_code == 409
    bad = live_service.admin.post("/v1/tenants", json={"id": "Acme_Corp"})
    assert problem_of(bad)["errors"][0]["path"] == "/id"


def test_workflow_lifecycle_versions_and_deployment(live_service: LiveService) -> None:
    tenant_id, client = live_service.tenant()
    workflow_id = unique("wf")
    definition = hooked(workflow_id)
    created = client.post("/v1/workflows", json=definition)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1
    assert body["enabled"] is True
    assert body["definition"] == definition
    assert body["triggers"] == [
        {"id": "by-hand", "type": "manual", "url": None},
        {
            "id": "shop",
            "type": "webhook",
            "url": f"{live_service.url}/v1/hooks/{tenant_id}/{workflow_id}/shop",
        },
    ]
    assert problem_of(client.post("/v1/workflows", json=definition))["status"] == 409

    changed = copy.deepcopy(definition)
    changed["nodes"][0]["input"]["value"] = "hello"
    updated = client.put(f"/v1/workflows/{workflow_id}", json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    # An identical definition (key order ignored) makes no version.
    reordered = dict(reversed(list(changed.items())))
    assert client.put(f"/v1/workflows/{workflow_id}", json=reordered).json()["version"] == 2
    versions = client.get(f"/v1/workflows/{workflow_id}/versions").json()
    assert versions["count"] == 2
    assert [v["version"] for v in versions["data"]] == [2, 1]
    first = client.get(f"/v1/workflows/{workflow_id}/versions/1").json()
    assert first["definition"] == definition
    assert client.get(f"/v1/workflows/{workflow_id}/versions/9").status_code == 404

    mismatch = client.put(f"/v1/workflows/{workflow_id}", json={**changed, "id": "other"})
    assert [e["path"] for e in problem_of(mismatch)["errors"]][:1] == ["/id"]
    assert client.put(f"/v1/workflows/{unique('nope')}", json=changed).status_code == 404

    listed = client.get("/v1/workflows", params={"tag": "sales"}).json()
    assert listed["count"] == 1
    assert "definition" not in listed["data"][0]

    deployment = _deployment(workflow_id, tenant_id)
    assert deployment is not None
    assert deployment.parameters["version"] == "2"
    assert {f"tenant:{tenant_id}", f"workflow:{workflow_id}"} <= set(deployment.tags)

    disabled = client.post(f"/v1/workflows/{workflow_id}/disable")
    assert disabled.json()["enabled"] is False
    paused = _deployment(workflow_id, tenant_id)
    assert paused is not None
    assert paused.paused is True
    assert client.get("/v1/workflows", params={"enabled": "false"}).json()["count"] == 1
    assert client.post(f"/v1/workflows/{workflow_id}/enable").json()["enabled"] is True

    assert client.delete(f"/v1/workflows/{workflow_id}").status_code == 204
    assert client.get(f"/v1/workflows/{workflow_id}").status_code == 404
    assert client.delete(f"/v1/workflows/{workflow_id}").status_code == 404
    assert _deployment(workflow_id, tenant_id) is None


def _deployment(workflow_id: str, tenant_id: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as prefect:
        try:
            return prefect.read_deployment_by_name(f"{workflow_id}/{tenant_id}")
        except ObjectNotFound:
            return None


def test_invalid_definitions_get_the_validators_problems(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    broken = json.loads((EXAMPLES / "chain.json").read_text())
    broken["id"] = unique("broken")
    broken["nodes"][0]["piece"] = "core.transfrom"
    broken["edges"].append({"from": "nowhere", "to": broken["nodes"][0]["id"]})
    expected = [p.as_dict() for p in validate(broken)]
    assert expected
    refused = client.post("/v1/workflows", json=broken)
    assert refused.status_code == 422
    assert problem_of(refused)["errors"] == expected
    checked = client.post("/v1/workflows/validate", json=broken)
    assert checked.status_code == 200
    assert checked.json() == {"valid": False, "problems": expected}
    fine = client.post("/v1/workflows/validate", json=hooked(unique("ok"))).json()
    assert fine == {"valid": True, "problems": []}
    json_type = {"Content-Type": "application/json"}
    assert (
        problem_of(client.post("/v1/workflows", content=b"{nope", headers=json_type))["status"]
        == 400
    )
    untyped = problem_of(client.post("/v1/workflows", content=b'{"id": "x"}'))
    assert "Content-Type: application/json" in untyped["errors"][0]["message"]
    not_object = client.post("/v1/workflows", json=[1, 2])
    assert problem_of(not_object)["status"] == 422


def test_another_tenants_resources_answer_as_missing(live_service: LiveService) -> None:
    _, owner = live_service.tenant()
    _, stranger = live_service.tenant()
    workflow_id = unique("mine")
    assert owner.post("/v1/workflows", json=hooked(workflow_id)).status_code == 201
    assert owner.put("/v1/secrets/token", json={"value": "s3cret-value"}).status_code == 204
    missing = stranger.get(f"/v1/workflows/{unique('missing')}")
    for method, path in [
        ("GET", f"/v1/workflows/{workflow_id}"),
        ("PUT", f"/v1/workflows/{workflow_id}"),
        ("DELETE", f"/v1/workflows/{workflow_id}"),
        ("GET", f"/v1/workflows/{workflow_id}/versions"),
        ("GET", f"/v1/workflows/{workflow_id}/versions/1"),
        ("POST", f"/v1/workflows/{workflow_id}/enable"),
        ("POST", f"/v1/workflows/{workflow_id}/disable"),
        ("POST", f"/v1/workflows/{workflow_id}/runs"),
        ("GET", f"/v1/workflows/{workflow_id}/stats"),
        ("DELETE", "/v1/secrets/token"),
    ]:
        body = hooked(workflow_id) if method == "PUT" else None
        answer = stranger.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert problem_of(answer).keys() == problem_of(missing).keys()
    assert stranger.get("/v1/workflows").json() == {"data": [], "count": 0}
    assert stranger.get("/v1/secrets").json() == {"data": [], "count": 0}
    assert owner.get(f"/v1/workflows/{workflow_id}").status_code == 200


def test_secrets_are_never_answered(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    assert client.put("/v1/secrets/shop_token", json={"value": "v-1"}).status_code == 204
    assert client.put("/v1/secrets/shop_token", json={"value": "v-2"}).status_code == 204
    listed = client.get("/v1/secrets")
    assert listed.json()["count"] == 1
    assert listed.json()["data"][0]["name"] == "shop_token"
    assert "v-2" not in listed.text
    assert problem_of(client.get("/v1/secrets/shop_token"))["status"] == 405
    bad_name = client.put("/v1/secrets/Bad-Name", json={"value": "x"})
    assert problem_of(bad_name)["status"] == 422
    assert client.delete("/v1/secrets/shop_token").status_code == 204
    assert problem_of(client.delete("/v1/secrets/shop_token"))["status"] == 404


def test_catalogue_health_and_generic_errors(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    pieces = client.get("/v1/pieces").json()
    keys = {p["key"] for p in pieces["data"]}
    assert {"core.transform", "http.request", "webhook"} <= keys
    assert pieces["count"] == len(pieces["data"])
    delay = client.get("/v1/pieces/core.delay").json()
    assert delay["kind"] == "action"
    assert "seconds" in delay["input_schema"]["properties"]
    assert client.get("/v1/pieces/core.transfrom").status_code == 404
    page = client.get("/v1/pieces", params={"limit": 2, "offset": 1}).json()
    assert [p["key"] for p in page["data"]] == [p["key"] for p in pieces["data"][1:3]]
    assert page["count"] == pieces["count"]
    assert problem_of(client.get("/v1/pieces", params={"limit": 0}))["status"] == 422
    assert client.as_key(None).get("/v1/pieces").status_code == 401
    assert httpx.get(f"{live_service.url}/healthz").status_code == 200
    ready = httpx.get(f"{live_service.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert problem_of(client.get("/v1/nothing-here"))["status"] == 404
    assert problem_of(client.patch("/v1/workflows"))["status"] == 405
    for query in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        assert problem_of(client.get("/v1/workflows", params=query))["status"] == 422


@pytest.mark.parametrize("chunked", [False, True])
def test_bodies_over_the_limit_are_refused_unread(live_service: LiveService, chunked: bool) -> None:
    _, client = live_service.tenant()
    size = live_service.settings.api_max_body_bytes + 1
    payload = b"{" + b" " * (size - 2) + b"x"  # malformed too: the size is checked first
    content: Any = (
        iter([payload[i : i + 65536] for i in range(0, size, 65536)]) if chunked else payload
    )
    answer = client.post("/v1/workflows", content=content)
    assert problem_of(answer)["status"] == 413


def test_deep_nesting_is_a_clear_error(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    deep = "[" * 50_000 + "]" * 50_000
    answer = client.post(
        "/v1/workflows/validate",
        content=deep.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in (400, 422), answer.text
    problem_of(answer)


def test_edge_cases_a_fuzzer_found_are_clear_errors(live_service: LiveService) -> None:
    _, client = live_service.tenant()
    # A key that Unicode calls a digit but int() does not ("²") is a problem, not a 500.
    checked = client.post("/v1/workflows/validate", json={"²": 1})
    assert checked.status_code == 200, checked.text
    assert checked.json()["valid"] is False
    workflow_id = unique("edge")
    assert client.post("/v1/workflows", json=hooked(workflow_id)).status_code == 201
    huge = str(2**63)
    assert problem_of(client.get(f"/v1/workflows/{workflow_id}/versions/{huge}"))["status"] == 422
    runs = f"/v1/workflows/{workflow_id}/runs"
    assert problem_of(client.post(runs, json={"version": 2**63}))["status"] == 422
    for since in ("0", "2024-01-01", "2024-01-01T00:00:00", "0001-01-01T00:00:00+14:00"):
        stats = client.get(f"/v1/workflows/{workflow_id}/stats", params={"since": since})
        assert problem_of(stats)["status"] == 422, since
    fine = client.get(
        f"/v1/workflows/{workflow_id}/stats", params={"since": "2024-01-01T00:00:00Z"}
    )
    assert fine.status_code == 200
    for scheduled_at in (0, "2024-01-01", "9999-12-31T23:59:59-14:00"):
        refused = client.post(runs, json={"scheduled_at": scheduled_at})
        assert problem_of(refused)["errors"][0]["path"] == "/scheduled_at", scheduled_at
    # 405 names every method of the path.
    allow = client.get("/v1/secrets/abc").headers["allow"]
    assert {"PUT", "DELETE"} <= {m.strip() for m in allow.split(",")}
    assert problem_of(client.delete("/v1/secrets/Bad-Name"))["status"] == 422
    # No key is 401 before the body is even parsed.
    anonymous = client.as_key(None).post(
        "/v1/workflows/validate", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert problem_of(anonymous)["status"] == 401
    assert problem_of(client.post("/v1/workflows", content=b"{", headers={
        "Content-Type": "application/json"}))["type"] == "/problems/bad-json"  # fmt: skip
