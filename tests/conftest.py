"""Fixtures shared by the whole suite: a fresh database per test on both dialects, and Redis under a unique prefix.

Databases: ``database_url`` runs each test that uses it twice, ``[sqlite]`` (a file in ``tmp_path``) and
``[postgresql]`` (a database created for the test on the server of ``LABMESH_TEST_PG_URL`` and dropped after it).
An unreachable PostgreSQL fails those tests — CI must really exercise PostgreSQL — unless
``LABMESH_TEST_SKIP_PG=1``, which skips them. Redis: ``redis_prefix`` is a key prefix of the test's own, whose keys
are deleted afterwards (``LABMESH_TEST_REDIS_URL``; unreachable fails unless ``LABMESH_TEST_SKIP_REDIS=1``).
``scripts/test`` starts both servers when they are not running.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from servicekit.db import Database, migrate_async

PG_ADMIN_URL = os.environ.get("LABMESH_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("LABMESH_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
SKIP_PG = os.environ.get("LABMESH_TEST_SKIP_PG") == "1"
SKIP_REDIS = os.environ.get("LABMESH_TEST_SKIP_REDIS") == "1"
DIALECTS = ("sqlite", "postgresql")

# Why a server was unreachable, remembered so that later tests fail fast instead of each waiting for a timeout.
_unreachable: dict[str, str] = {}


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = "skipped (LABMESH_TEST_SKIP_PG=1)" if SKIP_PG else _redact(PG_ADMIN_URL)
    redis = "skipped (LABMESH_TEST_SKIP_REDIS=1)" if SKIP_REDIS else _redact(REDIS_URL)
    return [f"labmesh: postgresql {pg}; redis {redis}"]


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _unavailable(service: str, url: str, reason: str, skip: bool, skip_var: str) -> None:
    message = f"{service} unreachable at {_redact(url)}: {reason}"
    if skip:
        pytest.skip(f"{message} ({skip_var}=1)")
    pytest.fail(f"{message}. Run ./scripts/test (it starts {service}), or set {skip_var}=1 to skip.", pytrace=False)


# ----------------------------------------------------------------------------------------------------- databases


async def _pg_admin() -> asyncpg.Connection:
    if "postgresql" in _unreachable:
        _unavailable("PostgreSQL", PG_ADMIN_URL, _unreachable["postgresql"], SKIP_PG, "LABMESH_TEST_SKIP_PG")
    dsn = make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _unreachable["postgresql"] = f"{type(exc).__name__}: {exc}"
    # Outside the except block, so the failure shows the reason only, not a chained traceback.
    _unavailable("PostgreSQL", PG_ADMIN_URL, _unreachable["postgresql"], SKIP_PG, "LABMESH_TEST_SKIP_PG")
    raise AssertionError("unreachable")


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _temporary_database(dialect: str, directory: Path) -> AsyncIterator[str]:
    """A new empty database of ``dialect``; yields its async URL and removes the database afterwards."""
    name = f"labmesh_test_{uuid.uuid4().hex[:8]}"
    if dialect == "sqlite":
        path = directory / f"{name}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            _remove_sqlite_files(path)
        return
    if dialect != "postgresql":
        raise ValueError(f"unknown dialect {dialect!r}")
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield (
            make_url(PG_ADMIN_URL)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Callable[[str], contextlib.AbstractAsyncContextManager[str]]:
    """``async with fresh_database_url("postgresql") as url:`` — one more empty database, removed at the block's
    end (for tests that need two databases, e.g. two replicas that must not share state)."""
    return lambda dialect: _temporary_database(dialect, tmp_path)


@pytest.fixture(params=DIALECTS, ids=DIALECTS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The async URL of an empty database of this test's own: ``sqlite+aiosqlite:///<tmp_path>/...db`` or
    ``postgresql+asyncpg://.../labmesh_test_<uuid8>`` (dropped ``WITH (FORCE)`` afterwards)."""
    async with _temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def dialect(database_url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``: the dialect of this test's ``database_url``."""
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
async def migrated_database_url(database_url: str) -> str:
    """``database_url`` upgraded to the head migration."""
    await migrate_async(database_url)
    return database_url


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` (1-5 connections) on ``migrated_database_url``, disposed after the test."""
    db = Database(migrated_database_url, min_connections=1, max_connections=5)
    try:
        yield db
    finally:
        await db.dispose()


# ---------------------------------------------------------------------------------------------------------- redis


@pytest.fixture
async def redis_url() -> str:
    """The Redis of the suite (``LABMESH_TEST_REDIS_URL``), checked to answer PING. Use with ``redis_prefix``."""
    import redis.asyncio as aioredis

    if "redis" not in _unreachable:
        client = aioredis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
        try:
            await client.ping()
        except (OSError, aioredis.RedisError) as exc:
            _unreachable["redis"] = f"{type(exc).__name__}: {exc}"
        finally:
            await client.aclose()
    if "redis" in _unreachable:
        _unavailable("Redis", REDIS_URL, _unreachable["redis"], SKIP_REDIS, "LABMESH_TEST_SKIP_REDIS")
    return REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """``test:<uuid8>:`` — put every Redis key (streams, groups, locks) of the test under it; all keys matching
    the prefix are deleted after the test."""
    import redis.asyncio as aioredis

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
