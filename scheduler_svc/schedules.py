"""Pure schedule math for the alarm scheduler: given what an alarm says about time, when does it fire next?

No gRPC, no database, no protobuf: the engine, the API (PreviewSchedule, validation) and misfire catch-up all call
in here, so the answers must be the same everywhere and cheap enough to compute on every fire.

Conventions, and why:

* Every instant at the interface is an int of microseconds since the Unix epoch, UTC, the representation the store
  uses (`*_us` columns). Datetimes only exist inside, for wall-clock arithmetic in a zone.
* Wall-clock schedules (daily, cron) are evaluated on NAIVE local wall-clock times and mapped to UTC here, with the
  zone's rules from `zoneinfo`. croniter's own time-zone handling is not used: DST handling is the part schedulers get
  wrong most often (APScheduler #115/#529/#606, Kubernetes #121594), so the rule lives in one place we can test.
* DST, decided once and for all (anchors.md, Schedulers lesson 7):
  - Spring-forward gap: a wall time that does not exist that day fires shifted forward by the length of the gap
    (02:30 on a day whose clocks jump 02:00->03:00 fires at 03:30), the same instant as reading the wall time with
    the offset in force before the jump (PEP 495 fold=0). With `GapPolicy.SKIP` it does not fire at all. A lab
    alarm set for 02:30 usually still wants to run that night; SKIP exists for jobs that must not run off-time.
  - Fall-back fold: a wall time that occurs twice fires ONCE, at its first occurrence (fold=0). For a cron such as
    `*/15 * * * *` this means each wall-clock time in the repeated hour fires once, during the first pass; the second
    pass through the repeated hour fires nothing. The alternative (firing on both passes) is what users of most
    schedulers report as a double run, and "every 15 minutes" that is suddenly every 15 minutes twice is never what
    a lab meant by a wall-clock rule. Use an interval schedule for "every 15 minutes of elapsed time".
  - The fire times are the SET of instants the rules produce, in increasing order: a gap-shifted time that lands on
    an instant another wall time also produces (cron `30 2,3 * * *`: 02:30 -> 03:30 = the real 03:30) fires once.
* Jitter is deterministic (a stable hash of the alarm's identity and the nominal time), so every replica computes the
  same due time and a restart does not move an alarm. It is kept below the next occurrence so jitter can never
  reorder or merge two occurrences of one alarm.
* Iteration is bounded everywhere: a schedule that can never fire again returns None instead of spinning.
"""

from __future__ import annotations

import copy
import enum
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "AtSchedule",
    "Between",
    "CronSchedule",
    "DailySchedule",
    "GapPolicy",
    "IntervalSchedule",
    "Occurrence",
    "Schedule",
    "ScheduleError",
    "Timing",
    "jitter_us",
    "latest_between",
    "next_occurrence",
    "occurrences",
    "occurrences_between",
    "validate",
]


