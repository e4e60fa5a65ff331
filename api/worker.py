"""The service's worker: the warm runner of `deployments.runner` with the store-backed run
services, so that every run it executes reads its tenant's secrets, settings and workflows from
the store and records its history there. Main entry: `run_service_worker`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from api.service import Service
from api.settings import ApiSettings
from api.starter import ServiceStarter
from api.store.crypto import SecretBox
from api.store.database import Database
from api.store.ports import StoreLoop, store_run_services
from deployments.runner import WarmRunner, WorkerSettings, run_worker
from interpreter.run.services import RunServices
from pieces.registry import default_registry


def service_run_services(settings: ApiSettings) -> tuple[RunServices, Database]:
    """The run services of a worker process, and the database they use (its own: the ports
    use it on their store loop; close it with `StoreLoop.of(database).close()`). Runs that
    `core.start_workflow` starts go through a `ServiceStarter` of its own."""
    database = Database.from_settings(settings)
    services = store_run_services(
        database,
        SecretBox.from_settings(settings),
        default_registry(),
        record_max_bytes=settings.record_max_bytes,
    )
    return replace(services, starter=ServiceStarter(Service.create(settings))), database


def run_service_worker(
    settings: ApiSettings,
    worker: WorkerSettings,
    *,
    ready: Callable[[WarmRunner], object] | None = None,
) -> int:
    """Run the service's work pool until SIGTERM or Ctrl-C; the process exit code."""
    services, database = service_run_services(settings)
    try:
        return run_worker(
            services,
            work_pool=worker.pool,
            concurrency=worker.concurrency,
            ready=ready,
            settings=worker,
        )
    finally:
        if isinstance(services.starter, ServiceStarter):
            asyncio.run(services.starter.aclose())
        StoreLoop.of(database).close()
