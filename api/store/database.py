"""The connection to the service's database: `Database` (engine, sessions) and the few SQL helpers
whose spelling differs between SQLite and PostgreSQL (`dialect_insert`, `json_array_contains`).

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) the production database; the
repositories are written so that both behave the same: every write that must be race-safe is one
statement (a conditional UPDATE, or INSERT ... ON CONFLICT), never read-then-write. On SQLite the
driver starts a transaction at the first write of a session, so reads before it take no lock and
writers queue on the database lock (`busy_timeout`) instead of failing. The lock is held from a
session's first write to its commit: keep network calls out of sessions that write.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, cast, event, exists, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Row, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from api.settings import ApiSettings, normalise_database_url

SQLITE_BUSY_TIMEOUT_MS = 5000

_T = TypeVar("_T")

# One JSON spelling for both dialects: PostgreSQL's `json` refuses NaN and Infinity, so SQLite must
# refuse them too; non-ASCII text is stored as itself, not as \u escapes.
json_dumps = partial(json.dumps, ensure_ascii=False, allow_nan=False)


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: WAL (readers never block the writer), foreign keys enforced (SQLite leaves
    them off by default: ON DELETE CASCADE would silently do nothing), a wait on a locked
    database instead of an immediate "database is locked", and `synchronous=NORMAL`, SQLite's
    advice for WAL: a commit survives the process dying at once (what a 202 promises), only a
    power cut may lose the last commits; it saves an fsync per commit on the single writer."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class Database:
    """The service's database: an async engine and its sessions.

    ```
    db = Database("sqlite+aiosqlite:///.altlas/altlas.db")
    async with db.session() as session:   # one transaction: committed on success
        await create_tenant(session, tenant_id="acme")
    await db.dispose()
    ```
    """

    def __init__(self, url: str, *, echo: bool = False, **engine_options: Any) -> None:
        self.url: URL = make_url(normalise_database_url(url))
        options: dict[str, Any] = {"json_serializer": json_dumps, "echo": echo}
        if self.url.get_backend_name() == "sqlite":
            if _is_sqlite_memory(self.url):
                # Each connection to :memory: is its own empty database: share one.
                options["poolclass"] = StaticPool
            else:
                Path(self.url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            # A connection the server closed (restart, idle time-out) is replaced, not reported.
            options["pool_pre_ping"] = True
        options.update(engine_options)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Database:
        """The database named by `ALTLAS_DATABASE_URL` (default: SQLite in `ALTLAS_HOME`)."""
        return cls(settings.database_url_resolved())

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back on an error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise unless the database answers a query (for `/readyz`)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def session_dialect(session: AsyncSession) -> str:
    """The dialect name (`sqlite`, `postgresql`) a session talks to."""
    return session.get_bind().dialect.name


def dialect_insert(session: AsyncSession, model: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT for `model` that supports `on_conflict_do_nothing` / `on_conflict_do_update` on
    the session's dialect (both have them, under the same names and arguments)."""
    if session_dialect(session) == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def json_array_contains(session: AsyncSession, column: Any, value: str) -> ColumnElement[bool]:
    """`value` is an element of the JSON array in `column` (e.g. a workflow tag)."""
    if session_dialect(session) == "postgresql":
        return cast(column, postgresql.JSONB).contains([value])
    elements = func.json_each(column).table_valued("value").alias("elements")
    return exists(select(literal(1)).select_from(elements).where(elements.c.value == value))


async def fetch_page(
    session: AsyncSession, query: Select[tuple[_T]], *, limit: int, offset: int
) -> tuple[list[_T], int]:
    """One page of `query` (already filtered and ordered) and the total count of its rows."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")
    count_query = select(func.count()).select_from(query.order_by(None).subquery())
    total = (await session.execute(count_query)).scalar_one()
    if limit == 0 or offset >= total:
        return [], total
    rows = (await session.scalars(query.limit(limit).offset(offset))).all()
    return list(rows), total


async def fetch_row_page(
    session: AsyncSession, query: Select[Any], *, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """Like `fetch_page` for a query of several columns: the rows, not their first elements."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")
    count_query = select(func.count()).select_from(query.order_by(None).subquery())
    total = (await session.execute(count_query)).scalar_one()
    if limit == 0 or offset >= total:
        return [], total
    rows = (await session.execute(query.limit(limit).offset(offset))).all()
    return list(rows), total
