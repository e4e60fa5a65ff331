"""A Prefect server for benchmarks: `PREFECT_API_URL` if set, else one started on PostgreSQL.

Every PostgreSQL database a benchmark creates here (`fresh_postgres_database`) is named
`altlas_bench_<unix time>_<random>` and dropped when the benchmark ends (`drop_database`). A
benchmark killed before its end leaves its database behind: the next one drops every such
leftover that nobody is connected to (`drop_leftover_databases`), including those of the older
naming (`altlas_bench_<random>`), and never one created in the last few minutes (another
benchmark may be about to connect to it).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POSTGRES = os.environ.get(
    "ALTLAS_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PREFIX = "altlas_bench_"
LEFTOVER_AFTER_SECONDS = 600.0
"""A bench database younger than this is never dropped as a leftover, even unconnected: its
benchmark may not have connected yet."""
_NAME = re.compile(rf"^{PREFIX}(?:(?P<at>\d{{10}})_)?[0-9a-f]{{8}}$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _connect() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(POSTGRES, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None


def fresh_postgres_database() -> str | None:
    """Create an empty database for one benchmark; its SQLAlchemy URL, or None without
    PostgreSQL. Leftovers of earlier benchmarks are dropped first."""
    name = f"{PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"

    async def create() -> bool:
        connection = await _connect()
        if connection is None:
            return False
        try:
            await _drop_leftovers(connection)
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return True

    if not asyncio.run(create()):
        return None
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


_fresh_postgres_database = fresh_postgres_database  # the name bench/api.py imports


def drop_database(url: str) -> None:
    """Drop a database made by `fresh_postgres_database` (its connections are closed first)."""
    name = url.rsplit("/", 1)[1]
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a benchmark database")

    async def drop() -> None:
        connection = await _connect()
        if connection is None:
            return
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def drop_leftover_databases() -> list[str]:
    """Drop the benchmark databases nobody is connected to (older than
    `LEFTOVER_AFTER_SECONDS`); the names dropped."""

    async def run() -> list[str]:
        connection = await _connect()
        if connection is None:
            return []
        try:
            return await _drop_leftovers(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


async def _drop_leftovers(connection: Any) -> list[str]:
    import asyncpg

    rows = await connection.fetch(
        "SELECT d.datname FROM pg_database d WHERE d.datname LIKE $1 AND NOT EXISTS "
        "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
        PREFIX.replace("_", r"\_") + "%",
    )
    dropped = []
    for row in rows:
        name = row["datname"]
        found = _NAME.match(name)
        if found is None:
            continue
        if found["at"] is not None and time.time() - int(found["at"]) < LEFTOVER_AFTER_SECONDS:
            continue
        try:
            # Without FORCE: a database someone connected to meanwhile is left alone.
            await connection.execute(f'DROP DATABASE "{name}"')
        except asyncpg.PostgresError:
            continue
        dropped.append(name)
    return dropped


@contextmanager
def prefect_server() -> Iterator[str]:
    """Yield a Prefect API URL; the process's Prefect client uses it. The server and its
    database are removed at the end."""
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing
        return
    from deployments.local import LocalServer

    database = fresh_postgres_database()
    try:
        server = LocalServer(
            home=Path(tempfile.mkdtemp(prefix="altlas-bench-")),
            port=_free_port(),
            database_url=database,
        )
        print(
            f"starting a Prefect server on {'PostgreSQL' if database else 'SQLite'} ...",
            flush=True,
        )
        server.start(timeout=180)
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            yield server.api_url
        finally:
            from prefect._internal.concurrency.services import QueueService

            QueueService.drain_all(timeout=30)
            server.stop()
    finally:
        if database is not None:
            drop_database(database)
