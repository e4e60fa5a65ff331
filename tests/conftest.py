"""Test-wide set-up: isolated settings, async tests on asyncio, and one Prefect server per session.

Environment is fixed *before* anything imports Prefect or the pieces, so no test depends on the
developer's own Prefect profile, and only this engine's built-in pieces load (third-party pieces
installed on the machine are ignored unless a test allows them).

The Prefect server is a real one, started once per session by the same code as `altlas-flows up`
(`deployments.local.LocalServer`), on the machine's PostgreSQL when it answers (a fresh database
per session) and on SQLite otherwise. With `ALTLAS_REQUIRE_POSTGRES=1` (set by `.ci/run`) a
missing PostgreSQL fails the tests that need it instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["ALTLAS_PIECES_ALLOW"] = ""
os.environ["ALTLAS_HOME"] = tempfile.mkdtemp(prefix="altlas-test-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")

POSTGRES_ADMIN_DSN = os.environ.get(
    "ALTLAS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("ALTLAS_REQUIRE_POSTGRES", "") not in ("", "0", "false")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# The session's Prefect server will listen here. Prefect reads PREFECT_API_URL when it is first
# imported, and threads do not inherit `temporary_settings`, so it is fixed before any import.
PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{PREFECT_PORT}/api"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every `async def` test runs on asyncio (anyio's plugin, `anyio_mode = "auto"`)."""
    return "asyncio"


def postgres_available() -> bool:
    """Whether the PostgreSQL server the tests use answers."""
    import asyncpg

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def require_postgres() -> None:
    """Skip (or, in CI, fail) a test that needs PostgreSQL when it is not there."""
    if postgres_available():
        return
    reason = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}"
    if REQUIRE_POSTGRES:
        pytest.fail(f"{reason}, and ALTLAS_REQUIRE_POSTGRES is set")
    pytest.skip(reason)


def create_postgres_database(prefix: str) -> str:
    """A new empty database; returns its asyncpg DSN (without the SQLAlchemy driver prefix)."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server for the session; yields its API URL (also set as PREFECT_API_URL)."""
    from deployments.local import LocalServer

    database_url = None
    if postgres_available():
        database_url = create_postgres_database("altlas_prefect").replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    elif REQUIRE_POSTGRES:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN} (ALTLAS_REQUIRE_POSTGRES)"
        )
    home = Path(tempfile.mkdtemp(prefix="altlas-test-prefect-"))
    server = LocalServer(home=home, port=PREFECT_PORT, database_url=database_url)
    server.start(timeout=180)
    try:
        yield server.api_url
        # Deliver queued artifacts, logs and events while the server is still there.
        from prefect._internal.concurrency.services import QueueService

        from interpreter.run.background import flush

        flush(timeout=30)
        QueueService.drain_all(timeout=30)
    finally:
        server.stop()
