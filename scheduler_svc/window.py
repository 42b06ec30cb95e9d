"""The in-memory lookahead window: only alarms due within the next LOOKAHEAD seconds live here.

A binary heap ordered by due time, with lazy deletion: replacing or removing an alarm only updates the dict, and
stale heap items are discarded when they surface. Memory is bounded by the window's capacity, never by the number of
stored alarms.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from scheduler_svc.schedules import Occurrence, Timing

NOT_COMPUTED = Occurrence(-1, -1)


@dataclass(slots=True, eq=False)
class Entry:
    """An alarm as the engine holds it: enough to fire it and compute its next occurrence, no payload."""

    alarm_pk: int
    shard: int
    lab: str
    alarm_id: str
    timing: Timing
    nominal_us: int
    due_us: int
    fire_count: int
    grace_us: int
    catch_up: str
    catch_up_limit: int
    # The occurrence after this one, computed ahead of time (at load) so a storm of fires does no schedule
    # math in the hot path. None = the schedule ends after this occurrence.
    following: Occurrence | None = field(default=NOT_COMPUTED)


class Window:
    def __init__(self) -> None:
        # (due, tie-breaker, entry): the counter keeps two items of the same alarm and due time (a stale one
        # and its replacement) from ever comparing Entry objects.
        self._heap: list[tuple[int, int, Entry]] = []
        self._entries: dict[int, Entry] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, alarm_pk: int) -> bool:
        return alarm_pk in self._entries

    def get(self, alarm_pk: int) -> Entry | None:
        return self._entries.get(alarm_pk)

    def put(self, entry: Entry) -> None:
        """Add or replace the alarm's entry."""
        self._entries[entry.alarm_pk] = entry
        heapq.heappush(self._heap, (entry.due_us, next(self._order), entry))

    def remove(self, alarm_pk: int) -> None:
        self._entries.pop(alarm_pk, None)

    def drop_shards(self, shards: Iterable[int]) -> int:
        shards = set(shards)
        victims = [pk for pk, e in self._entries.items() if e.shard in shards]
        for pk in victims:
            del self._entries[pk]
        return len(victims)

    def _discard_stale(self) -> None:
        heap, entries = self._heap, self._entries
        while heap and entries.get(heap[0][2].alarm_pk) is not heap[0][2]:
            heapq.heappop(heap)
        # Lazy deletion must not let the heap grow without bound under churn (pause/resume storms).
        if len(heap) > 4 * len(entries) + 1024:
            self._heap = [(e.due_us, next(self._order), e) for e in entries.values()]
            heapq.heapify(self._heap)

    def next_due(self) -> int | None:
        self._discard_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_us: int, limit: int) -> list[Entry]:
        """Remove and return up to `limit` entries due at or before `now_us`, earliest first."""
        out: list[Entry] = []
        heap, entries = self._heap, self._entries
        while heap and len(out) < limit:
            due, _, entry = heap[0]
            pk = entry.alarm_pk
            if entries.get(pk) is not entry:
                heapq.heappop(heap)
                continue
            if due > now_us:
                break
            heapq.heappop(heap)
            del entries[pk]
            out.append(entry)
        return out

    def clear(self) -> None:
        self._heap.clear()
        self._entries.clear()
