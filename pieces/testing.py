"""Run one piece outside a workflow, for piece unit tests: `run_piece`.

Piece authors test a piece's own logic with this (no Prefect server needed); a workflow that uses
the piece is then tested end to end with `interpreter.run_workflow`.

Example:
    ```python
    from pieces.testing import run_piece

    async def test_greet() -> None:
        assert await run_piece(Greet, {"name": "ada"}) == {"greeting": "hello ada"}
    ```
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pieces.base import (
    EngineServices,
    Piece,
    PieceError,
    RunInfo,
    SecretNotFoundError,
    json_output,
)
from pieces.settings import PieceSettings, get_piece_settings


class _NoEngine:
    """Engine services are not available to a piece run on its own."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"engine service {name!r} needs a workflow run: test this piece with run_workflow"
        )


@dataclass
class StandaloneContext:
    """A `PieceContext` for one piece run outside the engine (templates are left as they are)."""

    node_id: str = "test"
    attempt: int = 1
    run: RunInfo = field(
        default_factory=lambda: RunInfo(
            id="standalone",
            workflow_id="standalone",
            version="0",
            tenant="default",
            started_at=datetime.now(UTC).isoformat(),
        )
    )
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("altlas.piece"))
    settings: PieceSettings = field(default_factory=get_piece_settings)
    secrets: Mapping[str, str] = field(default_factory=dict)
    cancel_requested: bool = False
    piece: type[Piece[Any, Any]] | None = None
    """When set (`run_piece` sets it), only the secrets this piece declares can be read."""

    @property
    def engine(self) -> EngineServices:
        return _NoEngine()

    async def secret(self, name: str) -> str:
        if self.piece is not None and not any(s.name == name for s in self.piece.secrets):
            raise PieceError(
                f"piece {self.piece.key!r} asked for secret {name!r} without declaring it",
                error_type="UndeclaredSecret",
                retryable=False,
            )
        try:
            return self.secrets[name]
        except KeyError:
            raise SecretNotFoundError(name) from None

    def render(self, value: Any, **names: Any) -> Any:
        return value


async def run_piece(
    piece: type[Piece[Any, Any]],
    input: Mapping[str, Any],
    *,
    context: StandaloneContext | None = None,
) -> Any:
    """Validate `input` against the piece's `Input` model, run it once, return its output as the
    engine would record it (JSON, models dumped by alias; `InvalidOutput` otherwise)."""
    instance = piece()
    model = piece.parse_input(dict(input))
    context = replace(context or StandaloneContext(), piece=piece)
    result = await instance.run(context, model)
    return json_output(result)
