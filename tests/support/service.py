"""A real HTTP service on 127.0.0.1 for workflow tests: flaky endpoints, delays, a tiny shop.

It runs uvicorn in a thread of the test process and records what it received, so tests can
assert on both sides of a request (e.g. that a secret reached the service but not the logs).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class ServiceState:
    """What the service saw; tests read it."""

    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"id": 1, "amount": 40.0, "date": "2026-11-02"},
            {"id": 2, "amount": 75.5, "date": "2026-11-03"},
            {"id": 3, "amount": 12.0, "date": "2026-10-20"},
        ]
    )
    shop_token: str = "shop-token-123"


def build_app(state: ServiceState) -> Starlette:
    async def flaky(request: Request) -> JSONResponse:
        key = request.path_params["key"]
        fail = int(request.query_params.get("fail", "1"))
        status = int(request.query_params.get("status", "500"))
        state.calls[key] += 1
        if state.calls[key] <= fail:
            headers = {}
            if "retry_after" in request.query_params:
                headers["Retry-After"] = request.query_params["retry_after"]
            return JSONResponse({"error": "try again"}, status_code=status, headers=headers)
        return JSONResponse({"attempt": state.calls[key]})

    async def slow(request: Request) -> JSONResponse:
        seconds = float(request.query_params.get("seconds", "0.2"))
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(seconds)
        finally:
            state.in_flight -= 1
        return JSONResponse({"slept": seconds, "item": request.query_params.get("item")})

    async def echo(request: Request) -> JSONResponse:
        state.headers.append(dict(request.headers))
        return JSONResponse({"authorization": request.headers.get("authorization")})

    async def orders(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.shop_token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        since = request.query_params.get("since", "")
        return JSONResponse({"orders": [o for o in state.orders if o["date"] >= since]})

    return Starlette(
        routes=[
            Route("/flaky/{key}", flaky),
            Route("/slow", slow),
            Route("/echo", echo),
            Route("/orders", orders),
        ]
    )


@dataclass
class RunningService:
    url: str
    state: ServiceState


@contextmanager
def running_service(port: int) -> Iterator[RunningService]:
    """Serve `build_app` on 127.0.0.1:`port` until the block ends."""
    state = ServiceState()
    # log_config=None: uvicorn must not reconfigure the process's logging while Prefect's
    # log handlers flush in other threads (logging.shutdown under the logging lock deadlocks).
    config = uvicorn.Config(
        build_app(state), host="127.0.0.1", port=port, log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test service did not start")
        time.sleep(0.02)
    try:
        yield RunningService(f"http://127.0.0.1:{port}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
