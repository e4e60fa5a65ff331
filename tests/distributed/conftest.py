"""Fixtures of the distributed tests: Prefect's distributed setup and the service on it, started
once per module (`topology`), on fresh PostgreSQL databases and a Redis database of its own.

PostgreSQL or Redis missing: the tests skip, or fail under `ALTLAS_REQUIRE_POSTGRES=1` (as in
CI, which provides both). When a test fails, the logs of every process of the topology are
attached to its report.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_POSTGRES, create_postgres_database, require_postgres
from tests.support.databases import asyncpg_url, drop_postgres_database
from tests.support.topology import (
    RedisAddress,
    Topology,
    TopologySettings,
    empty_redis_db,
    redis_answers,
)

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379

HEARTBEAT_SECONDS = 30
"""Flow-run heartbeat interval of the workers' runs: Prefect's minimum."""
ZOMBIE_AFTER_SECONDS = 31
"""The shortest window the workers accept (more than the heartbeat interval). Safe here: every
run of these tests lasts well under one heartbeat interval, so a healthy run never waits for
its second heartbeat (production keeps the default, 90 s: docs/scaling.md)."""

WORKER_ENV = {
    "ALTLAS_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    "ALTLAS_WORKER_ZOMBIE_AFTER_SECONDS": str(ZOMBIE_AFTER_SECONDS),
}

_running: list[Topology] = []


def require_redis() -> None:
    """Skip (or, with `ALTLAS_REQUIRE_POSTGRES` set, as in CI, fail) a test that needs Redis
    when it is not there."""
    if redis_answers(REDIS_HOST, REDIS_PORT):
        return
    reason = f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
    if REQUIRE_POSTGRES:
        pytest.fail(f"{reason}, and ALTLAS_REQUIRE_POSTGRES is set (CI provides both)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Two Prefect API replicas, Prefect's services, two facades and two workers, running."""
    require_postgres()
    require_redis()
    prefect_database = asyncpg_url(create_postgres_database("altlas_topology_prefect"))
    store_database = create_postgres_database("altlas_topology_store")
    settings = TopologySettings(
        prefect_database_url=prefect_database,
        store_database_url=store_database,
        redis=RedisAddress(REDIS_HOST, REDIS_PORT, empty_redis_db(REDIS_HOST, REDIS_PORT)),
        workdir=Path(tmp_path_factory.mktemp("topology")),
        worker_env=WORKER_ENV,
        extra_env={"ALTLAS_PIECES_ALLOW": ""},  # the built-in pieces only
    )
    topology = Topology(settings)
    _running.append(topology)
    try:
        topology.start()
        sys.stdout.write(
            "\ntopology started in "
            + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in topology.timings.items())
            + "\n"
        )
        yield topology
    finally:
        topology.stop()
        _running.remove(topology)
        drop_postgres_database(prefect_database)
        drop_postgres_database(store_database)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, None, None]:
    """Attach every process's log to the report of a test that failed (or could not start)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and _running:
        logs = io.StringIO()
        _running[-1].dump_logs(logs)
        report.sections.append(("topology logs", logs.getvalue()))
