"""Tests for scheduler_svc.schedules: exact DST cases, brute-force property tests, and the plain semantics.

The DST expectations are checked against references written differently from the implementation: the brute force
walks wall-clock days/minutes and classifies each with a zoneinfo round trip (fold=0 -> UTC -> local), as the
policy is worded, while the implementation searches forward with offset comparisons and gap/fold jumps.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from scheduler_svc import schedules as S
from scheduler_svc.schedules import (
    AtSchedule,
    Between,
    CronSchedule,
    DailySchedule,
    GapPolicy,
    IntervalSchedule,
    Occurrence,
    ScheduleError,
    Timing,
    jitter_us,
    latest_between,
    next_occurrence,
    occurrences,
    occurrences_between,
    validate,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# Multiply the property tests' example counts for a soak run: SCHEDULES_SOAK=50 python3 -m pytest ...
SOAK = int(os.environ.get("SCHEDULES_SOAK", "1"))
LA = "America/Los_Angeles"
BERLIN = "Europe/Berlin"
DST_ZONES = [LA, BERLIN, "Australia/Lord_Howe", "America/Santiago", "Pacific/Apia"]
ZONES = [*DST_ZONES, "Asia/Kolkata", "UTC"]


def utc_us(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def to_local(us: int, zone: str) -> datetime:
    return (EPOCH + timedelta(microseconds=us)).astimezone(ZoneInfo(zone))


def local_us(zone: str, *args: int, fold: int = 0) -> int:
    return (datetime(*args, tzinfo=ZoneInfo(zone), fold=fold) - EPOCH) // timedelta(microseconds=1)


def offset_us(zone: str, us: int) -> int:
    return to_local(us, zone).utcoffset() // timedelta(microseconds=1)


@functools.cache
def transitions(zone: str, year: int) -> tuple[tuple[int, int, int], ...]:
    """(instant, offset before, offset after) of every offset change in a UTC year, found by sampling every 6 hours
    and bisecting to the second. Independent of the implementation's own gap/fold detection."""
    out = []
    t, end = utc_us(year, 1, 1), utc_us(year + 1, 1, 1)
    step = 6 * HOUR
    prev = offset_us(zone, t)
    while t < end:
        nxt = offset_us(zone, t + step)
        if nxt != prev:
            lo, hi = t, t + step  # offset(lo) == prev, offset(hi) == nxt
            while hi - lo > SECOND:
                mid = (lo + hi) // 2 // SECOND * SECOND
                if mid <= lo:
                    break
                if offset_us(zone, mid) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, prev, nxt))
            prev = nxt
        t += step
    return tuple(out)


def round_trip(zone: str, wall: datetime) -> tuple[int, bool]:
    """The fold=0 instant of a naive wall time, and whether the wall time exists (the brief's gap test)."""
    z = ZoneInfo(zone)
    instant = wall.replace(tzinfo=z, fold=0).astimezone(UTC)
    back = instant.astimezone(z).replace(tzinfo=None)
    return (instant - EPOCH) // timedelta(microseconds=1), back == wall


def walk(timing: Timing, after: int, until: int, cap: int = 10_000) -> list[Occurrence]:
    out = []
    fires = 0
    while len(out) < cap:
        occ = next_occurrence(timing, after, fires)
        if occ is None or occ.nominal_us > until:
            break
        out.append(occ)
        after = occ.nominal_us
        fires += 1
    return out


def nominals(occs: list[Occurrence]) -> list[int]:
    return [o.nominal_us for o in occs]


# ---------------------------------------------------------------------------------------------------------------
# The 2027 transitions, verified with zoneinfo rather than trusted.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "spring_from", "spring_to", "fall_from", "fall_to"),
    [
        (LA, datetime(2027, 3, 14, 2), datetime(2027, 3, 14, 3), datetime(2027, 11, 7, 2), datetime(2027, 11, 7, 1)),
        (
            BERLIN,
            datetime(2027, 3, 28, 2),
            datetime(2027, 3, 28, 3),
            datetime(2027, 10, 31, 3),
            datetime(2027, 10, 31, 2),
        ),
    ],
)
def test_2027_transitions_are_what_the_tests_assume(zone, spring_from, spring_to, fall_from, fall_to):
    found = transitions(zone, 2027)
    assert len(found) == 2
    walls = []
    for instant, before, after in found:
        at = EPOCH.replace(tzinfo=None) + timedelta(microseconds=instant)
        walls.append((at + timedelta(microseconds=before), at + timedelta(microseconds=after)))
    assert walls == [(spring_from, spring_to), (fall_from, fall_to)]


# ---------------------------------------------------------------------------------------------------------------
# Exact DST cases: daily and cron, both zones, both policies.
# ---------------------------------------------------------------------------------------------------------------


def daily_or_cron(kind: str, zone: str, hour: int, minute: int) -> S.Schedule:
    if kind == "daily":
        return DailySchedule(hour, minute, 0, frozenset(), zone)
    return CronSchedule(f"{minute} {hour} * * *", zone)


