"""The REST facade served for real: uvicorn on 127.0.0.1 in a thread, and a small client.

`running_api(settings)` serves `api.main.create_app(settings)` (lifespan included: the
dispatcher runs) until the block ends. `ApiClient` is an httpx client that knows a key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from api.main import create_app
from api.settings import ApiSettings
from api.store.ports import StoreLoop
from api.worker import service_run_services
from deployments.runner import WarmRunner


@contextmanager
def running_api(
    settings: ApiSettings, *, reconcile: bool = False, work_pool: str | None = None
) -> Iterator[str]:
    """Serve the API for `settings` on its host and port; yields its base URL."""
    app = create_app(settings, reconcile=reconcile, work_pool=work_pool)
    # log_config=None: uvicorn must not reconfigure logging while Prefect's handlers flush.
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://{settings.api_host}:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def running_worker(settings: ApiSettings, work_pool: str) -> Iterator[WarmRunner]:
    """The service's warm worker on `work_pool`, in a thread of its own, until the block ends."""
    import asyncio

    services, database = service_run_services(settings)
    runner = WarmRunner(work_pool=work_pool, services=services, concurrency=8)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stopping: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        await runner.start()
        started.set()
        await stopping.wait()
        await runner.stop(grace=10)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("the worker did not start")
    try:
        yield runner
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=60)
        StoreLoop.of(database).close()


class ApiClient(httpx.Client):
    """A client of the API with a key (or none)."""

    def __init__(self, base_url: str, key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        super().__init__(base_url=base_url, headers=headers, timeout=30)

    def as_key(self, key: str | None) -> ApiClient:
        return ApiClient(str(self.base_url), key)


def unique(prefix: str) -> str:
    """An id no other test uses (tenants, workflows)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer (and that it is one)."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == response.status_code
    return body
