"""The REST facade's application: `create_app(settings)`.

At start (the lifespan): the shared `Service`, the command bus, the dispatcher that hands
accepted runs to Prefect and the follower that picks up endings only Prefect knows (crashed
runs), both in the background, and a reconciliation of Prefect's deployments
with the stored workflows (drift repaired; Prefect being down is logged, not fatal). Every error
is a problem document; bodies over the limit are refused before they are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from api.auth import SIGNED_PATHS, RequireBearer
from api.commands import build_bus
from api.deployment_sync import prepare_prefect, reconcile_all
from api.dispatcher import Dispatcher
from api.errors import install_problem_handlers, problem_responses
from api.follower import RunFollower
from api.limits import BodyLimit
from api.routes import health, hooks, pieces, runs, secrets, tenants, workflows
from api.schemas.common import ProblemBody
from api.service import Service
from api.settings import ApiSettings, get_api_settings

_log = logging.getLogger("altlas.api")

API_TITLE = "ALT_LAS Workflow Engine API"

API_VERSION = "1.0.0"


def create_app(
    settings: ApiSettings | None = None, *, reconcile: bool = True, work_pool: str | None = None
) -> FastAPI:
    """The API application for `settings` (default: from `ALTLAS_*` variables), whose
    deployments use `work_pool` (default: `ALTLAS_WORKER_POOL`)."""
    settings = settings or get_api_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.create(settings, work_pool=work_pool)
        dispatcher = Dispatcher(service)
        service.run_accepted = dispatcher.submit
        app.state.service = service
        app.state.bus = build_bus(service)
        try:
            await prepare_prefect(service)
            if reconcile:
                report = await reconcile_all(service)
                _log.info("deployments reconciled: %s", report.counts())
        except Exception:  # Prefect down: the API still answers; commands say 503
            _log.warning("could not prepare Prefect's deployments at start", exc_info=True)
        background = [
            asyncio.ensure_future(dispatcher.run_forever()),
            asyncio.ensure_future(RunFollower(service).run_forever()),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await service.close()

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Stored workflows, runs, secrets and triggers of the ALT_LAS Workflow "
        "Engine; runs execute as Prefect flow runs. See docs/api.md.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for module in (tenants, workflows, runs, secrets, hooks, pieces, health):
        app.include_router(module.router)
    app.add_middleware(RequireBearer)  # inside the body limit: 413 comes first, then 401
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    """Every error response is documented with `#/components/schemas/Problem`.

    FastAPI documents its own 422 (`HTTPValidationError`) on every route with parameters; the
    API answers those as problems too, so they are rewritten. Routes that take a body also
    answer 400 (not JSON, too deep) and 413 (too large).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = ProblemBody.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in problem.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components["Problem"] = problem
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            schema["components"]["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant's API key; the operator key (ALTLAS_ADMIN_KEY) "
                    "for /v1/tenants.",
                }
            }
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    _document_problems(path, method, operation)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_problems(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted: set[int] = {int(code) for code in responses if code.startswith(("4", "5"))}
    if path.startswith(SIGNED_PATHS):  # signed by the sender, not called with a key
        wanted.add(401)
        operation["security"] = []
    elif path.startswith("/v1/"):
        wanted.add(401)
        operation["security"] = [{"bearer": []}]
    if "requestBody" in operation or method in ("post", "put", "delete"):
        wanted |= {413} | ({400, 422} if "requestBody" in operation else set())
    if operation.get("parameters"):
        wanted.add(422)
    for status, response in problem_responses(*sorted(wanted)).items():
        responses[str(status)] = response
    if path.startswith(SIGNED_PATHS):
        responses["401"]["description"] = (
            "The trigger's `verify` scheme refused the raw body: a missing or wrong signature, a "
            "timestamp outside `tolerance_seconds`, or a secret of another tenant."
        )
