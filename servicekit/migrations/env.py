"""Alembic environment of labmesh: one schema (``servicekit.db.metadata``) on PostgreSQL and SQLite.

The URL comes from ``servicekit.db.migrate(url)`` (``config.attributes["url"]``), else ``alembic -x url=...``,
else ``DATABASE_URL``, else ``sqlalchemy.url`` of an ini file. Online runs use an async engine (asyncpg or
aiosqlite) through ``run_sync`` and apply every pending revision in one transaction:

* PostgreSQL: transactional DDL under ``pg_advisory_xact_lock``, so concurrent ``migrate`` calls (replicas
  starting together) run one after the other and the later ones find nothing to do;
* SQLite: ``BEGIN IMMEDIATE`` (one migrator at a time, others wait for the busy timeout), transactional DDL,
  ``foreign_keys=OFF`` during the run because ``op.batch_alter_table`` rebuilds tables (SQLite's documented
  ALTER procedure), then ``PRAGMA foreign_key_check`` before commit. Autogenerate renders batch operations.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from servicekit import db

config = context.config
db.load_table_modules()
target_metadata = db.metadata


def _url() -> URL:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError(
            "no database URL: pass one to servicekit.db.migrate(url), alembic -x url=..., or DATABASE_URL"
        )
    return db.normalize_url(url)


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    url = _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    _configure(connection=connection, render_as_batch=sqlite, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({db.MIGRATION_LOCK_KEY})")
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows violating foreign keys (table, rowid, parent, fk): {broken}")


async def run_migrations_online() -> None:
    url = _url()
    engine = create_async_engine(url, poolclass=NullPool)
    if url.get_backend_name() == "sqlite":
        db.configure_sqlite(engine, foreign_keys=False, begin="IMMEDIATE")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
