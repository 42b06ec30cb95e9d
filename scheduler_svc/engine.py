"""The firing engine: decides, durably and precisely, that an occurrence is due.

How it works, and why:
- Alarms are hashed into SHARD_COUNT virtual shards. Each replica leases a fair share of shards (timed by the
  database clock) and every fire write is fenced by that lease in SQL, so a stalled replica cannot fire again.
- Only alarms due within LOOKAHEAD of the owned shards are held in memory (`window.Window`), loaded ahead of time in
  bounded chunks; memory and start-up do not grow with the number of stored alarms.
- One task sleeps until the earliest due time, pops everything due (up to BATCH_SIZE), and records the batch in one
  transaction that also advances each alarm (`store.commit_fires`), guarded by the nominal time it expected, so an
  edit that races a fire is never overwritten and an occurrence is never recorded twice.
- An occurrence later than the alarm's grace (the scheduler was down, or the alarm was resumed with catch-up)
  follows the alarm's catch-up policy; every missed occurrence is recorded with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from scheduler_svc import schedules
from scheduler_svc.model import timing_from_row
from scheduler_svc.stats import (
    MEMORY_USAGE,
    OWNED_SHARDS,
    TOTAL_ALARMS,
    WINDOW_SIZE,
    EngineStats,
    engine_started,
    engine_stopped,
)
from scheduler_svc.store import (
    ACTIVE,
    COMPLETED,
    LATE,
    MISSED,
    ON_TIME,
    PAUSED,
    SKIPPED,
    AlarmAdvance,
    FireRow,
    SchedulerStore,
    now_us,
)
from scheduler_svc.window import NOT_COMPUTED, Entry, Window
from servicekit.metrics import record_pool_usage

log = logging.getLogger(__name__)

# An occurrence recorded within this of its due time counts as on time; later (within grace) as late.
ON_TIME_TOLERANCE_US = 1_000_000
# Catch-up after a long outage looks at most this many past occurrences of one alarm per batch; older ones are
# summarised in one MISSED record instead of being enumerated (a 1 s interval alarm down for a week has 600,000).
MAX_CATCH_UP_SCAN = 10_000
LEASE_TTL_US = 15_000_000
LOAD_PAGE = 500
METRICS_INTERVAL_S = 60.0  # counting a million alarms by state is a full scan: keep it rare


@dataclass(frozen=True, slots=True)
class EngineConfig:
    instance_id: str
    shard_count: int = 64
    batch_size: int = 1000
    lookahead_us: int = 30_000_000
    window_capacity: int = 100_000
    cleanup_interval_s: float = 600.0
    fire_retention_us: int = 7 * 86_400_000_000
    completed_retention_us: int = 86_400_000_000
    lease_ttl_us: int = LEASE_TTL_US

    @classmethod
    def from_settings(cls, settings: Any) -> EngineConfig:
        return cls(
            instance_id=settings.instance_id,
            shard_count=settings.shard_count,
            batch_size=settings.batch_size,
            lookahead_us=int(settings.lookahead * 1e6),
            window_capacity=settings.max_alarms_per_instance,
            cleanup_interval_s=settings.cleanup_interval,
            fire_retention_us=int(settings.fire_retention * 1e6),
            completed_retention_us=int(settings.completed_retention * 1e6),
            lease_ttl_us=int(settings.lease_ttl * 1e6),
        )


def shard_of(lab: str, alarm_id: str, shard_count: int) -> int:
    """Stable across processes and versions (zlib.crc32, not hash())."""
    import zlib

    return zlib.crc32(f"{lab}/{alarm_id}".encode()) % shard_count


def entry_from_row(row: Any) -> Entry:
    """A window entry from a row holding `store.WINDOW_COLUMNS`.

    The following occurrence is left to the fire path (`decide`): it costs microseconds there (and repeated
    schedules hit the schedule cache), while computing it for every loaded row blocked the event loop in bursts.
    """
    return Entry(
        alarm_pk=row.id, shard=row.shard, lab=row.lab, alarm_id=row.alarm_id, timing=timing_from_row(row),
        nominal_us=row.next_fire_us, due_us=row.next_due_us, fire_count=row.fire_count,
        grace_us=row.grace_us, catch_up=row.catch_up, catch_up_limit=row.catch_up_limit,
    )


@dataclass(slots=True)
class Decision:
    """What firing one window entry means: the alarm's advance, its fire-log rows, the next occurrence."""

    advance: AlarmAdvance
    rows: list[FireRow]
    next: schedules.Occurrence | None


