"""How an alarm's timing is stored: the schedule as small JSON, turned back into `schedules.Timing`.

Schedules are structured data (kind, zone, wall time or rule), never pickles, so they survive upgrades and can be
read in psql. Decoding is cached by content because a window reload decodes tens of thousands of rows whose
schedules repeat (every `0 7 * * *` in one zone is the same object).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from scheduler_svc.schedules import (
    AtSchedule,
    CronSchedule,
    DailySchedule,
    GapPolicy,
    IntervalSchedule,
    Schedule,
    Timing,
)


def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    match schedule:
        case AtSchedule(at_us=at_us):
            return {"at": at_us}
        case DailySchedule():
            return {
                "daily": {
                    "time": [schedule.hour, schedule.minute, schedule.second],
                    "days": sorted(schedule.days_of_week),
                    "tz": schedule.time_zone,
                }
            }
        case CronSchedule(expression=expression, time_zone=time_zone):
            return {"cron": {"expr": expression, "tz": time_zone}}
        case IntervalSchedule(every_us=every_us, anchor_us=anchor_us):
            return {"interval": {"every": every_us, "anchor": anchor_us}}
    raise TypeError(f"not a schedule: {schedule!r}")


def schedule_json_text(schedule: Schedule) -> str:
    """The stored JSON as text (for COPY), cheap for one-shots and cached for the schedules that repeat."""
    if isinstance(schedule, AtSchedule):
        return f'{{"at":{schedule.at_us}}}'
    return _schedule_text(schedule)


@functools.lru_cache(maxsize=65536)
def _schedule_text(schedule: Schedule) -> str:
    return json.dumps(schedule_to_json(schedule), separators=(",", ":"))


@functools.lru_cache(maxsize=65536)
def _schedule_from_key(key: str) -> Schedule:
    data = json.loads(key)
    if "at" in data:
        return AtSchedule(int(data["at"]))
    if "daily" in data:
        d = data["daily"]
        hour, minute, second = d["time"]
        return DailySchedule(hour, minute, second, frozenset(d["days"]), d["tz"])
    if "cron" in data:
        return CronSchedule(data["cron"]["expr"], data["cron"]["tz"])
    if "interval" in data:
        return IntervalSchedule(int(data["interval"]["every"]), int(data["interval"]["anchor"]))
    raise ValueError(f"unknown stored schedule {key!r}")


def schedule_from_json(data: Mapping[str, Any] | str) -> Schedule:
    key = data if isinstance(data, str) else json.dumps(data, sort_keys=True, separators=(",", ":"))
    return _schedule_from_key(key)


def timing_from_row(row: Any) -> Timing:
    """The Timing of a stored alarm row (anything with the alarm columns as attributes)."""
    return Timing(
        schedule=schedule_from_json(row.schedule),
        start_us=row.start_us,
        end_us=row.end_us,
        max_fires=row.max_fires,
        gap_policy=GapPolicy[row.gap_policy],
        jitter_us=row.jitter_us,
        jitter_seed=f"{row.lab}/{row.alarm_id}",
    )
