"""Webhook deliveries through the REST facade: `POST /v1/hooks/{tenant}/{workflow}/{trigger}`.

Every scheme signs here as its sender does (HMAC-SHA256 over the scheme's bytes, with the
scheme's headers), and the answers follow the contract's order: 413, 404, 401, then `filter`
(204), the delivery id (200 duplicate), the parameters (422), else 202 with a recorded run.

Each test runs against the live API on SQLite and on PostgreSQL. Only the last one needs the
worker (it checks what templates make of form and text bodies in a run that completes); the
others read the runs the API recorded, and delete their workflows when they end, so that the
runs they started never reach a worker.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import get_client

from pieces.base import MAX_JSON_DEPTH
from tests.api.conftest import LiveService
from tests.support.api import ApiClient, problem_of, unique

STARTED = {"accepted", "scheduled", "running", "completed"}
"""A run just accepted (or, where a worker serves the pool, already on its way)."""
FINISHED = {"completed", "failed", "timed_out", "cancelled", "crashed"}
TOLERANCE = 120  # the timed schemes' `tolerance_seconds` below (the default is 300)

VERIFY: dict[str, dict[str, Any]] = {
    "gh": {"scheme": "github", "secret": "gh_hook"},
    "stripe": {"scheme": "stripe", "secret": "stripe_hook"},
    "sw": {"scheme": "standard-webhooks", "secret": "sw_hook"},
    "slack": {"scheme": "slack", "secret": "slack_hook"},
    "hmac": {"scheme": "hmac-sha256", "secret": "plain_hook"},
    "acme": {
        "scheme": "hmac-sha256",
        "secret": "plain_hook",
        "header": "X-Acme-Signature",
        "encoding": "base64",
        "prefix": "sha256=",
    },
    "open": {"scheme": "none"},
}
"""One webhook trigger per scheme (and the generic one with its defaults and customised)."""
TIMED = ("stripe", "sw", "slack")


def new_secret_values() -> dict[str, str]:
    """Fresh signing secrets, by secret name, in each scheme's own format."""
    return {
        "gh_hook": "gh-" + secrets.token_hex(16),
        "stripe_hook": "whsec_" + secrets.token_hex(16),
        "sw_hook": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "slack_hook": secrets.token_hex(16),
        "plain_hook": "plain-" + secrets.token_hex(16),
    }


# --- signing, as each sender does -------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sign(
    verify: dict[str, Any],
    secret: str | None,
    body: bytes,
    *,
    at: int | None = None,
    delivery: str | None = None,
) -> dict[str, str]:
    """The headers a sender of `verify`'s scheme sends with `body` (signed at `at`, Unix
    seconds; now by default). `delivery` is the scheme's delivery id where it has one in a
    header (github, standard-webhooks); a fresh one otherwise."""
    moment = int(time.time()) if at is None else at
    scheme = verify["scheme"]
    if scheme == "none":
        return {}
    assert secret is not None
    key = secret.encode()
    if scheme == "github":
        return {
            "X-Hub-Signature-256": "sha256=" + _hmac(key, body).hex(),
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        }
    if scheme == "stripe":
        return {
            "Stripe-Signature": f"t={moment},v1={_hmac(key, f'{moment}.'.encode() + body).hex()}"
        }
    if scheme == "standard-webhooks":
        message_id = delivery or "msg_" + uuid.uuid4().hex
        raw_key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = _hmac(raw_key, f"{message_id}.{moment}.".encode() + body)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(moment),
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
    if scheme == "slack":
        return {
            "X-Slack-Request-Timestamp": str(moment),
            "X-Slack-Signature": "v0=" + _hmac(key, f"v0:{moment}:".encode() + body).hex(),
        }
    assert scheme == "hmac-sha256"
    digest = _hmac(key, body)
    written = (
        base64.b64encode(digest).decode() if verify.get("encoding") == "base64" else digest.hex()
    )
    return {verify.get("header", "X-Signature"): verify.get("prefix", "") + written}


def event(**fields: Any) -> bytes:
    """A JSON body; with a fresh `id` (a Stripe event's, which dedupes) unless one is given."""
    return json.dumps({"id": "evt_" + uuid.uuid4().hex, **fields}).encode()


JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> bytes:
    """A JSON body of `depth` arrays and objects, one inside the other."""
    opening = "".join('{"a":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return (opening + "1" + closing).encode()


# --- a tenant with webhook workflows ----------------------------------------------------------


class Hooks:
    """A new tenant, its secrets and workflows, and an unauthenticated client for deliveries."""

    def __init__(self, live: LiveService) -> None:
        self.live = live
        self.tenant, self.client = live.tenant("hook")
        self.sender = ApiClient(live.url)  # no API key: deliveries are signed instead
        self.secrets = new_secret_values()
        for name, value in self.secrets.items():
            assert self.client.put(f"/v1/secrets/{name}", json={"value": value}).status_code == 204
        self.workflows: list[str] = []

    def workflow(
        self,
        triggers: list[dict[str, Any]],
        *,
        parameters: dict[str, Any] | None = None,
        nodes: list[dict[str, Any]] | None = None,
        **top: Any,
    ) -> str:
        """Store a workflow with these triggers; its id."""
        workflow_id = unique("wf")
        definition: dict[str, Any] = {
            "format": 1,
            "id": workflow_id,
            "triggers": triggers,
            "nodes": nodes or [{"id": "echo", "piece": "core.transform", "input": {"value": 1}}],
            **top,
        }
        if parameters is not None:
            definition["parameters"] = parameters
        created = self.client.post("/v1/workflows", json=definition)
        assert created.status_code == 201, created.text
        self.workflows.append(workflow_id)
        return workflow_id

    def post(
        self,
        workflow_id: str,
        trigger_id: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        tenant: str | None = None,
    ) -> httpx.Response:
        path = f"/v1/hooks/{tenant or self.tenant}/{workflow_id}/{trigger_id}"
        return self.sender.post(path, content=body, headers={**JSON, **(headers or {})})

    def deliver(
        self,
        workflow_id: str,
        trigger_id: str,
        body: bytes,
        *,
        verify: dict[str, Any] | None = None,
        at: int | None = None,
        delivery: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A delivery signed with this tenant's secret for `trigger_id` (of VERIFY, unless
        `verify` is given)."""
        verify = verify or VERIFY[trigger_id]
        signature = sign(
            verify, self.secrets.get(verify.get("secret", "")), body, at=at, delivery=delivery
        )
        return self.post(workflow_id, trigger_id, body, {**(headers or {}), **signature})

    def runs(self, workflow_id: str) -> list[dict[str, Any]]:
        listed = self.client.get("/v1/runs", params={"workflow_id": workflow_id, "limit": 200})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert body["count"] == len(body["data"])
        data: list[dict[str, Any]] = body["data"]
        return data

    def run(self, run_id: str) -> dict[str, Any]:
        found = self.client.get(f"/v1/runs/{run_id}")
        assert found.status_code == 200, found.text
        run: dict[str, Any] = found.json()
        return run

    def accepted(self, answer: httpx.Response, workflow_id: str, trigger_id: str) -> dict[str, Any]:
        """The run a 202 answered, read back at once: recorded, with its trigger."""
        assert answer.status_code == 202, answer.text
        assert answer.json().keys() == {"run_id"}
        run = self.run(answer.json()["run_id"])
        assert run["workflow_id"] == workflow_id
        assert run["trigger"] == {"type": "webhook", "id": trigger_id}
        assert run["state"] in STARTED, run
        return run

    def close(self) -> None:
        # Runs not started end with their workflow (no worker ever runs them).
        for workflow_id in self.workflows:
            assert self.client.delete(f"/v1/workflows/{workflow_id}").status_code in (204, 404)
        self.sender.close()
        self.client.close()


def handed_to_prefect(hooks: Hooks, run_id: str) -> str:
    """The run's flow run id, once the dispatcher has created it (soon after the 202)."""
    deadline = time.monotonic() + 20
    while (run := hooks.run(run_id))["flow_run_id"] is None:
        assert run["state"] == "accepted", run
        assert time.monotonic() < deadline, f"the run was never handed to Prefect: {run}"
        time.sleep(0.1)
    flow_run_id: str = run["flow_run_id"]
    return flow_run_id


@pytest.fixture
def hooks(live_service: LiveService) -> Iterator[Hooks]:
    tenant = Hooks(live_service)
    yield tenant
    tenant.close()


def scheme_triggers(**extra: Any) -> list[dict[str, Any]]:
    """A webhook trigger per entry of VERIFY (the timed ones with TOLERANCE), each with the
    common fields in `extra` (`parameters`, `filter`, ...)."""
    return [
        {
            "id": trigger_id,
            "type": "webhook",
            "verify": verify,
            **({"tolerance_seconds": TOLERANCE} if trigger_id in TIMED else {}),
            **extra,
        }
        for trigger_id, verify in VERIFY.items()
    ]


WHO = {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}


# --- the schemes --------------------------------------------------------------------------------


def test_every_scheme_accepts_a_freshly_signed_delivery_and_records_its_run(
    hooks: Hooks,
) -> None:
    workflow_id = hooks.workflow(
        scheme_triggers(parameters={"who": "{{ trigger.payload.who }}"}), parameters=WHO
    )
    run_ids = set()
    for trigger_id in VERIFY:
        answer = hooks.deliver(workflow_id, trigger_id, event(who=f"via {trigger_id}"))
        run = hooks.accepted(answer, workflow_id, trigger_id)
        assert run["parameters"] == {"who": f"via {trigger_id}"}
        assert run["version"] == 1
        run_ids.add(run["id"])
    assert len(run_ids) == len(VERIFY)
    assert {r["id"] for r in hooks.runs(workflow_id)} == run_ids
    # Within the tolerance either way (60 s is inside 120 s): accepted.
    for trigger_id in TIMED:
        for offset in (-60, 60):
            late = hooks.deliver(
                workflow_id, trigger_id, event(who="x"), at=int(time.time()) + offset
            )
            assert late.status_code == 202, (trigger_id, offset, late.text)
    # The workflow lists each webhook trigger with the URL it receives deliveries at.
    listed = hooks.client.get(f"/v1/workflows/{workflow_id}").json()["triggers"]
    assert {t["id"]: t["url"] for t in listed} == {
        trigger_id: f"{hooks.live.url}/v1/hooks/{hooks.tenant}/{workflow_id}/{trigger_id}"
        for trigger_id in VERIFY
    }


def test_a_refused_signature_is_401_and_starts_no_run(
    hooks: Hooks, live_service: LiveService
) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    body = event(who="mallory")
    now = int(time.time())
    signed = [trigger_id for trigger_id in VERIFY if trigger_id != "open"]
    refused: list[tuple[str, str, httpx.Response]] = []
    for trigger_id in signed:
        verify = VERIFY[trigger_id]
        good = sign(verify, hooks.secrets[verify["secret"]], body)
        refused.append((trigger_id, "unsigned", hooks.post(workflow_id, trigger_id, body)))
        wrong = sign(verify, hooks.secrets[verify["secret"]], body + b" ")  # another body's
        refused.append(
            (trigger_id, "wrong", hooks.post(workflow_id, trigger_id, body, {**good, **wrong}))
        )
        tampered = hooks.post(workflow_id, trigger_id, body.replace(b"mallory", b"mallorz"), good)
        refused.append((trigger_id, "tampered", tampered))
    for trigger_id in TIMED:
        for when, at in (("stale", now - TOLERANCE - 60), ("future", now + TOLERANCE + 60)):
            answer = hooks.deliver(workflow_id, trigger_id, body, at=at)
            refused.append((trigger_id, when, answer))
    # The same secret name in another tenant, with its own value, signs nothing here.
    _, stranger = live_service.tenant("other")
    for trigger_id in signed:
        name = VERIFY[trigger_id]["secret"]
        theirs = new_secret_values()[name]
        assert stranger.put(f"/v1/secrets/{name}", json={"value": theirs}).status_code == 204
        headers = sign(VERIFY[trigger_id], theirs, body)
        refused.append(
            (trigger_id, "other tenant", hooks.post(workflow_id, trigger_id, body, headers))
        )
    for trigger_id, why, answer in refused:
        assert answer.status_code == 401, (trigger_id, why, answer.text)
        problem = problem_of(answer)
        assert problem["type"] == "/problems/invalid-signature", problem
        assert all(value not in answer.text for value in hooks.secrets.values())
    assert hooks.runs(workflow_id) == []
    # Replacing the secret takes effect at once: the API keeps no previous value to accept.
    old = dict(hooks.secrets)
    hooks.secrets["gh_hook"] = "gh-rotated-" + secrets.token_hex(8)
    put = hooks.client.put("/v1/secrets/gh_hook", json={"value": hooks.secrets["gh_hook"]})
    assert put.status_code == 204
    stale_key = hooks.post(workflow_id, "gh", body, sign(VERIFY["gh"], old["gh_hook"], body))
    assert stale_key.status_code == 401, stale_key.text
    hooks.accepted(hooks.deliver(workflow_id, "gh", body), workflow_id, "gh")
    # A trigger whose secret the tenant does not have accepts nothing.
    assert hooks.client.delete("/v1/secrets/slack_hook").status_code == 204
    unset = hooks.post(workflow_id, "slack", body, sign(VERIFY["slack"], old["slack_hook"], body))
    assert problem_of(unset)["status"] == 401
    assert len(hooks.runs(workflow_id)) == 1


def test_several_signatures_in_one_header_pass_when_one_is_valid(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    # Stripe, rolling the endpoint secret: one v1 per secret; the old one first.
    body = event(who="stripe")
    t = int(time.time())
    mine = _hmac(hooks.secrets["stripe_hook"].encode(), f"{t}.".encode() + body).hex()
    theirs = _hmac(other.encode(), f"{t}.".encode() + body).hex()
    both = {"Stripe-Signature": f"t={t},v1={theirs},v0={theirs},v1={mine}"}
    hooks.accepted(hooks.post(workflow_id, "stripe", body, both), workflow_id, "stripe")
    only_theirs = {"Stripe-Signature": f"t={t},v1={theirs}"}
    assert hooks.post(workflow_id, "stripe", event(), only_theirs).status_code == 401
    # Standard Webhooks: space-separated `v1,<base64>` entries (and a v1a one, skipped).
    body = event(who="sw")
    good = sign(VERIFY["sw"], hooks.secrets["sw_hook"], body, at=t)
    bad = sign(VERIFY["sw"], other, body, at=t, delivery=good["webhook-id"])
    several = {
        **good,
        "webhook-signature": f"{bad['webhook-signature']} v1a,AAAA {good['webhook-signature']}",
    }
    hooks.accepted(hooks.post(workflow_id, "sw", body, several), workflow_id, "sw")
    assert hooks.post(workflow_id, "sw", event(), {**bad, "webhook-id": "msg_x"}).status_code == 401
    # GitHub sends one signature: a list of them is not a GitHub header.
    body = event(who="gh")
    good = sign(VERIFY["gh"], hooks.secrets["gh_hook"], body)
    listed = {
        **good,
        "X-Hub-Signature-256": "sha256=" + "0" * 64 + "," + good["X-Hub-Signature-256"],
    }
    assert problem_of(hooks.post(workflow_id, "gh", body, listed))["status"] == 401
    assert len(hooks.runs(workflow_id)) == 2


# --- what is answered before the signature ----------------------------------------------------


def test_an_oversize_body_is_413_before_anything_else(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    limit = hooks.live.settings.api_max_body_bytes
    big = b"{" + b" " * limit  # not JSON either: still 413, not 400
    bad_signature = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    for tenant, workflow, trigger in (
        (hooks.tenant, workflow_id, "gh"),  # known, badly signed
        (hooks.tenant, workflow_id, "open"),  # known, unsigned scheme
        (hooks.tenant, "no-such-workflow", "gh"),
        (unique("nobody"), workflow_id, "gh"),
    ):
        answer = hooks.post(workflow, trigger, big, bad_signature, tenant=tenant)
        problem = problem_of(answer)
        assert problem["status"] == 413, (tenant, workflow, trigger)
        assert problem["type"] == "/problems/body-too-large"

    # Chunked, without Content-Length: the limit holds while the body is read.
    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    for trigger in ("gh", "open"):
        chunked = hooks.sender.post(
            f"/v1/hooks/{hooks.tenant}/{workflow_id}/{trigger}",
            content=chunks(),
            headers={**JSON, **bad_signature},
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in chunked.request.headers
        assert problem_of(chunked)["status"] == 413, trigger
    # Exactly at the limit is not too large.
    at_limit = b" " * (limit - 2) + b"{}"
    hooks.accepted(hooks.post(workflow_id, "open", at_limit), workflow_id, "open")
    assert len(hooks.runs(workflow_id)) == 1


def test_no_enabled_webhook_trigger_of_that_tenant_is_404(
    hooks: Hooks, live_service: LiveService
) -> None:
    triggers = [
        *scheme_triggers(),
        {"id": "by-hand", "type": "manual"},
        {"id": "yearly", "type": "schedule", "cron": "0 3 1 1 *", "active": False},
    ]
    workflow_id = hooks.workflow(triggers)
    body = event()
    good = sign(VERIFY["gh"], hooks.secrets["gh_hook"], body)
    other_tenant, _ = live_service.tenant("other")
    missing = [
        (unique("nobody"), workflow_id, "gh"),  # no such tenant
        (other_tenant, workflow_id, "gh"),  # a tenant without that workflow
        (hooks.tenant, "no-such-workflow", "gh"),
        (hooks.tenant, workflow_id, "no-such-trigger"),
        (hooks.tenant, workflow_id, "by-hand"),  # not a webhook trigger
        (hooks.tenant, workflow_id, "yearly"),
        (hooks.tenant, workflow_id, "GH"),  # ids are case-sensitive
    ]
    for tenant, workflow, trigger in missing:
        for headers in (good, {}):  # signed for the trigger, or not at all: 404 comes first
            answer = hooks.post(workflow, trigger, body, headers, tenant=tenant)
            problem = problem_of(answer)
            assert problem["status"] == 404, (tenant, workflow, trigger, answer.text)
            assert problem["type"] == "/problems/not-found"
    assert hooks.runs(workflow_id) == []
    hooks.accepted(hooks.post(workflow_id, "gh", body, good), workflow_id, "gh")


def test_disabled_and_deleted_workflows_have_no_webhooks(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    hooks.accepted(hooks.deliver(workflow_id, "gh", event()), workflow_id, "gh")  # cached now
    assert hooks.client.post(f"/v1/workflows/{workflow_id}/disable").status_code == 200
    for trigger_id in ("gh", "open"):
        disabled = hooks.deliver(workflow_id, trigger_id, event())
        assert problem_of(disabled)["status"] == 404, trigger_id
    assert hooks.client.post(f"/v1/workflows/{workflow_id}/enable").status_code == 200
    hooks.accepted(hooks.deliver(workflow_id, "open", event()), workflow_id, "open")
    # A new version without the trigger: gone at once; the others keep working.
    definition = hooks.client.get(f"/v1/workflows/{workflow_id}").json()["definition"]
    definition["triggers"] = [t for t in definition["triggers"] if t["id"] != "gh"]
    assert hooks.client.put(f"/v1/workflows/{workflow_id}", json=definition).status_code == 200
    assert problem_of(hooks.deliver(workflow_id, "gh", event()))["status"] == 404
    moved = hooks.accepted(hooks.deliver(workflow_id, "slack", event()), workflow_id, "slack")
    assert moved["version"] == 2
    assert len(hooks.runs(workflow_id)) == 3
    assert hooks.client.delete(f"/v1/workflows/{workflow_id}").status_code == 204
    for trigger_id in ("open", "slack"):
        assert problem_of(hooks.deliver(workflow_id, trigger_id, event()))["status"] == 404


# --- after the signature: body, filter, duplicates, parameters --------------------------------


def test_invalid_json_under_a_json_content_type_is_400(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    broken = b'{"action": "opened",'
    for content_type in ("application/json", "application/json; charset=utf-8",
                         "application/vnd.github+json"):  # fmt: skip
        answer = hooks.deliver(workflow_id, "gh", broken, headers={"Content-Type": content_type})
        problem = problem_of(answer)
        assert problem["status"] == 400, (content_type, answer.text)
        assert problem["type"] == "/problems/bad-json"
    # The signature is checked first: a bad one is 401 whatever the body.
    unsigned = hooks.post(workflow_id, "gh", broken, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert problem_of(unsigned)["status"] == 401
    # Deeply nested JSON is a 400, never a 500, nor a run that could never start (Prefect
    # serialises no more than about 250 levels): at most MAX_JSON_DEPTH levels are taken.
    for depth in (100_000, 950, 300, MAX_JSON_DEPTH + 1):
        deep = nested(depth)
        too_deep = problem_of(hooks.deliver(workflow_id, "gh", deep))
        assert too_deep["status"] == 400, (depth, too_deep)
        assert too_deep["type"] == "/problems/bad-json"
    assert hooks.runs(workflow_id) == []
    deepest = hooks.accepted(
        hooks.deliver(workflow_id, "gh", nested(MAX_JSON_DEPTH)), workflow_id, "gh"
    )
    handed_to_prefect(hooks, deepest["id"])
    # The same bytes as text are a text body: no payload, no JSON to parse.
    as_text = hooks.deliver(workflow_id, "gh", broken, headers={"Content-Type": "text/plain"})
    hooks.accepted(as_text, workflow_id, "gh")
    assert len(hooks.runs(workflow_id)) == 2


def test_a_false_filter_is_204_and_starts_no_run(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers(filter="{{ trigger.payload.action == 'opened' }}"))
    delivery = str(uuid.uuid4())
    closed = hooks.deliver(workflow_id, "gh", event(action="closed"), delivery=delivery)
    assert closed.status_code == 204, closed.text
    assert closed.content == b""
    open_unsigned = hooks.post(workflow_id, "gh", event(action="closed"))
    assert problem_of(open_unsigned)["status"] == 401  # the signature comes before the filter
    assert hooks.runs(workflow_id) == []
    # A filtered delivery reserves nothing: its id starts a run when the filter passes.
    opened = hooks.deliver(workflow_id, "gh", event(action="opened"), delivery=delivery)
    hooks.accepted(opened, workflow_id, "gh")
    assert len(hooks.runs(workflow_id)) == 1


def test_repeated_deliveries_answer_their_first_run(hooks: Hooks) -> None:
    triggers = [
        *scheme_triggers(),
        {"id": "keyed", "type": "webhook", "verify": {"scheme": "none"},
         "dedupe_key": "{{ trigger.payload.order }}"},
    ]  # fmt: skip
    workflow_id = hooks.workflow(triggers)

    def duplicate_of(answer: httpx.Response, run_id: str) -> None:
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"run_id": run_id, "duplicate": True}

    # dedupe_key: the same key is the same event, whatever else the body holds.
    first = hooks.accepted(
        hooks.deliver(workflow_id, "keyed", event(order="A-1"), verify={"scheme": "none"}),
        workflow_id,
        "keyed",
    )
    again = hooks.deliver(workflow_id, "keyed", event(order="A-1", n=2), verify={"scheme": "none"})
    duplicate_of(again, first["id"])
    other = hooks.deliver(workflow_id, "keyed", event(order="A-2"), verify={"scheme": "none"})
    assert hooks.accepted(other, workflow_id, "keyed")["id"] != first["id"]
    # The schemes' own delivery ids, without a dedupe_key.
    for trigger_id in ("gh", "sw"):
        delivery = str(uuid.uuid4())
        body = event()
        once = hooks.accepted(
            hooks.deliver(workflow_id, trigger_id, body, delivery=delivery), workflow_id, trigger_id
        )
        later = int(time.time()) + 5  # signed anew, as a redelivery is
        duplicate_of(
            hooks.deliver(workflow_id, trigger_id, body, delivery=delivery, at=later), once["id"]
        )
        fresh = hooks.deliver(workflow_id, trigger_id, body, delivery=str(uuid.uuid4()))
        assert hooks.accepted(fresh, workflow_id, trigger_id)["id"] != once["id"]
    # Svix, a Standard Webhooks sender, names the headers `svix-*`: its id dedupes the same.
    body = event()
    svix = {
        name.replace("webhook-", "svix-"): value
        for name, value in sign(VERIFY["sw"], hooks.secrets["sw_hook"], body).items()
    }
    once = hooks.accepted(hooks.post(workflow_id, "sw", body, svix), workflow_id, "sw")
    duplicate_of(hooks.post(workflow_id, "sw", body, svix), once["id"])
    stripe_event = event(type="invoice.paid")
    once = hooks.accepted(hooks.deliver(workflow_id, "stripe", stripe_event), workflow_id, "stripe")
    resent = hooks.deliver(workflow_id, "stripe", stripe_event, at=int(time.time()) + 5)
    duplicate_of(resent, once["id"])
    assert hooks.deliver(workflow_id, "stripe", event(type="invoice.paid")).status_code == 202
    # Schemes without a delivery id, and no dedupe_key: each delivery is a run.
    for trigger_id in ("hmac", "slack", "open"):
        body = event()
        answers = [hooks.deliver(workflow_id, trigger_id, body) for _ in range(2)]
        ids = {hooks.accepted(a, workflow_id, trigger_id)["id"] for a in answers}
        assert len(ids) == 2, trigger_id
    assert len(hooks.runs(workflow_id)) == 2 + 2 * 2 + 1 + 2 + 3 * 2


def test_ten_identical_deliveries_at_once_start_one_run(hooks: Hooks) -> None:
    workflow_id = hooks.workflow(scheme_triggers())
    body = event(who="burst")
    headers = sign(VERIFY["gh"], hooks.secrets["gh_hook"], body)
    path = f"/v1/hooks/{hooks.tenant}/{workflow_id}/gh"

    def send(_: int) -> httpx.Response:
        with ApiClient(hooks.live.url) as own:  # a connection each: really at once
            return own.post(path, content=body, headers={**JSON, **headers})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 9 + [202], [a.text for a in answers]
    run_ids = {a.json()["run_id"] for a in answers}
    assert len(run_ids) == 1
    assert [r["id"] for r in hooks.runs(workflow_id)] == list(run_ids)
    assert all(a.json()["duplicate"] is True for a in answers if a.status_code == 200)


def test_parameters_that_fail_the_schema_are_422_and_reserve_nothing(hooks: Hooks) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}, "who": {"type": "string"}},
        "required": ["n"],
    }
    mapping = {"n": "{{ trigger.payload.n }}", "who": "{{ trigger.payload.who }}"}
    workflow_id = hooks.workflow(scheme_triggers(parameters=mapping), parameters=schema)
    delivery = str(uuid.uuid4())
    wrong = hooks.deliver(workflow_id, "gh", event(n="three", who=7), delivery=delivery)
    problem = problem_of(wrong)
    assert problem["status"] == 422, wrong.text
    assert problem["type"] == "/problems/invalid-parameters"
    assert sorted(e["path"] for e in problem["errors"]) == ["/parameters/n", "/parameters/who"]
    # A template that fails on this event (no `n` in the payload) is a 422 at its mapping.
    absent = hooks.deliver(workflow_id, "gh", event(who="x"), delivery=delivery)
    assert [e["path"] for e in problem_of(absent)["errors"]] == ["/parameters/n"]
    assert hooks.runs(workflow_id) == []
    # Refused, the delivery id was not kept: the corrected redelivery starts the run.
    fixed = hooks.deliver(workflow_id, "gh", event(n=3, who="x"), delivery=delivery)
    run = hooks.accepted(fixed, workflow_id, "gh")
    assert run["parameters"] == {"n": 3, "who": "x"}
    duplicate = hooks.deliver(workflow_id, "gh", event(n="three"), delivery=delivery)
    assert duplicate.status_code == 200  # once recorded, it is the first run's
    assert duplicate.json()["run_id"] == run["id"]
    assert [r["id"] for r in hooks.runs(workflow_id)] == [run["id"]]


def test_the_signing_secret_never_shows_in_a_run(hooks: Hooks) -> None:
    value = hooks.secrets["gh_hook"]
    mapping = {
        "note": "{{ trigger.payload.note }}",
        "body": "{{ trigger.body }}",
        "signature": "{{ trigger.headers['x-hub-signature-256'] }}",
    }
    workflow_id = hooks.workflow(scheme_triggers(parameters=mapping))
    body = event(note=f"the secret is {value}")
    run = hooks.accepted(hooks.deliver(workflow_id, "gh", body), workflow_id, "gh")
    assert run["parameters"]["note"] == "the secret is ***"
    assert run["parameters"]["signature"].startswith("sha256=")
    assert "***" in run["parameters"]["body"]
    for shown in (
        hooks.client.get(f"/v1/runs/{run['id']}").text,
        hooks.client.get("/v1/runs", params={"workflow_id": workflow_id}).text,
    ):
        assert value not in shown
    # Nor in the Prefect flow run the dispatcher creates.
    flow_run_id = handed_to_prefect(hooks, run["id"])
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(UUID(flow_run_id))
    assert value not in json.dumps(flow_run.parameters, default=str)


def test_trigger_templates_see_the_delivery_and_the_run_to_be(hooks: Hooks) -> None:
    mapping = {
        "run_id": "{{ run.id }}",
        "workflow": "{{ run.workflow_id }}",
        "tenant": "{{ run.tenant }}",
        "version": "{{ run.version }}",
        "scheduled_at": "{{ run.scheduled_at }}",
        "received_at": "{{ trigger.received_at }}",
        "event": "{{ trigger.headers['x-github-event'] }}",
        "trigger": "{{ trigger.type }}/{{ trigger.id }}",
    }
    workflow_id = hooks.workflow(scheme_triggers(parameters=mapping))
    answer = hooks.deliver(workflow_id, "gh", event(), headers={"X-GitHub-Event": "push"})
    run = hooks.accepted(answer, workflow_id, "gh")
    parameters = run["parameters"]
    assert parameters == {
        "run_id": run["id"],
        "workflow": workflow_id,
        "tenant": hooks.tenant,
        "version": "1",
        "scheduled_at": parameters["received_at"],
        "received_at": parameters["received_at"],
        "event": "push",
        "trigger": "webhook/gh",
    }
    received = datetime.fromisoformat(parameters["received_at"])
    assert received.utcoffset() == timedelta(0)
    assert abs((received - datetime.fromisoformat(run["created_at"])).total_seconds()) < 1


# --- end to end, with the worker --------------------------------------------------------------


@pytest.mark.usefixtures("live_worker")
def test_form_and_text_bodies_reach_templates_and_the_run_completes(hooks: Hooks) -> None:
    seen = {
        "trigger": "{{ trigger.id }}",
        "type": "{{ trigger.type }}",
        "payload": "{{ trigger.payload }}",
        "body": "{{ trigger.body }}",
        "content_type": "{{ trigger.headers['content-type'] }}",
        "credentials": "{{ ['authorization', 'cookie'] | select('in', trigger.headers) | list }}",
        "custom": "{{ trigger.headers['x-custom-header'] }}",
        "received": "{{ trigger.received_at }}",
        "params": "{{ params }}",
    }
    triggers = [
        {"id": "slack", "type": "webhook", "verify": VERIFY["slack"],
         "parameters": {"text": "{{ trigger.payload.text }}",
                        "day": "{{ run.scheduled_at[:10] }}"}},
        {"id": "open", "type": "webhook", "verify": {"scheme": "none"},
         "parameters": {"text": "{{ trigger.body | trim }}",
                        "day": "{{ run.scheduled_at[:10] }}"}},
    ]  # fmt: skip
    workflow_id = hooks.workflow(
        triggers,
        parameters={"type": "object", "properties": {"text": {"type": "string"},
                                                     "day": {"type": "string"}}},
        nodes=[{"id": "see", "piece": "core.transform", "input": {"value": seen}}],
        output="{{ nodes.see.output }}",
    )  # fmt: skip
    form = b"text=hello+world%21&user_name=ada&tag=a&tag=b&empty="
    credentials = {"Authorization": "Bearer not-a-key", "Cookie": "session=1"}
    deliveries = [
        ("slack", form, "application/x-www-form-urlencoded"),
        ("open", b"caf\xe9 au lait\n", "text/plain; charset=latin-1"),
        ("open", b"bad \xff\xfe bytes", "text/plain"),
        ("open", nested(MAX_JSON_DEPTH), "application/json"),  # as deep as is taken
    ]
    run_ids = []
    for trigger_id, body, content_type in deliveries:
        headers = {"Content-Type": content_type, "X-Custom-Header": "kept", **credentials}
        verify = VERIFY[trigger_id]
        answer = hooks.deliver(workflow_id, trigger_id, body, verify=verify, headers=headers)
        # A 202 is a recorded run, readable at once.
        run_ids.append(hooks.accepted(answer, workflow_id, trigger_id)["id"])
    runs = [hooks.run(run_id) for run_id in run_ids]
    deadline = time.monotonic() + 60
    while not all(run["state"] in FINISHED for run in runs):
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
        runs = [hooks.run(run_id) for run_id in run_ids]
    assert [run["state"] for run in runs] == ["completed"] * len(deliveries), runs
    form_seen, latin_seen, broken_seen, deep_seen = (run["output"] for run in runs)
    day = form_seen["received"][:10]
    assert form_seen == {
        "trigger": "slack",
        "type": "webhook",
        "payload": {"text": "hello world!", "user_name": "ada", "tag": ["a", "b"], "empty": ""},
        "body": form.decode(),
        "content_type": "application/x-www-form-urlencoded",
        "credentials": [],
        "custom": "kept",
        "received": form_seen["received"],
        "params": {"text": "hello world!", "day": day},
    }
    assert runs[0]["parameters"] == {"text": "hello world!", "day": day}
    assert latin_seen["payload"] is None
    assert latin_seen["body"] == "café au lait\n"
    assert latin_seen["params"] == {"text": "café au lait", "day": latin_seen["received"][:10]}
    assert broken_seen["payload"] is None
    assert broken_seen["body"] == "bad \ufffd\ufffd bytes"
    assert broken_seen["credentials"] == []
    assert broken_seen["trigger"] == "open"
    assert deep_seen["payload"] == json.loads(nested(MAX_JSON_DEPTH))