def decide(entry: Entry, fire_us: int) -> Decision:
    """Decide what happens to a due entry at `fire_us`: fire it, or apply the misfire policy. Pure logic."""
    lateness = fire_us - entry.due_us
    snoozed = entry.due_us > entry.nominal_us + entry.timing.jitter_us
    if lateness <= entry.grace_us:
        outcome = ON_TIME if lateness <= ON_TIME_TOLERANCE_US else LATE
        reason = None if outcome == ON_TIME else f"fired {lateness / 1e6:.3f}s after due, within grace"
        rows = [FireRow(entry.alarm_pk, entry.nominal_us, entry.due_us, fire_us, outcome, reason)]
        fired = 1
        nxt = entry.following
        if nxt is NOT_COMPUTED:
            nxt = schedules.next_occurrence(entry.timing, entry.nominal_us, entry.fire_count + 1)
        if snoozed and nxt is not None and nxt.nominal_us <= fire_us:
            # A snooze postpones one occurrence; the ones it overtook are skipped, not fired in a burst.
            rows += _skipped_until(entry, nxt, fire_us, "overtaken by a snooze")
            nxt = schedules.next_occurrence(entry.timing, fire_us, entry.fire_count + 1)
    else:
        rows, fired, nxt = _catch_up(entry, fire_us)
    state = ACTIVE if nxt is not None else COMPLETED
    advance = AlarmAdvance(
        alarm_pk=entry.alarm_pk, shard=entry.shard, expected_nominal_us=entry.nominal_us,
        next_fire_us=nxt.nominal_us if nxt else None, next_due_us=nxt.due_us if nxt else None,
        last_fire_us=fire_us if fired else None, fired=fired, state=state,
    )
    return Decision(advance, rows, nxt)


def _past(timing: schedules.Timing, after_us: int, until_us: int) -> schedules.Between:
    """Occurrences in (after, until], whether they will fire or not: max_fires is applied by the caller."""
    return schedules.occurrences_between(dataclasses.replace(timing, max_fires=0), after_us, until_us,
                                         MAX_CATCH_UP_SCAN)


def _skipped_until(entry: Entry, first: schedules.Occurrence, until_us: int, reason: str) -> list[FireRow]:
    skipped = [first, *_past(entry.timing, first.nominal_us, until_us).occurrences]
    return [FireRow(entry.alarm_pk, o.nominal_us, o.due_us, until_us, SKIPPED, reason) for o in skipped]


def _catch_up(entry: Entry, now: int) -> tuple[list[FireRow], int, schedules.Occurrence | None]:
    """Occurrences from `entry` up to now, past grace: the alarm's catch-up policy decides which fire."""
    timing = entry.timing
    first = schedules.Occurrence(entry.nominal_us, entry.due_us)
    scan = _past(timing, entry.nominal_us, now)
    past = [first, *scan.occurrences]
    rows: list[FireRow] = []
    if scan.more:
        # Too many to enumerate (a 1 s interval alarm down for a week has 600,000): look only at the most recent
        # stretch, and record the older ones as one summarised MISSED record on the first of them.
        span = past[-1].nominal_us - past[0].nominal_us
        recent = _past(timing, max(entry.nominal_us, now - span), now).occurrences
        past = recent or past[-1:]
        rows.append(FireRow(
            entry.alarm_pk, first.nominal_us, first.due_us, now, MISSED,
            f"missed, with every occurrence before {past[0].nominal_us}us (more than {MAX_CATCH_UP_SCAN} to list)",
        ))
    due_now = [o for o in past if o.due_us <= now]
    not_yet = [o for o in past if o.due_us > now]  # jitter put them after now: they are still to come
    within = [o for o in due_now if now - o.due_us <= entry.grace_us]
    beyond = [o for o in due_now if now - o.due_us > entry.grace_us]
    fire: list[schedules.Occurrence] = list(within)
    if entry.catch_up == "LATEST" and not within and beyond:
        fire = [beyond[-1]]
    elif entry.catch_up == "ALL" and entry.catch_up_limit > 0:
        fire = beyond[-entry.catch_up_limit :] + within
    fire_set = {o.nominal_us for o in fire}
    remaining = (timing.max_fires - entry.fire_count) if timing.max_fires else None
    fired = 0
    policy = entry.catch_up.lower()
    for o in due_now:
        late_by = (now - o.due_us) / 1e6
        if o.nominal_us in fire_set and (remaining is None or fired < remaining):
            why = (f"fired {late_by:.3f}s after due, within grace" if now - o.due_us <= entry.grace_us
                   else f"fired {late_by:.3f}s late by catch-up policy {policy}")
            rows.append(FireRow(entry.alarm_pk, o.nominal_us, o.due_us, now, LATE, why))
            fired += 1
        elif o.nominal_us in fire_set:
            rows.append(FireRow(entry.alarm_pk, o.nominal_us, o.due_us, now, MISSED, "max_fires reached"))
        else:
            rows.append(FireRow(
                entry.alarm_pk, o.nominal_us, o.due_us, now, MISSED,
                f"missed by {late_by:.3f}s, beyond grace {entry.grace_us / 1e6:.3f}s (catch-up policy {policy})",
            ))
    if remaining is not None and fired >= remaining:
        return rows, fired, None
    if not_yet:
        return rows, fired, not_yet[0]
    return rows, fired, schedules.next_occurrence(timing, max(past[-1].nominal_us, now), entry.fire_count + fired)


