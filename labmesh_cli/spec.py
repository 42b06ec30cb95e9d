"""Alarms from flat specs: the flags of ``labmesh alarm create`` and the rows of ``labmesh alarm import``.

A spec is a mapping of the columns below to strings (CSV cells, command-line values) or, from JSON lines, to
JSON values. Empty values are unset. Exactly one schedule column (``at``, ``in``, ``daily``, ``cron``, ``every``)
must be set.

=============== ==================================================================================================
name            alarm id (``feed-7``) or name (``alarms/feed-7``); empty = the server generates one
display_name    ``Feed incubator 7``
owner_email     ``ana@lab.org``
target          ``devices/incubator-7``
at              one-shot RFC 3339 instant, ``2025-03-01T07:00:00Z`` (without offset: read in ``time_zone``)
in              one-shot, this long from now: ``90s``, ``5m``, ``2h`` (``alarm create --in`` only)
daily           ``HH:MM`` or ``HH:MM:SS`` local time, with ``days`` (``mon,tue``, ``mon-fri``, ``weekdays``;
                empty = every day) and ``time_zone``
cron            5 or 6 field cron expression, with ``time_zone``
every           interval: ``90``, ``30s``, ``5m``, ``2h``, ``1d``, optionally ``anchor`` (RFC 3339)
time_zone       IANA zone of ``daily``/``cron`` (default: the server's TIMEZONE)
labels          ``k=v;k=v`` (JSON: an object)
payload         a JSON object (JSON: an object)
max_fires       stop after this many fires
jitter          spread fires by up to this duration (``30s``)
notify_owner    ``true``/``false``: mail owner_email on every fire
=============== ==================================================================================================
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from labmesh_cli.common import UsageError, format_time, parse_time
from servicekit.config import parse_bool, parse_duration

__all__ = ["COLUMNS", "SCHEDULE_COLUMNS", "alarm_from_spec", "describe_schedule", "parse_days", "parse_labels"]

SCHEDULE_COLUMNS = ("at", "in", "daily", "cron", "every")
COLUMNS = (
    "name", "display_name", "owner_email", "target", *SCHEDULE_COLUMNS, "days", "time_zone", "anchor", "labels",
    "payload", "max_fires", "jitter", "notify_owner",
)
#: Other spellings accepted for column names.
ALIASES = {"tz": "time_zone", "timezone": "time_zone", "id": "name", "alarm_id": "name", "email": "owner_email",
           "days_of_week": "days", "display": "display_name"}

_DAYS = {
    "mon": dayofweek_pb2.MONDAY, "tue": dayofweek_pb2.TUESDAY, "wed": dayofweek_pb2.WEDNESDAY,
    "thu": dayofweek_pb2.THURSDAY, "fri": dayofweek_pb2.FRIDAY, "sat": dayofweek_pb2.SATURDAY,
    "sun": dayofweek_pb2.SUNDAY,
}
_DAY_ORDER = list(_DAYS)
_DAY_SETS = {"weekdays": _DAY_ORDER[:5], "weekends": _DAY_ORDER[5:], "daily": _DAY_ORDER, "all": _DAY_ORDER}
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_ALARM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def normalize_column(name: str) -> str:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(key, key)


def alarm_from_spec(spec: Mapping[str, Any], *, now: float | None = None) -> pb.Alarm:
    """The ``Alarm`` a spec describes; :class:`UsageError` naming the column for anything malformed."""
    values = {normalize_column(k): v for k, v in spec.items() if not _empty(v)}
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise UsageError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    alarm = pb.Alarm()
    if "name" in values:
        alarm_id = str(values["name"]).removeprefix("alarms/")
        if not _ALARM_ID.fullmatch(alarm_id):
            raise UsageError(f"name: {values['name']!r} is not an alarm id (1-63 of [a-z0-9-], e.g. feed-7)")
        alarm.name = f"alarms/{alarm_id}"
    for column in ("display_name", "owner_email", "target"):
        if column in values:
            setattr(alarm, column, str(values[column]))
    kinds = [c for c in SCHEDULE_COLUMNS if c in values]
    if len(kinds) != 1:
        raise UsageError(
            "give exactly one schedule: at, in, daily, cron or every" + (f" (got {', '.join(kinds)})" if kinds else "")
        )
    kind = kinds[0]
    tz = str(values.get("time_zone", ""))
    if "days" in values and kind != "daily":
        raise UsageError("days only applies to a daily schedule")
    if "anchor" in values and kind != "every":
        raise UsageError("anchor only applies to an every (interval) schedule")
    if tz and kind in ("in", "every"):
        raise UsageError(f"a time zone does not apply to an {kind} schedule")
    schedule = alarm.schedule
    if kind == "at":
        schedule.at.CopyFrom(parse_time(str(values["at"]), tz or None, field="at"))
    elif kind == "in":
        seconds = _duration_seconds(values["in"], "in")
        schedule.at.FromNanoseconds(int(((now if now is not None else time.time()) + seconds) * 1e9))
    elif kind == "daily":
        schedule.daily.time_of_day.CopyFrom(_time_of_day(str(values["daily"])))
        if "days" in values:
            schedule.daily.days_of_week.extend(parse_days(values["days"]))
        schedule.daily.time_zone = tz
    elif kind == "cron":
        schedule.cron.expression = str(values["cron"]).strip()
        schedule.cron.time_zone = tz
    else:
        schedule.interval.every.CopyFrom(_duration(values["every"], "every"))
        if "anchor" in values:
            schedule.interval.anchor_time.CopyFrom(parse_time(str(values["anchor"]), None, field="anchor"))
    if "labels" in values:
        alarm.labels.update(parse_labels(values["labels"]))
    if "payload" in values:
        alarm.payload.CopyFrom(_payload(values["payload"]))
    if "max_fires" in values:
        try:
            alarm.max_fires = int(values["max_fires"])
        except (TypeError, ValueError):
            raise UsageError(f"max_fires: {values['max_fires']!r} is not an integer") from None
    if "jitter" in values:
        alarm.jitter.CopyFrom(_duration(values["jitter"], "jitter"))
    if "notify_owner" in values:
        flag = values["notify_owner"]
        try:
            alarm.notify_owner = flag if isinstance(flag, bool) else parse_bool(str(flag))
        except ValueError:
            raise UsageError(f"notify_owner: {flag!r} is not true or false") from None
    return alarm


def parse_days(value: Any) -> list[int]:
    """``mon,tue``, ``mon-fri``, ``weekdays``, ``sat sun`` or a list of those -> DayOfWeek values, in week order."""
    parts = value if isinstance(value, list) else re.split(r"[,;\s]+", str(value))
    chosen: set[str] = set()
    for part in (str(p).strip().lower() for p in parts):
        if not part:
            continue
        if part in _DAY_SETS:
            chosen.update(_DAY_SETS[part])
            continue
        first, _, last = part.partition("-")
        first, last = first[:3], (last or first)[:3]
        if first not in _DAYS or last not in _DAYS:
            raise UsageError(f"days: {part!r} is not a weekday (mon..sun, mon-fri, weekdays, weekends)")
        i, j = _DAY_ORDER.index(first), _DAY_ORDER.index(last)
        chosen.update(_DAY_ORDER[i : j + 1] if i <= j else _DAY_ORDER[i:] + _DAY_ORDER[: j + 1])
    return [_DAYS[d] for d in _DAY_ORDER if d in chosen]


def parse_labels(value: Any) -> dict[str, str]:
    """``k=v;k=v`` (also ``,``-separated), a list of ``k=v``, or a JSON object -> dict."""
    if isinstance(value, Mapping):
        return {str(k): _label_value(v) for k, v in value.items()}
    items = value if isinstance(value, list) else re.split(r"[;,]", str(value))
    labels: dict[str, str] = {}
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"labels: {item!r} is not key=value")
        labels[key.strip()] = val.strip()
    return labels


def describe_schedule(schedule: pb.Schedule) -> str:
    """A short human description: ``cron '0 7 * * *' Europe/Berlin``, ``daily 07:30 mon-fri``, ``every 5m``."""
    kind = schedule.WhichOneof("kind")
    if kind == "at":
        return f"at {format_time(schedule.at)}"
    if kind == "daily":
        t = schedule.daily.time_of_day
        text = f"daily {t.hours:02d}:{t.minutes:02d}" + (f":{t.seconds:02d}" if t.seconds else "")
        if schedule.daily.days_of_week:
            text += " " + _day_ranges(schedule.daily.days_of_week)
        return text + (f" {schedule.daily.time_zone}" if schedule.daily.time_zone else "")
    if kind == "cron":
        tz = f" {schedule.cron.time_zone}" if schedule.cron.time_zone else ""
        return f"cron '{schedule.cron.expression}'{tz}"
    if kind == "interval":
        seconds = schedule.interval.every.ToNanoseconds() / 1e9
        return f"every {_compact(seconds)}"
    return "-"


# --------------------------------------------------------------------------------------------------- helpers


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == [] or value == {}


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _duration_seconds(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError:
        raise UsageError(f"{field}: {value!r} is not a duration such as 90, 30s, 5m, 2h or 1d") from None


def _duration(value: Any, field: str) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromNanoseconds(round(_duration_seconds(value, field) * 1e9))
    return result


def _time_of_day(text: str) -> timeofday_pb2.TimeOfDay:
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59 or int(match.group(3) or 0) > 59:
        raise UsageError(f"daily: {text!r} is not a time of day HH:MM or HH:MM:SS (00:00 to 23:59:59)")
    return timeofday_pb2.TimeOfDay(hours=int(match.group(1)), minutes=int(match.group(2)),
                                   seconds=int(match.group(3) or 0))


def _payload(value: Any) -> struct_pb2.Struct:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"payload: not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise UsageError('payload: must be a JSON object, e.g. {"volume_ul": 250}')
    struct = struct_pb2.Struct()
    try:
        json_format.ParseDict(value, struct)
    except json_format.ParseError as exc:
        raise UsageError(f"payload: {exc}") from None
    return struct


def _day_ranges(days: Any) -> str:
    """``[1, 2, 3, 4, 5]`` -> ``mon-fri``; ``[1, 3, 6, 7]`` -> ``mon,wed,sat,sun``."""
    chosen = sorted({d for d in days if 1 <= d <= 7})
    parts: list[str] = []
    start = prev = chosen[0] if chosen else 0
    for day in [*chosen[1:], None]:
        if day is not None and day == prev + 1:
            prev = day
            continue
        name = _DAY_ORDER[start - 1]
        parts.append(name if start == prev else f"{name}-{_DAY_ORDER[prev - 1]}" if prev - start > 1
                     else f"{name},{_DAY_ORDER[prev - 1]}")
        if day is not None:
            start = prev = day
    return ",".join(parts)


def _compact(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
