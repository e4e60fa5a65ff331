"""Every example in definitions/examples is valid, and runs with the outcome it documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from interpreter import arun_workflow, validate
from tests.support.service import RunningService

EXAMPLES = Path(__file__).resolve().parents[2] / "definitions" / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.json"))


def test_there_are_at_least_six_examples() -> None:
    assert len(ALL) >= 6


@pytest.mark.parametrize("name", ALL)
def test_example_is_valid(name: str) -> None:
    assert validate(EXAMPLES / name) == []


EXPECTED: dict[str, tuple[dict[str, Any], Any, dict[str, str]]] = {
    "chain.json": ({}, {"text": "HELLO, WORLD!", "length": 13}, {"measure": "completed"}),
    "branch-join.json": (
        {"amount": 40},
        {"decision": "approved ACME order of 40", "reviewed": False},
        {"review": "skipped", "auto_approve": "completed", "notify": "completed"},
    ),
    "error-edge.json": (
        {},
        None,  # checked below
        {"fetch_metadata": "failed", "use_metadata": "skipped", "fallback": "completed"},
    ),
    "map.json": (
        {"vat": 0.1},
        {
            "items": [
                {"name": "pen", "gross": 2.2},
                {"name": "book", "gross": 13.2},
                {"name": "lamp", "gross": 33.0},
            ],
            "labels": ["1. Pen: 2.2 EUR", "2. Book: 13.2 EUR", "3. Lamp: 33.0 EUR"],
        },
        {"with_vat": "completed", "labels": "completed"},
    ),
    "parallel.json": ({"seconds": 0.5}, {"total_sleep": 1.5}, {"all_done": "completed"}),
    "parameters.json": (
        {"limits": {"rows": 10}},
        {
            "settings": {
                "title": "Weekly report",
                "recipients": ["ops@example.com"],
                "limits": {"rows": 10, "format": "csv"},
            },
            "summary": "Weekly report: 10 rows as csv to ops@example.com",
        },
        {"summary": "completed"},
    ),
}


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_runs_as_documented(name: str) -> None:
    parameters, output, statuses = EXPECTED[name]
    result = await arun_workflow(EXAMPLES / name, parameters)
    assert result.state == "completed", result.error
    if output is not None:
        assert result.output == output
    assert {k: result.nodes[k].status for k in statuses} == statuses
    if name == "error-edge.json":
        assert result.output["source"] == "fallback"
        assert result.output["reason"].startswith("ForbiddenAddress")
        assert result.nodes["fetch_metadata"].attempts == 1  # a refused address is not retried


@pytest.mark.usefixtures("engine")
async def test_order_sync_against_a_shop(service: RunningService) -> None:
    parameters = {"since": "2026-11-01", "shop_url": service.url, "threshold": 100}
    result = await arun_workflow(
        EXAMPLES / "order-sync.json", parameters, secrets={"shop_token": service.state.shop_token}
    )
    assert result.state == "completed", result.error
    assert result.output == {
        "summary": {"count": 2, "total": 115.5},
        "notified": "2 orders since 2026-11-01, total 115.5",
        "alert": None,
    }


@pytest.mark.usefixtures("engine")
async def test_order_sync_alerts_when_the_shop_refuses(service: RunningService) -> None:
    parameters = {"since": "2026-11-01", "shop_url": service.url}
    result = await arun_workflow(
        EXAMPLES / "order-sync.json", parameters, secrets={"shop_token": "wrong-token"}
    )
    assert result.state == "completed"
    assert result.nodes["fetch"].status == "failed"
    assert result.nodes["fetch"].attempts == 1  # 401 is not worth retrying
    assert result.output["alert"].startswith("order sync failed after 1 attempts")
    assert "wrong-token" not in str(result.to_dict())
