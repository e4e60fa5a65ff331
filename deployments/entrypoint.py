"""The flow Prefect's own workers load for ALT_LAS deployments: `workflow_flow`.

Deployments made by `deployments.sync` name it as their entrypoint (the module path
`deployments.entrypoint.workflow_flow`), and `prefect.yaml` may name it as
`deployments.entrypoint:workflow_flow`. A process worker (`prefect worker start --pool NAME
--type process`) imports it in a fresh Python process for every flow run; runs there use the
default run services (secrets from the environment, sub-workflows from `ALTLAS_WORKFLOW_DIRS`).
The service's own entrypoint sets store-backed services before it re-exports the same flow.

The warm runner (`deployments.runner`) does not import this module: it runs the flow named
after each workflow (`interpreter.run.flow.named_flow`) in its own process.
"""

from __future__ import annotations

from interpreter.settings import apply_prefect_defaults

apply_prefect_defaults()  # before Prefect is imported

from interpreter.run.flow import workflow_flow  # noqa: E402

__all__ = ["workflow_flow"]
