"""`Database`: SQLite pragmas, transactions, and values that round-trip alike on both dialects."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from api.store.database import Database
from api.store.models import AuditRecord, Tenant
from api.store.tenants import create_tenant, get_tenant
from tests.support.databases import copy_sqlite_file, sqlite_url


async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # The folder does not exist yet: Database creates it.
    path = tmp_path / "deeper" / "still" / "altlas.db"
    database = Database(f"sqlite:///{path}")  # normalised to aiosqlite
    try:
        assert database.dialect == "sqlite"
        assert database.url.drivername == "sqlite+aiosqlite"
        assert path.parent.is_dir()
        async with database.session() as session:
            pragmas = {
                name: (await session.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}
    finally:
        await database.dispose()


async def test_a_session_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    async with database.session() as session:
        await create_tenant(session, tenant_id="kept")

    async def fail_after_a_write() -> None:
        async with database.session() as session:
            await create_tenant(session, tenant_id="dropped")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_after_a_write()
    async with database.session() as session:
        ids = list((await session.scalars(select(Tenant.id).order_by(Tenant.id))).all())
    assert ids == ["kept"]


async def test_datetimes_come_back_aware_utc_and_equal(database: Database) -> None:
    at = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3)))
    async with database.session() as session:
        session.add(AuditRecord(command="probe", outcome="ok", at=at))
    async with database.session() as session:
        stored = (await session.scalars(select(AuditRecord.at))).one()
    assert stored == at
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored.isoformat() == "2026-03-28T22:30:15.123456+00:00"


async def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="aware datetimes only"):
        async with database.session() as session:
            session.add(AuditRecord(command="probe", outcome="ok", at=datetime(2026, 1, 1)))


async def test_json_round_trips_unicode_and_key_order_and_refuses_nan(database: Database) -> None:
    settings = {"z": 1, "a": ["ü", "✓", None], "m": {"y": 2.5, "b": True}}
    async with database.session() as session:
        await create_tenant(session, tenant_id="json", settings=settings)
    async with database.session() as session:
        tenant = await get_tenant(session, tenant_id="json")
    assert tenant is not None
    assert tenant.settings == settings
    assert list(tenant.settings) == ["z", "a", "m"]  # plain JSON keeps the order as written
    with pytest.raises(StatementError, match="Out of range float values"):
        async with database.session() as session:
            await create_tenant(session, tenant_id="nan", settings={"x": float("nan")})


async def test_the_database_answers_a_ping(database: Database) -> None:
    await database.ping()
    assert database.dialect in ("sqlite", "postgresql")


async def test_cascades_are_enforced_on_sqlite_too(tmp_path: Path, sqlite_template: Path) -> None:
    # SQLite ignores ON DELETE CASCADE unless foreign keys are switched on per connection.
    database = Database(sqlite_url(copy_sqlite_file(sqlite_template, tmp_path / "c.db")))
    try:
        async with database.session() as session:
            await create_tenant(session, tenant_id="gone")
            await session.execute(
                text("INSERT INTO secrets VALUES ('gone', 'token', x'00', :at, :at)"),
                {"at": "2026-01-01 00:00:00.000000"},
            )
        async with database.session() as session:
            await session.execute(text("DELETE FROM tenants WHERE id = 'gone'"))
        async with database.session() as session:
            count = (await session.execute(text("SELECT count(*) FROM secrets"))).scalar_one()
        assert count == 0
    finally:
        await database.dispose()


async def test_an_in_memory_database_is_one_database_for_every_session() -> None:
    # Each connection to :memory: is a new empty database; Database shares one connection.
    database = Database("sqlite+aiosqlite://")
    try:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE probe (x INTEGER)"))
            await session.execute(text("INSERT INTO probe VALUES (7)"))
        async with database.session() as session:
            assert (await session.execute(text("SELECT x FROM probe"))).scalar_one() == 7
    finally:
        await database.dispose()
