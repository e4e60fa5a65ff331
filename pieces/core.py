"""Core pieces: `core.delay`, `core.transform` and `core.map`.

`core.subworkflow` and `core.approval` live in `pieces.control`: they need the engine's services.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field, model_validator

from pieces.base import Piece, PieceContext, StrictModel


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

        async def one(index: int, item: Any) -> Any:
            names = {"item": item, "index": index}
            label = f"{context.node_id}[{index}]"
            async with limit:
                if input.piece is not None:
                    return await engine.run_piece_for_item(
                        piece=input.piece, raw_input=input.input or {}, names=names, label=label
                    )
                assert input.workflow is not None
                return await engine.run_subgraph(graph=input.workflow, names=names, label=label)

        # One coroutine per item is created up front but each waits on the semaphore before any
        # work: items are plain data, so a 10,000-item map costs a list, not threads.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(i, item)) for i, item in enumerate(input.items)]
        return [task.result() for task in tasks]
