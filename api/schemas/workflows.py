"""Stored workflows: the definition in, `WorkflowPublic` / `WorkflowSummary` out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import ProblemItem


class TriggerPublic(BaseModel):
    id: str
    type: str
    url: str | None = Field(description="The full webhook URL for webhook triggers, else null.")


class WorkflowSummary(BaseModel):
    id: str
    version: int
    enabled: bool
    name: str | None
    description: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    triggers: list[TriggerPublic]


class WorkflowPublic(WorkflowSummary):
    definition: dict[str, Any]


class VersionPublic(BaseModel):
    version: int
    created_at: datetime


class ValidationResult(BaseModel):
    valid: bool
    problems: list[ProblemItem]
