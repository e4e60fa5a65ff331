"""Store rows as the public schemas the API answers: `workflow_public`, `run_public`, ...

Values a tenant's secrets could be in (a run's parameters, output and error) pass through the
tenant's `Redactor` here, so a secret pasted into a parameter shows as `***` too.
"""

from __future__ import annotations

from typing import Any

from api.schemas.pieces import PiecePublic
from api.schemas.runs import NodeRunPublic, RunPublic, TriggerRef
from api.schemas.secrets import SecretPublic
from api.schemas.workflows import TriggerPublic, WorkflowPublic, WorkflowSummary
from api.store.models import NodeRun, Run, Workflow, WorkflowVersion
from api.store.secrets import SecretInfo
from interpreter.run.secrets import Redactor
from pieces.base import Piece, PieceMeta, TriggerPiece, TriggerStrategy
from pieces.registry import PieceRegistry, UnknownPieceError


def triggers_public(
    definition: dict[str, Any], *, tenant_id: str, base_url: str, registry: PieceRegistry
) -> list[TriggerPublic]:
    """A workflow's triggers; webhook triggers (by their piece's strategy) with their URL."""
    found: list[TriggerPublic] = []
    for trigger in definition.get("triggers") or []:
        kind = str(trigger.get("type", ""))
        try:
            strategy = registry.trigger(kind).strategy
        except UnknownPieceError:
            strategy = None
        url = (
            f"{base_url}/v1/hooks/{tenant_id}/{definition['id']}/{trigger['id']}"
            if strategy is TriggerStrategy.WEBHOOK
            else None
        )
        found.append(TriggerPublic(id=str(trigger.get("id", "")), type=kind, url=url))
    return found


def workflow_summary(
    row: Workflow, version: WorkflowVersion, *, base_url: str, registry: PieceRegistry
) -> WorkflowSummary:
    return WorkflowSummary(
        id=row.id,
        version=version.version,
        enabled=row.enabled,
        name=row.name,
        description=row.description,
        tags=list(row.tags or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
        triggers=triggers_public(
            version.definition, tenant_id=row.tenant_id, base_url=base_url, registry=registry
        ),
    )


def workflow_public(
    row: Workflow, version: WorkflowVersion, *, base_url: str, registry: PieceRegistry
) -> WorkflowPublic:
    summary = workflow_summary(row, version, base_url=base_url, registry=registry)
    return WorkflowPublic(**summary.model_dump(), definition=version.definition)


def run_public(run: Run, redactor: Redactor, ui_url: str | None) -> RunPublic:
    return RunPublic(
        id=run.id,
        workflow_id=run.workflow_id,
        version=run.version,
        state=run.state.value,
        trigger=TriggerRef(type=run.trigger_type.value, id=run.trigger_id),
        parameters=redactor.value(run.parameters),
        output=redactor.value(run.output),
        error=redactor.value(run.error),
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        flow_run_id=run.flow_run_id,
        ui_url=ui_url,
    )


def node_public(node: NodeRun, redactor: Redactor) -> NodeRunPublic:
    return NodeRunPublic(
        node_id=node.node_id,
        status=node.status.value,
        attempts=node.attempts,
        input=redactor.value(node.input),
        output=redactor.value(node.output),
        error=redactor.value(node.error),
        started_at=node.started_at,
        finished_at=node.finished_at,
    )


def secret_public(info: SecretInfo) -> SecretPublic:
    return SecretPublic(name=info.name, updated_at=info.updated_at)


def piece_public(piece: type[PieceMeta]) -> PiecePublic:
    """A piece as the catalogue shows it: an action's input and output schemas, a trigger's
    configuration schema (triggers have no output)."""
    defaults = None
    if isinstance(piece, type) and issubclass(piece, Piece):
        input_schema, output_schema = piece.input_schema(), piece.output_schema()
        defaults = {"retry": piece.default_retry, "timeout_seconds": piece.default_timeout_seconds}
    elif isinstance(piece, type) and issubclass(piece, TriggerPiece):
        input_schema, output_schema = piece.config_schema(), None
    else:
        raise TypeError(f"{piece!r} is not a piece")
    return PiecePublic(
        key=piece.key,
        version=piece.version,
        display_name=piece.title(),
        description=piece.description,
        category=piece.category,
        kind=piece.kind.value,
        input_schema=input_schema,
        output_schema=output_schema,
        defaults=defaults,
    )
