"""Execution settings are layered: the piece's declared defaults, then the tenant's, then the
workflow's `defaults`, then the node's own fields, the most specific winning; and a tenant's
policy (allowed pieces, HTTP allow-list additions) applies to its runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from interpreter.definition.model import ExecutionDefaults, RetryPolicy, Workflow
from interpreter.run.flow import RunOutcome, named_flow
from interpreter.run.launch import call_flow
from interpreter.run.services import RunServices, TenantPolicy, using_services
from pieces.registry import default_registry
from tests.support.definitions import node, workflow
from tests.support.service import RunningService

HTTP_DEFAULT = RetryPolicy(
    max_attempts=3, delay_seconds=1, backoff="exponential", max_delay_seconds=10
)
TENANT = ExecutionDefaults(retry=RetryPolicy(max_attempts=5), timeout_seconds=30)


def _nodes(document: dict[str, Any], **parse: Any) -> dict[str, Any]:
    parsed = Workflow.parse(document, registry=default_registry(), **parse)
    return {n.id: (n.retry, n.timeout_seconds) for n in parsed.plan.nodes.values()}


def _definition(**top: Any) -> dict[str, Any]:
    get = {"method": "GET", "url": "https://example.com/"}
    return workflow(
        [
            node("plain", "http.request", input=get),
            node("own", "http.request", input=get, retry={"max_attempts": 7}, timeout_seconds=5),
            node("other", value=1),
        ],
        **top,
    )


def test_layer_one_the_piece_declares_defaults() -> None:
    nodes = _nodes(_definition())
    assert nodes["plain"] == (HTTP_DEFAULT, None)
    assert nodes["other"] == (RetryPolicy(), None)  # core.transform declares none
    assert nodes["own"] == (RetryPolicy(max_attempts=7), 5)


def test_layer_two_the_tenant_overrides_the_piece() -> None:
    nodes = _nodes(_definition(), tenant_defaults=TENANT)
    assert nodes["plain"] == (RetryPolicy(max_attempts=5), 30)
    assert nodes["other"] == (RetryPolicy(max_attempts=5), 30)
    assert nodes["own"] == (RetryPolicy(max_attempts=7), 5)


def test_layer_three_the_workflow_overrides_the_tenant() -> None:
    document = _definition(defaults={"retry": {"max_attempts": 2}})
    nodes = _nodes(document, tenant_defaults=TENANT)
    # Each setting comes whole from the most specific layer that sets it.
    assert nodes["plain"] == (RetryPolicy(max_attempts=2), 30)
    assert nodes["other"] == (RetryPolicy(max_attempts=2), 30)


def test_layer_four_the_node_wins() -> None:
    document = _definition(defaults={"retry": {"max_attempts": 2}, "timeout_seconds": 9})
    nodes = _nodes(document, tenant_defaults=TENANT)
    assert nodes["own"] == (RetryPolicy(max_attempts=7), 5)
    assert nodes["plain"] == (RetryPolicy(max_attempts=2), 9)


def test_without_a_registry_no_piece_defaults_apply() -> None:
    parsed = Workflow.parse(_definition())
    assert parsed.plan.nodes["plain"].retry == RetryPolicy()


class FixedPolicies:
    def __init__(self, policy: TenantPolicy) -> None:
        self.asked: list[str] = []
        self._policy = policy

    async def policy(self, tenant: str) -> TenantPolicy:
        self.asked.append(tenant)
        return self._policy


async def _run(definition: dict[str, Any], policy: TenantPolicy) -> tuple[RunOutcome, list[str]]:
    policies = FixedPolicies(policy)
    with using_services(RunServices(policies=policies)):
        state = await call_flow(
            named_flow(definition["id"]), run_name="policy", definition=definition,
            tenant="acme",
        )  # fmt: skip
    outcome = await state.aresult(raise_on_failure=False)
    assert isinstance(outcome, RunOutcome)
    return outcome, policies.asked


@pytest.mark.usefixtures("engine")
async def test_the_pieces_default_retry_applies_to_a_run(service: RunningService) -> None:
    url = f"{service.url}/flaky/piece-default?fail=2"
    definition = workflow([node("fetch", "http.request", input={"method": "GET", "url": url})])
    outcome, asked = await _run(definition, TenantPolicy())
    assert outcome.result.state == "completed"
    assert outcome.result.nodes["fetch"].attempts == 3
    assert asked == ["acme"]


@pytest.mark.usefixtures("engine")
async def test_the_tenants_defaults_apply_to_a_run(service: RunningService) -> None:
    url = f"{service.url}/flaky/tenant-default?fail=5"
    definition = workflow([node("fetch", "http.request", input={"method": "GET", "url": url})])
    retry = RetryPolicy(max_attempts=2, delay_seconds=0)
    tenant = TenantPolicy(defaults=ExecutionDefaults(retry=retry))
    outcome, _ = await _run(definition, tenant)
    assert outcome.result.state == "failed"
    assert outcome.result.nodes["fetch"].attempts == 2


@pytest.mark.usefixtures("engine")
async def test_a_piece_the_tenant_may_not_use_refuses_the_run() -> None:
    definition = workflow([node("wait", "core.delay", input={"seconds": 0})])
    outcome, _ = await _run(definition, TenantPolicy(allowed_pieces=frozenset({"core.transform"})))
    assert outcome.result.state == "failed"
    assert outcome.result.error is not None
    assert outcome.result.error["type"] == "InvalidDefinition"
    assert "'core.delay' is not allowed for tenant 'acme'" in outcome.result.error["message"]


@pytest.fixture
def only_public_addresses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from pieces.settings import get_piece_settings

    monkeypatch.setenv("ALTLAS_HTTP_ALLOW_PRIVATE", "")
    get_piece_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_piece_settings.cache_clear()


@pytest.mark.usefixtures("engine", "only_public_addresses")
async def test_a_tenants_http_allow_list_reaches_its_runs_only(service: RunningService) -> None:
    definition = workflow(
        [node("fetch", "http.request", input={"method": "GET", "url": f"{service.url}/slow"})]
    )
    refused, _ = await _run(definition, TenantPolicy())
    assert refused.result.state == "failed"
    assert refused.result.nodes["fetch"].attempts == 1  # a refused address is not retried
    allowed, _ = await _run(definition, TenantPolicy(http_allow=("127.0.0.1/32",)))
    assert allowed.result.state == "completed", allowed.result.error
