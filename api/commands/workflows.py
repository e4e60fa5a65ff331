"""Commands on stored workflows: create, update (a new version), enable, disable, delete.

A definition is validated exactly as `altlas-flows validate` does (same problems, same JSON
Pointers), with the pieces the tenant may use. Each change keeps the workflow's Prefect
deployment in step, inside the same transaction: when Prefect refuses, nothing is stored.
"""

from __future__ import annotations

from typing import Any

from api.commands.bus import Command, CommandContext
from api.deployment_sync import workflow_changed, workflow_removed
from api.errors import ConflictProblem, InvalidProblem, NotFoundProblem
from api.presenters import workflow_public
from api.schemas.workflows import WorkflowPublic
from api.store import workflows as store
from api.store.errors import AlreadyExists
from api.store.runs import cancel_unstarted_runs
from api.store.tenants import get_tenant
from api.tenancy import TenantSettings
from interpreter.definition.problems import Problem
from interpreter.definition.validation import validate_document
from pieces.registry import PieceRegistry


async def tenant_registry(context: CommandContext, tenant_id: str) -> PieceRegistry:
    """The pieces `tenant_id` may use (its `allowed_pieces`)."""
    tenant = await get_tenant(context.session, tenant_id=tenant_id)
    policy = TenantSettings.of(tenant.settings if tenant is not None else None)
    return policy.registry(context.service.registry, tenant_id)


async def definition_problems(
    context: CommandContext, tenant_id: str, definition: dict[str, Any]
) -> list[Problem]:
    """What `altlas-flows validate` reports, with the tenant's pieces."""
    registry = await tenant_registry(context, tenant_id)
    return validate_document(definition, registry=registry)


def _invalid(problems: list[Problem]) -> InvalidProblem:
    return InvalidProblem(
        f"the workflow definition has {len(problems)} problem(s); see `errors`",
        problems,
        slug="invalid-definition",
    )


def _public(context: CommandContext, row: Any, version: Any) -> WorkflowPublic:
    service = context.service
    return workflow_public(
        row, version, base_url=service.settings.public_url_resolved(), registry=service.registry
    )


class CreateWorkflow(Command):
    tenant_id: str
    definition: dict[str, Any]

    async def validate_in(self, context: CommandContext) -> None:
        if problems := await definition_problems(context, self.tenant_id, self.definition):
            raise _invalid(problems)

    def audit_detail(self) -> dict[str, Any]:
        return {"workflow_id": self.definition.get("id")}


class UpdateWorkflow(Command):
    tenant_id: str
    workflow_id: str
    definition: dict[str, Any]

    async def validate_in(self, context: CommandContext) -> None:
        found = await store.get_workflow(
            context.session, tenant_id=self.tenant_id, workflow_id=self.workflow_id
        )
        if found is None:  # PUT never creates: a missing workflow is 404 whatever the body
            raise NotFoundProblem(f"workflow {self.workflow_id!r}")
        problems = await definition_problems(context, self.tenant_id, self.definition)
        if "id" in self.definition and self.definition["id"] != self.workflow_id:
            problems.insert(
                0,
                Problem(
                    "/id",
                    f"the definition's id {self.definition['id']!r} differs from the workflow "
                    f"{self.workflow_id!r} in the path; a workflow's id cannot change",
                ),
            )
        if problems:
            raise _invalid(problems)

    def audit_detail(self) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id}


class SetWorkflowEnabled(Command):
    tenant_id: str
    workflow_id: str
    enabled: bool

    def audit_detail(self) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id, "enabled": self.enabled}


class DeleteWorkflow(Command):
    tenant_id: str
    workflow_id: str

    def audit_detail(self) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id}


async def create_workflow(command: CreateWorkflow, context: CommandContext) -> WorkflowPublic:
    try:
        row, version = await store.create_workflow(
            context.session, tenant_id=command.tenant_id, definition=command.definition
        )
    except AlreadyExists:
        raise ConflictProblem(
            f"workflow {command.definition['id']!r} exists; change it with PUT "
            f"/v1/workflows/{command.definition['id']}",
            slug="workflow-exists",
        ) from None
    await workflow_changed(context.service, row, version)
    _forget_triggers(context, command.tenant_id, row.id)
    return _public(context, row, version)


async def update_workflow(command: UpdateWorkflow, context: CommandContext) -> WorkflowPublic:
    row, version, created = await store.update_workflow(
        context.session,
        tenant_id=command.tenant_id,
        workflow_id=command.workflow_id,
        definition=command.definition,
    )
    if created:
        await workflow_changed(context.service, row, version)
        _forget_triggers(context, command.tenant_id, command.workflow_id)
    return _public(context, row, version)


async def set_enabled(command: SetWorkflowEnabled, context: CommandContext) -> WorkflowPublic:
    row = await store.set_enabled(
        context.session,
        tenant_id=command.tenant_id,
        workflow_id=command.workflow_id,
        enabled=command.enabled,
    )
    found = await store.get_current_version(
        context.session, tenant_id=command.tenant_id, workflow_id=command.workflow_id
    )
    if row is None or found is None:
        raise NotFoundProblem(f"workflow {command.workflow_id!r}")
    await workflow_changed(context.service, found[0], found[1])
    _forget_triggers(context, command.tenant_id, command.workflow_id)
    return _public(context, found[0], found[1])


async def delete_workflow(command: DeleteWorkflow, context: CommandContext) -> None:
    deleted = await store.delete_workflow(
        context.session, tenant_id=command.tenant_id, workflow_id=command.workflow_id
    )
    if not deleted:
        raise NotFoundProblem(f"workflow {command.workflow_id!r}")
    # Prefect deletes the deployment's scheduled flow runs with it: the runs that had not
    # started end here (those already running go on to their end).
    await cancel_unstarted_runs(
        context.session,
        tenant_id=command.tenant_id,
        workflow_id=command.workflow_id,
        error={"type": "Cancelled", "message": "its workflow was deleted before it started"},
    )
    await workflow_removed(context.service, command.tenant_id, command.workflow_id)
    _forget_triggers(context, command.tenant_id, command.workflow_id)


def _forget_triggers(context: CommandContext, tenant_id: str, workflow_id: str) -> None:
    """Once committed, this process stops serving the workflow's old triggers (another API
    process within `ALTLAS_TRIGGER_CACHE_SECONDS`)."""
    triggers = context.service.triggers
    context.after_commit(lambda: triggers.forget(tenant_id, workflow_id))
