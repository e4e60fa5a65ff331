"""Fixtures of the service tests: a migrated store on SQLite and on PostgreSQL.

`database` is parametrized over both dialects, so every store test runs twice. PostgreSQL is
migrated once per session and emptied before each test; SQLite is migrated once per
session into a template file that each test copies. Without PostgreSQL the `postgres` cases
skip (and fail under `ALTLAS_REQUIRE_POSTGRES=1`, as in CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.settings import ApiSettings
from api.store.database import Database
from deployments.runner import WarmRunner
from tests.conftest import require_postgres
from tests.support.api import ApiClient, running_api, running_worker, unique
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


# --- the service over HTTP -------------------------------------------------------------------


@dataclass
class LiveService:
    """The API served on 127.0.0.1 with its own store, on the session's Prefect server."""

    url: str
    admin: ApiClient
    settings: ApiSettings
    dialect: str
    work_pool: str

    def tenant(self, prefix: str = "t") -> tuple[str, ApiClient]:
        """A new tenant and a client holding its first key."""
        tenant_id = unique(prefix)
        created = self.admin.post("/v1/tenants", json={"id": tenant_id})
        assert created.status_code == 201, created.text
        return tenant_id, ApiClient(self.url, created.json()["api_key"])


@pytest.fixture(scope="session")
def live_worker(live_service: LiveService) -> Iterator[WarmRunner]:
    """The service's warm worker for `live_service` (its store, its work pool)."""
    with running_worker(live_service.settings, live_service.work_pool) as runner:
        yield runner


@pytest.fixture(scope="session", params=DIALECTS)
def live_service(
    request: pytest.FixtureRequest,
    prefect_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[LiveService]:
    """The API on each store dialect in turn (one per session and dialect)."""
    from api.store.crypto import generate_secret_key
    from tests.conftest import free_port

    home = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        url = sqlite_url(copy_sqlite_file(sqlite_template, home / "altlas.db"))
    else:
        require_postgres()
        url = new_postgres_database("altlas_api")
    settings = ApiSettings(
        home=home,
        database_url=url,
        secret_key=generate_secret_key(),
        admin_key="operator-" + unique("key"),
        api_port=free_port(),
    )
    pool = unique(f"pool-{request.param}")  # each store's runs on a pool of their own
    with running_api(settings, work_pool=pool) as base_url:
        yield LiveService(
            url=base_url,
            admin=ApiClient(base_url, settings.admin_key),
            settings=settings,
            dialect=request.param,
            work_pool=pool,
        )
    if request.param == "postgres":
        drop_postgres_database(url)
