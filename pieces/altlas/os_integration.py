"""The `altlas.os_integration` piece: perform an action through the ALT_LAS OS Integration service.
Main entry: `OsIntegrationPiece`.

It sends `POST /v1/actions` with `{"action", "arguments"}` and returns the service's JSON answer
unchanged; the HTTP contract is in `docs/altlas-services.md`, the shared client in
`pieces.altlas.client`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pieces.altlas.client import AltlasService, call_service
from pieces.base import Piece, PieceContext, SecretRequirement, StrictModel

OS_INTEGRATION = AltlasService(
    name="OS Integration",
    secret=SecretRequirement(
        name="os_integration_token",
        description="Bearer token of the tenant at the OS Integration service (unset: send none).",
        optional=True,
    ),
    base_url=lambda settings: settings.os_integration_url,
)


class OsIntegrationPiece(Piece["OsIntegrationPiece.Input", dict[str, Any]]):
    """Ask the OS Integration service to perform `action` with `arguments`."""

    key = "altlas.os_integration"
    display_name = "ALT_LAS OS Integration"
    description = (
        "Perform an operating-system action (e.g. `fs.read`, `fs.write`) through the ALT_LAS OS "
        "Integration service; the output is the service's JSON answer `{action, result}`."
    )
    category = "altlas"
    secrets = (OS_INTEGRATION.secret,)

    class Input(StrictModel):
        action: str = Field(
            pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
            max_length=200,
            description="The action, `family.verb`, e.g. `fs.write`.",
        )
        arguments: dict[str, Any] = Field(
            default_factory=dict, description="The action's arguments (a JSON object)."
        )

    Output = dict[str, Any]

    async def run(self, context: PieceContext, input: Input) -> dict[str, Any]:
        body = input.model_dump(mode="json")
        return await call_service(OS_INTEGRATION, context, path="/v1/actions", body=body)
