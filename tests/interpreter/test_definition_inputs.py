"""One input rule for literal and templated values: the piece's published JSON Schema, strictly.

`Piece.parse_input` is what the engine applies to a node's input once templates are evaluated;
the validator applies the same schema (and `parse_input`) to literal inputs. Every row of the
table is checked both ways and must get the same verdict.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from interpreter import arun_workflow, validate
from pieces.base import Piece, PieceContext, StrictModel
from pieces.registry import PieceRegistry, default_registry

OK, BAD = True, False

# (piece, literal input, valid?)
TABLE: list[tuple[str, dict[str, Any], bool]] = [
    ("core.delay", {"seconds": 0.1}, OK),
    ("core.delay", {"seconds": 1}, OK),
    ("core.delay", {"seconds": "0.1"}, BAD),  # a string is not a number
    ("core.delay", {"seconds": True}, BAD),  # nor is a boolean
    ("core.delay", {"seconds": None}, BAD),
    ("core.delay", {"seconds": [1]}, BAD),
    ("core.delay", {"seconds": -1}, BAD),
    ("core.delay", {}, BAD),
    ("core.delay", {"seconds": 1, "extra": 1}, BAD),
    ("http.request", {"url": "https://x.example", "method": "POST"}, OK),
    ("http.request", {"url": "https://x.example", "method": "post"}, BAD),  # a Literal
    ("http.request", {"url": "https://x.example", "follow_redirects": "true"}, BAD),
    ("http.request", {"url": "https://x.example", "follow_redirects": False}, OK),
    ("http.request", {"url": "https://x.example", "timeout_seconds": "5"}, BAD),
    ("http.request", {"url": "https://x.example", "headers": {"X-N": 5}}, OK),  # sent as "5"
    ("http.request", {"url": "https://x.example", "headers": {"X-N": True}}, BAD),
    ("http.request", {"url": "https://x.example", "headers": {"X-N": "5"}}, OK),
    ("http.request", {"url": "https://x.example", "headers": {"Host": "y"}}, BAD),  # a validator
    ("http.request", {"url": "https://x.example", "headers": {"bad name": "y"}}, BAD),
    ("http.request", {"url": "https://x.example", "expect_status": 404}, OK),
    ("http.request", {"url": "https://x.example", "expect_status": ["2xx", 404]}, OK),
    ("http.request", {"url": "https://x.example", "expect_status": "abc"}, BAD),
    ("http.request", {"url": "https://x.example", "query": {"a": None}}, BAD),
    ("http.request", {"url": "https://x.example", "query": {"a": [1, "b", True]}}, OK),
    ("http.request", {"url": "https://x.example", "json": {"a": 1}, "body": "x"}, BAD),
    ("code.python", {"code": "def main(i): return 1", "memory_mb": 128}, OK),
    ("code.python", {"code": "def main(i): return 1", "memory_mb": 128.0}, OK),  # integral
    ("code.python", {"code": "def main(i): return 1", "memory_mb": "128"}, BAD),
    ("code.python", {"code": "def main(i): return 1", "timeout_seconds": 700}, BAD),
    ("core.map", {"items": [1], "piece": "core.delay", "input": {"seconds": 0}}, OK),
    ("core.map", {"items": "1,2", "piece": "core.delay", "input": {"seconds": 0}}, BAD),
    ("core.map", {"items": [1], "max_concurrency": "2", "piece": "core.delay"}, BAD),
    ("core.map", {"items": [1]}, BAD),  # neither piece nor workflow: the model's own rule
    ("core.approval", {"message": "ok?", "timeout_seconds": 60}, OK),
    ("core.approval", {"message": "ok?", "timeout_seconds": "60"}, BAD),
    ("core.approval", {"message": ""}, BAD),
    ("core.subworkflow", {"workflow_id": "child"}, OK),
    ("core.subworkflow", {"workflow_id": "Child"}, BAD),
    ("core.transform", {"value": {"any": ["json", 1, None]}}, OK),
]


def document(piece: str, raw_input: dict[str, Any]) -> dict[str, Any]:
    return {"format": 1, "id": "wf", "nodes": [{"id": "a", "piece": piece, "input": raw_input}]}


def parses(piece: type[Piece[Any, Any]], raw: Any) -> bool:
    try:
        piece.parse_input(raw)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("key", "raw_input", "valid"), TABLE, ids=[repr(r[1]) for r in TABLE])
def test_literal_and_rendered_inputs_get_the_same_verdict(
    key: str, raw_input: dict[str, Any], valid: bool
) -> None:
    problems = validate(document(key, raw_input))
    assert (problems == []) is valid, problems
    assert all(p.path.startswith("/nodes/0/input") for p in problems), problems
    assert parses(default_registry().action(key), raw_input) is valid


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(StrictModel):
    x: int
    y: int = 0


class Sample(Piece["Sample.Input", Any]):
    """A piece with the field types a JSON document reaches only through their JSON forms."""

    key = "test.sample"
    deferred_inputs: ClassVar[frozenset[str]] = frozenset({"later"})

    class Input(StrictModel):
        colour: Colour = Colour.RED
        mode: Literal["fast", "safe"] = "fast"
        at: datetime | None = None
        point: Point | None = None
        ratio: float = Field(default=0.5, ge=0, le=1)
        later: dict[str, Any] | None = None

    async def run(self, context: PieceContext, input: BaseModel) -> Any:
        return None


SAMPLE_TABLE: list[tuple[dict[str, Any], bool]] = [
    ({"colour": "blue"}, OK),  # an enum from its value
    ({"colour": "green"}, BAD),
    ({"mode": "safe"}, OK),
    ({"mode": "SAFE"}, BAD),
    ({"at": "2026-11-01T02:00:00Z"}, OK),  # a datetime from its RFC 3339 string
    ({"at": "tomorrow"}, BAD),
    ({"at": 1700000000}, BAD),  # not a timestamp
    ({"point": {"x": 1, "y": 2}}, OK),  # a nested model
    ({"point": {"x": "1"}}, BAD),
    ({"point": {"x": 1, "z": 0}}, BAD),
    ({"ratio": 1}, OK),
    ({"ratio": "0.5"}, BAD),
    ({"later": {"seconds": "{{ item }}"}}, OK),  # deferred: still a template
]


@pytest.mark.parametrize(
    ("raw_input", "valid"), SAMPLE_TABLE, ids=[repr(r[0]) for r in SAMPLE_TABLE]
)
def test_enums_datetimes_nested_models_and_deferred_inputs(
    raw_input: dict[str, Any], valid: bool
) -> None:
    registry = PieceRegistry()
    registry.register(Sample)
    problems = validate(document("test.sample", raw_input), registry=registry)
    assert (problems == []) is valid, problems
    assert parses(Sample, raw_input) is valid


def test_parse_input_builds_the_model_from_json_forms() -> None:
    model = Sample.parse_input(
        {"colour": "blue", "at": "2026-11-01T02:00:00Z", "point": {"x": 1}, "ratio": 1}
    )
    assert isinstance(model, Sample.Input)
    assert model.colour is Colour.BLUE
    assert model.at == datetime(2026, 11, 1, 2, tzinfo=UTC)
    assert model.point == Point(x=1, y=0)
    assert model.ratio == 1.0


def test_parse_input_errors_carry_the_path_and_say_what_is_wrong() -> None:
    delay = default_registry().action("core.delay")
    with pytest.raises(ValidationError) as caught:
        delay.parse_input({"seconds": "0.1"})
    [error] = caught.value.errors(include_url=False)
    assert error["loc"] == ("seconds",)
    assert error["msg"] == '"0.1" is not of type "number"'
    with pytest.raises(ValidationError) as caught:
        delay.parse_input({"seconds": float("nan")})  # e.g. {{ 'nan' | float }}
    assert caught.value.errors(include_url=False)[0]["msg"] == "nan is not a JSON number"
    with pytest.raises(ValidationError) as caught:
        delay.parse_input({"seconds": range(3)})  # e.g. {{ range(3) }}
    assert "not JSON" in caught.value.errors(include_url=False)[0]["msg"]


@pytest.mark.usefixtures("engine")
async def test_a_templated_string_where_a_number_belongs_fails_the_node_with_invalid_input() -> (
    None
):
    """The string "0.1" is refused in `seconds` whether written there or rendered there."""
    parameters = {"type": "object", "properties": {"wait": {"type": "string"}}}
    literal = document("core.delay", {"seconds": "0.1"})
    assert [p.path for p in validate(literal)] == ["/nodes/0/input/seconds"]

    templated = {
        **document("core.delay", {"seconds": "{{ params.wait }}"}),
        "id": "strict-input",
        "parameters": parameters,
    }
    assert validate(templated) == []
    result = await arun_workflow(templated, {"wait": "0.1"})
    assert result.state == "failed"
    error = result.nodes["a"].error
    assert error is not None
    assert error["type"] == "InvalidInput"
    assert "seconds" in error["message"]
    assert result.nodes["a"].attempts == 1