SPRING = {
    # zone: (gap day, the instants of 02:30 on the day before, the gap day (shifted to 03:30), the day after)
    LA: (date(2027, 3, 14), utc_us(2027, 3, 13, 10, 30), utc_us(2027, 3, 14, 10, 30), utc_us(2027, 3, 15, 9, 30)),
    BERLIN: (date(2027, 3, 28), utc_us(2027, 3, 27, 1, 30), utc_us(2027, 3, 28, 1, 30), utc_us(2027, 3, 29, 0, 30)),
}
FALL = {
    # zone: (fold day, repeated wall time, instants of it on the day before, the fold day (first pass), the day after)
    LA: (
        date(2027, 11, 7),
        (1, 30),
        utc_us(2027, 11, 6, 8, 30),
        utc_us(2027, 11, 7, 8, 30),
        utc_us(2027, 11, 8, 9, 30),
    ),
    BERLIN: (
        date(2027, 10, 31),
        (2, 30),
        utc_us(2027, 10, 30, 0, 30),
        utc_us(2027, 10, 31, 0, 30),
        utc_us(2027, 11, 1, 1, 30),
    ),
}


@pytest.mark.parametrize("kind", ["daily", "cron"])
@pytest.mark.parametrize("zone", [LA, BERLIN])
def test_spring_forward_gap_time_shifts_by_the_gap(kind, zone):
    day, before, shifted, after = SPRING[zone]
    timing = Timing(daily_or_cron(kind, zone, 2, 30))
    start = local_us(zone, day.year, day.month, day.day - 2, 12)
    got = nominals(occurrences(timing, start, 3))
    assert got == [before, shifted, after]
    walls = [to_local(u, zone).replace(tzinfo=None) for u in got]
    assert walls == [
        datetime.combine(day - timedelta(days=1), time(2, 30)),
        datetime.combine(day, time(3, 30)),  # 02:30 does not exist: fired one gap-length later
        datetime.combine(day + timedelta(days=1), time(2, 30)),
    ]


@pytest.mark.parametrize("kind", ["daily", "cron"])
@pytest.mark.parametrize("zone", [LA, BERLIN])
def test_spring_forward_gap_time_is_skipped_with_skip(kind, zone):
    day, before, _shifted, after = SPRING[zone]
    timing = Timing(daily_or_cron(kind, zone, 2, 30), gap_policy=GapPolicy.SKIP)
    start = local_us(zone, day.year, day.month, day.day - 2, 12)
    got = nominals(occurrences(timing, start, 3))
    assert got[:2] == [before, after]
    assert got[2] == after + DAY


@pytest.mark.parametrize("kind", ["daily", "cron"])
@pytest.mark.parametrize("zone", [LA, BERLIN])
def test_fall_back_repeated_time_fires_once_at_first_occurrence(kind, zone):
    day, (hour, minute), before, first, after = FALL[zone]
    timing = Timing(daily_or_cron(kind, zone, hour, minute))
    start = local_us(zone, day.year, day.month, day.day - 2, 12)
    assert nominals(occurrences(timing, start, 3)) == [before, first, after]
    assert to_local(first, zone).fold == 0
    # The second pass of that wall time exists one hour later and must not fire.
    second_pass = first + HOUR
    assert to_local(second_pass, zone).replace(tzinfo=None) == datetime.combine(day, time(hour, minute))
    assert next_occurrence(timing, first).nominal_us == after


def test_fall_back_exact_utc_instants():
    # 01:30 PDT on 2027-11-07 is 08:30Z; Berlin's 02:30 CEST on 2027-10-31 is 00:30Z.
    la = Timing(DailySchedule(1, 30, 0, frozenset(), LA))
    assert next_occurrence(la, utc_us(2027, 11, 7, 0)).nominal_us == utc_us(2027, 11, 7, 8, 30)
    berlin = Timing(DailySchedule(2, 30, 0, frozenset(), BERLIN))
    assert next_occurrence(berlin, utc_us(2027, 10, 30, 12)).nominal_us == utc_us(2027, 10, 31, 0, 30)


def test_after_inside_second_pass_of_repeated_hour():
    # 09:10Z is 01:10 PST, the second pass; 01:30 already fired at 08:30Z, so the next is tomorrow.
    timing = Timing(DailySchedule(1, 30, 0, frozenset(), LA))
    assert next_occurrence(timing, utc_us(2027, 11, 7, 9, 10)).nominal_us == utc_us(2027, 11, 8, 9, 30)
    cron = Timing(CronSchedule("*/15 * * * *", LA))
    assert next_occurrence(cron, utc_us(2027, 11, 7, 9, 10)).nominal_us == utc_us(2027, 11, 7, 10, 0)


def test_after_just_after_spring_forward_still_sees_the_shifted_time():
    # 10:10Z is 03:10 PDT: 02:30 (shifted to 03:30 = 10:30Z) is still to come although 02:30 < 03:10 on the wall.
    after = utc_us(2027, 3, 14, 10, 10)
    shift = Timing(DailySchedule(2, 30, 0, frozenset(), LA))
    assert next_occurrence(shift, after).nominal_us == utc_us(2027, 3, 14, 10, 30)
    skip = Timing(DailySchedule(2, 30, 0, frozenset(), LA), gap_policy=GapPolicy.SKIP)
    assert next_occurrence(skip, after).nominal_us == utc_us(2027, 3, 15, 9, 30)


