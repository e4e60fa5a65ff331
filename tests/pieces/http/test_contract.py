"""`http.request` as a piece: its published schema, input validation and registration."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pieces.base import StrictModel
from pieces.http import HttpRequestPiece
from pieces.registry import ENTRY_POINT_GROUP, PieceRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_schema_publishes_the_spec_fields() -> None:
    schema = HttpRequestPiece.input_schema()
    assert set(schema["properties"]) == {
        "method",
        "url",
        "headers",
        "query",
        "json",
        "body",
        "timeout_seconds",
        "expect_status",
        "follow_redirects",
    }
    assert schema["required"] == ["url"]
    assert schema["additionalProperties"] is False
    assert issubclass(HttpRequestPiece.Input, StrictModel)
    output = HttpRequestPiece.output_schema()
    assert output is not None
    assert set(output["properties"]) == {"status", "headers", "body"}


def test_defaults() -> None:
    model = HttpRequestPiece.Input.model_validate({"url": "https://api.example/x"})
    assert model.method == "GET"
    assert model.expect_status == "2xx"
    assert model.follow_redirects is True
    assert model.timeout_seconds == 30


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "https://x.example/", "json": {"a": 1}, "body": "a=1"},
        {"url": "https://x.example/", "bogus": 1},
        {"url": "https://x.example/", "json_body": {}},
        {"url": "https://x.example/", "method": "FETCH"},
        {"url": "https://x.example/", "headers": {"Host": "evil.example"}},
        {"url": "https://x.example/", "headers": {"content-length": "1"}},
        {"url": "https://x.example/", "headers": {"X-A": "a\r\nX-B: b"}},
        {"url": "https://x.example/", "headers": {"Bad Name": "x"}},
        {"url": "https://x.example/", "headers": {"X-A": "a\x01b"}},
        {"url": "https://x.example/", "timeout_seconds": 0},
        {"url": ""},
        {},
    ],
)
def test_invalid_input(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpRequestPiece.Input.model_validate(bad)


def test_registered_through_the_entry_point() -> None:
    """pyproject.toml names the class under the `altlas.pieces` group; loading it yields ours."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    value = project["project"]["entry-points"][ENTRY_POINT_GROUP]["http.request"]
    piece = EntryPoint("http.request", value, ENTRY_POINT_GROUP).load()
    assert piece is HttpRequestPiece
    registry = PieceRegistry()
    registry.register(piece)
    assert registry.action("http.request") is HttpRequestPiece


def test_with_options_returns_a_copy() -> None:
    async def resolver(host: str, port: int) -> list[Any]:
        return []

    configured = HttpRequestPiece.with_options(resolver=resolver)
    assert configured.fetch_options.resolver is resolver
    assert HttpRequestPiece.fetch_options.resolver is not resolver
    assert configured.key == "http.request"
