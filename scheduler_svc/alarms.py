"""The alarm lifecycle: validation, create (single, batch, bulk import), read, list, update, pause, resume, snooze,
preview. Testable without gRPC: it takes and returns protobuf messages but never touches a ServicerContext.

Every write is one transaction; validation happens before anything is written, so a bad request leaves nothing
half-done. After a commit the engine is told at once, so an alarm due inside the lookahead window is taken into it
without waiting for the next load.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import operator
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.duration_pb2 import Duration
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from scheduler_svc import schedules
from scheduler_svc.engine import Engine, shard_of
from scheduler_svc.model import schedule_from_json, schedule_json_text, schedule_to_json, timing_from_row
from scheduler_svc.store import ACTIVE, COMPLETED, PAUSED, SKIPPED, FireRow, SchedulerStore, alarms, now_us
from servicekit import listing
from servicekit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violations,
)

ALARM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_BATCH = 1000
MAX_PREVIEW = 1000
DEFAULT_GRACE_US = 60_000_000
DEFAULT_CATCH_UP_LIMIT = 100
MAX_CATCH_UP_LIMIT = 10_000
MAX_JITTER_US = 86_400_000_000
MAX_LABELS = 64
MAX_SKIPPED_RECORDS = 1000
# Imports this large change the table enough that the planner's statistics must be refreshed at once.
ANALYZE_AFTER_IMPORT = 10_000

CATCH_UP_NAMES = {pb.CATCH_UP_SKIP: "SKIP", pb.CATCH_UP_LATEST: "LATEST", pb.CATCH_UP_ALL: "ALL"}
CATCH_UP_VALUES = {v: k for k, v in CATCH_UP_NAMES.items()}
STATE_VALUES = {ACTIVE: pb.Alarm.STATE_ACTIVE, PAUSED: pb.Alarm.STATE_PAUSED, COMPLETED: pb.Alarm.STATE_COMPLETED}
STATE_NAMES = {"ACTIVE": ACTIVE, "STATE_ACTIVE": ACTIVE, "PAUSED": PAUSED, "STATE_PAUSED": PAUSED,
               "COMPLETED": COMPLETED, "STATE_COMPLETED": COMPLETED}
UPDATABLE = (
    "display_name", "owner_email", "target", "labels", "payload", "schedule", "start_time", "end_time",
    "max_fires", "misfire_policy", "dst_policy", "jitter", "notify_owner",
)
TIMING_FIELDS = {"schedule", "start_time", "end_time", "max_fires", "dst_policy", "jitter"}
OUTPUT_ONLY = {"name", "state", "next_fire_time", "last_fire_time", "fire_count", "create_time", "update_time", "etag"}


def _us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _dur_us(d: Duration) -> int:
    return d.seconds * 1_000_000 + d.nanos // 1000


def _ts(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def _dur(us: int) -> Duration:
    d = Duration()
    d.FromMicroseconds(us)
    return d


def parse_name(name: str, field: str = "name") -> str:
    """`alarms/{alarm}` -> alarm id; anything else is the caller's mistake."""
    prefix, _, alarm_id = name.partition("/")
    if prefix != "alarms" or not ALARM_ID_RE.match(alarm_id):
        raise InvalidArgument(
            f"{field} must look like alarms/{{alarm}}, got {name!r}",
            violations={field: "expected alarms/{alarm} with alarm matching [a-z0-9][a-z0-9-]{0,62}"},
            reason="INVALID_NAME",
        )
    return alarm_id


@dataclass(slots=True)
class Spec:
    """A validated alarm: the column values it stores (without ids and bookkeeping) and its Timing."""

    values: dict[str, Any]
    timing: schedules.Timing
    payload: struct_pb2.Struct