class Engine:
    """Owns shards, keeps their due-soon alarms in the window, and fires them on time."""

    def __init__(
        self,
        store: SchedulerStore,
        config: EngineConfig,
        *,
        on_fires_committed: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        # The fencing identity: unique per process start, so a restarted replica never inherits a stale lease.
        self.owner = f"{config.instance_id}/{secrets.token_hex(4)}"
        self.on_fires_committed = on_fires_committed
        self.window = Window()
        self.shards: dict[int, int] = {}
        self.horizon_us = 0
        self.stats = EngineStats()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_future: asyncio.Future[None] | None = None
        self._reload: set[int] = set()
        self._reload_event = asyncio.Event()
        self._started = asyncio.Event()
        self._full_rescan = False
        self._owners = 1  # live scheduler instances, as counted at the last lease refresh

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        engine_started()
        await self.store.ensure_shards(self.config.shard_count)
        await self.store.analyze_alarms(only_if_never=True)
        # SQLite is embedded and single-process: a starting scheduler is the only one, so it takes over the
        # leases a crashed predecessor left instead of waiting for them to expire.
        await self._refresh_leases(steal=self.store.db.dialect == "sqlite")
        await self._extend_window(full=True)
        self._tasks = [
            asyncio.create_task(self._fire_loop(), name="engine-fire"),
            asyncio.create_task(self._lease_loop(), name="engine-leases"),
            asyncio.create_task(self._load_loop(), name="engine-load"),
            asyncio.create_task(self._cleanup_loop(), name="engine-cleanup"),
        ]
        self._started.set()

    async def stop(self) -> None:
        if self._started.is_set():
            engine_stopped()
            self._started.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.store.release_shards(self.owner, list(self.shards), leaving=True)
        self.shards = {}
        self.window.clear()

    # ------------------------------------------------------------------ hooks for writers

    def alarm_written(self, row: Any) -> None:
        """Called after a committed create/update/pause/resume/snooze with the row (WINDOW_COLUMNS + state)."""
        if row.shard not in self.shards:
            return
        if row.state != ACTIVE or row.next_due_us is None or row.next_due_us >= self._reach():
            self.window.remove(row.id)
            return
        self.window.put(entry_from_row(row))
        self._wake()

    def alarm_deleted(self, alarm_pk: int) -> None:
        self.window.remove(alarm_pk)

    def bulk_loaded(self) -> None:
        """Many alarms arrived at once (ImportAlarms): rescan the window instead of taking them one by one."""
        self._full_rescan = True
        self._reload_event.set()

    def alarm_changed_elsewhere(self, alarm_pk: int) -> None:
        """Another replica changed an alarm: reload it if it belongs to one of our shards."""
        self._reload.add(alarm_pk)
        self._reload_event.set()

    # ------------------------------------------------------------------ firing

    def _reach(self) -> int:
        """How far ahead a written or advanced alarm is taken into the window directly.

        Beyond the loaded horizon on purpose: a loader query that ran just before this write's commit has not
        seen it, and the horizon it is about to set covers it, so comparing with the old horizon could lose the
        alarm until the next full rescan. An entry a little early in the window costs nothing.
        """
        return max(self.horizon_us, now_us() + self.config.lookahead_us)

    def _wake(self) -> None:
        if self._wake_future is not None and not self._wake_future.done():
            self._wake_future.set_result(None)

    async def _sleep_until(self, due_us: int | None) -> None:
        loop = asyncio.get_running_loop()
        self._wake_future = loop.create_future()
        delay = 1.0 if due_us is None else max(0.0, (due_us - now_us()) / 1e6)
        handle = loop.call_later(min(delay, 1.0), self._wake)
        try:
            await self._wake_future
        finally:
            handle.cancel()
            self._wake_future = None

    async def _fire_loop(self) -> None:
        while True:
            try:
                due = self.window.next_due()
                now = now_us()
                if due is None or due > now:
                    await self._sleep_until(due)
                    continue
                batch = self.window.pop_due(now, self.config.batch_size)
                await self._fire_batch(batch, now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("firing a batch failed; its alarms stay due and will be retried")
                await asyncio.sleep(0.5)
                self._reload_event.set()

    async def _fire_batch(self, batch: Sequence[Entry], fire_us: int) -> None:
        started = time.perf_counter()
        decisions = [decide(entry, fire_us) for entry in batch]
        rows = [row for d in decisions for row in d.rows]
        try:
            result = await self.store.commit_fires(self.owner, [d.advance for d in decisions], rows)
        except Exception:
            # Nothing was written: put the entries back so they fire on the next pass (late, not lost).
            for entry in batch:
                if entry.alarm_pk not in self.window:
                    self.window.put(entry)
            raise
        wall = time.time()
        for entry, decision in zip(batch, decisions, strict=True):
            if entry.alarm_pk not in result.advanced:
                # The row changed under us (edit, pause, delete, or lost shard): take it fresh from the database.
                self._reload.add(entry.alarm_pk)
                continue
            for row in decision.rows:
                deliverable = row.outcome in (ON_TIME, LATE)
                self.stats.record(row.outcome, row.fire_us - row.due_us if deliverable else None, wall)
            nxt = decision.next
            if nxt is not None and nxt.due_us < self._reach() and entry.alarm_pk not in self.window:
                fired = decision.advance.fired
                successor = Entry(
                    alarm_pk=entry.alarm_pk, shard=entry.shard, lab=entry.lab, alarm_id=entry.alarm_id,
                    timing=entry.timing, nominal_us=nxt.nominal_us, due_us=nxt.due_us,
                    fire_count=entry.fire_count + fired, grace_us=entry.grace_us, catch_up=entry.catch_up,
                    catch_up_limit=entry.catch_up_limit,
                )
                self.window.put(successor)
        if self._reload:
            self._reload_event.set()
        self.stats.record_batch(time.perf_counter() - started)
        WINDOW_SIZE.set(len(self.window))
        if result.last_seq is not None and self.on_fires_committed is not None:
            self.on_fires_committed(result.last_seq)

    # ------------------------------------------------------------------ the window

    async def _extend_window(self, *, full: bool = False) -> None:
        """Load alarms due before now + LOOKAHEAD; `full` rescans from the start (the slow safety net)."""
        if not self.shards:
            self.horizon_us = now_us() + self.config.lookahead_us
            return
        target = now_us() + self.config.lookahead_us
        from_us = None if full else self.horizon_us
        shards = list(self.shards)
        after: tuple[int, int] | None = None
        horizon = target
        loaded = 0
        while True:
            room = self.config.window_capacity - len(self.window)
            if room <= 0:
                # A full window cannot promise completeness beyond its last entry.
                horizon = after[0] if after is not None else self.horizon_us
                break
            # Small pages with a yield between them: a load never holds the event loop long enough to delay
            # a fire (at 1,000 fires/s one refresh loads ~10,000 rows).
            async with self.store.db.connect() as conn:
                rows = await self.store.load_due(conn, shards, from_us, target, min(room, LOAD_PAGE), after)
            for row in rows:
                if row.id not in self.window:
                    self.window.put(entry_from_row(row))
                    loaded += 1
            if len(rows) < min(room, LOAD_PAGE):
                break
            after = (rows[-1].next_due_us, rows[-1].id)
            await asyncio.sleep(0)
        self.horizon_us = horizon
        WINDOW_SIZE.set(len(self.window))
        if loaded >= LOAD_PAGE:
            # The window's entries live until they fire and hold no reference cycles (refcounting frees them).
            # Freezing them moves them out of the collector's sight: a full collection over a 100,000-entry
            # window paused the fire loop for 50-85 ms (measured with python_gc_pause_seconds).
            gc.freeze()
        self._wake()

    async def _reload_changed(self) -> None:
        pks, self._reload = self._reload, set()
        async with self.store.db.connect() as conn:
            for pk in pks:
                row = await self.store.load_window_row(conn, pk)
                if row is None:
                    self.window.remove(pk)
                else:
                    self.alarm_written(row)

    async def _load_loop(self) -> None:
        interval = max(self.config.lookahead_us / 3e6, 0.2)
        last_full = time.monotonic()
        last_metrics = 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._reload_event.wait(), interval)
            self._reload_event.clear()
            try:
                if self._reload:
                    await self._reload_changed()
                full = self._full_rescan or time.monotonic() - last_full > max(60.0, interval * 6)
                self._full_rescan = False
                await self._extend_window(full=full)
                if full:
                    last_full = time.monotonic()
                if time.monotonic() - last_metrics > METRICS_INTERVAL_S:
                    await self._refresh_metrics()
                    last_metrics = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loading the window failed; retrying")
                await asyncio.sleep(1.0)

    async def _refresh_metrics(self) -> None:
        """Gauges that cost a query; refreshed every METRICS_INTERVAL_S, never per fire."""
        MEMORY_USAGE.set(psutil.Process().memory_info().rss)
        _, in_use, maximum = self.store.db.pool_status()
        record_pool_usage("scheduler", in_use, maximum)
        if 0 in self.shards:  # one replica counts for the whole mesh
            async with self.store.db.connect() as conn:
                counts = await self.store.count_all_by_state(conn)
            for state in (ACTIVE, PAUSED, COMPLETED):
                TOTAL_ALARMS.labels(state.lower()).set(counts.get(state, 0))

    # ------------------------------------------------------------------ shard leases

    async def _refresh_leases(self, *, steal: bool = False) -> None:
        fair = math.ceil(self.config.shard_count / self._owners)
        held, owners = await self.store.renew_and_claim(
            self.owner, self.config.lease_ttl_us, fair, self.config.shard_count, steal=steal
        )
        self._owners = owners
        fair = math.ceil(self.config.shard_count / owners)
        if len(held) > fair:
            # Another replica joined: shed the surplus so it can claim them.
            surplus = sorted(held)[fair:]
            await self.store.release_shards(self.owner, surplus)
            for shard in surplus:
                held.pop(shard, None)
        lost = set(self.shards) - set(held)
        gained = set(held) - set(self.shards)
        self.shards = held
        OWNED_SHARDS.set(len(held))
        if lost:
            self.window.drop_shards(lost)
        if gained and self._started.is_set():
            await self._extend_window(full=True)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_ttl_us / 3e6)
            try:
                await self._refresh_leases()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing shard leases failed; fencing stops our writes if they lapse")

    # ------------------------------------------------------------------ retention

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.cleanup_interval_s)
            try:
                await self.cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cleanup failed; retrying next interval")

    async def cleanup(self) -> tuple[int, int]:
        """Remove fire history past retention and completed alarms past theirs. Only shard 0's owner runs it."""
        if 0 not in self.shards:
            return 0, 0
        now = now_us()
        fires_deleted = await self.store.delete_old_fires(now - self.config.fire_retention_us, 10_000)
        alarms_deleted = await self.store.delete_completed_alarms(now - self.config.completed_retention_us, 10_000)
        if fires_deleted or alarms_deleted:
            log.info("cleanup removed %d fire records and %d completed alarms", fires_deleted, alarms_deleted)
        return fires_deleted, alarms_deleted

    # ------------------------------------------------------------------ introspection

    def describe(self) -> dict[str, Any]:
        return {
            "instance_id": self.owner,
            "shard_count": self.config.shard_count,
            "owned_shards": sorted(self.shards),
            "window_size": len(self.window),
            "window_capacity": self.config.window_capacity,
            "window_horizon_us": max(0, self.horizon_us - now_us()),
        }