class ScheduleError(ValueError):
    """A timing the scheduler cannot honour, naming the request field at fault.

    The API layer turns `.field` into a BadRequest field violation, so the caller sees which part of the request to
    fix instead of a generic "invalid schedule".
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------------------------
# The data: small frozen values, hashable so compiled forms and results can be cached by content.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtSchedule:
    """Fires once, at an absolute instant (UTC microseconds)."""

    at_us: int


@dataclass(frozen=True, slots=True)
class DailySchedule:
    """A local wall-clock time of day in an IANA zone, on some ISO weekdays (1=Mon..7=Sun; empty = every day).

    Stored as wall time plus zone, never as a UTC time: "07:00 in Berlin" is 06:00Z in winter and 05:00Z in summer.
    """

    hour: int
    minute: int
    second: int
    days_of_week: frozenset[int]
    time_zone: str

    def __post_init__(self) -> None:
        # Callers building from JSON or protobuf naturally pass lists or sets; the value must stay hashable for caching.
        if not isinstance(self.days_of_week, frozenset):
            object.__setattr__(self, "days_of_week", frozenset(self.days_of_week))


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron rule on local wall-clock time in an IANA zone.

    Five fields (minute hour day-of-month month day-of-week), or six with SECONDS FIRST (the Quartz/Spring order, the
    one people expect from "sub-minute cron"). Day-of-month and day-of-week combine with OR when both are restricted
    (POSIX), as croniter reads it: a literal `*` is unrestricted, `*/2` is not (unlike Vixie cron), and a field
    listing every value counts as `*` only when the other day field contains a `*`. An equal range such
    as `1-1` is the one value, as in every cron (croniter alone would read it as the whole field). Names (`mon-fri`,
    `jan`), `L`, `W`, `#` and the @yearly/@monthly/@weekly/@daily/@midnight/@hourly aliases are accepted.
    """

    expression: str
    time_zone: str


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every `every_us` of elapsed time from `anchor_us` (anchor + k*every, k >= 0): pure UTC, DST cannot touch it."""

    every_us: int
    anchor_us: int


Schedule = AtSchedule | DailySchedule | CronSchedule | IntervalSchedule


class GapPolicy(enum.Enum):
    """What a wall time that does not exist (the spring-forward gap) does."""

    SHIFT_FORWARD = "SHIFT_FORWARD"  # fire later by the length of the gap (02:30 -> 03:30)
    SKIP = "SKIP"  # do not fire that day


@dataclass(frozen=True, slots=True)
class Timing:
    """Everything about WHEN an alarm fires, and nothing else (no payload, no delivery), so it can be cached and
    compared by value.

    `start_us`/`end_us` bound the nominal times (inclusive). `max_fires` = 0 means unlimited. `jitter_seed` is the
    alarm's identity (e.g. "lab/alarm_id"): it, not the process, decides the jitter, so replicas agree.
    """

    schedule: Schedule
    start_us: int | None = None
    end_us: int | None = None
    max_fires: int = 0
    gap_policy: GapPolicy = GapPolicy.SHIFT_FORWARD
    jitter_us: int = 0
    jitter_seed: str = ""


class Occurrence(NamedTuple):
    """One occurrence: `nominal_us` is its identity (unique per alarm in the fire log), `due_us` when to deliver it."""

    nominal_us: int
    due_us: int


class Between(NamedTuple):
    """Occurrences in a window, capped; `more` says the cap cut some off (so catch-up can record that, not lose it)."""

    occurrences: list[Occurrence]
    more: bool


# --------------------------------------------------------------------------------------------------------------
# Time-zone arithmetic.
# --------------------------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_ZERO = timedelta(0)
# How far back to look for a spring-forward whose gap the current instant may still be inside. It must exceed the
# longest gap in the tz database: Pacific/Apia (2011-12-30) and Pacific/Kwajalein (1993-08-21) skipped a whole day.
# It assumes a zone never changes its offset twice within that span, which holds for every zone in tzdata.
_LOOKBACK_US = 26 * 3600 * 1_000_000
# Keep a margin from datetime's year 1..9999 range so offsets and the look-back never overflow.
_MIN_US = (datetime(1, 1, 5) - _EPOCH) // _US
_MAX_US = (datetime(9999, 12, 25) - _EPOCH) // _US
# Candidate wall times examined per call. A call normally needs one or two; gaps add one or two each. The bound only
# exists so that a pathological rule ends in None instead of a hang.
_MAX_STEPS = 64
_ISO_DAYS = frozenset(range(1, 8))


@functools.cache
def _zone(name: str) -> ZoneInfo:
    """ZoneInfo by name, cached: there are only a few hundred zones and a lookup per fire adds up at 100k fires.

    Failures are not cached (functools caches do not cache exceptions), so bad input cannot grow the cache.
    """
    return ZoneInfo(name)


def _zone_or_error(name: object, field: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ScheduleError(field, "a time zone is required (an IANA name such as Europe/Berlin)")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # ValueError: malformed keys such as "../etc/passwd"; ZoneInfoNotFoundError: well-formed but unknown.
        raise ScheduleError(field, f"unknown IANA time zone {name!r}") from None


def _local(zone: ZoneInfo, us: int) -> datetime:
    """The aware local time of a UTC instant; `fold` is 1 on the second pass through a repeated hour."""
    return zone.fromutc((_EPOCH + timedelta(microseconds=us)).replace(tzinfo=zone))


def _resolve(zone: ZoneInfo, wall: datetime) -> tuple[int, timedelta]:
    """Map a naive wall time to (UTC microseconds, gap length).

    The instant is the fold=0 reading, which is exactly the DST policy: in a fold it is the first occurrence, in a
    gap it uses the offset from before the jump, i.e. the wall time shifted forward by the gap. The gap length is
    positive only for a wall time that does not exist. Comparing the fold=0 and fold=1 offsets is the PEP 495 way
    to ask the same question as "does fold=0 -> UTC -> local round-trip?", at two offset look-ups instead of a full
    round trip: in a gap fold=1 takes the later, larger offset; in a fold it takes the later, smaller one.
    """
    off0 = wall.replace(tzinfo=zone, fold=0).utcoffset()
    off1 = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert off0 is not None and off1 is not None  # a ZoneInfo always has an offset
    return (wall - off0 - _EPOCH) // _US, off1 - off0


def _in_gap(zone: ZoneInfo, wall: datetime) -> bool:
    return _resolve(zone, wall)[1] > _ZERO


def _in_fold(zone: ZoneInfo, wall: datetime) -> bool:
    return _resolve(zone, wall)[1] < _ZERO


def _boundary(pred: Callable[[datetime], bool], lo: datetime, hi: datetime) -> datetime:
    """The first wall time in (lo, hi] where `pred` turns false, given pred(lo) is true; whole seconds.

    Used to find where a gap or fold ends without reading private zoneinfo transition tables. Transitions in the
    tz database fall on whole seconds, and lo is always a whole second, so second resolution is exact and takes
    ~12 probes for an hour-long gap. If pred is still true at hi (two transitions closer than hi - lo, which no
    zone has) hi is returned, which errs towards skipping candidates that could not fire anyway.
    """
    lo_s, hi_s = 0, int((hi - lo) // _SECOND)
    if pred(hi):
        return hi
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if pred(lo + timedelta(seconds=mid)):
            lo_s = mid
        else:
            hi_s = mid
    return lo + timedelta(seconds=hi_s)


# --------------------------------------------------------------------------------------------------------------
# Wall-clock rules: each yields the naive local wall times it matches, in order. DST is handled above them, once.
# --------------------------------------------------------------------------------------------------------------


class _DailyRule:
    """Wall times of a daily schedule. Sparse (one a day), so no gap skipping is needed."""

    __slots__ = ("days", "time_of_day")
    dense = False

    def __init__(self, schedule: DailySchedule) -> None:
        try:
            self.time_of_day = time(schedule.hour, schedule.minute, schedule.second)
        except (ValueError, TypeError) as exc:
            raise ScheduleError("schedule.daily.time_of_day", str(exc)) from None
        # Empty means every day. Values outside 1..7 are refused by validate(); if one slips through unvalidated it
        # must not make the weekday search below spin, so it is dropped (and a set of only such values never fires).
        self.days: frozenset[int] | None = frozenset(d for d in schedule.days_of_week if d in _ISO_DAYS)
        if not schedule.days_of_week or self.days == _ISO_DAYS:
            self.days = frozenset()
        elif not self.days:
            self.days = None

    def next_after(self, wall: datetime) -> datetime | None:
        if self.days is None:
            return None
        try:
            candidate = datetime.combine(wall.date(), self.time_of_day)
            if candidate <= wall:
                candidate += _DAY
            if self.days:
                # At most six steps: the set holds at least one ISO weekday and weeks repeat.
                while candidate.isoweekday() not in self.days:
                    candidate += _DAY
            return candidate
        except OverflowError:
            return None


class _CronRule:
    """Wall times of a cron expression, from croniter iterating NAIVE datetimes (pure calendar arithmetic).

    Dense (a cron may match every second of a gap), so the DST layer jumps over a gap instead of walking it.
    """

    __slots__ = ("_template",)
    dense = True

    def __init__(self, template: croniter) -> None:
        self._template = template

    def next_after(self, wall: datetime) -> datetime | None:
        # A shallow copy keeps the cached, parsed template immutable (croniter keeps its position on the object)
        # and costs far less than re-parsing. Candidates are whole seconds, so "after wall" equals "after wall
        # truncated to the second"; truncating also keeps sub-second floats away from croniter's float timestamps.
        it = copy.copy(self._template)
        try:
            return it.get_next(datetime, start_time=wall.replace(microsecond=0))
        except (CroniterBadDateError, OverflowError, ValueError):
            return None


_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


_EQUAL_RANGE = re.compile(r"^(\w+)-\1(?:/\d+)?$", re.IGNORECASE | re.ASCII)


@functools.lru_cache(maxsize=4096)
def _compile_cron(expression: str) -> croniter:
    """Parse once per distinct expression: parsing costs more than a next-match, and alarms share expressions.

    Rejects what croniter rejects, plus what croniter accepts but the scheduler must not: seven-field (year) forms,
    `R` (random: every replica and every restart would pick a different time) and `H` (hashed: depends on an id we
    would have to thread through; per-alarm spreading is what jitter is for). A rule that parses but never matches
    is left to `validate` (`_check_cron_fires`); iteration over it simply finds nothing and returns None.
    """
    field = "schedule.cron.expression"
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError(field, "a cron expression is required")
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in _CRON_ALIASES:
            raise ScheduleError(field, f"unknown cron alias {text!r} (use one of {', '.join(_CRON_ALIASES)})")
        text = _CRON_ALIASES[text.lower()]
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            field,
            f"{expression!r} has {len(fields)} fields; use 5 (minute hour day month weekday) or 6 with seconds first",
        )
    for part in fields:
        # No month or weekday name starts with h or r, so this catches exactly croniter's H and R forms.
        if any(item[:1] in ("h", "r") for item in part.lower().split(",")):
            raise ScheduleError(field, f"{part!r}: hashed (H) and random (R) fields are not deterministic; use jitter")
    # croniter reads an equal range ("1-1", "jan-jan", "5-5/2") as the WHOLE field; in standard cron it is the one
    # value. Someone who writes "1-1" for January must not get every month, so such items are rewritten to the value.
    fields = [",".join(_EQUAL_RANGE.sub(r"\1", item) for item in part.split(",")) for part in fields]
    try:
        return croniter(" ".join(fields), _EPOCH, ret_type=datetime, second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ScheduleError(field, f"invalid cron expression {expression!r}: {exc}") from None


def _check_cron_fires(expression: str) -> None:
    """Reject a rule that parses but can never match a date (`0 0 30 2 *`), so an alarm is never accepted that
    would silently never fire. A rule without a year field repeats within 28 years (the weekday/leap-year cycle)
    and croniter searches 50 years before giving up, so one probe from any point separates "never" from "rarely".
    """
    try:
        copy.copy(_compile_cron(expression)).get_next(datetime, start_time=datetime(2000, 1, 1))
    except (CroniterBadDateError, OverflowError, ValueError):
        raise ScheduleError("schedule.cron.expression", f"{expression!r} never matches any date") from None


@dataclass(frozen=True, slots=True)
class _Compiled:
    zone: ZoneInfo
    rule: _DailyRule | _CronRule


@functools.lru_cache(maxsize=65536)
def _compile(schedule: DailySchedule | CronSchedule) -> _Compiled:
    """The zone and wall-clock rule of a schedule, cached by value (a storm of `0 7 * * *` compiles once)."""
    if isinstance(schedule, DailySchedule):
        return _Compiled(_zone_or_error(schedule.time_zone, "schedule.daily.time_zone"), _DailyRule(schedule))
    return _Compiled(
        _zone_or_error(schedule.time_zone, "schedule.cron.time_zone"),
        _CronRule(_compile_cron(schedule.expression)),
    )


def _zoned_next(zone: ZoneInfo, rule: _DailyRule | _CronRule, skip_gaps: bool, after_us: int) -> int | None:
    """The smallest instant > after_us produced by mapping the rule's wall times to UTC under the DST policy.

    Why this is not just "next wall time after the local time of after_us": the mapping from wall time to instant
    is increasing except across a gap, where a gap-shifted wall time (02:30 -> 03:30) lands after real wall times
    that follow it (03:00). So the search keeps the best gap-shifted instant seen and stops at the first existing
    wall time past after_us: every later wall time maps later still. Two starting corrections make it exact:

    * after_us on the second pass of a repeated hour: wall times up to the end of the fold already fired (first
      pass), so the search starts where the fold ends rather than walking the hour.
    * after_us shortly after a spring-forward: a gap wall time EARLIER than after_us's wall time can still map
      after it (02:30 -> 03:30 when after is 03:10), so the search starts inside the gap.

    `floor` is the last wall time that, if it exists, certainly maps to <= after_us; existing candidates at or
    before it are skipped in one jump, so dense crons never walk an hour second by second.
    """
    if after_us > _MAX_US:
        return None
    after_us = max(after_us, _MIN_US)
    loc = _local(zone, after_us)
    floor = loc.replace(tzinfo=None, fold=0)
    start = floor
    if loc.fold:
        fold_len = loc.replace(fold=0).utcoffset() - loc.utcoffset()
        lo = floor.replace(microsecond=0)
        start = floor = _boundary(lambda w: _in_fold(zone, w), lo, lo + fold_len) - _US
    else:
        offset = loc.utcoffset()
        earlier = _local(zone, after_us - _LOOKBACK_US).utcoffset()
        if earlier < offset:
            in_gap_wall = floor - (offset - earlier)
            if _in_gap(zone, in_gap_wall):
                start = in_gap_wall

    best: int | None = None
    wall = rule.next_after(start)
    for _ in range(_MAX_STEPS):
        if wall is None:
            return best
        utc_us, gap = _resolve(zone, wall)
        if gap > _ZERO:
            if not skip_gaps and utc_us > after_us and (best is None or utc_us < best):
                best = utc_us
            if rule.dense:
                # Later wall times in the same gap map later than this one: jump to the gap's end.
                gap_end = _boundary(lambda w: _in_gap(zone, w), wall, wall + gap)
                wall = rule.next_after(max(gap_end - _US, floor))
            else:
                wall = rule.next_after(max(wall, floor))
        elif utc_us > after_us:
            return utc_us if best is None or utc_us < best else best
        else:
            wall = rule.next_after(max(wall, floor))
    return None  # gave up: documented bound, never reached by a schedule that fires


@functools.lru_cache(maxsize=65536)
def _zoned_next_cached(schedule: DailySchedule | CronSchedule, skip_gaps: bool, after_us: int) -> int | None:
    """Cached by (schedule, policy, instant): when 100,000 alarms share `0 7 * * *` in one zone they fire at the
    same instant and ask the same question; it is answered once."""
    compiled = _compile(schedule)
    try:
        return _zoned_next(compiled.zone, compiled.rule, skip_gaps, after_us)
    except OverflowError:  # wall times at the end of year 9999: nothing representable follows
        return None


def _raw_next(schedule: Schedule, gap_policy: GapPolicy, after_us: int) -> int | None:
    """The schedule's first nominal instant > after_us, ignoring start/end/max_fires."""
    kind = type(schedule)
    if kind is IntervalSchedule:
        every, anchor = schedule.every_us, schedule.anchor_us
        if after_us < anchor:
            return anchor
        return anchor + ((after_us - anchor) // every + 1) * every
    if kind is AtSchedule:
        at = schedule.at_us
        return at if at > after_us else None
    if kind is DailySchedule or kind is CronSchedule:
        return _zoned_next_cached(schedule, gap_policy is GapPolicy.SKIP, after_us)
    raise ScheduleError("schedule", f"unknown schedule kind {kind.__name__}")


# --------------------------------------------------------------------------------------------------------------
# The interface.
# --------------------------------------------------------------------------------------------------------------


def _int_field(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(field, f"must be an integer, got {value!r}")
    return value


def validate(timing: Timing) -> None:
    """Reject a timing the engine could not honour, naming the field, before it is stored.

    Everything here would otherwise surface later as an alarm that never fires or fires at a surprising time,
    which is worse than an error at creation: unknown zones, out-of-range times, impossible cron rules.
    """
    schedule = timing.schedule
    if isinstance(schedule, AtSchedule):
        _int_field(schedule.at_us, "schedule.at")
    elif isinstance(schedule, DailySchedule):
        _zone_or_error(schedule.time_zone, "schedule.daily.time_zone")
        field = "schedule.daily.time_of_day"
        for name, value, top in (
            ("hour", schedule.hour, 23),
            ("minute", schedule.minute, 59),
            ("second", schedule.second, 59),
        ):
            if not 0 <= _int_field(value, field) <= top:
                raise ScheduleError(field, f"{name} must be 0..{top}, got {value}")
        bad = sorted(
            (d for d in schedule.days_of_week if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7),
            key=repr,
        )
        if bad:
            raise ScheduleError("schedule.daily.days_of_week", f"ISO weekdays are 1 (Mon)..7 (Sun), got {bad}")
    elif isinstance(schedule, CronSchedule):
        _zone_or_error(schedule.time_zone, "schedule.cron.time_zone")
        _check_cron_fires(schedule.expression)
    elif isinstance(schedule, IntervalSchedule):
        if _int_field(schedule.every_us, "schedule.interval.every") <= 0:
            raise ScheduleError("schedule.interval.every", f"must be positive, got {schedule.every_us} us")
        _int_field(schedule.anchor_us, "schedule.interval.anchor")
    else:
        raise ScheduleError("schedule", "one of at, daily, cron or interval is required")

    if timing.start_us is not None:
        _int_field(timing.start_us, "start_time")
    if timing.end_us is not None:
        _int_field(timing.end_us, "end_time")
        if timing.start_us is not None and timing.end_us < timing.start_us:
            raise ScheduleError("end_time", "must not be before start_time")
    if _int_field(timing.max_fires, "max_fires") < 0:
        raise ScheduleError("max_fires", f"must be >= 0 (0 = unlimited), got {timing.max_fires}")
    if not isinstance(timing.gap_policy, GapPolicy):
        raise ScheduleError("gap_policy", f"unknown gap policy {timing.gap_policy!r}")
    if _int_field(timing.jitter_us, "jitter") < 0:
        raise ScheduleError("jitter", f"must be >= 0, got {timing.jitter_us} us")


def jitter_us(timing: Timing, nominal_us: int, next_nominal_us: int | None) -> int:
    """Deterministic jitter in [0, jitter), and below the gap to the next occurrence.

    Spreads a "07:00 local" surge without randomness: blake2b of (seed, nominal) is the same on every replica, every
    restart and every Python version (built-in hash() is salted per process), so the due time is reproducible and
    the same occurrence never gets two due times. The range is narrowed (not clamped) to the gap to the next
    occurrence so nominal + jitter < next_nominal, which keeps one alarm's occurrences in order, while keeping the
    spread uniform instead of piling up at the cap. The next occurrence is the schedule's, ignoring end/max_fires,
    so editing those never moves an already-computed due time.
    """
    width = timing.jitter_us
    if next_nominal_us is not None:
        width = min(width, next_nominal_us - nominal_us)
    if width <= 1:
        return 0
    digest = hashlib.blake2b(f"{timing.jitter_seed}\x00{nominal_us}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % width


def next_occurrence(timing: Timing, after_us: int, fires_so_far: int = 0) -> Occurrence | None:
    """The first occurrence with nominal time strictly after `after_us`, or None once the schedule is exhausted.

    Strictly after, so that passing the nominal time just fired yields the following one and an occurrence is never
    produced twice. start/end bound the nominal time (inclusive); max_fires counts `fires_so_far`.
    Raises ScheduleError for an unknown zone or unparseable cron (call `validate` first for a friendlier path).
    """
    if timing.max_fires and fires_so_far >= timing.max_fires:
        return None
    start = timing.start_us
    if start is not None and start - 1 > after_us:
        after_us = start - 1
    nominal = _raw_next(timing.schedule, timing.gap_policy, after_us)
    if nominal is None:
        return None
    end = timing.end_us
    if end is not None and nominal > end:
        return None
    if timing.jitter_us <= 0:
        return Occurrence(nominal, nominal)
    following = _raw_next(timing.schedule, timing.gap_policy, nominal)
    return Occurrence(nominal, nominal + jitter_us(timing, nominal, following))


def occurrences(timing: Timing, after_us: int, limit: int, fires_so_far: int = 0) -> list[Occurrence]:
    """The next `limit` occurrences after `after_us` (PreviewSchedule, and the engine's look-ahead)."""
    out: list[Occurrence] = []
    while len(out) < limit:
        occ = next_occurrence(timing, after_us, fires_so_far + len(out))
        if occ is None:
            break
        out.append(occ)
        after_us = occ.nominal_us
    return out


def occurrences_between(timing: Timing, after_us: int, until_us: int, limit: int, fires_so_far: int = 0) -> Between:
    """Occurrences with nominal time in (after_us, until_us], at most `limit`, for misfire catch-up after downtime.

    Capped because a per-second cron after a day of downtime is 86,400 occurrences; `more` tells the caller that
    the cap cut some off, so it can record the loss instead of it being silent (anchors.md lesson 6).
    """
    out: list[Occurrence] = []
    while True:
        occ = next_occurrence(timing, after_us, fires_so_far + len(out))
        if occ is None or occ.nominal_us > until_us:
            return Between(out, False)
        if len(out) >= limit:
            return Between(out, True)
        out.append(occ)
        after_us = occ.nominal_us


def latest_between(timing: Timing, after_us: int, until_us: int, fires_so_far: int = 0) -> Occurrence | None:
    """The LAST occurrence with nominal in (after_us, until_us], for the "latest" catch-up mode.

    Walking forward through a long downtime costs one step per missed occurrence; instead this gallops back from
    until_us and bisects, O(log(span)) next-occurrence calls whatever the density. With max_fires the answer depends
    on how many occurrences precede it, so that case walks forward, at most the remaining fires.
    """
    if until_us <= after_us:
        return None
    if timing.max_fires:
        remaining = timing.max_fires - fires_so_far
        if remaining <= 0:
            return None
        found = occurrences_between(timing, after_us, until_us, remaining, fires_so_far).occurrences
        return found[-1] if found else None
    first = next_occurrence(timing, after_us)
    if first is None or first.nominal_us > until_us:
        return None
    # Invariant: an occurrence exists in (lo, until]; none exists in (hi, until].
    lo, hi, width = after_us, until_us, 1_000_000
    while hi - width > lo:
        probe = next_occurrence(timing, hi - width)
        if probe is not None and probe.nominal_us <= until_us:
            lo = hi - width
            break
        hi -= width
        width *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probe = next_occurrence(timing, mid)
        if probe is not None and probe.nominal_us <= until_us:
            lo = mid
        else:
            hi = mid
    return next_occurrence(timing, lo)
