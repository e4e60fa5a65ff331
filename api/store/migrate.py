"""Schema migrations of the service's database, driven from code (CLI, start-up, tests).

`upgrade(url)` brings a database to the newest revision; `current_revision(url)` tells where it
is. The Alembic configuration is built here, pointing at the migrations shipped inside the `api`
package: no `alembic.ini` is read, so this works from any working directory. On PostgreSQL an
advisory lock makes processes that start together (API replicas, workers) migrate one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from api.settings import normalise_database_url

# Alembic is imported where it is used: importing it costs a third of a second, which the API
# and the workers (that import `api.store` for its repositories) should not pay at start-up.
if TYPE_CHECKING:
    from alembic.config import Config

_Command = Callable[["Config", str], None]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_SQLITE_MIGRATION_BUSY_TIMEOUT_MS = 60_000
# Any fixed 64-bit number, the same in every process: the key of the migration advisory lock.
_ADVISORY_LOCK_KEY = 0x616C746C61736462  # "altlasdb"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at `url` (no ini file is read)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not as `sqlalchemy.url`: the ini parser would treat a `%` in a
    # password as interpolation.
    config.attributes["url"] = normalise_database_url(url)
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def _engine(url: str) -> AsyncEngine:
    normalised = normalise_database_url(url)
    parsed = make_url(normalised)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(normalised, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_migration_connection)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_migration_connection(dbapi_connection: Any, _record: Any) -> None:
    """SQLite's driver would commit before each DDL statement: a migration cut short would leave
    half a schema, and each statement would cost a commit. We issue BEGIN ourselves instead
    (`_sqlite_begin_immediate`), so one migration run is one transaction. Foreign keys stay off
    (the default) while migrating: a batch ALTER copies and drops tables, and cascades must not
    fire on the way."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_MIGRATION_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin_immediate(connection: Connection) -> None:
    # IMMEDIATE takes the write lock before alembic reads the current revision: two processes
    # migrating at once run one after the other, and the second finds nothing left to do.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (default: the newest)."""
    from alembic import command

    await _run_command(url, command.upgrade, revision)


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` down to `revision` (`base`: no tables at all)."""
    from alembic import command

    await _run_command(url, command.downgrade, revision)


async def _run_command(url: str, alembic_command: _Command, revision: str) -> None:
    config = alembic_config(url)
    engine = _engine(url)
    try:
        async with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                await connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
                )
                await connection.commit()
            try:
                # One transaction for the whole run (alembic joins it): all or nothing.
                async with connection.begin():
                    await connection.run_sync(_run_on, config, alembic_command, revision)
            finally:
                if postgres:
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY}
                    )
                    await connection.commit()
    finally:
        await engine.dispose()


def _run_on(
    connection: Connection, config: Config, alembic_command: _Command, revision: str
) -> None:
    config.attributes["connection"] = connection
    alembic_command(config, revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    """`upgrade` for callers without an event loop (the CLI)."""
    asyncio.run(upgrade(url, revision))


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = _engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def current_revision_sync(url: str) -> str | None:
    """`current_revision` for callers without an event loop."""
    return asyncio.run(current_revision(url))


def unmigrated_reason(url: str) -> str | None:
    """Why the database at `url` cannot serve yet (missing, or behind the newest revision), in
    words that say what to run; None when it is ready. Never creates a SQLite file."""
    parsed = make_url(normalise_database_url(url))
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).exists():
        return (
            f"there is no database at {file}: run `altlas-flows db upgrade` with the same "
            "ALTLAS_HOME / ALTLAS_DATABASE_URL (or `altlas-flows up`)"
        )
    current, head = current_revision_sync(url), head_revision()
    if current == head:
        return None
    return (
        f"the database {parsed.render_as_string(hide_password=True)} is at revision "
        f"{current or '(empty)'}, not {head}: run `altlas-flows db upgrade`"
    )
