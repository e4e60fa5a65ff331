"""`altlas.ai_orchestrator` against the reference AI Orchestrator: tasks, models, task errors."""

from __future__ import annotations

import pydantic
import pytest

from pieces.altlas import AiOrchestratorPiece
from pieces.base import PieceError
from pieces.registry import PieceRegistry
from pieces.testing import run_piece
from tests.pieces.altlas.conftest import MakeContext, RunningService, declared_entry_point

TEXT = "Orders from Izmir rose sharply this week while returns stayed flat and refunds fell."


async def test_summarise_returns_the_orchestrators_answer(make_context: MakeContext) -> None:
    answer = await run_piece(
        AiOrchestratorPiece,
        {"task": "summarise", "input": {"text": TEXT, "max_words": 4}},
        context=make_context(),
    )
    assert answer == {
        "task": "summarise",
        "model": "altlas-small",
        "output": {"summary": "Orders from Izmir rose", "words": 14, "truncated": True},
    }


async def test_classify_depends_on_the_input(make_context: MakeContext) -> None:
    labels = {"sales": ["orders", "sold"], "support": ["returns", "refunds", "broken"]}
    sales = await run_piece(
        AiOrchestratorPiece,
        {"task": "classify", "input": {"text": "Orders, orders and more orders", "labels": labels}},
        context=make_context(),
    )
    support = await run_piece(
        AiOrchestratorPiece,
        {"task": "classify", "input": {"text": TEXT, "labels": labels}},
        context=make_context(node_id="other"),
    )
    assert sales["output"] == {"label": "sales", "scores": {"sales": 3, "support": 0}}
    assert support["output"] == {"label": "support", "scores": {"sales": 1, "support": 2}}


async def test_model_is_sent_when_given_and_omitted_otherwise(
    make_context: MakeContext, ai_service: RunningService
) -> None:
    chosen = await run_piece(
        AiOrchestratorPiece,
        {"task": "echo", "input": [1, {"a": None}], "model": "altlas-large"},
        context=make_context(node_id="chosen"),
    )
    default = await run_piece(
        AiOrchestratorPiece, {"task": "echo", "input": None}, context=make_context()
    )
    assert chosen == {"task": "echo", "model": "altlas-large", "output": [1, {"a": None}]}
    assert default == {"task": "echo", "model": "altlas-small", "output": None}
    bodies = [r.body for r in ai_service.state.requests]
    assert bodies == [
        {"task": "echo", "input": [1, {"a": None}], "model": "altlas-large"},
        {"task": "echo", "input": None},
    ]


@pytest.mark.parametrize(
    ("node_input", "code"),
    [
        ({"task": "translate", "input": "merhaba"}, "unknown_task"),
        ({"task": "echo", "input": 1, "model": "gpt-99"}, "unknown_model"),
        ({"task": "summarise", "input": {"text": 42}}, "invalid_input"),
    ],
)
async def test_a_refused_task_is_a_service_error_not_retried(
    make_context: MakeContext, node_input: dict[str, object], code: str
) -> None:
    with pytest.raises(PieceError) as info:
        await run_piece(AiOrchestratorPiece, node_input, context=make_context())
    error = info.value
    assert (error.error_type, error.retryable) == ("ServiceError", False)
    assert error.message.startswith(f"AI Orchestrator POST /v1/tasks answered 422 ({code}): ")
    assert error.details == {
        "service": "AI Orchestrator",
        "method": "POST",
        "path": "/v1/tasks",
        "status": 422,
        "code": code,
    }


@pytest.mark.parametrize(
    "node_input",
    [
        {"input": "x"},
        {"task": "echo"},
        {"task": "", "input": 1},
        {"task": "echo", "input": 1, "x": 2},
    ],
)
def test_input_model_refuses_malformed_nodes(node_input: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        AiOrchestratorPiece.Input.model_validate(node_input)


def test_piece_declares_its_optional_token_and_is_registered() -> None:
    assert [(s.name, s.optional) for s in AiOrchestratorPiece.secrets] == [
        ("ai_orchestrator_token", True)
    ]
    registry = PieceRegistry()
    registry.register(declared_entry_point("altlas.ai_orchestrator").load())
    assert registry.action("altlas.ai_orchestrator") is AiOrchestratorPiece
    assert set(AiOrchestratorPiece.input_schema()["required"]) == {"task", "input"}
