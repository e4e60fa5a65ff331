"""Both ALT_LAS service pieces inside real workflow runs, against the reference services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from interpreter import arun_workflow
from pieces.settings import get_piece_settings
from tests.interpreter.conftest import engine  # noqa: F401 - the session's Prefect server
from tests.pieces.altlas.conftest import RunningService
from tests.support.definitions import edge, node, workflow

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def services(
    ai_service: RunningService, os_service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RunningService, RunningService]]:
    monkeypatch.setenv("ALTLAS_AI_ORCHESTRATOR_URL", ai_service.url)
    monkeypatch.setenv("ALTLAS_OS_INTEGRATION_URL", os_service.url)
    get_piece_settings.cache_clear()
    yield ai_service, os_service
    get_piece_settings.cache_clear()


TEXT = "the quick brown fox jumps over the lazy dog and runs far away"


def summarise_and_store() -> dict[str, object]:
    return workflow(
        [
            node(
                "summarise",
                "altlas.ai_orchestrator",
                input={"task": "summarise", "input": {"text": "{{ params.text }}", "max_words": 4}},
            ),
            node(
                "store",
                "altlas.os_integration",
                input={
                    "action": "fs.write",
                    "arguments": {
                        "path": "/reports/summary.txt",
                        "content": "{{ nodes.summarise.output.output.summary }}",
                    },
                },
            ),
            node(
                "read_back",
                "altlas.os_integration",
                input={"action": "fs.read", "arguments": {"path": "/reports/summary.txt"}},
            ),
            node("unreachable", value="{{ error.type }}: {{ error.message }}"),
        ],
        [
            edge("summarise", "store"),
            edge("store", "read_back"),
            edge("summarise", "unreachable", on="error"),
        ],
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
        output={
            "summary": "{{ nodes.read_back.output.result.content if nodes.read_back.output }}",
            "alert": "{{ nodes.unreachable.output }}",
        },
    )


async def test_a_workflow_calls_both_services_as_its_tenant(
    services: tuple[RunningService, RunningService],
) -> None:
    ai, os_ = services
    result = await arun_workflow(
        summarise_and_store(),
        {"text": TEXT},
        tenant="acme",
        secrets={
            "ai_orchestrator_token": ai.token_of("acme"),
            "os_integration_token": os_.token_of("acme"),
        },
    )
    assert result.state == "completed", result.error
    assert result.output == {"summary": "the quick brown fox", "alert": None}
    assert [n.attempts for n in result.nodes.values()][:3] == [1, 1, 1]
    assert "ai-token-acme" not in str(result.to_dict())


async def test_a_refused_token_takes_the_error_edge_without_retrying(
    services: tuple[RunningService, RunningService],
) -> None:
    ai, os_ = services
    definition = summarise_and_store()
    definition["defaults"] = {"retry": {"max_attempts": 3, "delay_seconds": 0}}
    result = await arun_workflow(
        definition,
        {"text": TEXT},
        tenant="acme",
        secrets={
            "ai_orchestrator_token": ai.token_of("globex"),
            "os_integration_token": os_.token_of("acme"),
        },
    )
    assert result.state == "completed"
    summarise = result.nodes["summarise"]
    assert (summarise.status, summarise.attempts) == ("failed", 1)
    assert result.output["alert"].startswith("Unauthorized")
    assert result.nodes["store"].status == "skipped"
