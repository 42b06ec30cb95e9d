"""The database: one SQLAlchemy 2 async engine (Core, no ORM), one ``metadata``, and the schema migrations.

Every service defines its tables in its ``store.py`` on :data:`metadata`; ``servicekit/migrations`` (Alembic) is
the only thing that creates or changes them, on PostgreSQL (``postgresql+asyncpg://``) and SQLite
(``sqlite+aiosqlite://``) alike. A process builds one :class:`Database` from its settings and shares it.

Pools
    PostgreSQL: ``pool_size = min_connections`` connections are kept open, up to ``max_connections -
    min_connections`` more are opened under load and closed when returned. No ``pool_pre_ping``: on asyncpg it
    costs three round trips per checkout (BEGIN, ``;``, ROLLBACK), which was a third of a fire batch's commit.
    Instead a connection the server dropped fails its statement once, SQLAlchemy then invalidates the pool
    (disconnect detection) so the next checkouts reconnect, and connections are recycled after an hour so idle
    timeouts of proxies never bite.

    SQLite (a file): the same pool sizes, because in WAL mode readers run concurrently with the writer and with each
    other, so several connections are useful. SQLite allows one writer at a time, so :meth:`Database.begin` (the
    way to write) takes a per-process lock and starts ``BEGIN IMMEDIATE``: writers of this process queue on the lock
    instead of spinning in SQLite's busy handler while holding pool connections, and a writer never fails to upgrade
    a read snapshot (``SQLITE_BUSY_SNAPSHOT``). Other processes (``labmesh migrate``, a second replica) wait up to
    ``busy_timeout``. Every connection has ``journal_mode=WAL``, ``synchronous=NORMAL`` (durable up to the last
    checkpoint; safe with WAL) and ``foreign_keys=ON``. :meth:`Database.connect` transactions start with a plain
    (deferred) ``BEGIN`` and are meant for reads. ``:memory:`` databases get a single connection (tests only).

Values
    Instants are BIGINT microseconds since the epoch (``*_us`` columns, see docs/architecture.md), so one schema
    and one query serve both dialects.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.resources
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, QueuePool

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "NAMING_CONVENTION",
    "TABLE_MODULES",
    "Database",
    "DatabaseSettings",
    "alembic_config",
    "configure_sqlite",
    "downgrade",
    "load_table_modules",
    "metadata",
    "migrate",
    "migrate_async",
    "normalize_url",
    "schema_diff",
]

#: Deterministic constraint and index names, so migrations can name what they alter on both dialects.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The one MetaData of the mesh: every ``store.py`` defines its tables on it; the migrations produce exactly it.
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: Modules that define tables on :data:`metadata` (imported by :func:`load_table_modules`; absent ones are skipped).
TABLE_MODULES: tuple[str, ...] = ("scheduler_svc.store", "device_svc.store", "sample_svc.store")

Dialect = Literal["postgresql", "sqlite"]
T = TypeVar("T")

#: How long a SQLite connection waits for another process's write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Key of the PostgreSQL advisory lock that serialises concurrent migration runs (any constant unique to labmesh).
MIGRATION_LOCK_KEY = 0x1AB3E5


class DatabaseSettings(Protocol):
    """What :meth:`Database.from_settings` reads (``servicekit.config.Settings`` has it)."""

    database_url: str
    min_db_connections: int
    max_db_connections: int


def normalize_url(url: str | URL) -> URL:
    """The async-driver URL for ``url``: ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``,
    ``sqlite://`` becomes ``sqlite+aiosqlite://``; anything else raises :class:`ValueError`."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "expected postgresql+asyncpg://... or sqlite+aiosqlite:///path"
    )


def _is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or (database.startswith("file:") and "mode=memory" in database)


