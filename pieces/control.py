"""Control-flow pieces that need the engine: `core.subworkflow`, `core.approval` and
`core.start_workflow`.

Each delegates to `PieceContext.engine` (the engine owns flow runs, pauses and the service's
runs); as pieces they are registered, documented and validated like any other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field, model_validator

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


class StartWorkflowPiece(Piece["StartWorkflowPiece.Input", dict[str, Any]]):
    """Start a run of another stored workflow of the same tenant, now or later."""

    key = "core.start_workflow"
    display_name = "Start workflow"
    description = (
        "Start a run of another workflow of the same tenant as a run of its own (its own "
        "flow run, in the run history with trigger `workflow`), now, at `scheduled_at`, or "
        "`delay_seconds` from now; with `wait`, the node ends when that run ends and fails "
        "if it did not complete. Output: `{run_id, state, scheduled_at, output, error}`. A "
        "retried attempt does not start a second run."
    )
    category = "core"

    class Input(StrictModel):
        workflow_id: str = Field(
            pattern=r"^[a-z][a-z0-9-]{0,62}$", description="The `id` of the workflow to start."
        )
        parameters: dict[str, Any] = Field(
            default_factory=dict, description="The new run's parameters (checked at once)."
        )
        scheduled_at: AwareDatetime | None = Field(
            default=None,
            description="When the run starts (RFC 3339 with a time zone); now when omitted.",
        )
        delay_seconds: float | None = Field(
            default=None, ge=0, description="Start the run this many seconds from now."
        )
        wait: bool = Field(
            default=False,
            description="Wait for the run to end and return its output (fails if it did not "
            "complete).",
        )

        @model_validator(mode="after")
        def _one_start_time(self) -> StartWorkflowPiece.Input:
            if self.scheduled_at is not None and self.delay_seconds is not None:
                raise ValueError("give `scheduled_at` or `delay_seconds`, not both")
            return self

        def start_time(self) -> datetime | None:
            if self.delay_seconds is not None:
                return datetime.now(UTC) + timedelta(seconds=self.delay_seconds)
            return self.scheduled_at

    async def run(self, context: PieceContext, input: Input) -> dict[str, Any]:
        return await context.engine.start_workflow(
            workflow_id=input.workflow_id,
            parameters=input.parameters,
            scheduled_at=input.start_time(),
            wait=input.wait,
        )