class AlarmService:
    def __init__(self, store: SchedulerStore, engine: Engine, settings: Any) -> None:
        self.store = store
        self.db = store.db
        self.engine = engine
        self.settings = settings

    # ------------------------------------------------------------------ validation and conversion

    def validate(self, alarm: pb.Alarm, *, now: int, prefix: str = "alarm", alarm_id: str = "x",
                 lab: str = "default") -> Spec:
        """Check every field of `alarm` and collect all violations at once, naming each field in full.

        Written for ImportAlarms' million-row loads too: optional sub-messages are only read when set
        (HasField), since reading an unset proto field still costs an allocation.
        """
        v = Violations()
        display_name, owner_email, target = alarm.display_name, alarm.owner_email, alarm.target
        if len(display_name) > 256:
            v.add(f"{prefix}.display_name", "at most 256 characters")
        if owner_email and not EMAIL_RE.match(owner_email):
            v.add(f"{prefix}.owner_email", "not an email address")
        notify_owner = alarm.notify_owner
        if notify_owner and not owner_email:
            v.add(f"{prefix}.notify_owner", "notify_owner needs an owner_email to mail")
        if len(target) > 1024:
            v.add(f"{prefix}.target", "at most 1024 characters")
        labels: dict[str, str] = {}
        if alarm.labels:
            labels = dict(alarm.labels)
            if len(labels) > MAX_LABELS:
                v.add(f"{prefix}.labels", f"at most {MAX_LABELS} labels")
            for key, value in labels.items():
                if not LABEL_KEY_RE.match(key):
                    v.add(f"{prefix}.labels", f"label key {key!r} must match {LABEL_KEY_RE.pattern}")
                if len(value) > 256:
                    v.add(f"{prefix}.labels", f"label {key!r}: value longer than 256 characters")
        if alarm.HasField("payload"):
            payload_size = alarm.payload.ByteSize()
            if payload_size > self.settings.max_payload_bytes:
                v.add(f"{prefix}.payload", f"{payload_size} bytes; the limit is {self.settings.max_payload_bytes}")
        grace_us, catch_up, limit = DEFAULT_GRACE_US, "LATEST", DEFAULT_CATCH_UP_LIMIT
        if alarm.HasField("misfire_policy"):
            policy = alarm.misfire_policy
            if policy.HasField("grace"):
                grace_us = _dur_us(policy.grace)
            if grace_us < 0:
                v.add(f"{prefix}.misfire_policy.grace", "must not be negative")
            catch_up = CATCH_UP_NAMES.get(policy.catch_up, "LATEST")
            if policy.catch_up not in (0, *CATCH_UP_NAMES):
                v.add(f"{prefix}.misfire_policy.catch_up", "unknown catch-up mode")
            limit = policy.catch_up_limit or DEFAULT_CATCH_UP_LIMIT
            if not 0 <= policy.catch_up_limit <= MAX_CATCH_UP_LIMIT:
                v.add(f"{prefix}.misfire_policy.catch_up_limit", f"must be between 0 and {MAX_CATCH_UP_LIMIT}")
        jitter_us = _dur_us(alarm.jitter) if alarm.HasField("jitter") else 0
        if not 0 <= jitter_us <= MAX_JITTER_US:
            v.add(f"{prefix}.jitter", "must be between 0 and 24h")
        max_fires = alarm.max_fires
        if max_fires < 0:
            v.add(f"{prefix}.max_fires", "must not be negative")
        gap = schedules.GapPolicy.SHIFT_FORWARD
        if alarm.HasField("dst_policy") and alarm.dst_policy.gap_policy == pb.GAP_POLICY_SKIP:
            gap = schedules.GapPolicy.SKIP

        schedule = self._schedule(alarm, now=now, prefix=prefix, violations=v)
        timing = None
        if schedule is not None:
            timing = schedules.Timing(
                schedule=schedule,
                start_us=_us(alarm.start_time) if alarm.HasField("start_time") else None,
                end_us=_us(alarm.end_time) if alarm.HasField("end_time") else None,
                max_fires=max(max_fires, 0), gap_policy=gap, jitter_us=max(jitter_us, 0),
                jitter_seed=f"{lab}/{alarm_id}",
            )
            try:
                schedules.validate(timing)
            except schedules.ScheduleError as err:
                v.add(f"{prefix}.{err.field}", err.message)
                timing = None
            if timing is not None and isinstance(schedule, schedules.AtSchedule) and schedule.at_us < now - grace_us:
                v.add(f"{prefix}.schedule.at",
                      f"{schedule.at_us - now} us in the past, beyond the misfire grace: it could never fire")
        if v:
            v.raise_if_any(reason="INVALID_ALARM")
        assert timing is not None
        values = {
            "display_name": display_name, "owner_email": owner_email, "target": target,
            "labels": labels, "schedule": schedule_to_json(timing.schedule),
            "start_us": timing.start_us, "end_us": timing.end_us, "max_fires": timing.max_fires,
            "grace_us": grace_us, "catch_up": catch_up, "catch_up_limit": limit,
            "gap_policy": gap.name, "jitter_us": timing.jitter_us, "notify_owner": notify_owner,
        }
        return Spec(values, timing, alarm.payload)

    def _schedule(self, alarm: pb.Alarm, *, now: int, prefix: str, violations: Violations) -> schedules.Schedule | None:
        s = alarm.schedule
        kind = s.WhichOneof("kind")
        zone_default = self.settings.timezone
        if not alarm.HasField("schedule") or kind is None:
            violations.add(f"{prefix}.schedule", "required: one of at, daily, cron, interval")
            return None
        if kind == "at":
            return schedules.AtSchedule(_us(s.at))
        if kind == "daily":
            tod = s.daily.time_of_day
            if not (0 <= tod.hours <= 23 and 0 <= tod.minutes <= 59 and 0 <= tod.seconds <= 59 and tod.nanos == 0):
                violations.add(f"{prefix}.schedule.daily.time_of_day",
                               "hours 0-23, minutes 0-59, seconds 0-59, no fractional seconds")
                return None
            days = frozenset(int(d) for d in s.daily.days_of_week)
            return schedules.DailySchedule(tod.hours, tod.minutes, tod.seconds, days,
                                           s.daily.time_zone or zone_default)
        if kind == "cron":
            return schedules.CronSchedule(s.cron.expression.strip(), s.cron.time_zone or zone_default)
        every = _dur_us(s.interval.every)
        anchor = _us(s.interval.anchor_time) if s.interval.HasField("anchor_time") else now
        return schedules.IntervalSchedule(every, anchor)

    def first_occurrence(self, timing: schedules.Timing, now: int, *, prefix: str) -> schedules.Occurrence:
        if isinstance(timing.schedule, schedules.AtSchedule):
            first = schedules.next_occurrence(timing, timing.schedule.at_us - 1, 0)
        else:
            first = schedules.next_occurrence(timing, now, 0)
        if first is None:
            raise InvalidArgument(
                "the schedule has no occurrence left (check end_time, start_time and the schedule)",
                violations={f"{prefix}.schedule": "never fires after now within start_time/end_time"},
                reason="SCHEDULE_NEVER_FIRES",
            )
        return first

    def snapshot(self, alarm_id: str, values: Mapping[str, Any], payload: struct_pb2.Struct) -> bytes:
        return pb.AlarmSnapshot(
            name=f"alarms/{alarm_id}", display_name=values["display_name"], owner_email=values["owner_email"],
            target=values["target"], labels=values["labels"], payload=payload,
        ).SerializeToString()

    def row_for_create(self, lab: str, alarm_id: str, spec: Spec, first: schedules.Occurrence, now: int,
                       request_id: str | None) -> dict[str, Any]:
        return {
            **spec.values, "lab": lab, "alarm_id": alarm_id,
            "shard": shard_of(lab, alarm_id, self.engine.config.shard_count),
            "state": ACTIVE, "next_fire_us": first.nominal_us, "next_due_us": first.due_us, "last_fire_us": None,
            "fire_count": 0, "paused_us": None, "create_us": now, "update_us": now, "version": 1,
            "request_id": request_id or None, "snapshot": self.snapshot(alarm_id, spec.values, spec.payload),
        }

    @staticmethod
    def to_proto(row: Any) -> pb.Alarm:
        snapshot = pb.AlarmSnapshot.FromString(row.snapshot)
        schedule = schedule_from_json(row.schedule)
        alarm = pb.Alarm(
            name=f"alarms/{row.alarm_id}", display_name=row.display_name, owner_email=row.owner_email,
            target=row.target, labels=row.labels, payload=snapshot.payload, max_fires=row.max_fires,
            notify_owner=row.notify_owner, state=STATE_VALUES[row.state], fire_count=row.fire_count,
            etag=str(row.version),
        )
        match schedule:
            case schedules.AtSchedule(at_us=at_us):
                alarm.schedule.at.CopyFrom(_ts(at_us))
            case schedules.DailySchedule():
                alarm.schedule.daily.time_of_day.hours = schedule.hour
                alarm.schedule.daily.time_of_day.minutes = schedule.minute
                alarm.schedule.daily.time_of_day.seconds = schedule.second
                alarm.schedule.daily.days_of_week.extend(sorted(schedule.days_of_week))
                alarm.schedule.daily.time_zone = schedule.time_zone
            case schedules.CronSchedule(expression=expression, time_zone=time_zone):
                alarm.schedule.cron.expression = expression
                alarm.schedule.cron.time_zone = time_zone
            case schedules.IntervalSchedule(every_us=every_us, anchor_us=anchor_us):
                alarm.schedule.interval.every.CopyFrom(_dur(every_us))
                alarm.schedule.interval.anchor_time.CopyFrom(_ts(anchor_us))
        for field, us in (("start_time", row.start_us), ("end_time", row.end_us), ("next_fire_time", row.next_due_us),
                          ("last_fire_time", row.last_fire_us), ("create_time", row.create_us),
                          ("update_time", row.update_us)):
            if us is not None:
                getattr(alarm, field).CopyFrom(_ts(us))
        alarm.misfire_policy.grace.CopyFrom(_dur(row.grace_us))
        alarm.misfire_policy.catch_up = CATCH_UP_VALUES[row.catch_up]
        alarm.misfire_policy.catch_up_limit = row.catch_up_limit
        alarm.dst_policy.gap_policy = (pb.GAP_POLICY_SKIP if row.gap_policy == "SKIP"
                                       else pb.GAP_POLICY_SHIFT_FORWARD)
        if row.jitter_us:
            alarm.jitter.CopyFrom(_dur(row.jitter_us))
        return alarm

    # ------------------------------------------------------------------ create

    async def create(self, lab: str, alarm: pb.Alarm, alarm_id: str = "", request_id: str = "") -> pb.Alarm:
        return (await self.batch_create(lab, [pb.CreateAlarmRequest(alarm=alarm, alarm_id=alarm_id,
                                                                    request_id=request_id)], single=True))[0]

    async def batch_create(self, lab: str, requests: Sequence[pb.CreateAlarmRequest], *,
                           single: bool = False) -> list[pb.Alarm]:
        """All-or-nothing: every request is validated first; one transaction writes them all."""
        if not single and not 0 < len(requests) <= MAX_BATCH:
            raise InvalidArgument(f"between 1 and {MAX_BATCH} requests per batch",
                                  violations={"requests": f"got {len(requests)}; allowed 1..{MAX_BATCH}"})
        now = now_us()
        rows: list[dict[str, Any]] = []
        seen_ids: set[str] = set()
        v = Violations()
        for i, request in enumerate(requests):
            prefix = "" if single else f"requests[{i}]."
            alarm_id = request.alarm_id or uuid.uuid4().hex
            if request.alarm_id and not ALARM_ID_RE.match(request.alarm_id):
                v.add(f"{prefix}alarm_id", "must match [a-z0-9][a-z0-9-]{0,62}")
                continue
            if alarm_id in seen_ids:
                v.add(f"{prefix}alarm_id", f"{alarm_id!r} appears twice in this batch")
                continue
            seen_ids.add(alarm_id)
            if len(request.request_id) > 128:
                v.add(f"{prefix}request_id", "at most 128 characters")
                continue
            try:
                spec = self.validate(request.alarm, now=now, prefix=f"{prefix}alarm", alarm_id=alarm_id, lab=lab)
                first = self.first_occurrence(spec.timing, now, prefix=f"{prefix}alarm")
            except InvalidArgument as err:
                for violation in err.violations:
                    v.add(*violation)
                continue
            rows.append(self.row_for_create(lab, alarm_id, spec, first, now, request.request_id))
        v.raise_if_any(reason="INVALID_ALARM")

        request_ids = [r["request_id"] for r in rows if r["request_id"]]
        try:
            async with self.db.begin() as conn:
                replay = await self.store.find_by_request_id(conn, lab, request_ids)
                fresh = [r for r in rows if r["request_id"] not in replay]
                # No look-up first: the unique constraint on (lab, alarm_id) decides, in the same round trip.
                written = {r.alarm_id: r for r in await self.store.insert_alarms(conn, fresh)}
                await self.store.notify_alarms_changed(conn, self.engine.owner, [r.id for r in written.values()])
        except sa.exc.IntegrityError:
            # Rolled back: tell the caller which constraint it was (a name taken, or a concurrent same request).
            async with self.db.connect() as conn:
                clash = await self.store.get_alarms(conn, lab, [r["alarm_id"] for r in rows])
            if clash:
                raise AlreadyExists(
                    f"alarms/{clash[0].alarm_id} already exists",
                    reason="ALARM_EXISTS", metadata={"name": f"alarms/{clash[0].alarm_id}"},
                ) from None
            raise Aborted("a concurrent request created the same alarm or request_id; retry",
                          reason="CONCURRENT_CREATE") from None
        result = []
        for row in rows:
            stored = replay.get(row["request_id"]) if row["request_id"] in replay else written[row["alarm_id"]]
            if row["request_id"] not in replay:
                self.engine.alarm_written(stored)
            result.append(self.to_proto(stored))
        return result

    async def import_alarms(self, lab: str, chunks: AsyncIterator[Sequence[pb.Alarm]]) -> tuple[int, float]:
        """Bulk load in one transaction with the COPY protocol: all rows or none (a bad row names its index).

        Validation of the next chunk overlaps the COPY of the previous one (the database works on its own core
        meanwhile); one COPY at a time keeps the rows in order within the single transaction.
        """
        started = time.perf_counter()
        now = now_us()
        columns = [c.name for c in alarms.columns if c.name != "id"]
        as_record = operator.itemgetter(*columns)
        total = 0
        pending: asyncio.Task[int] | None = None
        async with self.db.begin() as conn:
            try:
                async for chunk in chunks:
                    records = []
                    v = Violations()
                    for offset, alarm in enumerate(chunk):
                        index = total + offset
                        alarm_id = (parse_name(alarm.name, f"alarms[{index}].name") if alarm.name
                                    else os.urandom(16).hex())
                        try:
                            spec = self.validate(alarm, now=now, prefix=f"alarms[{index}]", alarm_id=alarm_id,
                                                 lab=lab)
                            first = self.first_occurrence(spec.timing, now, prefix=f"alarms[{index}]")
                        except InvalidArgument as err:
                            for violation in err.violations:
                                v.add(*violation)
                            if len(v) >= 20:
                                break
                            continue
                        row = self.row_for_create(lab, alarm_id, spec, first, now, None)
                        row["labels"] = json.dumps(row["labels"]) if row["labels"] else "{}"
                        row["schedule"] = schedule_json_text(spec.timing.schedule)
                        records.append(as_record(row))
                    v.raise_if_any(reason="INVALID_ALARM")
                    if pending is not None:
                        await pending
                    pending = asyncio.create_task(self.db.copy_rows(conn, "alarms", columns, records))
                    total += len(records)
                if pending is not None:
                    await pending
                    pending = None
            except Exception as err:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                if isinstance(err, sa.exc.IntegrityError) or type(err).__name__ == "UniqueViolationError":
                    raise AlreadyExists("an imported alarm name already exists (or repeats within the import)",
                                        reason="ALARM_EXISTS") from None
                raise
            await self.store.notify_alarms_changed(conn, self.engine.owner, None)
        if total >= ANALYZE_AFTER_IMPORT:
            await self.store.analyze_alarms()
        self.engine.bulk_loaded()
        return total, time.perf_counter() - started

    # ------------------------------------------------------------------ read

    async def _row(self, conn: Any, lab: str, name: str) -> Any:
        alarm_id = parse_name(name)
        row = await self.store.get_alarm(conn, lab, alarm_id)
        if row is None:
            raise NotFound(f"{name} does not exist", reason="ALARM_NOT_FOUND", metadata={"name": name})
        return row

    async def get(self, lab: str, name: str) -> pb.Alarm:
        async with self.db.connect() as conn:
            return self.to_proto(await self._row(conn, lab, name))

    async def list(self, lab: str, *, page_size: int, page_token: str, filter: str,
                   order_by: str) -> tuple[list[pb.Alarm], str, int]:
        size = listing.page_size(page_size)
        order = order_by.strip() or "name"
        if order not in ("name", "next_fire_time"):
            raise InvalidArgument("order_by must be name or next_fire_time",
                                  violations={"order_by": "supported: name, next_fire_time"})
        conditions = listing.parse_filter(filter, allowed=("owner_email", "target", "state", "labels."))
        where = []
        for c in conditions:
            if c.op != "=":
                raise InvalidArgument(f"only = is supported, got {c.op}",
                                      violations={"filter": f"{c.field}: only = is supported"},
                                      reason="INVALID_FILTER")
            if c.field == "state":
                if c.value.upper() not in STATE_NAMES:
                    raise InvalidArgument("unknown state", violations={"filter": f"state {c.value!r} is unknown"},
                                          reason="INVALID_FILTER")
                where.append(alarms.c.state == STATE_NAMES[c.value.upper()])
            elif c.field.startswith("labels."):
                where.append(alarms.c.labels[c.field.removeprefix("labels.")].as_string() == c.value)
            else:
                where.append(getattr(alarms.c, c.field) == c.value)
        query = {"filter": filter, "order": order}
        after = listing.decode_page_token(page_token, query)
        async with self.db.connect() as conn:
            rows = await self.store.list_alarms(conn, lab, where=where, order=order, after=after, limit=size + 1)
            total = await self.store.count_alarms(conn, lab, where) if not page_token else 0
        more = len(rows) > size
        rows = rows[:size]
        token = ""
        if more:
            last = rows[-1]
            position = ([last.next_due_us if last.next_due_us is not None else 2**62, last.alarm_id]
                        if order == "next_fire_time" else [last.alarm_id])
            token = listing.encode_page_token(position, query)
        return [self.to_proto(r) for r in rows], token, total

    # ------------------------------------------------------------------ write

    async def _write(self, conn: Any, lab: str, row: Any, values: dict[str, Any]) -> Any:
        values.setdefault("update_us", now_us())
        updated = await self.store.update_alarm(conn, lab, row.alarm_id, row.version, values)
        if updated is None:
            raise Aborted(f"alarms/{row.alarm_id} changed concurrently; read it again and retry",
                          reason="CONCURRENT_UPDATE", metadata={"name": f"alarms/{row.alarm_id}"})
        await self.store.notify_alarms_changed(conn, self.engine.owner, [row.id])
        return updated

    @staticmethod
    def _check_etag(row: Any, etag: str) -> None:
        if etag and etag != str(row.version):
            raise Aborted(f"etag {etag!r} is stale; the alarm is at {row.version}", reason="ETAG_MISMATCH",
                          metadata={"name": f"alarms/{row.alarm_id}", "etag": str(row.version)})

    async def update(self, lab: str, alarm: pb.Alarm, paths: Sequence[str]) -> pb.Alarm:
        if not alarm.name:
            raise InvalidArgument("alarm.name is required", violations={"alarm.name": "required"})
        if not paths:
            paths = [f for f in UPDATABLE if _populated(alarm, f)]
        elif "*" in paths:
            paths = list(UPDATABLE)
        unknown = [p for p in paths if p.split(".")[0] not in UPDATABLE and p not in OUTPUT_ONLY]
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(unknown)}",
                                  violations={"update_mask": f"unknown or immutable paths: {', '.join(unknown)}; "
                                              f"updatable: {', '.join(UPDATABLE)}"})
        paths = [p for p in paths if p not in OUTPUT_ONLY]
        now = now_us()
        async with self.db.begin() as conn:
            row = await self._row(conn, lab, alarm.name)
            self._check_etag(row, alarm.etag)
            merged = self.to_proto(row)
            for path in paths:
                top = path.split(".")[0]
                merged.ClearField(top)
                if _populated(alarm, top):
                    if top == "labels":
                        merged.labels.update(alarm.labels)
                    elif top in ("display_name", "owner_email", "target", "max_fires", "notify_owner"):
                        setattr(merged, top, getattr(alarm, top))
                    else:
                        getattr(merged, top).CopyFrom(getattr(alarm, top))
            if "schedule" in paths and merged.schedule.HasField("interval") and not \
                    alarm.schedule.interval.HasField("anchor_time"):
                merged.schedule.interval.ClearField("anchor_time")
            spec = self.validate(merged, now=now, alarm_id=row.alarm_id, lab=lab)
            values = dict(spec.values)
            values["snapshot"] = self.snapshot(row.alarm_id, spec.values, spec.payload)
            if TIMING_FIELDS & {p.split(".")[0] for p in paths} and row.state != COMPLETED:
                first = self.first_occurrence(spec.timing, now, prefix="alarm")
                values.update(next_fire_us=first.nominal_us, next_due_us=first.due_us)
            updated = await self._write(conn, lab, row, values)
        self.engine.alarm_written(updated)
        return self.to_proto(updated)

    async def delete(self, lab: str, name: str, etag: str, allow_missing: bool) -> None:
        async with self.db.begin() as conn:
            alarm_id = parse_name(name)
            row = await self.store.get_alarm(conn, lab, alarm_id)
            if row is None:
                if allow_missing:
                    return
                raise NotFound(f"{name} does not exist", reason="ALARM_NOT_FOUND", metadata={"name": name})
            self._check_etag(row, etag)
            if not await self.store.delete_alarm(conn, lab, alarm_id, row.version):
                raise Aborted(f"{name} changed concurrently; retry", reason="CONCURRENT_UPDATE")
            await self.store.notify_alarms_changed(conn, self.engine.owner, [row.id])
        self.engine.alarm_deleted(row.id)

    async def pause(self, lab: str, name: str, etag: str) -> pb.Alarm:
        async with self.db.begin() as conn:
            row = await self._row(conn, lab, name)
            self._check_etag(row, etag)
            if row.state == PAUSED:
                return self.to_proto(row)
            if row.state == COMPLETED:
                raise FailedPrecondition(f"{name} has completed; there is nothing to pause",
                                         reason="ALARM_COMPLETED")
            updated = await self._write(conn, lab, row, {"state": PAUSED, "paused_us": now_us()})
        self.engine.alarm_written(updated)
        return self.to_proto(updated)

    async def resume(self, lab: str, name: str, etag: str, policy: int) -> pb.Alarm:
        now = now_us()
        async with self.db.begin() as conn:
            row = await self._row(conn, lab, name)
            self._check_etag(row, etag)
            if row.state == ACTIVE:
                return self.to_proto(row)
            if row.state == COMPLETED:
                raise FailedPrecondition(f"{name} has completed; create a new alarm instead",
                                         reason="ALARM_COMPLETED")
            values: dict[str, Any] = {"state": ACTIVE, "paused_us": None}
            timing = timing_from_row(row)
            if policy != pb.RESUME_POLICY_CATCH_UP and row.next_due_us is not None and row.next_due_us <= now:
                # Skip what fell due while paused, and record each skipped occurrence.
                skipped = [schedules.Occurrence(row.next_fire_us, row.next_due_us)]
                skipped += schedules.occurrences_between(
                    dataclasses.replace(timing, max_fires=0), row.next_fire_us, now, MAX_SKIPPED_RECORDS
                ).occurrences
                skipped = [o for o in skipped if o.due_us <= now][:MAX_SKIPPED_RECORDS]
                await self.store.insert_fire_rows(
                    conn, lab, row.id, row.alarm_id, row.target, row.owner_email,
                    [FireRow(row.id, o.nominal_us, o.due_us, now, SKIPPED, "skipped: alarm was paused")
                     for o in skipped],
                )
                nxt = schedules.next_occurrence(timing, max(now, skipped[-1].nominal_us), row.fire_count)
                values.update(next_fire_us=nxt.nominal_us if nxt else None, next_due_us=nxt.due_us if nxt else None)
                if nxt is None:
                    values["state"] = COMPLETED
            # With catch-up the pending occurrence stays: the engine sees it overdue and applies the misfire policy.
            updated = await self._write(conn, lab, row, values)
        self.engine.alarm_written(updated)
        return self.to_proto(updated)

    async def snooze(self, lab: str, name: str, duration: Duration, etag: str) -> pb.Alarm:
        delay = _dur_us(duration)
        if delay <= 0:
            raise InvalidArgument("duration must be positive", violations={"duration": "must be > 0"})
        async with self.db.begin() as conn:
            row = await self._row(conn, lab, name)
            self._check_etag(row, etag)
            if row.state != ACTIVE or row.next_due_us is None:
                raise FailedPrecondition(f"{name} is not active with a next occurrence; nothing to snooze",
                                         reason="NOTHING_TO_SNOOZE")
            due = max(row.next_due_us, now_us()) + delay
            updated = await self._write(conn, lab, row, {"next_due_us": due})
        self.engine.alarm_written(updated)
        return self.to_proto(updated)

    def preview(self, alarm: pb.Alarm, after: timestamp_pb2.Timestamp | None, count: int,
                lab: str) -> list[schedules.Occurrence]:
        if not 0 <= count <= MAX_PREVIEW:
            raise InvalidArgument(f"count must be between 0 and {MAX_PREVIEW}",
                                  violations={"count": f"between 1 and {MAX_PREVIEW} (0 = 10)"})
        now = now_us()
        after_us = _us(after) if after is not None else now
        alarm_id = parse_name(alarm.name, "alarm.name") if alarm.name else "preview"
        # Preview is about the future shape of a schedule, so a past `at` is not an error here.
        probe = pb.Alarm()
        probe.CopyFrom(alarm)
        probe.misfire_policy.grace.FromSeconds(10**10)
        spec = self.validate(probe, now=now, alarm_id=alarm_id, lab=lab)
        return schedules.occurrences(spec.timing, after_us, count or 10)


def _populated(alarm: pb.Alarm, field: str) -> bool:
    value = getattr(alarm, field)
    if field in ("labels",):
        return len(value) > 0
    if field in ("payload", "schedule", "start_time", "end_time", "misfire_policy", "dst_policy", "jitter"):
        return alarm.HasField(field)
    return bool(value)