def test_cron_every_15_minutes_through_the_repeated_hour():
    timing = Timing(CronSchedule("*/15 * * * *", LA))
    got = nominals(walk(timing, utc_us(2027, 11, 7, 7, 50), utc_us(2027, 11, 7, 11, 0)))
    expected = [utc_us(2027, 11, 7, 8, m) for m in (0, 15, 30, 45)]  # 01:00..01:45 PDT, first pass
    expected += [utc_us(2027, 11, 7, 10, m) for m in (0, 15, 30, 45)] + [utc_us(2027, 11, 7, 11, 0)]  # from 02:00 PST
    assert got == expected  # nothing during 09:00-09:59Z, the second pass


@pytest.mark.parametrize("zone", [LA, BERLIN])
def test_cron_every_30_minutes_through_the_gap_is_deduplicated(zone):
    day = SPRING[zone][0]
    timing = Timing(CronSchedule("*/30 * * * *", zone))
    start = local_us(zone, day.year, day.month, day.day, 1, 0)
    got = nominals(occurrences(timing, start, 4))
    walls = [to_local(u, zone).strftime("%H:%M") for u in got]
    # 02:00 -> 03:00 and 02:30 -> 03:30 coincide with the real 03:00 and 03:30: each instant once, increasing.
    assert walls == ["01:30", "03:00", "03:30", "04:00"]
    assert got[1] - got[0] == 30 * MINUTE


def test_cron_shifted_time_colliding_with_a_real_time_fires_once():
    timing = Timing(CronSchedule("30 2,3 * * *", LA))
    got = nominals(occurrences(timing, utc_us(2027, 3, 13, 12), 3))
    assert got == [utc_us(2027, 3, 14, 10, 30), utc_us(2027, 3, 15, 9, 30), utc_us(2027, 3, 15, 10, 30)]


@pytest.mark.parametrize("policy", list(GapPolicy))
def test_six_field_cron_seconds_first_across_the_gap(policy):
    timing = Timing(CronSchedule("*/20 * * * * *", LA), gap_policy=policy)
    got = nominals(occurrences(timing, local_us(LA, 2027, 3, 14, 1, 59, 10), 4))
    transition = utc_us(2027, 3, 14, 10, 0)
    assert got == [transition - 40 * SECOND, transition - 20 * SECOND, transition, transition + 20 * SECOND]


def test_six_field_is_seconds_first():
    timing = Timing(CronSchedule("15 30 9 * * *", "UTC"))
    assert next_occurrence(timing, utc_us(2027, 1, 1)).nominal_us == utc_us(2027, 1, 1, 9, 30, 15)


def test_lord_howe_half_hour_gap_and_fold():
    zone = "Australia/Lord_Howe"
    spring = next(t for t in transitions(zone, 2027) if t[2] > t[1])
    assert spring[2] - spring[1] == 30 * MINUTE
    day = (EPOCH + timedelta(microseconds=spring[0] + spring[1])).date()
    timing = Timing(DailySchedule(2, 10, 0, frozenset(), zone))
    occ = next_occurrence(timing, local_us(zone, day.year, day.month, day.day, 0))
    assert to_local(occ.nominal_us, zone).replace(tzinfo=None) == datetime.combine(day, time(2, 40))


def test_apia_skipped_day_fires_once_on_the_next_day():
    # Samoa skipped 2011-12-30 entirely: 09:00 that day shifts by 24 h onto 12-31 09:00, which also fires itself.
    zone = "Pacific/Apia"
    timing = Timing(DailySchedule(9, 0, 0, frozenset(), zone))
    start = local_us(zone, 2011, 12, 28, 12)
    got = [to_local(u, zone).replace(tzinfo=None) for u in nominals(occurrences(timing, start, 3))]
    assert got == [datetime(2011, 12, 29, 9), datetime(2011, 12, 31, 9), datetime(2012, 1, 1, 9)]


# ---------------------------------------------------------------------------------------------------------------
# Property tests against brute-force references.
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def instants_near_transitions(draw, near=(5 * MINUTE, 3 * HOUR, 40 * HOUR)):
    """(zone, instant, wall hint, rnd): an instant near one of the zone's transitions, the wall time where its gap
    or repeated hour begins (None for zones without one) so schedules can be aimed at it, and the random source.

    Positions come from a Random seeded by hypothesis rather than from st.integers (or st.randoms, which draws the
    same way): hypothesis favours boundary values, which put nearly every start exactly on the transition instead
    of spread before and after it, and nearly every aimed time at the edge of the gap or fold.
    """
    zone = draw(st.sampled_from(ZONES + DST_ZONES))  # zones with transitions twice as often
    rnd = random.Random(draw(st.integers(0, 2**32)))
    year = rnd.randint(2010, 2032)
    found = transitions(zone, year)
    hint = None
    if found:
        centre, before, after = rnd.choice(found)
        # The first wall time in the gap (spring) or the first wall time of the repeated hour (fall).
        hint = EPOCH.replace(tzinfo=None) + timedelta(microseconds=centre + min(before, after))
    else:
        centre = utc_us(year, 1, 1) + rnd.randint(0, 364) * DAY
    spread = rnd.choice(near)
    # Mostly before the transition, so the window that follows crosses it; sometimes just after it, where "the
    # shifted time is still to come" and "we are in the second pass of the repeated hour" live.
    if rnd.random() < 0.75:
        return zone, centre - rnd.choice([0, 5 * MINUTE, 2 * HOUR]) - rnd.randint(0, spread), hint, rnd
    return zone, centre + rnd.randint(0, min(spread, 3 * HOUR)), hint, rnd


