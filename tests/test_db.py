"""servicekit.db on both dialects: migrations, bulk load, pools, SQLite's single writer, per-test isolation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from servicekit import db
from servicekit.db import Database, alembic_config, downgrade, migrate, migrate_async, schema_diff

ROOT = Path(__file__).resolve().parent.parent


async def _scalar(url: str, sql: str) -> object:
    database = Database(url, min_connections=1, max_connections=1)
    try:
        async with database.connect() as conn:
            return (await conn.exec_driver_sql(sql)).scalar()
    finally:
        await database.dispose()


async def _tables(url: str) -> set[str]:
    database = Database(url, min_connections=1, max_connections=1)
    try:
        async with database.connect() as conn:
            return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await database.dispose()


# ------------------------------------------------------------------------------------------------------ migrations


async def test_migrations_upgrade_downgrade_and_reupgrade(database_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None

    await migrate_async(database_url)
    assert await _scalar(database_url, "SELECT version_num FROM alembic_version") == head
    await migrate_async(database_url)  # idempotent
    assert await _scalar(database_url, "SELECT count(*) FROM alembic_version") == 1

    await asyncio.to_thread(downgrade, database_url, "base")
    assert await _scalar(database_url, "SELECT count(*) FROM alembic_version") == 0
    assert await _tables(database_url) == {"alembic_version"}

    await migrate_async(database_url)
    assert await _scalar(database_url, "SELECT version_num FROM alembic_version") == head


async def test_baseline_revision_creates_no_tables(database_url: str) -> None:
    await migrate_async(database_url, "0001")
    assert await _tables(database_url) == {"alembic_version"}
    assert await schema_diff(database_url, sa.MetaData()) == []


async def test_head_produces_exactly_the_metadata_of_every_store(migrated_database_url: str) -> None:
    db.load_table_modules()
    assert await schema_diff(migrated_database_url) == []
    assert "alembic_version" not in db.metadata.tables


async def test_concurrent_migrations_serialise(database_url: str) -> None:
    # Replicas starting together all migrate: PostgreSQL's advisory lock / SQLite's BEGIN IMMEDIATE order the
    # processes; threads of one process are serialised by servicekit.db.
    code = "import sys; from servicekit.db import migrate; migrate(sys.argv[1])"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen"), os.environ.get("PYTHONPATH", "")]),
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, database_url, env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    threads = asyncio.gather(*(migrate_async(database_url) for _ in range(2)))
    results = [await asyncio.wait_for(p.communicate(), 120) for p in processes]
    await threads
    assert [p.returncode for p in processes] == [0, 0, 0], [err.decode()[-2000:] for _, err in results]
    assert await _scalar(database_url, "SELECT count(*) FROM alembic_version") == 1


async def test_schema_diff_reports_what_migrations_do_not_create(database_url: str) -> None:
    await migrate_async(database_url, "0001")
    throwaway = sa.MetaData(naming_convention=db.NAMING_CONVENTION)
    probe = sa.Table(
        "probe",
        throwaway,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("lab", sa.String(63), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Index("ix_probe_lab_at", "lab", "at_us"),
    )
    diff = await schema_diff(database_url, throwaway)
    assert [(op[0], op[1].name) for op in diff] == [("add_table", "probe"), ("add_index", "ix_probe_lab_at")]

    database = Database(database_url, min_connections=1, max_connections=1)
    try:
        async with database.begin() as conn:
            await conn.run_sync(throwaway.create_all)
        assert await schema_diff(database, throwaway) == []

        sa.Table("probe", throwaway, sa.Column("note", sa.Text()), extend_existing=True)
        diff = await schema_diff(database, throwaway)
        assert [(op[0], op[3].name) for op in diff] == [("add_column", "note")]
    finally:
        await database.dispose()
    assert probe.name == "probe"


async def test_migrate_refuses_to_block_the_event_loop(database_url: str) -> None:
    with pytest.raises(RuntimeError, match="migrate_async"):
        migrate(database_url)


# ------------------------------------------------------------------------------------------------------- copy_rows

COPY_COLUMNS = ("id", "lab", "at_us", "payload", "done", "note")


def _rows(n: int) -> list[tuple[object, ...]]:
    return [
        (
            i,
            f"lab-{i % 7}",
            1_700_000_000_000_000 + i,
            json.dumps({"i": i, "µ": "é"}),
            i % 2 == 0,
            None if i % 3 else "x",
        )
        for i in range(n)
    ]


_CREATE_COPY_TABLE = (
    "CREATE {temp} TABLE {name} (id BIGINT PRIMARY KEY, lab VARCHAR(63) NOT NULL, at_us BIGINT NOT NULL, "
    "payload JSON NOT NULL, done BOOLEAN NOT NULL, note TEXT)"
)


async def test_copy_rows_loads_ten_thousand_rows_into_a_temp_table(database: Database) -> None:
    rows = _rows(10_000)
    async with database.begin() as conn:
        await conn.exec_driver_sql(_CREATE_COPY_TABLE.format(temp="TEMPORARY", name="bulk"))
        loaded = await database.copy_rows(conn, "bulk", COPY_COLUMNS, iter(rows))
        assert loaded == 10_000
        count, id_sum, at_max, done = (
            await conn.exec_driver_sql(
                "SELECT count(*), sum(id), max(at_us), sum(CASE WHEN done THEN 1 ELSE 0 END) FROM bulk"
            )
        ).one()
        assert (count, int(id_sum), at_max, done) == (10_000, sum(range(10_000)), rows[-1][2], 5_000)
        got = (await conn.exec_driver_sql("SELECT lab, payload, note FROM bulk WHERE id = 4242")).one()
        assert (got[0], json.loads(got[1]) if isinstance(got[1], str) else got[1], got[2]) == (
            "lab-0",
            {"i": 4242, "µ": "é"},
            "x",
        )
        assert await database.copy_rows(conn, "bulk", COPY_COLUMNS, []) == 0


async def test_copy_rows_belongs_to_the_callers_transaction(database: Database) -> None:
    async with database.begin() as conn:
        await conn.exec_driver_sql(_CREATE_COPY_TABLE.format(temp="", name="bulk_tx"))

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with database.begin() as conn:
            # COPY first thing in the transaction: it must not run outside it (autocommit) on PostgreSQL.
            assert await database.copy_rows(conn, "bulk_tx", COPY_COLUMNS, _rows(100)) == 100
            raise Abort
    async with database.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM bulk_tx")).scalar() == 0

    async with database.begin() as conn:
        await database.copy_rows(conn, "bulk_tx", COPY_COLUMNS, _rows(100))
    async with database.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM bulk_tx")).scalar() == 100

    duplicate = (asyncpg.UniqueViolationError, sa.exc.IntegrityError)
    with pytest.raises(duplicate):
        async with database.begin() as conn:
            await database.copy_rows(conn, "bulk_tx", COPY_COLUMNS, _rows(1))


# ------------------------------------------------------------------------------------------------ pools and locks


async def test_pool_sizing_is_honoured(database_url: str, dialect: str) -> None:
    database = Database(database_url, min_connections=2, max_connections=4, pool_timeout=0.5)
    try:
        assert database.dialect == dialect
        assert database.pool_status() == (0, 0, 4)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(4):
                conn = await stack.enter_async_context(database.connect())
                await conn.exec_driver_sql("SELECT 1")
            assert database.pool_status() == (4, 4, 4)
            with pytest.raises(sa.exc.TimeoutError):
                async with database.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
            if dialect == "postgresql":
                assert await _backends(database_url) == 4
        # Overflow connections close when returned; pool_size (min_connections) stay open.
        assert database.pool_status() == (2, 0, 4)
        if dialect == "postgresql":
            assert await _backends(database_url) == 2
    finally:
        await database.dispose()
    assert database.pool_status()[:2] == (0, 0)


async def _backends(url: str) -> int:
    name = sa.make_url(url).database
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND application_name = 'labmesh'"
    return int(await _scalar(url, sql)) - 1  # minus the connection asking


def test_from_settings_and_validation() -> None:
    settings = SimpleNamespace(database_url="sqlite:///labmesh-unused.db", min_db_connections=2, max_db_connections=7)
    database = Database.from_settings(settings)
    assert (database.dialect, database.url.drivername, database.pool_status()) == (
        "sqlite",
        "sqlite+aiosqlite",
        (0, 0, 7),
    )
    assert Database("postgres://u:secret@h/db").url.drivername == "postgresql+asyncpg"
    assert "secret" not in repr(Database("postgresql://u:secret@h/db"))
    with pytest.raises(ValueError, match="min_connections"):
        Database("sqlite:///x.db", min_connections=0, max_connections=1)
    with pytest.raises(ValueError, match="max_connections"):
        Database("sqlite:///x.db", min_connections=3, max_connections=2)
    with pytest.raises(ValueError, match="unsupported"):
        Database("mysql://h/db")


async def test_concurrent_writers_all_commit(database: Database) -> None:
    async with database.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        await conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")

    async def bump() -> None:
        async with database.begin() as conn:
            n = (await conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1")).scalar()
            await asyncio.sleep(0)
            if database.dialect == "postgresql":  # read-modify-write needs the row lock there
                await conn.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")
            else:  # SQLite's single writer makes this read-modify-write safe
                await conn.execute(sa.text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

    await asyncio.gather(*(bump() for _ in range(25)))
    async with database.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT n FROM counter")).scalar() == 25


async def test_readers_are_not_blocked_by_an_open_write(database: Database) -> None:
    async with database.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE kv (k VARCHAR(8) PRIMARY KEY, v BIGINT NOT NULL)")
        await conn.exec_driver_sql("INSERT INTO kv VALUES ('a', 1)")
    async with database.begin() as writer:
        await writer.exec_driver_sql("UPDATE kv SET v = 2 WHERE k = 'a'")
        async with database.connect() as reader:
            seen = await asyncio.wait_for(reader.exec_driver_sql("SELECT v FROM kv WHERE k = 'a'"), 5)
            assert seen.scalar() == 1  # the committed value: WAL (SQLite) / MVCC (PostgreSQL)
    async with database.connect() as reader:
        assert (await reader.exec_driver_sql("SELECT v FROM kv WHERE k = 'a'")).scalar() == 2


async def test_connections_enforce_foreign_keys_and_sqlite_pragmas(database: Database) -> None:
    async with database.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))"
        )
    with pytest.raises(sa.exc.IntegrityError):
        async with database.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO child VALUES (1, 42)")
    if database.dialect == "sqlite":
        async with database.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30_000, "foreign_keys": 1}


# ---------------------------------------------------------------------------------------------------- isolation


async def test_each_test_database_is_its_own(database_url: str, dialect: str, fresh_database_url) -> None:
    await migrate_async(database_url)
    first = Database(database_url, min_connections=1, max_connections=1)
    try:
        async with first.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE marker (id INTEGER PRIMARY KEY)")
    finally:
        await first.dispose()

    async with fresh_database_url(dialect) as other_url:
        assert other_url != database_url
        assert await _tables(other_url) == set()
        await migrate_async(other_url)
        assert "marker" not in await _tables(other_url)
    assert "marker" in await _tables(database_url)

    if dialect == "postgresql":  # the other database was dropped at the end of its block
        other = sa.make_url(other_url).database
        assert await _scalar(database_url, f"SELECT count(*) FROM pg_database WHERE datname = '{other}'") == 0
    else:
        assert not await asyncio.to_thread(os.path.exists, sa.make_url(other_url).database)


_previous_redis_key: list[str] = []


async def test_redis_prefix_is_a_private_namespace(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    assert redis_prefix.startswith("test:") and redis_prefix.endswith(":")
    client = aioredis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}k", "v")
        assert await client.get(f"{redis_prefix}k") == b"v"
    finally:
        await client.aclose()
    _previous_redis_key.append(f"{redis_prefix}k")


async def test_redis_prefix_keys_are_deleted_after_the_test(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    if not _previous_redis_key:
        pytest.skip("runs after test_redis_prefix_is_a_private_namespace")
    assert not _previous_redis_key[-1].startswith(redis_prefix)
    client = aioredis.from_url(redis_url)
    try:
        assert await client.exists(_previous_redis_key[-1]) == 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_retry_conflicts_reruns_deadlocked_transactions_then_aborts(database: Database) -> None:
    from servicekit.db import retry_conflicts
    from servicekit.errors import Aborted

    calls = 0

    async def deadlocks_twice() -> str:
        nonlocal calls
        calls += 1
        async with database.begin() as conn:
            if calls <= 2:
                await conn.execute(sa.text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$"))
            return "done"

    assert await retry_conflicts(deadlocks_twice) == "done" and calls == 3

    async def always_deadlocks() -> None:
        async with database.begin() as conn:
            await conn.execute(sa.text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$"))

    with pytest.raises(Aborted):
        await retry_conflicts(always_deadlocks, attempts=3)

    async def other_error() -> None:
        async with database.begin() as conn:
            await conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.DBAPIError):
        await retry_conflicts(other_error)
