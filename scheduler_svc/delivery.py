"""Fire delivery: one tail of the fire log per process, fanned out to bounded per-subscriber buffers.

Why it is built this way:
- The fire log is the single source of truth and its seq is every stream's cursor, so fires committed by any
  replica reach every subscriber, and a subscriber that reconnects replays exactly what it missed.
- Catch-up reads the log until it reaches the hub's live position, then registers for live fires in the same
  event-loop step (no await in between), so there is no gap and no duplicate at the seam.
- Each subscriber has a bounded buffer filled without waiting: a slow subscriber overflows and is cut off with
  RESOURCE_EXHAUSTED (carrying its resume cursor) instead of slowing the scheduler or anybody else.
- Consumer groups claim fires by inserting a delivery row (the primary key decides the winner across replicas),
  redeliver what is not acknowledged by the deadline, and dead-letter after max_attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import timestamp_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from prometheus_client import Counter, Gauge, Histogram

from scheduler_svc.store import DeliveryStore, now_us
from servicekit.errors import FailedPrecondition, InvalidArgument, OutOfRange, ResourceExhausted
from servicekit.server import shutting_down

log = logging.getLogger(__name__)

DEFAULT_EVENTS_PER_MESSAGE = 100
MAX_EVENTS_PER_MESSAGE = 1000
DEFAULT_ACK_DEADLINE_US = 30_000_000
DEFAULT_MAX_ATTEMPTS = 5
MAX_TARGETS = 1000
TAIL_PAGE = 1000

SUBSCRIBERS = Gauge("fire_stream_subscribers", "Open Fire streams on this instance", ["kind"])
DELIVERY_LATENESS = Histogram(
    "fire_delivery_lateness_seconds", "Time from due to the fire being written to a subscriber's stream",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30),
)
OVERFLOWS = Counter("fire_stream_overflows", "Streams cut off because their buffer overflowed")
REDELIVERIES = Counter("fire_group_redeliveries", "Fires delivered again after a missed ack deadline")
DEAD_LETTERS = Counter("fire_group_dead_letters", "Fires dead-lettered after max_attempts")


def _ts(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def fire_id(alarm_id: str, nominal_us: int) -> str:
    return f"alarms/{alarm_id}/fires/{nominal_us}"


def parse_fire_id(value: str) -> tuple[str, int] | None:
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != "alarms" or parts[2] != "fires" or not parts[3].isdigit():
        return None
    return parts[1], int(parts[3])


@dataclass(slots=True)
class FireItem:
    """A committed fire, decoded once per process and shared by every subscriber it matches."""

    seq: int
    lab: str
    alarm_id: str
    target: str
    owner_email: str
    labels: Mapping[str, str]
    notify_owner: bool
    due_us: int
    event: pb.FireEvent

    @classmethod
    def from_row(cls, row: Any) -> FireItem:
        snapshot = pb.AlarmSnapshot.FromString(row.snapshot or b"")
        event = pb.FireEvent(
            fire_id=fire_id(row.alarm_id, row.nominal_us), alarm=snapshot, nominal_time=_ts(row.nominal_us),
            scheduled_time=_ts(row.due_us), fire_time=_ts(row.fire_us), attempt=1, cursor=str(row.seq),
            outcome=row.outcome,
        )
        return cls(row.seq, row.lab, row.alarm_id, row.target, row.owner_email, snapshot.labels,
                   row.notify_owner, row.due_us, event)

    def with_attempt(self, attempt: int) -> pb.FireEvent:
        if attempt == 1:
            return self.event
        event = pb.FireEvent()
        event.CopyFrom(self.event)
        event.attempt = attempt
        return event


@dataclass(frozen=True, slots=True)
class FireFilter:
    targets: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()
    owner_email: str = ""
    alarm_ids: frozenset[str] = frozenset()
    notify_only: bool = False  # the mailer's filter: fires of alarms that asked to be mailed

    @classmethod
    def from_proto(cls, f: pb.FireFilter) -> FireFilter:
        if len(f.targets) > MAX_TARGETS:
            raise InvalidArgument("too many targets", violations={"filter.targets": f"at most {MAX_TARGETS}"})
        alarm_ids = []
        for i, name in enumerate(f.alarms):
            prefix, _, alarm_id = name.partition("/")
            if prefix != "alarms" or not alarm_id:
                raise InvalidArgument("bad alarm name", violations={f"filter.alarms[{i}]": "expected alarms/{alarm}"})
            alarm_ids.append(alarm_id)
        return cls(frozenset(f.targets), tuple(sorted(f.labels.items())), f.owner_email, frozenset(alarm_ids))

    def matches(self, item: FireItem) -> bool:
        if self.targets and item.target not in self.targets:
            return False
        if self.alarm_ids and item.alarm_id not in self.alarm_ids:
            return False
        if self.owner_email and item.owner_email != self.owner_email:
            return False
        if self.notify_only and not item.notify_owner:
            return False
        return all(item.labels.get(k) == v for k, v in self.labels)

    def to_json(self) -> dict[str, Any]:
        return {"targets": sorted(self.targets), "labels": dict(self.labels), "owner_email": self.owner_email,
                "alarms": sorted(self.alarm_ids), "notify_only": self.notify_only}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FireFilter:
        return cls(frozenset(data.get("targets", ())), tuple(sorted(data.get("labels", {}).items())),
                   data.get("owner_email", ""), frozenset(data.get("alarms", ())), bool(data.get("notify_only")))


class Subscriber:
    """One open stream's bounded buffer. `offer` never waits: it is called from the hub's dispatch loop."""

    def __init__(self, lab: str | None, filter: FireFilter, capacity: int, *, subscriber_id: str = "",
                 group: str = "") -> None:
        self.lab = lab
        self.filter = filter
        self.capacity = capacity
        self.queue: deque[tuple[FireItem, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.subscriber_id = subscriber_id
        self.group = group
        self.connect_us = now_us()
        self.sent = 0
        self.lateness_us: deque[int] = deque(maxlen=1000)

    def record_sent(self, batch: Sequence[tuple[FireItem, int]]) -> None:
        """Per-subscriber delivery lateness (write time minus scheduled time), for GetSchedulerStats."""
        now = now_us()
        self.sent += len(batch)
        for item, _ in batch:
            late = max(0, now - item.due_us)
            self.lateness_us.append(late)
            DELIVERY_LATENESS.observe(late / 1e6)

    def offer(self, item: FireItem, attempt: int = 1) -> bool:
        if len(self.queue) >= self.capacity:
            if not self.overflowed:
                self.overflowed = True
                OVERFLOWS.inc()
            self.wake()
            return False
        self.queue.append((item, attempt))
        self.wake()
        return True

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until there is something to send, an overflow, or a drain (`wake`). One future, no tasks: thousands
        of idle streams cost nothing while they wait."""
        if self.queue or self.overflowed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def room(self) -> int:
        return self.capacity - len(self.queue)

    def take(self, limit: int) -> list[tuple[FireItem, int]]:
        return [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]


