"""The `altlas.ai_orchestrator` piece: run a task on the ALT_LAS AI Orchestrator. Main entry:
`AiOrchestratorPiece`.

It sends `POST /v1/tasks` with `{"task", "input", "model"}` and returns the service's JSON answer
unchanged; the HTTP contract is in `docs/altlas-services.md`, the shared client in
`pieces.altlas.client`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pieces.altlas.client import AltlasService, call_service
from pieces.base import Piece, PieceContext, SecretRequirement, StrictModel

AI_ORCHESTRATOR = AltlasService(
    name="AI Orchestrator",
    secret=SecretRequirement(
        name="ai_orchestrator_token",
        description="Bearer token of the tenant at the AI Orchestrator (unset: send none).",
        optional=True,
    ),
    base_url=lambda settings: settings.ai_orchestrator_url,
)


class AiOrchestratorPiece(Piece["AiOrchestratorPiece.Input", dict[str, Any]]):
    """Ask the AI Orchestrator to run `task` on `input`, optionally with a given `model`."""

    key = "altlas.ai_orchestrator"
    display_name = "ALT_LAS AI Orchestrator"
    description = (
        "Run a task (e.g. `summarise`, `classify`) on the ALT_LAS AI Orchestrator; the output is "
        "the orchestrator's JSON answer `{task, model, output}`."
    )
    category = "altlas"
    secrets = (AI_ORCHESTRATOR.secret,)

    class Input(StrictModel):
        task: str = Field(
            min_length=1, max_length=200, description="The task to run, e.g. `summarise`."
        )
        input: Any = Field(description="The task's input: any JSON value.")
        model: str | None = Field(
            default=None,
            min_length=1,
            max_length=200,
            description="The model to use; unset: the orchestrator chooses.",
        )

    Output = dict[str, Any]

    async def run(self, context: PieceContext, input: Input) -> dict[str, Any]:
        body: dict[str, Any] = {"task": input.task, "input": input.input}
        if input.model is not None:
            body["model"] = input.model
        return await call_service(AI_ORCHESTRATOR, context, path="/v1/tasks", body=body)
