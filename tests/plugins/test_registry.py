"""The piece registry's lookups: by kind, of any kind (`PieceRegistry.any`), and one key per piece.

The registry is the one loaded from this engine's own entry points with no third-party
distribution allowed, so what else is installed does not matter; `test_third_party_pieces.py`
covers an installed, refused package.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from pieces import Piece, PieceContext, PieceKind, PieceRegistry, TriggerPiece, UnknownPieceError
from pieces.core import TransformPiece
from pieces.triggers import ScheduleTrigger


@pytest.fixture(scope="module")
def registry() -> PieceRegistry:
    return PieceRegistry.from_entry_points(allow=())


def test_any_finds_actions_and_triggers(registry: PieceRegistry) -> None:
    assert registry.any("core.transform") is TransformPiece
    assert registry.any("schedule") is ScheduleTrigger


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("core.transfrom", "core.transform"), ("schedul", "schedule"), ("webhok", "webhook")],
)
def test_any_raises_one_error_suggesting_a_key_of_either_kind(
    registry: PieceRegistry, key: str, suggestion: str
) -> None:
    with pytest.raises(UnknownPieceError) as caught:
        registry.any(key)
    error = caught.value
    assert str(error) == f"unknown piece {key!r}; did you mean {suggestion!r}?"
    assert (error.key, error.kind, error.suggestion) == (key, None, suggestion)


def test_any_without_a_close_key(registry: PieceRegistry) -> None:
    with pytest.raises(UnknownPieceError) as caught:
        registry.any("nothing-like-it")
    assert str(caught.value) == "unknown piece 'nothing-like-it'"
    assert caught.value.suggestion is None


def test_lookups_by_kind_suggest_and_list_their_own_kind(registry: PieceRegistry) -> None:
    with pytest.raises(UnknownPieceError) as action:
        registry.action("core.transfrom")
    assert str(action.value).startswith(
        "piece 'core.transfrom' is not installed (did you mean 'core.transform'?); known pieces: "
    )
    assert action.value.kind is PieceKind.ACTION
    with pytest.raises(UnknownPieceError) as trigger:
        registry.trigger("core.transform")  # an action, not a trigger
    assert str(trigger.value) == (
        "trigger type 'core.transform' is not installed; known trigger types: manual, schedule, "
        "webhook"
    )


class _ActionThing(Piece[BaseModel, Any]):
    key = "demo.thing"
    Input = BaseModel

    async def run(self, context: PieceContext, input: BaseModel) -> Any:
        return None


class _TriggerThing(TriggerPiece):
    key = "demo.thing"
    Config = BaseModel


def test_a_key_names_one_piece_whatever_its_kind() -> None:
    """Trigger keys may be dotted like action keys; the same key cannot be both."""
    registry = PieceRegistry()
    registry.register(_ActionThing, origin="first-dist")
    with pytest.raises(ValueError, match=r"^piece 'demo\.thing' from second-dist is already"):
        registry.register(_TriggerThing, origin="second-dist")
    assert registry.any("demo.thing") is _ActionThing
    assert registry.origin("demo.thing") == "first-dist"
    assert registry.triggers() == []
