"""The pieces catalogue."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PiecePublic(BaseModel):
    key: str
    version: str
    display_name: str
    description: str
    category: str
    kind: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    defaults: dict[str, Any] | None = Field(
        default=None,
        description="What the piece declares for its nodes' `retry` and `timeout_seconds` "
        "when nothing more specific sets them (actions only).",
    )
