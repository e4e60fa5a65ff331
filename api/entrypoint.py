"""The flow Prefect's own workers load for the service's deployments: `workflow_flow`.

The service's deployments name it as their entrypoint (`api.entrypoint.workflow_flow`; in
`prefect.yaml`, `api/entrypoint.py:workflow_flow`). Importing it in a fresh process (Prefect's
process worker starts one per flow run) sets the store-backed run services from the `ALTLAS_*`
settings for every run of the process, then re-exports the generic flow. The warm worker
(`altlas-flows worker`) does not need it: it sets the same services itself.
"""

from __future__ import annotations

from interpreter.settings import apply_prefect_defaults

apply_prefect_defaults()  # before Prefect is imported

from api.settings import get_api_settings  # noqa: E402
from api.worker import service_run_services  # noqa: E402
from interpreter.run.flow import workflow_flow  # noqa: E402
from interpreter.run.services import set_process_services  # noqa: E402

set_process_services(service_run_services(get_api_settings())[0])

__all__ = ["workflow_flow"]
