"""Control-flow pieces that need the engine: `core.subworkflow` and `core.approval`.

Both delegate to `PieceContext.engine` (the engine owns flow runs and pauses); as pieces they are
registered, documented and validated like any other.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pieces.base import Piece, PieceContext, StrictModel

MAX_APPROVAL_SECONDS = 30 * 24 * 3600


class SubworkflowPiece(Piece["SubworkflowPiece.Input", Any]):
    """Run another workflow of the same tenant as a Prefect subflow and return its output."""

    key = "core.subworkflow"
    display_name = "Sub-workflow"
    description = (
        "Run another workflow (same tenant) as a Prefect subflow run; the output is the child "
        "run's `output`. A child that does not complete fails this node."
    )
    category = "core"

    class Input(StrictModel):
        workflow_id: str = Field(
            pattern=r"^[a-z][a-z0-9-]{0,62}$", description="The `id` of the workflow to run."
        )
        version: str | None = Field(
            default=None, description="A stored version; the latest when omitted."
        )
        parameters: dict[str, Any] = Field(
            default_factory=dict, description="The child run's parameters."
        )

    async def run(self, context: PieceContext, input: Input) -> Any:
        return await context.engine.run_child_workflow(
            workflow_id=input.workflow_id, version=input.version, parameters=input.parameters
        )


class ApprovalPiece(Piece["ApprovalPiece.Input", Any]):
    """Pause the run until a person resumes it, and return what they sent."""

    key = "core.approval"
    display_name = "Approval"
    description = (
        "Pause the run (Prefect pause with input) until someone resumes it; the output is what "
        "they sent. Without `input_schema` they send {approved, comment}. A time-out is an error "
        "(route it with an error edge)."
    )
    category = "core"

    class Input(StrictModel):
        message: str = Field(min_length=1, description="What the approver is asked.")
        input_schema: dict[str, Any] | None = Field(
            default=None, description="JSON Schema of what the approver sends when resuming."
        )
        timeout_seconds: float = Field(
            default=24 * 3600,
            gt=0,
            le=MAX_APPROVAL_SECONDS,
            description="How long to wait (default one day).",
        )

    async def run(self, context: PieceContext, input: Input) -> Any:
        return await context.engine.wait_for_approval(
            message=input.message,
            input_schema=input.input_schema,
            timeout_seconds=input.timeout_seconds,
        )
