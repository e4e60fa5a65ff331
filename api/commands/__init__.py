"""Commands: every change the API and the command line make, through one bus.

- `bus`: `Command`, `CommandBus` and its middleware (validation, tenant scoping, audit).
- `tenants`: CreateTenant, UpdateTenantSettings, CreateApiKey, RevokeApiKey (operator).
- `workflows`: CreateWorkflow, UpdateWorkflow, SetWorkflowEnabled, DeleteWorkflow.
- `secrets`: PutSecret, DeleteSecret.
- `runs`: StartRun, CancelRun, PauseRun, ResumeRun.
- `hooks`: DeliverWebhook (a signed delivery to a webhook trigger).

`build_bus(service)` wires every command to its handler.
"""

from __future__ import annotations

from api.commands import hooks, runs, secrets, tenants, workflows
from api.commands.bus import Command, CommandBus, Handler
from api.service import Service

HANDLERS: dict[type[Command], Handler] = {
    tenants.CreateTenant: tenants.create_tenant,
    tenants.CreateApiKey: tenants.create_api_key,
    tenants.RevokeApiKey: tenants.revoke_api_key,
    tenants.UpdateTenantSettings: tenants.update_tenant_settings,
    workflows.CreateWorkflow: workflows.create_workflow,
    workflows.UpdateWorkflow: workflows.update_workflow,
    workflows.SetWorkflowEnabled: workflows.set_enabled,
    workflows.DeleteWorkflow: workflows.delete_workflow,
    secrets.PutSecret: secrets.put_secret,
    secrets.DeleteSecret: secrets.delete_secret,
    runs.StartRun: runs.start_run,
    runs.CancelRun: runs.cancel_run,
    runs.PauseRun: runs.pause_run,
    runs.ResumeRun: runs.resume_run,
    hooks.DeliverWebhook: hooks.deliver_webhook,
}


def build_bus(service: Service) -> CommandBus:
    """The command bus of `service`, with every handler."""
    return CommandBus(service, HANDLERS)
