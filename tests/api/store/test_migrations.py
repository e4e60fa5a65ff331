"""The migrations create exactly the models' schema, on both dialects, from any folder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from api.store.database import Database
from api.store.migrate import (
    current_revision,
    current_revision_sync,
    downgrade,
    head_revision,
    upgrade,
    upgrade_sync,
)
from api.store.models import Base
from tests.conftest import require_postgres
from tests.support.databases import drop_postgres_database, new_postgres_database, sqlite_url

TABLES = {
    "tenants",
    "api_keys",
    "workflows",
    "workflow_versions",
    "secrets",
    "runs",
    "idempotency_keys",
    "node_runs",
    "audit_records",
}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody migrated yet."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "nested" / "fresh.db")
        return
    require_postgres()
    url = new_postgres_database("altlas_migrate", migrate=False)
    yield url
    drop_postgres_database(url)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _index_sql(connection: Connection, name: str) -> str:
    """The CREATE INDEX statement the database kept (SQLite reflection omits the sort order)."""
    if connection.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    return str(connection.execute(text(query), {"name": name}).scalar_one())


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "tables": set(inspector.get_table_names()),
        "run_indexes": {
            index["name"]: (tuple(index["column_names"]), bool(index["unique"]))
            for index in inspector.get_indexes("runs")
        },
        "version_fks": inspector.get_foreign_keys("workflow_versions"),
        "newest_first_sql": _index_sql(connection, "ix_runs_tenant_created"),
        "node_fks": inspector.get_foreign_keys("node_runs"),
    }


async def test_upgrade_creates_the_models_schema(empty_url: str) -> None:
    assert await current_revision(empty_url) is None
    # Processes that start together (API replicas, workers) migrate one after the other: a
    # PostgreSQL advisory lock, SQLite's write lock taken by BEGIN IMMEDIATE.
    await asyncio.gather(*(upgrade(empty_url) for _ in range(3)))
    assert await current_revision(empty_url) == head_revision() == "0002"

    database = Database(empty_url)
    try:
        async with database.engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            schema = await connection.run_sync(_schema)
    finally:
        await database.dispose()
    assert differences == []
    assert schema["tables"] - {"alembic_version"} == TABLES
    assert schema["run_indexes"] == {
        "ix_runs_tenant_created": (("tenant_id", "created_at"), False),
        "ix_runs_tenant_workflow_created": (("tenant_id", "workflow_id", "created_at"), False),
        "ix_runs_tenant_state": (("tenant_id", "state"), False),
        "ix_runs_state_created": (("state", "created_at"), False),
        "ix_runs_flow_run_id": (("flow_run_id",), True),
    }
    assert schema["newest_first_sql"].replace('"', "").endswith("(tenant_id, created_at DESC)")
    [version_fk] = schema["version_fks"]
    assert version_fk["referred_table"] == "workflows"
    assert version_fk["constrained_columns"] == ["tenant_id", "workflow_id"]
    assert version_fk["options"].get("ondelete") == "CASCADE"
    [node_fk] = schema["node_fks"]
    assert (node_fk["referred_table"], node_fk["options"].get("ondelete")) == ("runs", "CASCADE")


async def test_upgrade_again_is_a_no_op_and_downgrade_to_base_removes_every_table(
    empty_url: str,
) -> None:
    # One database for the whole round trip: creating PostgreSQL databases is the slow part.
    await upgrade(empty_url)
    await upgrade(empty_url)
    assert await current_revision(empty_url) == head_revision()
    await downgrade(empty_url, "base")
    assert await current_revision(empty_url) is None
    database = Database(empty_url)
    try:
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
        await upgrade(empty_url)
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            differences = await connection.run_sync(_differences)
        assert tables - {"alembic_version"} == TABLES
        assert differences == []
    finally:
        await database.dispose()


def test_sync_upgrade_works_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No alembic.ini is looked up in the working directory: run from an unrelated, empty one.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    url = f"sqlite:///{tmp_path / 'data' / 'altlas.db'}"  # the user's spelling, no driver
    upgrade_sync(url)
    assert current_revision_sync(url) == head_revision()
    assert sorted(p.name for p in workdir.iterdir()) == []
