"""The lookahead window's heap: replacement, lazy deletion, order."""

from __future__ import annotations

from scheduler_svc.schedules import AtSchedule, Timing
from scheduler_svc.window import Entry, Window


def entry(pk: int, due: int) -> Entry:
    return Entry(alarm_pk=pk, shard=0, lab="default", alarm_id=f"a{pk}", timing=Timing(AtSchedule(due)),
                 nominal_us=due, due_us=due, fire_count=0, grace_us=0, catch_up="LATEST", catch_up_limit=1)


def test_replacing_an_entry_with_the_same_due_time_keeps_one() -> None:
    window = Window()
    window.put(entry(1, 100))
    window.put(entry(1, 100))  # pause + resume re-adds the same occurrence
    window.put(entry(2, 100))
    assert len(window) == 2
    assert [e.alarm_pk for e in window.pop_due(100, 10)] == [1, 2]
    assert window.next_due() is None


def test_removed_and_moved_entries_do_not_fire() -> None:
    window = Window()
    for pk in range(5):
        window.put(entry(pk, 100 + pk))
    window.remove(1)
    window.put(entry(3, 500))  # moved later
    assert [e.alarm_pk for e in window.pop_due(200, 10)] == [0, 2, 4]
    assert window.next_due() == 500
    assert window.drop_shards([0]) == 1 and len(window) == 0
