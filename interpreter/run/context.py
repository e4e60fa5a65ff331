"""What a running piece sees: `NodeContext` (the engine's `PieceContext`) and `RunServices`.

`RunServices` are the pluggable parts of a run that are not in the definition: the piece registry,
where secrets come from, and how `core.subworkflow` finds other workflows. `run_workflow` sets
them for ad-hoc runs; deployment runs use the defaults (environment secrets, file resolver) until
the API installs its own.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError as PydanticValidationError

from interpreter.definition import templates
from interpreter.run.resolvers import FileResolver, WorkflowResolver
from interpreter.run.secrets import EnvironmentSecrets, SecretProvider
from pieces.base import Piece, PieceError, RunInfo, json_output
from pieces.registry import PieceRegistry, default_registry
from pieces.settings import PieceSettings, get_piece_settings

if TYPE_CHECKING:
    from interpreter.definition.model import Node, Plan, Workflow
    from interpreter.run.engine import Execution, NodeRecord, PlanRun


@dataclass(frozen=True)
class RunServices:
    """The pluggable parts of a run (see the module docstring)."""

    registry: PieceRegistry = field(default_factory=default_registry)
    secrets: SecretProvider = field(default_factory=EnvironmentSecrets)
    resolver: WorkflowResolver = field(default_factory=FileResolver)
    depth: int = 0
    """How many `core.subworkflow` levels this run is below the top-level run."""
    prepared: tuple[dict[str, Any], Workflow] | None = None
    """A definition the caller already validated, with its parsed form (saves doing it twice)."""

    def prepared_workflow(self, definition: dict[str, Any]) -> Workflow | None:
        """The parsed `definition` if the caller validated this very document, else None."""
        if self.prepared is not None and self.prepared[0] == definition:
            return self.prepared[1]
        return None


_services: contextvars.ContextVar[RunServices | None] = contextvars.ContextVar(
    "altlas_run_services", default=None
)


def current_services() -> RunServices:
    """The services set by the caller (`using_services`), or the process defaults."""
    return _services.get() or RunServices()


@contextmanager
def using_services(services: RunServices) -> Iterator[None]:
    """Runs started inside (and their subflows) use `services`."""
    token = _services.set(services)
    try:
        yield
    finally:
        _services.reset(token)


class NodeContext:
    """The `PieceContext` of one node attempt (or one `core.map` item)."""

    def __init__(
        self,
        *,
        plan_run: PlanRun,
        node: Node,
        record: NodeRecord,
        scope: dict[str, Any],
        piece: type[Piece[Any, Any]],
        label: str | None = None,
    ) -> None:
        self._plan_run = plan_run
        self._piece = piece
        self._execution: Execution = plan_run.execution
        self._node = node
        self._record = record
        self._scope = scope
        self._label = label or record.label

    @property
    def node_id(self) -> str:
        return self._label

    @property
    def attempt(self) -> int:
        return max(self._record.attempts, 1)

    @property
    def run(self) -> RunInfo:
        return self._execution.run

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
        return get_run_logger()

    @property
    def settings(self) -> PieceSettings:
        return get_piece_settings()

    @property
    def cancel_requested(self) -> bool:
        return self._execution.cancelled.is_set()

    @property
    def engine(self) -> NodeContext:
        return self

    async def secret(self, name: str) -> str:
        """A tenant secret the piece declared in `secrets`; others are refused."""
        if not any(requirement.name == name for requirement in self._piece.secrets):
            raise PieceError(
                f"piece {self._piece.key!r} asked for secret {name!r} without declaring it; a "
                "piece can read only the secrets listed in its `secrets` (templates can use "
                "any secret of the tenant: `{{ secrets.NAME }}`)",
                error_type="UndeclaredSecret",
                retryable=False,
            )
        return await self._execution.secret(name)

    def render(self, value: Any, **names: Any) -> Any:
        return templates.render(value, {**self._scope, **names})

    # --- EngineServices ----------------------------------------------------------------------

    async def run_piece_for_item(
        self, *, piece: str, raw_input: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        item_task = map_item.with_options(name=label, task_run_name=label)
        return await item_task(self, piece, raw_input, names, label)

    async def item_attempt(
        self, piece_key: str, raw_input: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        """The body of one `map_item` task: render, validate and run one item's piece."""
        from interpreter.run.engine import input_error

        piece = self._execution.registry.instance(piece_key)
        scope = {**self._scope, **names}
        raw = templates.render(raw_input, scope, skip=piece.deferred_inputs)
        try:
            model = piece.Input.model_validate(raw)
        except PydanticValidationError as exc:
            raise input_error(piece_key, exc) from None
        context = NodeContext(
            plan_run=self._plan_run,
            node=self._node,
            record=self._record,
            scope=scope,
            piece=type(piece),
            label=label,
        )
        result = await self._execution.guarded(piece.run(context, model), None, label)
        return json_output(result)

    async def run_subgraph(
        self, *, graph: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        from interpreter.run.engine import PlanRun, RunCancelledError

        plan: Plan = self._execution.subplan(graph)
        sub = PlanRun(self._execution, plan, names=names, label_prefix=f"{label}.")
        await sub.run()
        if self._execution.cancelled.is_set():
            raise RunCancelledError(self._execution.cancel_reason)
        failed = sub.failed_nodes()
        if failed:
            first = failed[0].error or {}
            raise PieceError(
                f"{label} failed: node {first.get('node')!r}: {first.get('message')}",
                error_type=str(first.get("type", "SubgraphFailed")),
                retryable=False,
                details={"failed_nodes": [r.label for r in failed]},
            )
        return sub.output()

    async def run_child_workflow(
        self, *, workflow_id: str, version: str | None, parameters: dict[str, Any]
    ) -> Any:
        from interpreter.run.flow import run_child

        services = current_services()
        if services.depth + 1 > self._execution.settings.max_subworkflow_depth:
            raise PieceError(
                f"sub-workflow {workflow_id!r} would nest {services.depth + 1} levels deep; "
                f"the limit is {self._execution.settings.max_subworkflow_depth} "
                "(ALTLAS_MAX_SUBWORKFLOW_DEPTH)",
                error_type="SubworkflowDepthExceeded",
                retryable=False,
            )
        resolved = await services.resolver.resolve(
            tenant=self._execution.run.tenant, workflow_id=workflow_id, version=version
        )
        with using_services(replace(services, depth=services.depth + 1, prepared=None)):
            return await run_child(
                resolved.definition,
                parameters,
                tenant=self._execution.run.tenant,
                version=resolved.version,
                parent_run_id=self._execution.run.id,
            )

    async def wait_for_approval(
        self, *, message: str, input_schema: dict[str, Any] | None, timeout_seconds: float
    ) -> Any:
        from interpreter.run.approval import wait_for_approval

        return await wait_for_approval(
            node_id=self._label,
            message=message,
            input_schema=input_schema,
            timeout_seconds=timeout_seconds,
            one_at_a_time=self._execution.approval_lock,
        )


@task(cache_policy=NO_CACHE, persist_result=False)
async def map_item(
    context: NodeContext, piece: str, raw_input: dict[str, Any], names: dict[str, Any], label: str
) -> Any:
    """One item of a `core.map` that runs a piece per item (task run named `map_node[index]`)."""
    return await context.item_attempt(piece, raw_input, names, label)
