"""Liveness and readiness, without authentication."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 3.0
"""A part that has not answered by then is not ready (a hung Prefect must not hang /readyz)."""


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """200 while the process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    responses={503: {"description": "The database or the Prefect API does not answer."}},
)
async def readyz(service: ServiceDep) -> JSONResponse:
    """200 when the database and the Prefect API answer; 503 naming the failing part."""
    checks: dict[str, str] = {}
    for part, check in (("database", service.database.ping), ("prefect", service.prefect.ready)):
        try:
            await asyncio.wait_for(check(), timeout=READY_TIMEOUT_SECONDS)
            checks[part] = "ok"
        except Exception as exc:  # any failure means "not ready"; the body says which part
            checks[part] = f"failing: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503
    )