def configure_sqlite(
    engine: AsyncEngine, *, foreign_keys: bool = True, begin: Literal["DEFERRED", "IMMEDIATE"] = "DEFERRED"
) -> None:
    """Install labmesh's SQLite connection setup on ``engine`` (see the module docstring).

    The driver is put in autocommit mode and SQLAlchemy's transaction start emits the ``BEGIN`` itself (the
    documented recipe for correct SQLite transactions: transactional DDL, SAVEPOINT, ``BEGIN IMMEDIATE``). A
    connection's ``labmesh_sqlite_begin`` execution option (``"DEFERRED"``/``"IMMEDIATE"``) overrides ``begin``.
    ``foreign_keys=False`` is for migrations (SQLite's table-rebuild ALTER needs it off; env.py checks afterwards).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT from the sqlite3 module
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("labmesh_sqlite_begin", begin)
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise ValueError(f"labmesh_sqlite_begin must be DEFERRED or IMMEDIATE, not {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """The engine and pool of one process, plus the dialect helpers the stores use."""

    def __init__(
        self,
        url: str | URL,
        *,
        min_connections: int = 5,
        max_connections: int = 20,
        pool_timeout: float = 30.0,
        application_name: str = "labmesh",
        echo: bool = False,
    ) -> None:
        if min_connections < 1:
            raise ValueError(f"min_connections must be >= 1, not {min_connections}")
        if max_connections < min_connections:
            raise ValueError(f"max_connections ({max_connections}) must be >= min_connections ({min_connections})")
        self.url = normalize_url(url)
        self.dialect: Dialect = "postgresql" if self.url.get_backend_name() == "postgresql" else "sqlite"
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "postgresql":
            self.min_connections, self.max_connections = min_connections, max_connections
            self.engine: AsyncEngine = create_async_engine(
                self.url,
                poolclass=AsyncAdaptedQueuePool,
                pool_size=min_connections,
                max_overflow=max_connections - min_connections,
                pool_timeout=pool_timeout,
                pool_recycle=3600,
                connect_args={"server_settings": {"application_name": application_name}},
                echo=echo,
            )
        else:
            if _is_memory_sqlite(self.url):  # each connection would be its own empty database
                min_connections = max_connections = 1
            self.min_connections, self.max_connections = min_connections, max_connections
            self.engine = create_async_engine(
                self.url,
                poolclass=AsyncAdaptedQueuePool,
                pool_size=min_connections,
                max_overflow=max_connections - min_connections,
                pool_timeout=pool_timeout,
                echo=echo,
            )
            configure_sqlite(self.engine)
            self._write_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: DatabaseSettings, **kwargs: Any) -> Database:
        """The database of ``settings`` (``database_url``, ``min_db_connections``, ``max_db_connections``)."""
        return cls(
            settings.database_url,
            min_connections=settings.min_db_connections,
            max_connections=settings.max_db_connections,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r}, dialect={self.dialect!r})"

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends, rolled back if it raises. Write here.

        On SQLite the block holds this process's write lock and the transaction is ``BEGIN IMMEDIATE``: do not
        open another :meth:`begin` inside it (it would wait for itself).
        """
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(labmesh_sqlite_begin="IMMEDIATE")
            async with conn.begin():
                yield conn

    def connect(self) -> AsyncConnection:
        """A connection (``async with db.connect() as conn``) whose statements autobegin a transaction that is
        rolled back at the end unless ``await conn.commit()``. For reads; write through :meth:`begin`."""
        return self.engine.connect()

    async def ping(self) -> None:
        """Raise if the database cannot answer ``SELECT 1`` (for health checks)."""
        async with self.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def copy_rows(
        self,
        conn: AsyncConnection,
        table_name: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        schema: str | None = None,
    ) -> int:
        """Bulk-load ``rows`` (tuples in ``columns`` order) into ``table_name`` within ``conn``'s transaction and
        return how many were loaded.

        PostgreSQL: the binary COPY protocol of asyncpg, on the driver connection under ``conn``. SQLite: one
        prepared ``INSERT`` run with ``executemany``. Values are database-level: ints for BIGINT (``*_us``),
        bools, str, None, and JSON columns as already-serialised JSON text. On PostgreSQL a failing COPY raises
        asyncpg's exception (for example ``asyncpg.UniqueViolationError``) and leaves the transaction aborted.
        """
        columns = list(columns)
        if not columns:
            raise ValueError("copy_rows needs at least one column")
        if self.dialect == "postgresql":
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if driver is None:
                raise RuntimeError("connection has no live driver connection")
            if not driver.is_in_transaction():
                # SQLAlchemy starts its asyncpg transaction lazily, at the first statement: run one so that the
                # COPY belongs to the caller's transaction (and rolls back with it) instead of autocommitting.
                await conn.exec_driver_sql("SELECT 1")
            status = await driver.copy_records_to_table(table_name, records=rows, columns=columns, schema_name=schema)
            return int(status.rsplit(" ", 1)[-1])
        batch = [tuple(row) for row in rows]
        if not batch:
            return 0
        preparer = self.engine.dialect.identifier_preparer
        target = preparer.quote(table_name)
        if schema:
            target = f"{preparer.quote_schema(schema)}.{target}"
        names = ", ".join(preparer.quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        await conn.exec_driver_sql(f"INSERT INTO {target} ({names}) VALUES ({marks})", batch)
        return len(batch)

    def pool_status(self) -> tuple[int, int, int]:
        """``(open, checked_out, max)``: connections the pool holds open now (idle + in use), those in use, and
        the most it will open (``max_connections``). For the pool gauges of ``servicekit.metrics``."""
        pool = self.engine.sync_engine.pool
        checked_out = pool.checkedout() if isinstance(pool, QueuePool) else 0
        idle = pool.checkedin() if isinstance(pool, QueuePool) else 0
        return idle + checked_out, checked_out, self.max_connections

    async def dispose(self) -> None:
        """Close every pooled connection (at shutdown; connections in use close when returned)."""
        await self.engine.dispose()


# --------------------------------------------------------------------------------------------------- migrations


def load_table_modules() -> None:
    """Import every module of :data:`TABLE_MODULES` that exists, so :data:`metadata` holds all tables."""
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0]):  # a missing dependency is a real error
                raise


