"""Fixtures of the service tests: a migrated store on SQLite and on PostgreSQL.

`database` is parametrized over both dialects, so every store test runs twice. PostgreSQL is
migrated once per session and emptied before each test; SQLite is migrated once per
session into a template file that each test copies. Without PostgreSQL the `postgres` cases
skip (and fail under `ALTLAS_REQUIRE_POSTGRES=1`, as in CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.store.database import Database
from tests.conftest import require_postgres
from tests.support.databases import (
    copy_sqlite_file,
    drop_postgres_database,
    empty_all_tables,
    migrated_sqlite_file,
    new_postgres_database,
    sqlite_url,
)

DIALECTS = ["sqlite", "postgres"]
# Test databases are thrown away: commits need not wait for the disk (nothing else changes).
FAST_COMMITS: dict[str, dict[str, Any]] = {
    "postgresql+asyncpg": {"connect_args": {"server_settings": {"synchronous_commit": "off"}}},
}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, copied by each test."""
    return migrated_sqlite_file(tmp_path_factory.mktemp("store-template") / "template.db")


@pytest.fixture(scope="session")
def postgres_store_url() -> Iterator[str]:
    """A PostgreSQL database migrated to the newest revision, for the whole session."""
    require_postgres()
    url = new_postgres_database("altlas_store")
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=DIALECTS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of an empty, migrated store, on each dialect in turn."""
    if request.param == "sqlite":
        return sqlite_url(copy_sqlite_file(sqlite_template, tmp_path / "store" / "altlas.db"))
    url: str = request.getfixturevalue("postgres_store_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An empty, migrated store (see `database_url`)."""
    database = Database(database_url, **FAST_COMMITS.get(database_url.split(":", 1)[0], {}))
    if database.dialect == "postgresql":
        await empty_all_tables(database)
    yield database
    await database.dispose()
