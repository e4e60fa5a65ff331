"""A Prefect server for benchmarks: `PREFECT_API_URL` if set, else one started on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES = os.environ.get(
    "ALTLAS_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _fresh_postgres_database() -> str | None:
    import asyncpg

    name = f"altlas_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> bool:
        try:
            connection = await asyncpg.connect(POSTGRES, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return True

    if not asyncio.run(create()):
        return None
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@contextmanager
def prefect_server() -> Iterator[str]:
    """Yield a Prefect API URL; the process's Prefect client uses it."""
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing
        return
    from deployments.local import LocalServer

    database = _fresh_postgres_database()
    server = LocalServer(
        home=Path(tempfile.mkdtemp(prefix="altlas-bench-")),
        port=_free_port(),
        database_url=database,
    )
    print(f"starting a Prefect server on {'PostgreSQL' if database else 'SQLite'} ...", flush=True)
    server.start(timeout=180)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield server.api_url
    finally:
        from prefect._internal.concurrency.services import QueueService

        QueueService.drain_all(timeout=30)
        server.stop()