def _migrations_dir() -> Path:
    path = importlib.resources.files("servicekit") / "migrations"
    if not isinstance(path, Path):  # e.g. a zipped install: Alembic needs real files
        raise RuntimeError(f"servicekit/migrations is not on the file system ({path!r})")
    return path


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ``servicekit/migrations``, wherever the package is installed
    (no alembic.ini or working directory needed). ``url`` goes to env.py through ``config.attributes`` (not the
    ini parser, which would mangle ``%`` in passwords)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    return config


_ALEMBIC_LOCK = threading.Lock()


def _run_alembic(command_name: str, url: str | URL, revision: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(f"servicekit.db.{command_name}() blocks: in async code use `await migrate_async(url)`")
    from alembic import command

    with _ALEMBIC_LOCK:  # alembic.context is a module-global proxy: one command at a time per process
        getattr(command, command_name)(alembic_config(url), revision)


def migrate(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (Alembic ``upgrade head`` by default). Idempotent; safe
    to run from several processes at once (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``) and from
    several threads (serialised: Alembic's context is process-global). Blocking: from a running event loop use
    :func:`migrate_async`."""
    _run_alembic("upgrade", url, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` removes every table of the migrations)."""
    _run_alembic("downgrade", url, revision)


async def migrate_async(url: str | URL, revision: str = "head") -> None:
    """:func:`migrate` in a worker thread (env.py runs its own event loop there)."""
    await asyncio.to_thread(migrate, url, revision)


async def schema_diff(target: Database | str | URL, expected: sa.MetaData = metadata) -> list[Any]:
    """What Alembic autogenerate would change to turn the live schema of ``target`` into ``expected``: ``[]``
    when the migrations produce exactly ``expected`` (tables, columns and types, indexes, constraints; server
    defaults are not compared). Call :func:`load_table_modules` first when checking :data:`metadata`."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def compare(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "render_as_batch": sync_conn.dialect.name == "sqlite"}
        )
        return list(compare_metadata(context, expected))

    if isinstance(target, Database):
        async with target.connect() as conn:
            return await conn.run_sync(compare)
    engine = create_async_engine(normalize_url(target), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------------- conflicts

#: PostgreSQL's "try the transaction again" states: serialization_failure and deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a transaction the database aborted because of a concurrent one (safe to re-run)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def retry_conflicts(work: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run ``work`` (one whole transaction), again on a deadlock or serialization failure, with jittered backoff.

    Stores order their row locks to avoid deadlocks; this is the safety net for orders they cannot control. A
    conflict that outlasts the attempts becomes ``Aborted`` (retryable by the caller), never INTERNAL.
    """
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    from servicekit.errors import Aborted

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retryable_conflict), stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.005, max=0.2), reraise=True,
        ):
            with attempt:
                return await work()
    except sa.exc.DBAPIError as err:
        if is_retryable_conflict(err):
            raise Aborted("the database aborted this write because of a concurrent one; retry",
                          reason="CONCURRENT_WRITE") from None
        raise
    raise AssertionError("unreachable")  # pragma: no cover
