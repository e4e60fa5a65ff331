"""What a finished run reports: `RunResult` with one `NodeResult` per node.

Everything here is already redacted: secrets appear as `***`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RunState = Literal["completed", "failed", "cancelled", "timed_out"]
NodeStatus = Literal["completed", "failed", "skipped", "cancelled"]


@dataclass(frozen=True)
class NodeResult:
    """The outcome of one node.

    Attributes:
        status: `completed`, `failed`, `skipped` (not run: no incoming edge was taken), or
            `cancelled` (stopped, or never started, because the run was cancelled or timed out).
        output: what the piece returned (`{"error": {...}}` for `on_error: continue` failures).
        error: `{"node", "type", "message", "attempts"}` when the node failed.
        attempts: how many times the piece was tried (0 when it never ran).
    """

    id: str
    status: NodeStatus
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall-clock time from the first attempt's start to the end, when the node ran."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class RunResult:
    """The outcome of a whole run.

    Attributes:
        state: `completed`, `failed`, `cancelled` or `timed_out`.
        output: the evaluated top-level `output` (None unless the run completed).
        flow_run_id: the Prefect flow run's id.
        nodes: every node of the workflow by id.
        error: for a run that did not complete, `{"type", "message"}` saying why.
    """

    state: RunState
    output: Any
    flow_run_id: str
    workflow_id: str
    version: str
    tenant: str
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `altlas-flows run` prints)."""
        return {
            "state": self.state,
            "output": self.output,
            "error": self.error,
            "flow_run_id": self.flow_run_id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "tenant": self.tenant,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "nodes": {node_id: node.to_dict() for node_id, node in self.nodes.items()},
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