def near_hint(rnd, hint: datetime | None) -> datetime | None:
    """Usually a wall time in or next to the gap or repeated hour starting at the hint; otherwise None (the caller
    draws freely)."""
    if hint is None or rnd.random() < 0.25:
        return None
    return hint + timedelta(minutes=rnd.randint(-15, 75))


def offset_range_us(zone: str, lo: int, hi: int) -> int:
    offsets = [offset_us(zone, t) for t in range(lo, hi + HOUR, HOUR)]
    return max(offsets) - min(offsets)


def reference_daily(sched: DailySchedule, policy: GapPolicy, after: int, until: int) -> list[int]:
    zone = sched.time_zone
    first = to_local(after, zone).date() - timedelta(days=3)
    last = to_local(until, zone).date() + timedelta(days=3)
    found = set()
    day = first
    while day <= last:
        if not sched.days_of_week or day.isoweekday() in sched.days_of_week:
            instant, exists = round_trip(zone, datetime.combine(day, time(sched.hour, sched.minute, sched.second)))
            if exists or policy is GapPolicy.SHIFT_FORWARD:
                found.add(instant)
        day += timedelta(days=1)
    return sorted(u for u in found if after < u <= until)


def field_strategy(lo: int, hi: int, star_weight: int = 1):
    """A cron field as (text, set of values), over the forms the property tests exercise."""

    def step(n):
        return (f"*/{n}", set(range(lo, hi + 1, n)))

    def one(v):
        return (str(v), {v})

    def rng(ab):
        a, b = sorted(ab)
        return (f"{a}-{b}", set(range(a, b + 1)))

    def rng_step(args):
        (a, b), n = sorted(args[0]), args[1]
        return (f"{a}-{b}/{n}", set(range(a, b + 1, n)))

    def lst(vs):
        vs = sorted(set(vs))
        return (",".join(map(str, vs)), set(vs))

    value = st.integers(lo, hi)
    forms = [
        st.just(("*", set(range(lo, hi + 1)))),
        st.integers(2, max(2, (hi - lo + 1) // 2)).map(step),
        value.map(one),
        st.tuples(value, value).map(rng),
        st.tuples(st.tuples(value, value), st.integers(2, 7)).map(rng_step),
        st.lists(value, min_size=1, max_size=4).map(lst),
    ]
    return st.one_of(*([forms[0]] * star_weight), *forms[1:])


@st.composite
def cron_strategy(draw, hint: datetime | None = None):
    """(expression, sets) for 5- or 6-field crons, hours biased towards the hours transitions happen in."""
    six = draw(st.booleans())
    second = draw(st.one_of(st.just(("0", {0})), field_strategy(0, 59))) if six else ("0", {0})
    minute = draw(field_strategy(0, 59))
    likely = [0, 1, 2, 3, 4, 23]
    if hint is not None:
        likely += [hint.hour, (hint.hour + 23) % 24] * 3
    hours = st.lists(st.sampled_from(likely), min_size=1, max_size=3).map(sorted).map(set)
    hour = draw(st.one_of(field_strategy(0, 23), hours.map(lambda vs: (",".join(map(str, sorted(vs))), vs))))
    dom = draw(field_strategy(1, 31, star_weight=6))
    month = draw(field_strategy(1, 12, star_weight=8))
    dow = draw(field_strategy(0, 6, star_weight=4))
    fields = [minute, hour, dom, month, dow]
    if six:
        fields.insert(0, second)
    expression = " ".join(text for text, _ in fields)
    # The day rule depends on how the day fields are written (croniter's reading of POSIX): a field is unrestricted
    # if it is "*", or if it lists every value while the other day field contains a "*".
    dom_star = dom[0] == "*" or (len(dom[1]) == 31 and "*" in dow[0])
    dow_star = dow[0] == "*" or (len(dow[1]) == 7 and "*" in dom[0])
    either_day = not dom_star and not dow_star
    return expression, (second[1], minute[1], hour[1], dom[1], month[1], dow[1], either_day)


def cron_matches_day(sets, day: date) -> bool:
    _sec, _minute, _hour, dom, month, dow, either_day = sets
    if day.month not in month:
        return False
    dom_hit, dow_hit = day.day in dom, day.isoweekday() % 7 in dow
    if either_day:
        return dom_hit or dow_hit  # POSIX: both day fields restricted -> either one matches
    return dom_hit and dow_hit


def reference_cron(sets, zone: str, policy: GapPolicy, after: int, until: int) -> list[int]:
    seconds, minutes, hours = sorted(sets[0]), sorted(sets[1]), sorted(sets[2])
    pad = timedelta(microseconds=offset_range_us(zone, after - 2 * DAY, until + 2 * DAY) + HOUR)
    wall = (to_local(after, zone).replace(tzinfo=None) - pad).replace(second=0, microsecond=0)
    last = to_local(until, zone).replace(tzinfo=None) + pad
    found = set()
    while wall <= last:
        if cron_matches_day(sets, wall.date()):
            for h in hours:
                for m in minutes:
                    for s in seconds:
                        w = datetime.combine(wall.date(), time(h, m, s))
                        if w < wall or w > last:
                            continue
                        instant, exists = round_trip(zone, w)
                        if (exists or policy is GapPolicy.SHIFT_FORWARD) and after < instant <= until:
                            found.add(instant)
        wall = datetime.combine(wall.date() + timedelta(days=1), time())
    return sorted(found)


def assert_each_matches(got: list[int], zone: str, policy: GapPolicy, matches) -> None:
    """Each nominal's wall time is a scheduled one, or (SHIFT) a scheduled one in a gap plus the gap's length."""
    for u in got:
        wall = to_local(u, zone).replace(tzinfo=None)
        if matches(wall):
            assert round_trip(zone, wall) == (u, True)
            aware = wall.replace(tzinfo=ZoneInfo(zone))
            if aware.utcoffset() != aware.replace(fold=1).utcoffset():
                event("an occurrence in a repeated (fall-back) hour")
            continue
        event("an occurrence shifted out of a gap")
        assert policy is GapPolicy.SHIFT_FORWARD, f"{wall} is not a scheduled time"
        gaps = {offset_us(zone, u) - offset_us(zone, u - k * HOUR) for k in range(1, 27)}
        assert any(
            g > 0
            and matches(wall - timedelta(microseconds=g))
            and round_trip(zone, wall - timedelta(microseconds=g)) == (u, False)
            for g in gaps
        ), f"{wall} is neither scheduled nor a gap-shifted scheduled time"


days_strategy = st.one_of(st.just(frozenset()), st.just(frozenset()), st.frozensets(st.integers(1, 7), min_size=1))
hour_strategy = st.one_of(st.integers(0, 23), st.sampled_from([0, 1, 2, 3, 23]))
minute_strategy = st.one_of(st.integers(0, 59), st.sampled_from([0, 15, 30, 45, 59]))


@st.composite
def daily_cases(draw):
    zone, after, hint, rnd = draw(instants_near_transitions())
    aimed = near_hint(rnd, hint)
    if aimed is not None:
        hour, minute = aimed.hour, aimed.minute
    else:
        hour, minute = draw(hour_strategy), draw(minute_strategy)
    second = draw(st.sampled_from([0, 0, 30, 59]))
    return zone, after, DailySchedule(hour, minute, second, draw(days_strategy), zone)


@settings(max_examples=500 * SOAK, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(daily_cases(), st.sampled_from(list(GapPolicy)))
def test_property_daily_matches_brute_force(case, policy):
    zone, after, sched = case
    timing = Timing(sched, gap_policy=policy)
    until = after + 15 * DAY
    got = nominals(walk(timing, after, until))
    assert got == reference_daily(sched, policy, after, until)
    assert all(a < b for a, b in itertools.pairwise(got))
    assert_each_matches(
        got,
        zone,
        policy,
        lambda w: (
            w.time() == time(sched.hour, sched.minute, sched.second)
            and (not sched.days_of_week or w.isoweekday() in sched.days_of_week)
        ),
    )


@st.composite
def cron_cases(draw):
    zone, after, hint, _rnd = draw(instants_near_transitions())
    return zone, after, *draw(cron_strategy(hint))


@settings(max_examples=250 * SOAK, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_cases(), st.sampled_from(list(GapPolicy)))
def test_property_cron_matches_brute_force(case, policy):
    zone, after, expression, sets = case
    timing = Timing(CronSchedule(expression, zone), gap_policy=policy)
    try:
        validate(timing)
    except ScheduleError as exc:  # the strategy can build "30 2": rejected, and indeed it never fires
        assert exc.field == "schedule.cron.expression" and "never" in exc.message
        assert next_occurrence(timing, after) is None
        return
    until = after + (3 * HOUR if len(expression.split()) == 6 else 2 * DAY)
    got = nominals(walk(timing, after, until, cap=300))
    expected = reference_cron(sets, zone, policy, after, until)
    assert got == expected[: len(got)] and (len(got) == 300 or len(got) == len(expected)), expression
    assert all(a < b for a, b in itertools.pairwise(got))

    def matches(w: datetime) -> bool:
        return (
            cron_matches_day(sets, w.date())
            and w.hour in sets[2]
            and w.minute in sets[1]
            and w.second in sets[0]
            and w.microsecond == 0
        )

    assert_each_matches(got, zone, policy, matches)


@settings(max_examples=150 * SOAK, deadline=None)
@given(
    instants_near_transitions(),
    st.one_of(cron_strategy().map(lambda c: c[0]), st.just("daily")),
    st.integers(1, 3 * HOUR),
    st.text(max_size=20),
    st.sampled_from(list(GapPolicy)),
)
def test_property_jitter_deterministic_in_range_and_before_next(where, rule, jitter, seed, policy):
    zone, after, _hint, _rnd = where
    sched = DailySchedule(2, 30, 0, frozenset(), zone) if rule == "daily" else CronSchedule(rule, zone)
    timing = Timing(sched, gap_policy=policy, jitter_us=jitter, jitter_seed=seed)
    got = occurrences(timing, after, 20)
    assume(got)
    assert got == occurrences(timing, after, 20)  # deterministic
    for occ, following in itertools.pairwise(got):
        assert 0 <= occ.due_us - occ.nominal_us < jitter
        assert occ.due_us < following.nominal_us
        assert occ.due_us - occ.nominal_us == jitter_us(timing, occ.nominal_us, following.nominal_us)
    assert all(a.due_us < b.due_us for a, b in itertools.pairwise(got))


@settings(max_examples=200 * SOAK, deadline=None)
@given(instants_near_transitions(near=(2 * HOUR,)), st.integers(-2 * HOUR, 2 * HOUR))
def test_property_gap_detection_equals_round_trip(where, delta):
    zone, instant, _hint, _rnd = where
    wall = to_local(instant, zone).replace(tzinfo=None, microsecond=0) + timedelta(microseconds=delta)
    wall = wall.replace(microsecond=0)
    resolved, gap = S._resolve(ZoneInfo(zone), wall)
    assert (resolved, gap <= timedelta(0)) == round_trip(zone, wall)


# ---------------------------------------------------------------------------------------------------------------
# Interval, at, bounds.
# ---------------------------------------------------------------------------------------------------------------


def test_interval_is_anchor_plus_multiples_and_ignores_dst():
    anchor = utc_us(2027, 3, 14, 9, 7)  # 01:07 PST, just before LA's spring forward
    timing = Timing(IntervalSchedule(15 * MINUTE, anchor))
    assert next_occurrence(timing, anchor - 10 * DAY).nominal_us == anchor  # nothing before the anchor
    assert next_occurrence(timing, anchor).nominal_us == anchor + 15 * MINUTE  # strictly after
    assert next_occurrence(timing, anchor + 1).nominal_us == anchor + 15 * MINUTE
    got = nominals(occurrences(timing, anchor - 1, 12))
    assert got == [anchor + k * 15 * MINUTE for k in range(12)]


@given(st.integers(1, 10**12), st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15))
def test_property_interval(every, anchor, after):
    occ = next_occurrence(Timing(IntervalSchedule(every, anchor)), after)
    assert occ.nominal_us > after and occ.nominal_us >= anchor
    assert (occ.nominal_us - anchor) % every == 0
    assert occ.nominal_us - every <= max(after, anchor - every)


def test_at_fires_once():
    at = utc_us(2027, 5, 1, 12)
    timing = Timing(AtSchedule(at))
    assert next_occurrence(timing, at - 1) == Occurrence(at, at)
    assert next_occurrence(timing, at) is None
    assert occurrences(timing, 0, 5) == [Occurrence(at, at)]
    assert next_occurrence(Timing(AtSchedule(at), start_us=at + 1), 0) is None
    assert next_occurrence(Timing(AtSchedule(at), end_us=at - 1), 0) is None
    assert next_occurrence(Timing(AtSchedule(at), start_us=at, end_us=at), 0).nominal_us == at


def test_start_end_and_max_fires():
    every = Timing(IntervalSchedule(HOUR, 0))
    start, end = utc_us(2027, 1, 1, 5), utc_us(2027, 1, 1, 8)
    bounded = Timing(IntervalSchedule(HOUR, 0), start_us=start, end_us=end)
    assert nominals(occurrences(bounded, 0, 10)) == [start, start + HOUR, start + 2 * HOUR, end]  # both inclusive
    assert next_occurrence(bounded, end) is None
    capped = Timing(IntervalSchedule(HOUR, 0), max_fires=3)
    assert len(occurrences(capped, start, 10)) == 3
    assert next_occurrence(capped, start, fires_so_far=2) is not None
    assert next_occurrence(capped, start, fires_so_far=3) is None
    assert len(occurrences(capped, start, 10, fires_so_far=1)) == 2
    assert len(occurrences(every, start, 10)) == 10  # max_fires 0 = unlimited
    daily = Timing(DailySchedule(7, 0, 0, frozenset(), BERLIN), start_us=local_us(BERLIN, 2027, 6, 1, 7))
    assert next_occurrence(daily, 0).nominal_us == local_us(BERLIN, 2027, 6, 1, 7)


def test_daily_weekdays():
    timing = Timing(DailySchedule(9, 0, 0, frozenset({1, 3, 5}), BERLIN))  # Mon, Wed, Fri
    got = [to_local(u, BERLIN) for u in nominals(occurrences(timing, utc_us(2027, 6, 1), 6))]
    assert [d.isoweekday() for d in got] == [3, 5, 1, 3, 5, 1]
    assert all(d.time() == time(9) for d in got)


def test_occurrences_between_reports_more():
    timing = Timing(IntervalSchedule(MINUTE, 0))
    after, until = utc_us(2027, 1, 1), utc_us(2027, 1, 1, 0, 10)
    full = occurrences_between(timing, after, until, 100)
    assert full == Between(occurrences(timing, after, 10), False)
    assert full.occurrences[-1].nominal_us == until  # (after, until]
    capped = occurrences_between(timing, after, until, 4)
    assert capped.more and len(capped.occurrences) == 4
    exact = occurrences_between(timing, after, until, 10)
    assert not exact.more and len(exact.occurrences) == 10
    assert occurrences_between(Timing(IntervalSchedule(MINUTE, 0), max_fires=3), after, until, 10) == Between(
        occurrences(timing, after, 3), False
    )


@pytest.mark.parametrize(
    "timing",
    [
        Timing(IntervalSchedule(7 * SECOND, 3)),
        Timing(CronSchedule("*/15 * * * *", LA), jitter_us=5 * MINUTE, jitter_seed="x"),
        Timing(CronSchedule("0 * 0 * * *", BERLIN)),  # dense, then nothing for 23 hours
        Timing(DailySchedule(1, 30, 0, frozenset({2}), LA)),
        Timing(DailySchedule(2, 30, 0, frozenset(), LA), end_us=utc_us(2027, 3, 14, 10, 30)),
        Timing(CronSchedule("*/5 * * * *", "UTC"), max_fires=7),
        Timing(CronSchedule("*/5 * * * *", "UTC"), max_fires=700),
    ],
)
def test_latest_between_is_the_last_of_the_window(timing):
    after = utc_us(2027, 3, 1)
    for until in (utc_us(2027, 3, 14, 10, 30), utc_us(2027, 3, 16, 23, 59, 59), after + 1):
        everything = walk(timing, after, until, cap=1_000_000)
        assert latest_between(timing, after, until) == (everything[-1] if everything else None)


def test_never_matching_cron_gives_up_quickly():
    timing = Timing(CronSchedule("0 0 30 2 *", "UTC"))
    began = clock.perf_counter()
    assert next_occurrence(timing, utc_us(2027, 1, 1)) is None
    assert clock.perf_counter() - began < 1.0
    rare = Timing(CronSchedule("0 0 29 2 *", BERLIN))
    assert next_occurrence(rare, utc_us(2027, 1, 1)).nominal_us == local_us(BERLIN, 2028, 2, 29)


def test_far_future_and_far_past_do_not_crash():
    timing = Timing(CronSchedule("0 0 * * *", "UTC"))
    assert next_occurrence(timing, utc_us(9999, 12, 30)) is None
    assert next_occurrence(Timing(DailySchedule(0, 0, 0, frozenset(), LA)), 2**62) is None
    assert next_occurrence(timing, -(2**62)) is not None


# ---------------------------------------------------------------------------------------------------------------
# Jitter.
# ---------------------------------------------------------------------------------------------------------------


def test_jitter_is_a_stable_hash():
    timing = Timing(IntervalSchedule(DAY, 0), jitter_us=HOUR, jitter_seed="default/morning-prep")
    # Golden value: blake2b is the same in every process and Python version; hash() would not be. If this changes,
    # every stored alarm's due time moves.
    assert jitter_us(timing, utc_us(2027, 1, 1), None) == 117_631_570
    assert jitter_us(timing, utc_us(2027, 1, 1), None) == jitter_us(timing, utc_us(2027, 1, 1), utc_us(2027, 1, 2))
    other = Timing(IntervalSchedule(DAY, 0), jitter_us=HOUR, jitter_seed="default/evening-prep")
    assert jitter_us(other, utc_us(2027, 1, 1), None) != jitter_us(timing, utc_us(2027, 1, 1), None)


def test_jitter_is_capped_before_the_next_occurrence():
    timing = Timing(IntervalSchedule(MINUTE, 0), jitter_us=HOUR, jitter_seed="a")
    occs = occurrences(timing, 0, 200)
    assert all(0 <= o.due_us - o.nominal_us < MINUTE for o in occs)
    assert len({o.due_us - o.nominal_us for o in occs}) > 150  # spread, not piled up at the cap
    assert jitter_us(timing, 0, 1) == 0
    assert next_occurrence(Timing(IntervalSchedule(MINUTE, 0)), 0) == Occurrence(MINUTE, MINUTE)


# ---------------------------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------------------------


def _daily(**kw):
    base = {"hour": 7, "minute": 0, "second": 0, "days_of_week": frozenset(), "time_zone": BERLIN}
    return DailySchedule(**(base | kw))


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        (Timing(_daily(time_zone="Mars/Olympus_Mons")), "schedule.daily.time_zone"),
        (Timing(_daily(time_zone="../../etc/passwd")), "schedule.daily.time_zone"),
        (Timing(_daily(time_zone="")), "schedule.daily.time_zone"),
        (Timing(CronSchedule("0 7 * * *", "Nowhere/Special")), "schedule.cron.time_zone"),
        (Timing(_daily(hour=24)), "schedule.daily.time_of_day"),
        (Timing(_daily(minute=60)), "schedule.daily.time_of_day"),
        (Timing(_daily(second=-1)), "schedule.daily.time_of_day"),
        (Timing(_daily(days_of_week=frozenset({0}))), "schedule.daily.days_of_week"),
        (Timing(_daily(days_of_week=frozenset({1, 8}))), "schedule.daily.days_of_week"),
        (Timing(CronSchedule("61 * * * *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("* * * *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("* * * * * * *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("0 0 30 2 *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("0 0 31 4,6 *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("R * * * *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("H * * * *", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("@reboot", "UTC")), "schedule.cron.expression"),
        (Timing(CronSchedule("0 0 * * fooday", "UTC")), "schedule.cron.expression"),
        (Timing(IntervalSchedule(0, 0)), "schedule.interval.every"),
        (Timing(IntervalSchedule(-5, 0)), "schedule.interval.every"),
        (Timing(AtSchedule(0), start_us=10, end_us=9), "end_time"),
        (Timing(AtSchedule(0), jitter_us=-1), "jitter"),
        (Timing(AtSchedule(0), max_fires=-1), "max_fires"),
        (Timing(AtSchedule(0), gap_policy="SKIP"), "gap_policy"),
        (Timing("0 7 * * *"), "schedule"),
    ],
)
def test_validation_names_the_field(timing, field):
    with pytest.raises(ScheduleError) as caught:
        validate(timing)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError) and caught.value.message


@pytest.mark.parametrize(
    "timing",
    [
        Timing(_daily()),
        Timing(_daily(hour=23, minute=59, second=59, days_of_week=frozenset(range(1, 8)))),
        Timing(CronSchedule("*/5 9-17 * * mon-fri", "America/New_York")),
        Timing(CronSchedule("30 */10 * * * *", "UTC")),
        Timing(CronSchedule("@daily", "UTC")),
        Timing(CronSchedule("0 0 29 2 *", "UTC")),
        Timing(CronSchedule("0 12 L * *", "UTC")),
        Timing(IntervalSchedule(1, -5)),
        Timing(AtSchedule(5), start_us=5, end_us=5, max_fires=1, jitter_us=0),
    ],
)
def test_validation_accepts(timing):
    validate(timing)
    assert next_occurrence(timing, 0) is not None


def test_unvalidated_garbage_neither_spins_nor_passes_silently():
    assert next_occurrence(Timing(DailySchedule(1, 0, 0, frozenset({0, 8}), "UTC")), 0) is None
    assert next_occurrence(Timing(DailySchedule(1, 0, 0, frozenset({0, 3}), "UTC")), 0) is not None
    with pytest.raises(ScheduleError) as caught:
        next_occurrence(Timing(DailySchedule(25, 0, 0, frozenset(), "UTC")), 0)
    assert caught.value.field == "schedule.daily.time_of_day"
    with pytest.raises(ScheduleError) as caught:
        next_occurrence(Timing(CronSchedule("0 7 * * *", "Atlantis/Capital")), 0)
    assert caught.value.field == "schedule.cron.time_zone"


def test_days_of_week_accepts_any_iterable():
    assert DailySchedule(1, 2, 3, [1, 2], "UTC").days_of_week == frozenset({1, 2})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Performance: generous bounds, so only a gross regression (say, a minute-by-minute loop) fails.
# ---------------------------------------------------------------------------------------------------------------


def _per_call_us(timing: Timing, calls: int, stride: int) -> float:
    base = utc_us(2027, 3, 1)
    began = clock.perf_counter()
    for i in range(calls):
        next_occurrence(timing, base + i * stride)
    return (clock.perf_counter() - began) / calls * 1e6


def test_speed_of_next_occurrence():
    assert _per_call_us(Timing(IntervalSchedule(MINUTE, 0), jitter_us=SECOND, jitter_seed="a"), 20_000, 997) < 25
    assert _per_call_us(Timing(AtSchedule(utc_us(2030, 1, 1))), 20_000, 997) < 25
    assert _per_call_us(Timing(DailySchedule(2, 30, 0, frozenset({1, 7}), LA)), 5_000, 7 * HOUR + 1) < 150
    assert _per_call_us(Timing(CronSchedule("*/7 1-3 * * 0", LA)), 1_000, 7 * HOUR + 1) < 1_000


def test_a_storm_of_identical_schedules_is_cheap():
    # 100,000 alarms on "07:00 Berlin" fire at the same instant; the engine asks each for its next occurrence.
    fired = local_us(BERLIN, 2027, 3, 28, 7)
    timings = [
        Timing(DailySchedule(7, 0, 0, frozenset(), BERLIN), jitter_us=10 * MINUTE, jitter_seed=f"lab/{i}")
        for i in range(100_000)
    ]
    began = clock.perf_counter()
    following = [next_occurrence(t, fired) for t in timings]
    assert clock.perf_counter() - began < 5.0
    assert {o.nominal_us for o in following} == {local_us(BERLIN, 2027, 3, 29, 7)}
    assert len({o.due_us for o in following}) > 1000
