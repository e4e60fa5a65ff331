"""Throw-away databases for the store tests: migrated SQLite files and PostgreSQL databases.

Every database is created by the migrations (`api.store.migrate.upgrade`), never by
`metadata.create_all`, so the tests exercise the schema the service really runs on.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from api.store.database import Database
from api.store.migrate import upgrade_sync
from api.store.models import Base
from tests.conftest import POSTGRES_ADMIN_DSN, create_postgres_database


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def asyncpg_url(dsn: str) -> str:
    """The SQLAlchemy URL of a `postgresql://` DSN."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def migrated_sqlite_file(path: Path) -> Path:
    """A new SQLite database file at `path`, migrated to the newest revision."""
    upgrade_sync(sqlite_url(path))
    return path


def copy_sqlite_file(template: Path, target: Path) -> Path:
    """A copy of a migrated SQLite file (much faster than migrating again for every test)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


def new_postgres_database(prefix: str, *, migrate: bool = True) -> str:
    """A fresh PostgreSQL database (migrated unless told otherwise); its SQLAlchemy URL."""
    url = asyncpg_url(create_postgres_database(prefix))
    if migrate:
        upgrade_sync(url)
    return url


def drop_postgres_database(url: str) -> None:
    """Drop a database made by `new_postgres_database`, disconnecting whoever still uses it."""
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


async def empty_all_tables(database: Database) -> None:
    """Delete every row of the service's tables, children first. (DELETE, not TRUNCATE: on the
    few rows a test leaves it takes milliseconds, TRUNCATE of nine tables a quarter second.)"""
    async with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
