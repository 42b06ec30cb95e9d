"""Persistence of the scheduler: alarms, the fire log and shard leases, behind one module.

Every instant is a BIGINT of microseconds since the epoch (UTC), so SQLite and PostgreSQL share one schema.
The firing path (`commit_fires`) is one statement per batch on PostgreSQL (arrays unnested server-side) and one
transaction per batch on SQLite; it is fenced by the shard lease so a replica that lost its lease cannot fire.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.db import Database, metadata, retry_conflicts

ACTIVE, PAUSED, COMPLETED = "ACTIVE", "PAUSED", "COMPLETED"

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lab", sa.String(63), nullable=False),
    sa.Column("alarm_id", sa.String(63), nullable=False),
    sa.Column("shard", sa.Integer(), nullable=False),
    sa.Column("display_name", sa.Text(), nullable=False, server_default=""),
    sa.Column("owner_email", sa.String(320), nullable=False, server_default=""),
    sa.Column("target", sa.Text(), nullable=False, server_default=""),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("schedule", sa.JSON(), nullable=False),
    sa.Column("start_us", sa.BigInteger()),
    sa.Column("end_us", sa.BigInteger()),
    sa.Column("max_fires", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("grace_us", sa.BigInteger(), nullable=False),
    sa.Column("catch_up", sa.String(8), nullable=False),
    sa.Column("catch_up_limit", sa.Integer(), nullable=False),
    sa.Column("gap_policy", sa.String(16), nullable=False),
    sa.Column("jitter_us", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("notify_owner", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("state", sa.String(12), nullable=False),
    # The next occurrence: nominal (its identity) and due (nominal + jitter, or later when snoozed).
    sa.Column("next_fire_us", sa.BigInteger()),
    sa.Column("next_due_us", sa.BigInteger()),
    sa.Column("last_fire_us", sa.BigInteger()),
    sa.Column("fire_count", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("paused_us", sa.BigInteger()),
    sa.Column("create_us", sa.BigInteger(), nullable=False),
    sa.Column("update_us", sa.BigInteger(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
    sa.Column("request_id", sa.String(128)),
    # AlarmSnapshot bytes (name, target, labels, payload, ...), rebuilt on every write so that firing copies
    # bytes instead of serialising 100,000 messages in the hot path. The payload lives only here.
    sa.Column("snapshot", sa.LargeBinary(), nullable=False),
    sa.UniqueConstraint("lab", "alarm_id", name="uq_alarms_lab_alarm_id"),
    sa.Index(
        "uq_alarms_lab_request_id", "lab", "request_id", unique=True,
        postgresql_where=sa.text("request_id IS NOT NULL"), sqlite_where=sa.text("request_id IS NOT NULL"),
    ),
    # The engine's only scan: due-soon active alarms of the shards this replica owns.
    sa.Index(
        "ix_alarms_due", "shard", "next_due_us",
        postgresql_where=sa.text("state = 'ACTIVE'"), sqlite_where=sa.text("state = 'ACTIVE'"),
    ),
    sa.Index("ix_alarms_lab_next", "lab", "next_due_us"),
    sa.Index("ix_alarms_lab_owner", "lab", "owner_email", "next_due_us"),
    sa.Index("ix_alarms_lab_target", "lab", "target"),
    # The seed's partial index for cleanup of finished one-shot alarms.
    sa.Index(
        "ix_alarms_completed", "update_us",
        postgresql_where=sa.text("state = 'COMPLETED'"), sqlite_where=sa.text("state = 'COMPLETED'"),
    ),
)

fires = sa.Table(
    "fires",
    metadata,
    # The cursor of every Fire stream: assigned under a lock so commit order equals seq order.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("lab", sa.String(63), nullable=False),
    sa.Column("alarm_pk", sa.BigInteger(), nullable=False),
    sa.Column("alarm_id", sa.String(63), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("owner_email", sa.String(320), nullable=False),
    sa.Column("nominal_us", sa.BigInteger(), nullable=False),
    sa.Column("due_us", sa.BigInteger(), nullable=False),
    sa.Column("fire_us", sa.BigInteger(), nullable=False),
    sa.Column("outcome", sa.SmallInteger(), nullable=False),
    sa.Column("reason", sa.Text()),
    sa.Column("notify_owner", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("snapshot", sa.LargeBinary()),
    sa.UniqueConstraint("alarm_pk", "nominal_us", name="uq_fires_occurrence"),
    sa.Index("ix_fires_lab_alarm", "lab", "alarm_id", "seq"),
    sa.Index("ix_fires_lab_target", "lab", "target", "seq"),
    sa.Index("ix_fires_fire_us", "fire_us"),
)

shard_leases = sa.Table(
    "shard_leases",
    metadata,
    sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(128)),
    sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("expire_us", sa.BigInteger(), nullable=False, server_default="0"),
)

consumer_groups = sa.Table(
    "consumer_groups",
    metadata,
    sa.Column("lab", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("filter", sa.JSON(), nullable=False),
    sa.Column("ack_deadline_us", sa.BigInteger(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    # Every fire with seq <= position is settled for this group (acknowledged, dead-lettered, or not matching).
    sa.Column("position_seq", sa.BigInteger(), nullable=False),
    sa.Column("create_us", sa.BigInteger(), nullable=False),
)

group_deliveries = sa.Table(
    "group_deliveries",
    metadata,
    sa.Column("lab", sa.String(63), primary_key=True),
    sa.Column("group_name", sa.String(63), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("alarm_id", sa.String(63), nullable=False),
    sa.Column("nominal_us", sa.BigInteger(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("member", sa.String(160)),
    sa.Column("sent_us", sa.BigInteger()),
    sa.Column("delivered_us", sa.BigInteger()),
    sa.Column("acked_us", sa.BigInteger()),
    sa.Column("deadline_us", sa.BigInteger()),
    sa.Index("ix_group_deliveries_fire", "lab", "group_name", "alarm_id", "nominal_us"),
    sa.Index(
        "ix_group_deliveries_due", "deadline_us",
        postgresql_where=sa.text("state = 'DELIVERED'"), sqlite_where=sa.text("state = 'DELIVERED'"),
    ),
)

scheduler_instances = sa.Table(
    "scheduler_instances",
    metadata,
    # Live replicas, so a replica that holds no shard yet still counts when the fair share is computed.
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("expire_us", sa.BigInteger(), nullable=False),
)

# Fire outcomes share the numbers of labmesh.scheduler.v1.FireOutcome.
ON_TIME, LATE, MISSED, SKIPPED = 1, 2, 3, 4
DELIVERABLE = (ON_TIME, LATE)


def now_us() -> int:
    return time.time_ns() // 1000


# The columns the engine needs to hold an alarm in its window (no payload, no snapshot).
WINDOW_COLUMNS = (
    alarms.c.id, alarms.c.lab, alarms.c.alarm_id, alarms.c.shard, alarms.c.schedule, alarms.c.start_us,
    alarms.c.end_us, alarms.c.max_fires, alarms.c.grace_us, alarms.c.catch_up, alarms.c.catch_up_limit,
    alarms.c.gap_policy, alarms.c.jitter_us, alarms.c.next_fire_us, alarms.c.next_due_us, alarms.c.fire_count,
)


@dataclass(slots=True)
class FireRow:
    """One fire-log row the engine wants written (fired, late, missed or skipped)."""

    alarm_pk: int
    nominal_us: int
    due_us: int
    fire_us: int
    outcome: int
    reason: str | None = None


@dataclass(slots=True)
class AlarmAdvance:
    """How one alarm moves on after its batch: guarded by the nominal time the engine believed was next."""

    alarm_pk: int
    shard: int
    expected_nominal_us: int
    next_fire_us: int | None
    next_due_us: int | None
    last_fire_us: int | None
    fired: int
    state: str


@dataclass(slots=True)
class CommitResult:
    advanced: set[int]  # alarm pks whose row matched the guard and moved on
    last_seq: int | None  # highest fire-log seq written, for waking the stream tailers


_LOCK_FIRE_LOG_PG = sa.text(
    "SELECT pg_advisory_xact_lock(7142001), set_config('plan_cache_mode', 'force_custom_plan', true)"
)

# One statement per batch of fires on PostgreSQL, built once. Its plan must not depend on table statistics (right
# after ImportAlarms there are none) nor scale with the number of stored alarms: the batch drives primary-key
# probes, and the lease fence is a one-time check (every shard of the batch is still leased to us, by the database
# clock), which the planner evaluates once instead of folding a guess about it into the row estimates. An alarm's
# shard never changes, so checking the batch's shards fences every row of it.
_COMMIT_FIRES_PG = sa.text(
    """
    WITH u AS (
        SELECT * FROM unnest(CAST(:a_pk AS bigint[]), CAST(:a_expected AS bigint[]),
                             CAST(:a_next AS bigint[]), CAST(:a_due AS bigint[]),
                             CAST(:a_last AS bigint[]), CAST(:a_fired AS bigint[]), CAST(:a_state AS text[]))
            AS u(alarm_pk, expected, next_fire_us, next_due_us, last_fire_us, fired, state)
    ), upd AS (
        UPDATE alarms a SET next_fire_us = u.next_fire_us, next_due_us = u.next_due_us,
               last_fire_us = COALESCE(u.last_fire_us, a.last_fire_us),
               fire_count = a.fire_count + u.fired, state = u.state,
               update_us = CASE WHEN u.state <> a.state THEN :now ELSE a.update_us END
        FROM u
        WHERE a.id = u.alarm_pk AND a.state = 'ACTIVE' AND a.next_fire_us = u.expected
          AND (SELECT count(*) FROM shard_leases l
               WHERE l.shard = ANY(CAST(:shards AS integer[])) AND l.owner = :owner
                 AND l.expire_us > CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS bigint))
              = cardinality(CAST(:shards AS integer[]))
        RETURNING a.id, a.lab, a.alarm_id, a.target, a.owner_email, a.notify_owner, a.snapshot
    ), f AS (
        SELECT * FROM unnest(CAST(:f_pk AS bigint[]), CAST(:f_nominal AS bigint[]),
                             CAST(:f_due AS bigint[]), CAST(:f_fire AS bigint[]),
                             CAST(:f_outcome AS smallint[]), CAST(:f_reason AS text[]))
            WITH ORDINALITY AS f(alarm_pk, nominal_us, due_us, fire_us, outcome, reason, ord)
    ), ins AS (
        INSERT INTO fires (lab, alarm_pk, alarm_id, target, owner_email, nominal_us, due_us, fire_us,
                           outcome, reason, notify_owner, snapshot)
        SELECT upd.lab, upd.id, upd.alarm_id, upd.target, upd.owner_email, f.nominal_us, f.due_us,
               f.fire_us, f.outcome, f.reason, upd.notify_owner,
               CASE WHEN f.outcome IN (1, 2) THEN upd.snapshot END
        FROM f JOIN upd ON upd.id = f.alarm_pk
        ORDER BY f.ord
        ON CONFLICT ON CONSTRAINT uq_fires_occurrence DO NOTHING
        RETURNING seq
    )
    SELECT (SELECT array_agg(id) FROM upd), m.seq,
           pg_notify('labmesh_fires', COALESCE(CAST(m.seq AS text), ''))
    FROM (SELECT max(seq) AS seq FROM ins) AS m
    """
)


class SchedulerStore:
    """All SQL of the scheduler. Methods taking `lab` are the tenant-scoped API; the rest serve the engine."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.is_postgres = db.dialect == "postgresql"

    # ---------------------------------------------------------------- alarms (tenant-scoped)

    async def insert_alarms(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[sa.Row]:
        """Insert rows (dicts of alarm columns); returns the stored rows in order (no second read)."""
        if not rows:
            return []
        result = await conn.execute(alarms.insert().returning(*alarms.c, sort_by_parameter_order=True), rows)
        return list(result)

    async def get_alarm(self, conn: AsyncConnection, lab: str, alarm_id: str) -> sa.Row | None:
        result = await conn.execute(sa.select(alarms).where(alarms.c.lab == lab, alarms.c.alarm_id == alarm_id))
        return result.first()

    async def get_alarms(self, conn: AsyncConnection, lab: str, alarm_ids: Iterable[str]) -> list[sa.Row]:
        ids = list(alarm_ids)
        if not ids:
            return []
        result = await conn.execute(sa.select(alarms).where(alarms.c.lab == lab, alarms.c.alarm_id.in_(ids)))
        return list(result)

    async def find_by_request_id(
        self, conn: AsyncConnection, lab: str, request_ids: Sequence[str]
    ) -> dict[str, sa.Row]:
        if not request_ids:
            return {}
        result = await conn.execute(
            sa.select(alarms).where(alarms.c.lab == lab, alarms.c.request_id.in_(list(request_ids)))
        )
        return {row.request_id: row for row in result}

    async def update_alarm(
        self, conn: AsyncConnection, lab: str, alarm_id: str, expected_version: int, values: Mapping[str, Any]
    ) -> sa.Row | None:
        """Apply `values` if the row still has `expected_version`; returns the new row or None on a lost race."""
        stmt = (
            alarms.update()
            .where(alarms.c.lab == lab, alarms.c.alarm_id == alarm_id, alarms.c.version == expected_version)
            .values(**values, version=alarms.c.version + 1)
            .returning(*alarms.c)
        )
        return (await conn.execute(stmt)).first()

    async def delete_alarm(self, conn: AsyncConnection, lab: str, alarm_id: str, expected_version: int | None) -> bool:
        stmt = alarms.delete().where(alarms.c.lab == lab, alarms.c.alarm_id == alarm_id)
        if expected_version is not None:
            stmt = stmt.where(alarms.c.version == expected_version)
        return (await conn.execute(stmt)).rowcount > 0

    async def list_alarms(
        self, conn: AsyncConnection, lab: str, *, where: Sequence[sa.ColumnElement[bool]], order: str,
        after: Sequence[Any] | None, limit: int,
    ) -> list[sa.Row]:
        """One page, keyset-paginated: `after` is the previous page's last sort key."""
        stmt = sa.select(alarms).where(alarms.c.lab == lab, *where)
        if order == "next_fire_time":
            # NULL (no further fires) sorts last; encode it as a value past every real instant.
            due = sa.func.coalesce(alarms.c.next_due_us, 2**62)
            if after is not None:
                stmt = stmt.where(sa.tuple_(due, alarms.c.alarm_id) > sa.tuple_(after[0], after[1]))
            stmt = stmt.order_by(due, alarms.c.alarm_id)
        else:
            if after is not None:
                stmt = stmt.where(alarms.c.alarm_id > after[0])
            stmt = stmt.order_by(alarms.c.alarm_id)
        return list(await conn.execute(stmt.limit(limit)))

    async def count_alarms(self, conn: AsyncConnection, lab: str, where: Sequence[sa.ColumnElement[bool]]) -> int:
        stmt = sa.select(sa.func.count()).select_from(alarms).where(alarms.c.lab == lab, *where)
        return int((await conn.execute(stmt)).scalar_one())

    async def count_all_by_state(self, conn: AsyncConnection) -> dict[str, int]:
        """Across every lab, for the process metrics (not for callers: they see their own lab only)."""
        stmt = sa.select(alarms.c.state, sa.func.count()).group_by(alarms.c.state)
        return {state: int(n) for state, n in await conn.execute(stmt)}

    async def count_by_state(self, conn: AsyncConnection, lab: str) -> dict[str, int]:
        stmt = sa.select(alarms.c.state, sa.func.count()).where(alarms.c.lab == lab).group_by(alarms.c.state)
        return {state: int(n) for state, n in await conn.execute(stmt)}

    async def insert_fire_rows(self, conn: AsyncConnection, lab: str, alarm_pk: int, alarm_id: str, target: str,
                               owner_email: str, rows: Sequence[FireRow]) -> None:
        """Record occurrences decided outside the engine (skipped on resume or snooze); never delivered."""
        if not rows:
            return
        values = [
            dict(lab=lab, alarm_pk=alarm_pk, alarm_id=alarm_id, target=target, owner_email=owner_email,
                 nominal_us=r.nominal_us, due_us=r.due_us, fire_us=r.fire_us, outcome=r.outcome, reason=r.reason)
            for r in rows
        ]
        stmt = (_pg_insert if self.is_postgres else _sqlite_insert)(fires).on_conflict_do_nothing()
        await self._lock_fire_log(conn)
        await conn.execute(stmt, values)

    async def analyze_alarms(self, *, only_if_never: bool = False) -> None:
        """Refresh the planner's statistics after a bulk load: COPY leaves none, and autovacuum may take minutes.

        With `only_if_never`, only a table of some size that was never analysed (a scheduler starting on data
        loaded by other means) is analysed.
        """
        if not self.is_postgres:
            return
        async with self.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            if only_if_never:
                row = (await conn.execute(sa.text(
                    "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 10000 "
                    "FROM pg_stat_user_tables WHERE relname = 'alarms'"
                ))).first()
                if not row or not row[0]:
                    return
            await conn.execute(sa.text("ANALYZE alarms"))

    async def notify_alarms_changed(self, conn: AsyncConnection, origin: str, alarm_pks: Sequence[int] | None) -> None:
        """Tell the other replicas (PostgreSQL NOTIFY, delivered on commit) which alarms changed; None = many."""
        if not self.is_postgres:
            return  # SQLite is single-process: the local engine is told directly
        if alarm_pks is None:
            payloads = [f"{origin}:*"]
        else:
            ids = [str(pk) for pk in alarm_pks]
            payloads = [f"{origin}:{','.join(ids[i : i + 500])}" for i in range(0, len(ids), 500)]
        for payload in payloads:
            await conn.execute(sa.text("SELECT pg_notify('labmesh_alarms', :p)"), {"p": payload})

    # ---------------------------------------------------------------- the engine's window and firing

    async def load_due(
        self, conn: AsyncConnection, shards: Sequence[int], from_us: int | None, until_us: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> list[sa.Row]:
        """Active alarms of `shards` due before `until_us` (and at/after `from_us`), earliest first, one page:
        `after` is the previous page's last (next_due_us, id)."""
        stmt = sa.select(*WINDOW_COLUMNS).where(
            alarms.c.state == ACTIVE, alarms.c.shard.in_(list(shards)), alarms.c.next_due_us < until_us
        )
        if from_us is not None:
            stmt = stmt.where(alarms.c.next_due_us >= from_us)
        if after is not None:
            stmt = stmt.where(sa.tuple_(alarms.c.next_due_us, alarms.c.id) > sa.tuple_(*after))
        return list(await conn.execute(stmt.order_by(alarms.c.next_due_us, alarms.c.id).limit(limit)))

    async def load_window_row(self, conn: AsyncConnection, alarm_pk: int) -> sa.Row | None:
        stmt = sa.select(*WINDOW_COLUMNS, alarms.c.state).where(alarms.c.id == alarm_pk)
        return (await conn.execute(stmt)).first()

    async def _lock_fire_log(self, conn: AsyncConnection) -> None:
        # Fire-log seqs must commit in order, or a stream tailing `seq > cursor` could pass over a seq whose
        # transaction commits later. One transaction-scoped advisory lock serialises the (short) fire writes.
        # In the same round trip, for this transaction only: plan the fire statement with the batch's actual
        # arrays every time. A cached generic plan cannot see the batch size and chose to scan every active alarm
        # per batch (100,000 fires took minutes instead of seconds).
        if self.is_postgres:
            await conn.execute(_LOCK_FIRE_LOG_PG)

    async def commit_fires(
        self, owner: str, advances: Sequence[AlarmAdvance], rows: Sequence[FireRow]
    ) -> CommitResult:
        """Advance alarms and append their fire rows in one transaction, fenced by `owner`'s shard leases.

        An alarm whose row no longer holds `expected_nominal_us` (edited, paused, deleted, or fired by another
        replica) is left alone and its fire rows are dropped: the guard makes firing idempotent.
        """
        if not advances:
            return CommitResult(set(), None)

        async def work() -> CommitResult:
            async with self.db.begin() as conn:
                await self._lock_fire_log(conn)
                if self.is_postgres:
                    return await self._commit_fires_pg(conn, owner, advances, rows)
                return await self._commit_fires_sqlite(conn, owner, advances, rows)

        return await retry_conflicts(work)

    async def _commit_fires_pg(
        self, conn: AsyncConnection, owner: str, advances: Sequence[AlarmAdvance], rows: Sequence[FireRow]
    ) -> CommitResult:
        params = {
            "a_pk": [a.alarm_pk for a in advances],
            "a_expected": [a.expected_nominal_us for a in advances],
            "a_next": [a.next_fire_us for a in advances],
            "a_due": [a.next_due_us for a in advances],
            "a_last": [a.last_fire_us for a in advances],
            "a_fired": [a.fired for a in advances],
            "a_state": [a.state for a in advances],
            "f_pk": [r.alarm_pk for r in rows],
            "f_nominal": [r.nominal_us for r in rows],
            "f_due": [r.due_us for r in rows],
            "f_fire": [r.fire_us for r in rows],
            "f_outcome": [r.outcome for r in rows],
            "f_reason": [r.reason for r in rows],
            "owner": owner,
            "shards": sorted({a.shard for a in advances}),
            "now": now_us(),
        }
        advanced, last_seq, _ = (await conn.execute(_COMMIT_FIRES_PG, params)).one()
        return CommitResult(set(advanced or ()), last_seq)

    async def _commit_fires_sqlite(
        self, conn: AsyncConnection, owner: str, advances: Sequence[AlarmAdvance], rows: Sequence[FireRow]
    ) -> CommitResult:
        # SQLite runs in-process: there is no network round trip to save, so plain statements in one
        # transaction are the batch.
        db_now = now_us()
        update = sa.text(
            """
            UPDATE alarms SET next_fire_us = :next_fire_us, next_due_us = :next_due_us,
                   last_fire_us = COALESCE(:last_fire_us, last_fire_us), fire_count = fire_count + :fired,
                   update_us = CASE WHEN :state <> state THEN :now ELSE update_us END, state = :state
            WHERE id = :alarm_pk AND state = 'ACTIVE' AND next_fire_us = :expected
              AND EXISTS (SELECT 1 FROM shard_leases l
                          WHERE l.shard = alarms.shard AND l.owner = :owner AND l.expire_us > :now)
            RETURNING id, lab, alarm_id, target, owner_email, notify_owner, snapshot
            """
        )
        advanced: dict[int, sa.Row] = {}
        for a in advances:
            params = dict(
                next_fire_us=a.next_fire_us, next_due_us=a.next_due_us, last_fire_us=a.last_fire_us,
                fired=a.fired, state=a.state, now=db_now, alarm_pk=a.alarm_pk, expected=a.expected_nominal_us,
                owner=owner,
            )
            updated = (await conn.execute(update, params)).first()
            if updated is not None:
                advanced[a.alarm_pk] = updated
        values = []
        for r in rows:
            alarm = advanced.get(r.alarm_pk)
            if alarm is None:
                continue
            values.append(dict(
                lab=alarm.lab, alarm_pk=r.alarm_pk, alarm_id=alarm.alarm_id, target=alarm.target,
                owner_email=alarm.owner_email, nominal_us=r.nominal_us, due_us=r.due_us, fire_us=r.fire_us,
                outcome=r.outcome, reason=r.reason, notify_owner=alarm.notify_owner,
                snapshot=alarm.snapshot if r.outcome in DELIVERABLE else None,
            ))
        last_seq = None
        if values:
            await conn.execute(_sqlite_insert(fires).on_conflict_do_nothing(), values)
            last_seq = (await conn.execute(sa.select(sa.func.max(fires.c.seq)))).scalar()
        return CommitResult(set(advanced), last_seq)

    # ---------------------------------------------------------------- shard leases

    async def _db_now(self, conn: AsyncConnection) -> int:
        """Lease expiry is judged by the database clock, so replicas with skewed clocks agree."""
        if self.is_postgres:
            return int((await conn.execute(
                sa.text("SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS bigint)")
            )).scalar_one())
        return now_us()

    async def ensure_shards(self, shard_count: int) -> None:
        async with self.db.begin() as conn:
            insert = (_pg_insert if self.is_postgres else _sqlite_insert)(shard_leases).on_conflict_do_nothing()
            await conn.execute(insert, [{"shard": s, "epoch": 0, "expire_us": 0} for s in range(shard_count)])

    async def renew_and_claim(
        self, owner: str, ttl_us: int, want: int, shard_count: int, *, steal: bool = False
    ) -> tuple[dict[int, int], int]:
        """Renew this owner's leases, then claim free or expired shards up to `want` in total.

        Returns ({shard: epoch} now held, number of live owners). Fair share is decided by the caller from the
        live-owner count, so a new replica gets shards as the others shed theirs.
        """
        async with self.db.begin() as conn:
            db_now = await self._db_now(conn)
            expire = db_now + ttl_us
            held = {
                r.shard: r.epoch
                for r in await conn.execute(
                    shard_leases.update()
                    .where(shard_leases.c.owner == owner, shard_leases.c.expire_us > db_now)
                    .values(expire_us=expire)
                    .returning(shard_leases.c.shard, shard_leases.c.epoch)
                )
            }
            missing = want - len(held)
            if missing > 0:
                claimable = sa.or_(shard_leases.c.expire_us <= db_now, shard_leases.c.owner.is_(None))
                if steal:
                    claimable = sa.or_(claimable, shard_leases.c.owner != owner)
                free = sa.select(shard_leases.c.shard).where(claimable).order_by(shard_leases.c.shard).limit(missing)
                if self.is_postgres:
                    free = free.with_for_update(skip_locked=True)
                claimed = await conn.execute(
                    shard_leases.update()
                    .where(shard_leases.c.shard.in_(free.scalar_subquery()))
                    .values(owner=owner, epoch=shard_leases.c.epoch + 1, expire_us=expire)
                    .returning(shard_leases.c.shard, shard_leases.c.epoch)
                )
                held.update({r.shard: r.epoch for r in claimed})
            upsert = (_pg_insert if self.is_postgres else _sqlite_insert)(scheduler_instances).values(
                owner=owner, expire_us=expire
            )
            await conn.execute(upsert.on_conflict_do_update(index_elements=["owner"], set_={"expire_us": expire}))
            gone = scheduler_instances.c.expire_us <= db_now
            if steal:
                gone = sa.or_(gone, scheduler_instances.c.owner != owner)
            await conn.execute(scheduler_instances.delete().where(gone))
            owners = (await conn.execute(sa.select(sa.func.count()).select_from(scheduler_instances))).scalar_one()
            return held, max(int(owners), 1)

    async def release_shards(self, owner: str, shards: Iterable[int], *, leaving: bool = False) -> None:
        shards = list(shards)
        async with self.db.begin() as conn:
            if leaving:
                await conn.execute(scheduler_instances.delete().where(scheduler_instances.c.owner == owner))
            if not shards:
                return
            await conn.execute(
                shard_leases.update()
                .where(shard_leases.c.owner == owner, shard_leases.c.shard.in_(shards))
                .values(owner=None, expire_us=0)
            )

    # ---------------------------------------------------------------- retention

    async def delete_old_fires(self, before_us: int, batch: int) -> int:
        """Delete fire history older than `before_us`, in bounded batches so no transaction grows large."""
        total = 0
        while True:
            async with self.db.begin() as conn:
                victims = sa.select(fires.c.seq).where(fires.c.fire_us < before_us).limit(batch).scalar_subquery()
                deleted = (await conn.execute(fires.delete().where(fires.c.seq.in_(victims)))).rowcount
            total += deleted
            if deleted < batch:
                return total

    async def delete_completed_alarms(self, before_us: int, batch: int) -> int:
        total = 0
        while True:
            async with self.db.begin() as conn:
                victims = (
                    sa.select(alarms.c.id)
                    .where(alarms.c.state == COMPLETED, alarms.c.update_us < before_us)
                    .limit(batch)
                    .scalar_subquery()
                )
                deleted = (await conn.execute(alarms.delete().where(alarms.c.id.in_(victims)))).rowcount
            total += deleted
            if deleted < batch:
                return total

    async def oldest_fire_seq(self, conn: AsyncConnection) -> int | None:
        return (await conn.execute(sa.select(sa.func.min(fires.c.seq)))).scalar()


def _pg_insert(table: sa.Table) -> Any:
    from sqlalchemy.dialects.postgresql import insert

    return insert(table)


def _sqlite_insert(table: sa.Table) -> Any:
    from sqlalchemy.dialects.sqlite import insert

    return insert(table)


# ---------------------------------------------------------------------------------------------------------------------
# Fire delivery: reading the log for streams, and consumer-group bookkeeping.

FIRE_READ_COLUMNS = (
    fires.c.seq, fires.c.lab, fires.c.alarm_id, fires.c.target, fires.c.owner_email, fires.c.nominal_us,
    fires.c.due_us, fires.c.fire_us, fires.c.outcome, fires.c.notify_owner, fires.c.snapshot,
)
DELIVERED, ACKNOWLEDGED, DEAD_LETTERED = "DELIVERED", "ACKNOWLEDGED", "DEAD_LETTERED"


class DeliveryStore:
    """SQL of the Fire stream and consumer groups (same database and conventions as SchedulerStore)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.is_postgres = db.dialect == "postgresql"

    async def log_bounds(self, conn: AsyncConnection) -> tuple[int | None, int]:
        """(oldest retained seq, newest seq) of the fire log; newest is 0 for an empty log."""
        low, high = (await conn.execute(sa.select(sa.func.min(fires.c.seq), sa.func.max(fires.c.seq)))).one()
        return low, int(high or 0)

    async def read_fires(
        self, conn: AsyncConnection, after_seq: int, limit: int, *, lab: str | None = None,
        targets: Sequence[str] = (), until_seq: int | None = None,
    ) -> list[sa.Row]:
        """Deliverable fires after `after_seq` in log order, optionally narrowed to a lab and targets."""
        stmt = sa.select(*FIRE_READ_COLUMNS).where(fires.c.seq > after_seq, fires.c.outcome.in_(DELIVERABLE))
        if until_seq is not None:
            stmt = stmt.where(fires.c.seq <= until_seq)
        if lab is not None:
            stmt = stmt.where(fires.c.lab == lab)
        if targets:
            stmt = stmt.where(fires.c.target.in_(list(targets)))
        return list(await conn.execute(stmt.order_by(fires.c.seq).limit(limit)))

    async def fires_by_seq(self, seqs: Sequence[int]) -> list[sa.Row]:
        """Fire-log rows for a redelivery."""
        async with self.db.connect() as conn:
            return list(await conn.execute(sa.select(*FIRE_READ_COLUMNS).where(fires.c.seq.in_(list(seqs)))))

    # ------------------------------------------------------------------ groups

    async def get_group(self, conn: AsyncConnection, lab: str, name: str) -> sa.Row | None:
        stmt = sa.select(consumer_groups).where(consumer_groups.c.lab == lab, consumer_groups.c.name == name)
        return (await conn.execute(stmt)).first()

    async def create_group(self, lab: str, name: str, filter: Mapping[str, Any], ack_deadline_us: int,
                           max_attempts: int, position_seq: int) -> sa.Row:
        """Create the group if it does not exist (first member wins); returns the stored group either way."""
        async with self.db.begin() as conn:
            insert = (_pg_insert if self.is_postgres else _sqlite_insert)(consumer_groups).values(
                lab=lab, name=name, filter=dict(filter), ack_deadline_us=ack_deadline_us, max_attempts=max_attempts,
                position_seq=position_seq, create_us=now_us(),
            )
            await conn.execute(insert.on_conflict_do_nothing())
            row = await self.get_group(conn, lab, name)
            assert row is not None
            return row

    async def count_groups(self) -> int:
        async with self.db.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(consumer_groups))).scalar_one())

    def _in_seq_order(self, lab: str, group: str, *conditions: Any, skip_locked: bool = False,
                      limit: int | None = None) -> Any:
        """The group's delivery rows matching `conditions`, row-locked in seq order.

        Every write to group_deliveries locks through this (or writes single rows in seq order), so concurrent
        acks, redeliveries and delivery marks always take their locks in the same order and cannot deadlock.
        """
        select = (
            sa.select(group_deliveries.c.seq)
            .where(group_deliveries.c.lab == lab, group_deliveries.c.group_name == group, *conditions)
            .order_by(group_deliveries.c.seq)
            .limit(limit)
        )
        if self.is_postgres:
            select = select.with_for_update(skip_locked=skip_locked)
        return sa.and_(group_deliveries.c.lab == lab, group_deliveries.c.group_name == group,
                       group_deliveries.c.seq.in_(select.scalar_subquery()))

    async def claim(
        self, lab: str, group: str, claims: Sequence[tuple[int, str, int, str]], deadline_us: int
    ) -> set[int]:
        """Insert first deliveries (seq, alarm_id, nominal_us, member); returns the seqs this caller won.

        Across replicas the primary key decides: whoever inserts the row delivers the fire, exactly once.
        """
        if not claims:
            return set()
        now = now_us()
        values = [
            dict(lab=lab, group_name=group, seq=seq, alarm_id=alarm_id, nominal_us=nominal, state=DELIVERED,
                 attempt=1, member=member, sent_us=now, deadline_us=deadline_us)
            for seq, alarm_id, nominal, member in sorted(claims)
        ]
        insert = (_pg_insert if self.is_postgres else _sqlite_insert)(group_deliveries)

        async def work() -> set[int]:
            async with self.db.begin() as conn:
                result = await conn.execute(
                    insert.on_conflict_do_nothing().returning(group_deliveries.c.seq), values
                )
                return {r[0] for r in result}

        return await retry_conflicts(work)

    async def take_expired(
        self, lab: str, group: str, max_attempts: int, limit: int
    ) -> tuple[list[sa.Row], int]:
        """Deliveries whose ack deadline passed: dead-letter those out of attempts, hand back the rest.

        Returns (rows to redeliver: seq, the attempt they will carry, the member that let them lapse; number
        dead-lettered now). The rows are marked with a short provisional deadline so another replica does not
        take them at the same time.
        """
        due = (group_deliveries.c.state == DELIVERED, group_deliveries.c.deadline_us <= sa.bindparam("now"))

        async def work() -> tuple[list[sa.Row], int]:
            now = now_us()
            async with self.db.begin() as conn:
                dead = await conn.execute(
                    group_deliveries.update()
                    .where(self._in_seq_order(lab, group, *due, group_deliveries.c.attempt >= max_attempts,
                                              skip_locked=True))
                    .values(state=DEAD_LETTERED, deadline_us=None),
                    {"now": now},
                )
                rows = list(await conn.execute(
                    group_deliveries.update()
                    .where(self._in_seq_order(lab, group, *due, skip_locked=True, limit=limit))
                    .values(attempt=group_deliveries.c.attempt + 1, deadline_us=now + 5_000_000)
                    .returning(group_deliveries.c.seq, group_deliveries.c.attempt, group_deliveries.c.member),
                    {"now": now},
                ))
                return rows, dead.rowcount

        return await retry_conflicts(work)

    async def assign(self, lab: str, group: str, assignments: Sequence[tuple[int, str]], deadline_us: int) -> None:
        """Record which member a (re)delivery went to and when it must be acknowledged."""
        if not assignments:
            return
        now = now_us()
        params = [{"b_seq": seq, "b_member": member} for seq, member in sorted(assignments)]  # locks in seq order

        async def work() -> None:
            async with self.db.begin() as conn:
                await conn.execute(
                    group_deliveries.update()
                    .where(group_deliveries.c.lab == lab, group_deliveries.c.group_name == group,
                           group_deliveries.c.seq == sa.bindparam("b_seq"))
                    .values(member=sa.bindparam("b_member"), sent_us=now, deadline_us=deadline_us),
                    params,
                )

        await retry_conflicts(work)

    async def mark_delivered(self, lab: str, group: str, seqs: Sequence[int]) -> None:
        if not seqs:
            return

        async def work() -> None:
            async with self.db.begin() as conn:
                await conn.execute(
                    group_deliveries.update()
                    .where(self._in_seq_order(lab, group, group_deliveries.c.seq.in_(list(seqs))))
                    .values(delivered_us=now_us())
                )

        await retry_conflicts(work)

    async def release_member(self, lab: str, group: str, member: str) -> None:
        """A member left: its unacknowledged fires become due for redelivery now, not at their deadline."""
        async def work() -> None:
            async with self.db.begin() as conn:
                await conn.execute(
                    group_deliveries.update()
                    .where(self._in_seq_order(lab, group, group_deliveries.c.member == member,
                                              group_deliveries.c.state == DELIVERED))
                    .values(deadline_us=now_us())
                )

        await retry_conflicts(work)

    async def acknowledge(self, lab: str, group: str, fires_: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Acknowledge (alarm_id, nominal_us) pairs; returns the pairs that were outstanding and are now done."""
        if not fires_:
            return set()

        async def work() -> set[tuple[str, int]]:
            now = now_us()
            done: set[tuple[str, int]] = set()
            async with self.db.begin() as conn:
                for start in range(0, len(fires_), 500):
                    chunk = list(fires_[start : start + 500])
                    outstanding = (
                        group_deliveries.c.state == DELIVERED,
                        sa.tuple_(group_deliveries.c.alarm_id, group_deliveries.c.nominal_us).in_(chunk),
                    )
                    result = await conn.execute(
                        group_deliveries.update()
                        .where(self._in_seq_order(lab, group, *outstanding))
                        .values(state=ACKNOWLEDGED, acked_us=now, deadline_us=None)
                        .returning(group_deliveries.c.alarm_id, group_deliveries.c.nominal_us)
                    )
                    done.update((r[0], r[1]) for r in result)
            return done

        return await retry_conflicts(work)

    async def acknowledge_seqs(self, lab: str, group: str, seqs: Sequence[int]) -> int:
        """Acknowledge by log seq: for internal groups that read every lab, where alarm ids may repeat."""
        async def work() -> int:
            async with self.db.begin() as conn:
                result = await conn.execute(
                    group_deliveries.update()
                    .where(self._in_seq_order(lab, group, group_deliveries.c.state == DELIVERED,
                                              group_deliveries.c.seq.in_(list(seqs))))
                    .values(state=ACKNOWLEDGED, acked_us=now_us(), deadline_us=None)
                )
                return result.rowcount

        return await retry_conflicts(work)

    async def known_deliveries(self, lab: str, group: str, fires_: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        if not fires_:
            return set()
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.select(group_deliveries.c.alarm_id, group_deliveries.c.nominal_us).where(
                    group_deliveries.c.lab == lab, group_deliveries.c.group_name == group,
                    sa.tuple_(group_deliveries.c.alarm_id, group_deliveries.c.nominal_us).in_(list(fires_)),
                )
            )
            return {(r[0], r[1]) for r in result}

    async def advance_position(self, lab: str, group: str, scanned_seq: int) -> int:
        """Move the group's durable position to the highest seq below which everything is settled."""
        async with self.db.begin() as conn:
            open_min = (await conn.execute(
                sa.select(sa.func.min(group_deliveries.c.seq)).where(
                    group_deliveries.c.lab == lab, group_deliveries.c.group_name == group,
                    group_deliveries.c.state == DELIVERED,
                )
            )).scalar()
            position = scanned_seq if open_min is None else min(scanned_seq, open_min - 1)
            await conn.execute(
                consumer_groups.update()
                .where(consumer_groups.c.lab == lab, consumer_groups.c.name == group,
                       consumer_groups.c.position_seq < position)
                .values(position_seq=position)
            )
            return position

    async def delete_settled(self, before_seq: int) -> int:
        """Delivery rows of fires that left the log go with them (retention)."""
        async with self.db.begin() as conn:
            return (await conn.execute(group_deliveries.delete().where(group_deliveries.c.seq < before_seq))).rowcount

    # ------------------------------------------------------------------ history

    async def list_fires(
        self, lab: str, *, where: Sequence[sa.ColumnElement[bool]], group: str | None, after_seq: int | None,
        limit: int,
    ) -> list[sa.Row]:
        """Fire history newest first, with the group's delivery columns when a group is named."""
        if group is not None:
            joined = fires.outerjoin(
                group_deliveries,
                sa.and_(group_deliveries.c.lab == fires.c.lab, group_deliveries.c.group_name == group,
                        group_deliveries.c.seq == fires.c.seq),
            )
            stmt = sa.select(
                *FIRE_READ_COLUMNS, fires.c.reason, group_deliveries.c.state, group_deliveries.c.attempt,
                group_deliveries.c.sent_us, group_deliveries.c.delivered_us, group_deliveries.c.acked_us,
            ).select_from(joined)
        else:
            stmt = sa.select(*FIRE_READ_COLUMNS, fires.c.reason)
        stmt = stmt.where(fires.c.lab == lab, *where)
        if after_seq is not None:
            stmt = stmt.where(fires.c.seq < after_seq)
        async with self.db.connect() as conn:
            return list(await conn.execute(stmt.order_by(fires.c.seq.desc()).limit(limit)))