def parse_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise InvalidArgument("cursor is not one this service issued",
                              violations={"cursor": "pass back the cursor of the last event you received"},
                              reason="INVALID_CURSOR")
    return int(cursor)


class FireHub:
    """Tails the fire log and hands each new fire to the matching local subscribers and consumer groups."""

    def __init__(self, store: DeliveryStore, *, buffer_size: int = 10_000) -> None:
        self.store = store
        self.buffer_size = buffer_size
        self.last_seq = 0
        self._notified = 0
        # Fan-out index: subscribers filtering on targets are found by (lab, target); the rest by lab (None =
        # every lab, for internal consumers). A fire then touches only the streams it can match.
        self._by_target: dict[tuple[str | None, str], set[Subscriber]] = {}
        self._by_lab: dict[str | None, set[Subscriber]] = {}
        self._count = 0
        self._groups: dict[tuple[str, str], GroupDispatcher] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._member_ids = itertools.count(1)
        self._anonymous = itertools.count(1)
        self.instance = secrets.token_hex(4)
        #: Every open stream (broadcast and group members), for per-subscriber stats.
        self.streams: set[Subscriber] = set()
        self._drain_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.store.db.connect() as conn:
            _, self.last_seq = await self.store.log_bounds(conn)
        self._task = asyncio.create_task(self._tail_loop(), name="fire-hub-tail")

    async def stop(self) -> None:
        for dispatcher in list(self._groups.values()):
            await dispatcher.stop()
        for task in (self._task, self._drain_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def fires_committed(self, seq: int) -> None:
        """Wake-up from the local engine (or a notification from another replica)."""
        if seq > self._notified:
            self._notified = seq
        if seq > self.last_seq:
            self._wake.set()

    def _name(self, subscriber_id: str) -> str:
        return subscriber_id[:128] or f"anonymous-{next(self._anonymous)}"

    def new_member_id(self) -> str:
        """Unique across replicas and restarts: deliveries name the member they went to."""
        return f"{self.instance}/{next(self._member_ids)}"

    @property
    def subscriber_count(self) -> int:
        return self._count

    @property
    def group_count(self) -> int:
        return len(self._groups)

    async def _tail_loop(self) -> None:
        while True:
            # The safety poll covers fires committed by other replicas when no notification reached us.
            notified = True
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                notified = False
            self._wake.clear()
            try:
                if not self._count:
                    # No open stream here: nothing to read or decode. Keep the head current (new streams start
                    # from it) and let the consumer groups, which read the log themselves, look.
                    await self._advance_head(notified)
                    continue
                while True:
                    async with self.store.db.connect() as conn:
                        rows = await self.store.read_fires(conn, self.last_seq, TAIL_PAGE)
                    if not rows:
                        break
                    self._dispatch(rows)
                    if len(rows) < TAIL_PAGE:
                        break
                    await asyncio.sleep(0)  # let the streams write between pages of a storm
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tailing the fire log failed; retrying")
                await asyncio.sleep(0.5)

    async def _advance_head(self, notified: bool) -> None:
        head = self._notified
        if not notified:
            async with self.store.db.connect() as conn:
                head = max(head, (await self.store.log_bounds(conn))[1])
        # A stream may have registered during the await above, at the old head: then the tail must read rows
        # past it, not jump over them.
        if head > self.last_seq and not self._count:
            self.last_seq = head
            for dispatcher in self._groups.values():
                dispatcher.wake.set()

    def _dispatch(self, rows: Sequence[Any]) -> None:
        # Synchronous on purpose: last_seq and every subscriber buffer change in one step (see module doc). A
        # fire is decoded only when some stream's index entry can match it.
        by_target, by_lab = self._by_target, self._by_lab
        for row in rows:
            candidates = [*by_target.get((row.lab, row.target), ()), *by_lab.get(row.lab, ()),
                          *by_lab.get(None, ())]
            if not candidates:
                continue
            item = FireItem.from_row(row)
            for sub in candidates:
                if sub.filter.matches(item):
                    sub.offer(item)
        self.last_seq = rows[-1].seq
        for dispatcher in self._groups.values():
            dispatcher.wake.set()

    def _watch_draining(self, draining: asyncio.Event) -> None:
        """One task per hub wakes every open stream when the server drains, so each can end cleanly."""
        if self._drain_watch is not None:
            return

        async def watch() -> None:
            await draining.wait()
            for sub in list(self.streams):
                sub.wake()

        self._drain_watch = asyncio.create_task(watch(), name="fire-hub-drain")

    def _register(self, sub: Subscriber) -> None:
        self._count += 1
        if sub.filter.targets:
            for target in sub.filter.targets:
                self._by_target.setdefault((sub.lab, target), set()).add(sub)
        else:
            self._by_lab.setdefault(sub.lab, set()).add(sub)

    def _unregister(self, sub: Subscriber) -> None:
        self._count -= 1
        keys = [(self._by_target, (sub.lab, t)) for t in sub.filter.targets] or [(self._by_lab, sub.lab)]
        for index, key in keys:
            subs = index.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del index[key]

    # ------------------------------------------------------------------ broadcast streams

    async def stream(
        self, lab: str, request: pb.FireRequest, draining: asyncio.Event
    ) -> AsyncIterator[pb.FireResponse]:
        self._watch_draining(draining)
        if request.consumer_group:
            async for response in self._group_stream(lab, request, draining):
                yield response
            return
        filt = FireFilter.from_proto(request.filter)
        per_message = _events_per_message(request.max_events_per_message)
        position = await self._start_position(request.cursor)
        sent_cursor = str(position)
        # Catch up from the log until we stand exactly at the live position.
        while position < self.last_seq:
            until = self.last_seq
            async with self.store.db.connect() as conn:
                rows = await self.store.read_fires(conn, position, per_message * 10, lab=lab,
                                                   targets=sorted(filt.targets), until_seq=until)
            items = [i for i in map(FireItem.from_row, rows) if filt.matches(i)]
            for start in range(0, len(items), per_message):
                chunk = items[start : start + per_message]
                yield pb.FireResponse(events=[i.event for i in chunk])
                sent_cursor = chunk[-1].event.cursor
            position = rows[-1].seq if len(rows) >= per_message * 10 else until
        sub = Subscriber(lab, filt, self.buffer_size, subscriber_id=self._name(request.subscriber_id))
        self._register(sub)  # same step as the check above: no fire can slip between replay and live
        self.streams.add(sub)
        SUBSCRIBERS.labels("broadcast").inc()
        try:
            while True:
                if not sub.queue and not draining.is_set():
                    await sub.wait()
                if draining.is_set():
                    raise shutting_down({"cursor": sent_cursor})
                if sub.overflowed:
                    raise ResourceExhausted(
                        "this subscriber fell behind and its buffer overflowed; resume from the cursor in metadata",
                        reason="SUBSCRIBER_OVERFLOW", metadata={"cursor": sent_cursor,
                                                                "buffer_size": str(sub.capacity)},
                    )
                batch = sub.take(per_message)
                if not batch:
                    continue
                yield pb.FireResponse(events=[item.event for item, _ in batch])
                sent_cursor = batch[-1][0].event.cursor
                sub.record_sent(batch)
        finally:
            self._unregister(sub)
            self.streams.discard(sub)
            SUBSCRIBERS.labels("broadcast").dec()

    async def _start_position(self, cursor: str) -> int:
        if not cursor:
            return self.last_seq
        position = parse_cursor(cursor)
        async with self.store.db.connect() as conn:
            low, high = await self.store.log_bounds(conn)
        oldest_valid = (low - 1) if low is not None else high
        if position < oldest_valid:
            raise OutOfRange(
                f"cursor {position} is older than the fire log's retention; the oldest valid cursor is {oldest_valid}",
                reason="CURSOR_EXPIRED", metadata={"oldest_cursor": str(oldest_valid)},
            )
        if position > max(high, self.last_seq):
            raise OutOfRange(f"cursor {position} is ahead of the fire log (newest {high})",
                             reason="CURSOR_AHEAD", metadata={"newest_cursor": str(high)})
        return position

    # ------------------------------------------------------------------ consumer groups

    async def _group_stream(
        self, lab: str, request: pb.FireRequest, draining: asyncio.Event
    ) -> AsyncIterator[pb.FireResponse]:
        dispatcher = await self.join_group(lab, request.consumer_group, FireFilter.from_proto(request.filter),
                                           ack_deadline_us=_dur_us(request.ack_deadline),
                                           max_attempts=request.max_attempts, cursor=request.cursor)
        per_message = _events_per_message(request.max_events_per_message)
        member, sub = dispatcher.add_member(self.buffer_size)
        sub.subscriber_id = self._name(request.subscriber_id)
        self.streams.add(sub)
        SUBSCRIBERS.labels("group").inc()
        try:
            while True:
                if not sub.queue and not draining.is_set():
                    await sub.wait()
                if draining.is_set():
                    raise shutting_down()  # the group keeps its position
                batch = sub.take(per_message)
                if not batch:
                    continue
                yield pb.FireResponse(events=[item.with_attempt(attempt) for item, attempt in batch])
                sub.record_sent(batch)
                await dispatcher.delivered([item.seq for item, _ in batch])
        finally:
            self.streams.discard(sub)
            SUBSCRIBERS.labels("group").dec()
            await dispatcher.remove_member(member)

    async def join_group(self, lab: str, name: str, filt: FireFilter, *, ack_deadline_us: int = 0,
                         max_attempts: int = 0, cursor: str = "", all_labs: bool = False) -> GroupDispatcher:
        """Join (or create) a group. `all_labs` is for internal consumers such as the mailer."""
        if len(name) > 63 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidArgument("bad consumer group name",
                                  violations={"consumer_group": "1-63 letters, digits, '-' or '_'"})
        if ack_deadline_us < 0 or max_attempts < 0:
            raise InvalidArgument("ack_deadline and max_attempts must not be negative",
                                  violations={"ack_deadline": ">= 0", "max_attempts": ">= 0"})
        key = (lab, name)
        dispatcher = self._groups.get(key)
        if dispatcher is None:
            start = await self._start_position(cursor)
            row = await self.store.create_group(
                lab, name, filt.to_json(), ack_deadline_us or DEFAULT_ACK_DEADLINE_US,
                max_attempts or DEFAULT_MAX_ATTEMPTS, start,
            )
            dispatcher = self._groups.get(key)  # another member may have joined while we awaited
            if dispatcher is None:
                dispatcher = GroupDispatcher(self, row, read_lab=None if all_labs else lab)
                self._groups[key] = dispatcher
                dispatcher.start()
        stored = dispatcher.filter
        if stored != filt:
            raise FailedPrecondition(
                f"consumer group {name!r} exists with a different filter; every member must use the same one",
                reason="GROUP_FILTER_MISMATCH", metadata={"consumer_group": name},
            )
        return dispatcher

    def _drop_group(self, dispatcher: GroupDispatcher) -> None:
        if self._groups.get(dispatcher.key) is dispatcher:
            del self._groups[dispatcher.key]

    async def acknowledge(self, lab: str, group: str, fire_ids: Sequence[str]) -> tuple[int, list[str]]:
        if not group:
            raise InvalidArgument("consumer_group is required", violations={"consumer_group": "required"})
        parsed: dict[tuple[str, int], str] = {}
        for i, value in enumerate(fire_ids):
            key = parse_fire_id(value)
            if key is None:
                raise InvalidArgument("bad fire id", violations={f"fire_ids[{i}]": "expected alarms/{a}/fires/{n}"})
            parsed[key] = value
        done = await self.store.acknowledge(lab, group, list(parsed))
        rest = [k for k in parsed if k not in done]
        known = await self.store.known_deliveries(lab, group, rest)
        dispatcher = self._groups.get((lab, group))
        if dispatcher is not None:
            dispatcher.wake.set()
        return len(done), [parsed[k] for k in rest if k not in known]


def _events_per_message(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("max_events_per_message must not be negative",
                              violations={"max_events_per_message": f"0 (= {DEFAULT_EVENTS_PER_MESSAGE}) to "
                                                                    f"{MAX_EVENTS_PER_MESSAGE}"})
    return min(requested or DEFAULT_EVENTS_PER_MESSAGE, MAX_EVENTS_PER_MESSAGE)


def _dur_us(d: Any) -> int:
    return d.seconds * 1_000_000 + d.nanos // 1000


@dataclass(eq=False)
class GroupDispatcher:
    """This process's share of one consumer group: claims new fires and redeliveries for its local members."""

    hub: FireHub
    row: Any
    read_lab: str | None
    members: dict[str, Subscriber] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _rr: int = 0

    def __post_init__(self) -> None:
        self.lab: str = self.row.lab
        self.name: str = self.row.name
        self.key = (self.lab, self.name)
        self.filter = FireFilter.from_json(self.row.filter)
        self.ack_deadline_us: int = self.row.ack_deadline_us
        self.max_attempts: int = self.row.max_attempts
        self.scan_pos: int = self.row.position_seq
        self.redelivered = 0
        self.dead_lettered = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"group-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add_member(self, capacity: int) -> tuple[str, Subscriber]:
        member = self.hub.new_member_id()
        sub = Subscriber(self.lab, self.filter, capacity, group=self.name)
        self.members[member] = sub
        self.wake.set()
        return member, sub

    async def remove_member(self, member: str) -> None:
        self.members.pop(member, None)
        with contextlib.suppress(Exception):
            await self.hub.store.release_member(self.lab, self.name, member)
        if not self.members:
            self.hub._drop_group(self)
            if self._task is not None:
                self._task.cancel()
        else:
            self.wake.set()

    async def delivered(self, seqs: Sequence[int]) -> None:
        await self.hub.store.mark_delivered(self.lab, self.name, seqs)

    def _pick(self, planned: Mapping[str, int] | None = None, avoid: str | None = None,
              ) -> tuple[str, Subscriber] | None:
        """Round robin over members with room in their buffer (less what is `planned` for them already),
        preferring not to hand a redelivery back to the member that let it lapse."""
        members = [m for m in self.members.items() if m[0] != avoid] or list(self.members.items())
        for i in range(len(members)):
            member, sub = members[(self._rr + i) % len(members)]
            if sub.room() - (planned or {}).get(member, 0) > 0:
                self._rr = (self._rr + i + 1) % len(members)
                return member, sub
        return None

    async def _run(self) -> None:
        last_persist = 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(1.0, self.ack_deadline_us / 4e6))
            self.wake.clear()
            try:
                await self._redeliver()
                await self._claim_new()
                if time.monotonic() - last_persist > 0.5:
                    await self.hub.store.advance_position(self.lab, self.name, self.scan_pos)
                    last_persist = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer group %s/%s dispatch failed; retrying", self.lab, self.name)
                await asyncio.sleep(0.5)

    async def _items(self, seqs: Sequence[int]) -> dict[int, FireItem]:
        return {r.seq: FireItem.from_row(r) for r in await self.hub.store.fires_by_seq(seqs)}

    async def _redeliver(self) -> None:
        room = sum(max(0, s.room()) for s in self.members.values())
        if room <= 0:
            return
        rows, dead = await self.hub.store.take_expired(self.lab, self.name, self.max_attempts, min(room, 1000))
        if dead:
            self.dead_lettered += dead
            DEAD_LETTERS.inc(dead)
        if not rows:
            return
        items = await self._items([r.seq for r in rows])
        assignments = []
        for r in rows:
            picked = self._pick(avoid=r.member)
            item = items.get(r.seq)
            if picked is None or item is None:
                continue
            member, sub = picked
            sub.offer(item, r.attempt)
            assignments.append((r.seq, member))
        self.redelivered += len(assignments)
        REDELIVERIES.inc(len(assignments))
        await self.hub.store.assign(self.lab, self.name, assignments, now_us() + self.ack_deadline_us)

    async def _claim_new(self) -> None:
        while self.scan_pos < self.hub.last_seq:
            room = sum(max(0, s.room()) for s in self.members.values())
            if room <= 0:
                return
            until = self.hub.last_seq
            async with self.hub.store.db.connect() as conn:
                rows = await self.hub.store.read_fires(conn, self.scan_pos, min(room, 1000), lab=self.read_lab,
                                                       targets=sorted(self.filter.targets), until_seq=until)
            items = [i for i in map(FireItem.from_row, rows) if self.filter.matches(i)]
            plan: list[tuple[FireItem, str, Subscriber]] = []
            planned: dict[str, int] = {}
            for item in items:
                picked = self._pick(planned)
                if picked is None:
                    break
                plan.append((item, *picked))
                planned[picked[0]] = planned.get(picked[0], 0) + 1
            won = await self.hub.store.claim(
                self.lab, self.name, [(i.seq, i.alarm_id, i.event.nominal_time.ToMicroseconds(), m)
                                      for i, m, _ in plan],
                now_us() + self.ack_deadline_us,
            )
            for item, _, sub in plan:
                if item.seq in won:
                    sub.offer(item)
            if len(plan) < len(items):
                # Members are full: stop before the first unplanned fire and come back when they drain.
                self.scan_pos = plan[-1][0].seq if plan else self.scan_pos
                return
            self.scan_pos = rows[-1].seq if len(rows) >= min(room, 1000) and rows else until


