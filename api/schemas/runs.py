"""Runs: starting one, `RunPublic`, `NodeRunPublic`, resuming, workflow statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import MAX_VERSION, RequestModel, Rfc3339


class RunStart(RequestModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Default: the current version."
    )
    scheduled_at: Rfc3339 | None = Field(
        default=None, description="Start no earlier than this time (RFC 3339, with an offset)."
    )


class RunResume(RequestModel):
    input: dict[str, Any] | None = Field(
        default=None, description="For a run waiting in `core.approval`: the approver's answer."
    )


class TriggerRef(BaseModel):
    type: str
    id: str | None


class RunPublic(BaseModel):
    id: str
    workflow_id: str
    version: int
    state: str
    trigger: TriggerRef
    parameters: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    flow_run_id: str | None
    ui_url: str | None


class NodeRunPublic(BaseModel):
    node_id: str
    status: str
    attempts: int
    input: Any
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None


class Durations(BaseModel):
    p50: float | None
    p95: float | None


class WorkflowStatsPublic(BaseModel):
    counts: dict[str, int]
    duration_seconds: Durations
    success_rate: float | None = Field(description="completed ÷ finished; null when none finished")
