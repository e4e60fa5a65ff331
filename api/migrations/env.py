"""Alembic environment of the service's database (run by `api.store.migrate`, never by a
cwd-relative `alembic.ini`).

The URL comes from `config.attributes["url"]` (or the `sqlalchemy.url` main option); when the
caller passes an open connection in `config.attributes["connection"]`, migrations run on it, so
`api.store.migrate.upgrade` can drive them from inside a running event loop. SQLite gets batch
mode (`render_as_batch`): it alters tables by copying them.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from api.settings import normalise_database_url
from api.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] (api.store.migrate)")
    return normalise_database_url(str(url))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_new_engine() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif isinstance(connection := config.attributes.get("connection"), Connection):
    _run(connection)
else:
    asyncio.run(_run_on_new_engine())
