"""Core pieces: `core.delay`, `core.transform` and `core.map`.

`core.subworkflow` and `core.approval` live in `pieces.control`: they need the engine's services.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field, model_validator

from pieces.base import Piece, PieceContext, PieceError, StrictModel


class DelayPiece(Piece["DelayPiece.Input", dict[str, float]]):
    """Wait a number of seconds without holding a thread."""

    key = "core.delay"
    display_name = "Delay"
    description = "Wait a number of seconds, then continue."
    category = "core"

    class Input(StrictModel):
        seconds: float = Field(ge=0, description="How long to wait, in seconds.")

    Output = dict[str, float]

    async def run(self, context: PieceContext, input: Input) -> dict[str, float]:
        await asyncio.sleep(input.seconds)
        return {"slept": input.seconds}


class TransformPiece(Piece["TransformPiece.Input", Any]):
    """Shape data with templates: the output is `value` with every template evaluated."""

    key = "core.transform"
    display_name = "Transform"
    description = "Build a value from templates; the node's output is the evaluated value."
    category = "core"

    class Input(StrictModel):
        value: Any = Field(description="Any JSON value; templates inside it are evaluated.")

    async def run(self, context: PieceContext, input: Input) -> Any:
        return input.value


class MapPiece(Piece["MapPiece.Input", list[Any]]):
    """Run one piece, or one sub-graph, per item of a list; results come back in item order."""

    key = "core.map"
    display_name = "Map"
    description = (
        "For each item of `items`, run `piece` with `input` or the sub-graph `workflow`; "
        "`item` and `index` are in scope. Output: the list of results, in item order."
    )
    category = "core"
    deferred_inputs: ClassVar[frozenset[str]] = frozenset({"input", "workflow"})

    class Input(StrictModel):
        items: list[Any] = Field(description="The list to map over.")
        max_concurrency: int = Field(
            default=8, ge=1, le=1000, description="At most this many items run at once."
        )
        piece: str | None = Field(default=None, description="The piece run once per item.")
        input: dict[str, Any] | None = Field(
            default=None, description="The piece's input, evaluated per item."
        )
        workflow: dict[str, Any] | None = Field(
            default=None,
            description="A sub-graph `{nodes, edges, output}` run once per item.",
        )

        @model_validator(mode="after")
        def _piece_or_workflow(self) -> MapPiece.Input:
            if (self.piece is None) == (self.workflow is None):
                raise ValueError("give exactly one of `piece` (with `input`) or `workflow`")
            if self.workflow is not None and self.input is not None:
                raise ValueError("`input` goes with `piece`; a `workflow` takes no `input`")
            return self

    Output = list[Any]

    async def run(self, context: PieceContext, input: Input) -> list[Any]:
        limit = asyncio.Semaphore(input.max_concurrency)
        engine = context.engine
        failed = asyncio.Event()

        async def one(index: int, item: Any) -> Any:
            names = {"item": item, "index": index}
            label = f"{context.node_id}[{index}]"
            async with limit:
                if failed.is_set():
                    return _NOT_RUN
                try:
                    if input.piece is not None:
                        return await engine.run_piece_for_item(
                            piece=input.piece, raw_input=input.input or {}, names=names, label=label
                        )
                    assert input.workflow is not None
                    return await engine.run_subgraph(graph=input.workflow, names=names, label=label)
                except Exception:
                    failed.set()
                    raise

        # Items are plain data; each waits on the semaphore before doing any work. After a
        # failure no further item starts, and those already running finish normally.
        outcomes = await asyncio.gather(
            *(one(i, item) for i, item in enumerate(input.items)), return_exceptions=True
        )
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                raise _item_error(context.node_id, index, outcome, len(input.items))
        return list(outcomes)


_NOT_RUN = object()


def _item_error(node_id: str, index: int, exc: BaseException, total: int) -> PieceError:
    """The map node's error for its first failed item."""
    message = exc.message if isinstance(exc, PieceError) else f"{type(exc).__name__}: {exc}"
    kind = exc.error_type if isinstance(exc, PieceError) else type(exc).__name__
    return PieceError(
        f"item {index} of {total} ({node_id}[{index}]) failed: {message}",
        error_type=kind,
        retryable=getattr(exc, "retryable", True),
        details={"index": index},
    )
