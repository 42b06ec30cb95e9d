"""SchedulerService over a real channel, on SQLite and PostgreSQL: alarms, validation, tenancy, DST, firing."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from google.type import timeofday_pb2
from grpc_status import rpc_status
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from servicekit.errors import status_details
from tests.scheduler_support import at_alarm, collect, dur, scheduler_server, ts, wait_for


async def expect_error(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


def violated_fields(err: grpc.aio.AioRpcError) -> set[str]:
    _, bad_request = status_details(err)
    assert bad_request is not None, "INVALID_ARGUMENT must carry google.rpc.BadRequest"
    return {v.field for v in bad_request.field_violations}


async def test_create_get_list_update_delete(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        payload = struct_pb2.Struct()
        payload.update({"program": "incubate-37C", "minutes": 30})
        created = await h.stub.CreateAlarm(pb.CreateAlarmRequest(
            alarm_id="incubator-check",
            alarm=pb.Alarm(display_name="check incubator", owner_email="ops@lab.example", target="devices/inc-7",
                           labels={"room": "b12"}, payload=payload,
                           schedule=pb.Schedule(cron=pb.CronSchedule(expression="0 7 * * *",
                                                                     time_zone="Europe/Berlin"))),
        ))
        assert created.name == "alarms/incubator-check"
        assert created.state == pb.Alarm.STATE_ACTIVE
        assert created.payload["program"] == "incubate-37C"
        assert created.next_fire_time.ToDatetime(dt.UTC) > dt.datetime.now(dt.UTC)
        local = created.next_fire_time.ToDatetime(dt.UTC).astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (7, 0)

        got = await h.stub.GetAlarm(pb.GetAlarmRequest(name="alarms/incubator-check"))
        assert got == created

        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(3600, target="devices/other")))
        listed = await h.stub.ListAlarms(pb.ListAlarmsRequest(filter='target = "devices/inc-7"'))
        assert [a.name for a in listed.alarms] == ["alarms/incubator-check"]
        by_label = await h.stub.ListAlarms(pb.ListAlarmsRequest(filter='labels.room = "b12" AND state = ACTIVE'))
        assert [a.name for a in by_label.alarms] == ["alarms/incubator-check"]

        updated = await h.stub.UpdateAlarm(pb.UpdateAlarmRequest(
            alarm=pb.Alarm(name=created.name, display_name="renamed", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ))
        assert updated.display_name == "renamed"
        assert updated.schedule == created.schedule and updated.next_fire_time == created.next_fire_time
        assert updated.etag != created.etag
        stale = await expect_error(h.stub.UpdateAlarm(pb.UpdateAlarmRequest(
            alarm=pb.Alarm(name=created.name, display_name="again", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )), grpc.StatusCode.ABORTED)
        assert status_details(stale)[0].reason == "ETAG_MISMATCH"

        await h.stub.DeleteAlarm(pb.DeleteAlarmRequest(name=created.name))
        await expect_error(h.stub.GetAlarm(pb.GetAlarmRequest(name=created.name)), grpc.StatusCode.NOT_FOUND)
        await h.stub.DeleteAlarm(pb.DeleteAlarmRequest(name=created.name, allow_missing=True))


async def test_create_is_idempotent_and_names_are_unique(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        request = pb.CreateAlarmRequest(alarm=at_alarm(600), request_id="req-1")
        first = await h.stub.CreateAlarm(request)
        again = await h.stub.CreateAlarm(request)
        assert again.name == first.name
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).total_size == 1
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(600), alarm_id="fixed"))
        await expect_error(h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(600), alarm_id="fixed")),
                           grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize(
    ("alarm", "field"),
    [
        (pb.Alarm(schedule=pb.Schedule(daily=pb.DailySchedule(time_of_day=timeofday_pb2.TimeOfDay(hours=7),
                                                               time_zone="Mars/Olympus_Mons"))),
         "alarm.schedule.daily.time_zone"),
        (pb.Alarm(schedule=pb.Schedule(cron=pb.CronSchedule(expression="61 * * * *"))),
         "alarm.schedule.cron.expression"),
        (pb.Alarm(schedule=pb.Schedule(at=ts(-3600)), misfire_policy=pb.MisfirePolicy(grace=dur(0))),
         "alarm.schedule.at"),
        (pb.Alarm(schedule=pb.Schedule(at=ts(-3600))), "alarm.schedule.at"),
        (pb.Alarm(schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0)))),
         "alarm.schedule.interval.every"),
        (pb.Alarm(schedule=pb.Schedule(at=ts(60)), payload=struct_pb2.Struct(fields={
            "blob": struct_pb2.Value(string_value="x" * 70_000)})), "alarm.payload"),
        (pb.Alarm(), "alarm.schedule"),
    ],
    ids=["unknown-zone", "invalid-cron", "past-at-no-grace", "past-at-default-grace", "zero-interval",
         "payload-too-big", "no-schedule"],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    migrated_database_url: str, alarm: pb.Alarm, field: str
) -> None:
    async with scheduler_server(migrated_database_url) as h:
        err = await expect_error(h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=alarm)),
                                 grpc.StatusCode.INVALID_ARGUMENT)
        assert field in violated_fields(err)
        status = rpc_status.from_call(err)
        assert status is not None and status.details
        assert status_details(err)[0].reason == "INVALID_ALARM"
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).alarms == []


async def test_batch_create_is_all_or_nothing(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        good = pb.CreateAlarmRequest(alarm=at_alarm(600))
        bad = pb.CreateAlarmRequest(alarm=pb.Alarm(schedule=pb.Schedule(cron=pb.CronSchedule(expression="nope"))))
        err = await expect_error(h.stub.BatchCreateAlarms(pb.BatchCreateAlarmsRequest(requests=[good, good, bad])),
                                 grpc.StatusCode.INVALID_ARGUMENT)
        assert "requests[2].alarm.schedule.cron.expression" in violated_fields(err)
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).alarms == []
        created = await h.stub.BatchCreateAlarms(pb.BatchCreateAlarmsRequest(requests=[good] * 1000))
        assert len(created.alarms) == 1000
        err = await expect_error(h.stub.BatchCreateAlarms(pb.BatchCreateAlarmsRequest(requests=[good] * 1001)),
                                 grpc.StatusCode.INVALID_ARGUMENT)
        assert "requests" in violated_fields(err)


async def test_every_query_is_scoped_to_the_callers_lab(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        lab_a, lab_b = h.lab_channel("lab-a"), h.lab_channel("lab-b")
        alarm = await lab_a.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(600), alarm_id="shared-name"))
        # The same id in another lab is another alarm.
        await lab_b.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(900), alarm_id="shared-name"))
        await lab_b.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(900), alarm_id="only-b"))
        assert [a.name for a in (await lab_a.ListAlarms(pb.ListAlarmsRequest())).alarms] == [alarm.name]
        assert len((await lab_b.ListAlarms(pb.ListAlarmsRequest())).alarms) == 2
        await expect_error(lab_a.GetAlarm(pb.GetAlarmRequest(name="alarms/only-b")), grpc.StatusCode.NOT_FOUND)
        await expect_error(lab_a.PauseAlarm(pb.PauseAlarmRequest(name="alarms/only-b")), grpc.StatusCode.NOT_FOUND)
        await expect_error(lab_a.DeleteAlarm(pb.DeleteAlarmRequest(name="alarms/only-b")), grpc.StatusCode.NOT_FOUND)
        got_b = await lab_b.GetAlarm(pb.GetAlarmRequest(name="alarms/shared-name"))
        assert got_b.next_fire_time != alarm.next_fire_time
        stats_a = await lab_a.GetSchedulerStats(pb.GetSchedulerStatsRequest())
        assert stats_a.total_alarms == 1
        # No lab metadata: the default lab, which holds nothing here.
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).alarms == []


async def test_list_pages_in_next_fire_order(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        for i in range(7):
            await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(1000 - i * 10), alarm_id=f"a{i}"))
        names, token = [], ""
        while True:
            page = await h.stub.ListAlarms(pb.ListAlarmsRequest(page_size=3, page_token=token,
                                                                order_by="next_fire_time"))
            names += [a.name for a in page.alarms]
            token = page.next_page_token
            if not token:
                break
        assert names == [f"alarms/a{i}" for i in reversed(range(7))]
        await expect_error(h.stub.ListAlarms(pb.ListAlarmsRequest(page_token="garbage")),
                           grpc.StatusCode.INVALID_ARGUMENT)
        await expect_error(h.stub.ListAlarms(pb.ListAlarmsRequest(filter="color = blue")),
                           grpc.StatusCode.INVALID_ARGUMENT)


def _utc(zone: str, *wall: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*wall, tzinfo=ZoneInfo(zone), fold=fold).astimezone(dt.UTC)


@pytest.mark.parametrize(
    ("zone", "spring_day", "fall_day", "fall_time"),
    [("America/Los_Angeles", (2027, 3, 14), (2027, 11, 7), (1, 30)),
     ("Europe/Berlin", (2027, 3, 28), (2027, 10, 31), (2, 30))],
)
async def test_preview_follows_dst_policy(
    migrated_database_url: str, zone: str, spring_day: tuple[int, int, int], fall_day: tuple[int, int, int],
    fall_time: tuple[int, int],
) -> None:
    async with scheduler_server(migrated_database_url) as h:
        day_before = dt.datetime(*spring_day) - dt.timedelta(days=1)
        after = ts(at=_utc(zone, day_before.year, day_before.month, day_before.day, 0).timestamp())

        async def preview(schedule: pb.Schedule, gap: int = 0, start=after) -> list[dt.datetime]:
            response = await h.stub.PreviewSchedule(pb.PreviewScheduleRequest(
                alarm=pb.Alarm(schedule=schedule, dst_policy=pb.DstPolicy(gap_policy=gap)), after=start, count=3))
            return [o.nominal_time.ToDatetime(dt.UTC) for o in response.occurrences]

        daily = pb.Schedule(daily=pb.DailySchedule(time_of_day=timeofday_pb2.TimeOfDay(hours=2, minutes=30),
                                                   time_zone=zone))
        cron = pb.Schedule(cron=pb.CronSchedule(expression="30 2 * * *", time_zone=zone))
        y, m, d = spring_day
        shifted = [_utc(zone, *day_before.timetuple()[:3], 2, 30), _utc(zone, y, m, d, 3, 30),
                   _utc(zone, *(dt.datetime(*spring_day) + dt.timedelta(days=1)).timetuple()[:3], 2, 30)]
        skipped = [shifted[0], shifted[2]]
        for schedule in (daily, cron):
            assert await preview(schedule) == shifted
            assert (await preview(schedule, gap=pb.GAP_POLICY_SKIP))[:2] == skipped

        hour, minute = fall_time
        fy, fm, fd = fall_day
        fall_start = ts(at=_utc(zone, fy, fm, fd, 0, 0).timestamp())
        fall_daily = pb.Schedule(daily=pb.DailySchedule(
            time_of_day=timeofday_pb2.TimeOfDay(hours=hour, minutes=minute), time_zone=zone))
        fall_cron = pb.Schedule(cron=pb.CronSchedule(expression=f"{minute} {hour} * * *", time_zone=zone))
        for schedule in (fall_daily, fall_cron):
            got = await preview(schedule, start=fall_start)
            assert got[0] == _utc(zone, fy, fm, fd, hour, minute, fold=0)  # the first occurrence
            assert got[1] - got[0] > dt.timedelta(hours=23)  # and not again an hour later


async def test_alarm_fires_on_time_and_is_logged(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        stream = h.stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=["devices/oven"])))
        await asyncio.sleep(0.2)
        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=pb.Alarm(
            target="devices/oven", display_name="preheat", schedule=pb.Schedule(at=ts(1.0)))))
        [event] = await collect(stream, 1)
        stream.cancel()
        assert event.alarm.name == alarm.name and event.alarm.display_name == "preheat"
        assert event.nominal_time == alarm.schedule.at
        assert event.outcome == pb.FIRE_OUTCOME_ON_TIME
        lateness = event.fire_time.ToMicroseconds() - event.nominal_time.ToMicroseconds()
        assert 0 <= lateness < 1_000_000
        fires = await h.stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{alarm.name}"'))
        assert [f.fire_id for f in fires.fires] == [event.fire_id]
        done = await h.stub.GetAlarm(pb.GetAlarmRequest(name=alarm.name))
        assert done.state == pb.Alarm.STATE_COMPLETED and done.fire_count == 1


async def test_interval_pause_resume_and_snooze(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=pb.Alarm(
            target="devices/pump", schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0.5))))))

        async def count() -> int:
            return (await h.stub.GetAlarm(pb.GetAlarmRequest(name=alarm.name))).fire_count

        await wait_for(lambda: _at_least(count, 2))
        paused = await h.stub.PauseAlarm(pb.PauseAlarmRequest(name=alarm.name))
        assert paused.state == pb.Alarm.STATE_PAUSED
        frozen = await count()
        await asyncio.sleep(1.6)
        assert await count() == frozen
        resumed = await h.stub.ResumeAlarm(pb.ResumeAlarmRequest(name=alarm.name,
                                                                  policy=pb.RESUME_POLICY_SKIP_MISSED))
        assert resumed.state == pb.Alarm.STATE_ACTIVE
        assert resumed.next_fire_time.ToMicroseconds() > time.time_ns() // 1000 - 100_000
        skipped = await h.stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{alarm.name}" AND outcome = SKIPPED'))
        assert len(skipped.fires) >= 2 and all("paused" in f.reason for f in skipped.fires)
        await wait_for(lambda: _at_least(count, frozen + 1))
        before = (await h.stub.GetAlarm(pb.GetAlarmRequest(name=alarm.name)))
        snoozed = await h.stub.SnoozeAlarm(pb.SnoozeAlarmRequest(name=alarm.name, duration=dur(30)))
        assert snoozed.next_fire_time.ToMicroseconds() >= before.next_fire_time.ToMicroseconds() + 29_000_000


async def _at_least(count, n: int) -> bool:
    return await count() >= n


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_prometheus_metrics_of_the_seed_and_of_lateness(migrated_database_url: str) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with scheduler_server(migrated_database_url, metrics_port=port) as h:
        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.3)))

        async def fired() -> bool:
            return (await h.stub.GetAlarm(pb.GetAlarmRequest(name=alarm.name))).fire_count == 1

        await wait_for(fired)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()

        async def refreshed() -> bool:
            return 'alarm_scheduler_total_alarms{state="completed"}' in await asyncio.to_thread(scrape)

        await wait_for(refreshed, timeout=20)
        text = await asyncio.to_thread(scrape)
        for name in ("alarm_scheduler_total_alarms", "alarm_scheduler_processing_time", "alarm_scheduler_memory_usage",
                     "database_connection_pool_usage", "alarm_scheduler_fire_lateness_seconds_bucket",
                     "alarm_scheduler_window_size", "alarm_scheduler_owned_shards"):
            assert name in text, name
        prefix = 'alarm_scheduler_fires_total{outcome="on_time"}'
        on_time = [line for line in text.splitlines() if line.startswith(prefix)]
        assert on_time and float(on_time[0].split()[-1]) >= 1
        stats = await h.stub.GetSchedulerStats(pb.GetSchedulerStatsRequest())
        assert stats.fires_on_time >= 1 and stats.completed_alarms == 1 and stats.window_capacity > 0
        assert stats.memory_rss_bytes > 0 and stats.owned_shards


async def test_import_alarms_is_all_or_nothing(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        def chunks(total: int, bad_index: int | None = None, name_at: dict[int, str] | None = None):
            async def generate():
                for start in range(0, total, 1000):
                    alarms = []
                    for i in range(start, min(total, start + 1000)):
                        alarm = pb.Alarm(target=f"devices/d{i % 50}", labels={"batch": "b1"},
                                         schedule=pb.Schedule(cron=pb.CronSchedule(expression="*/5 * * * *")))
                        if i == bad_index:
                            alarm.schedule.cron.expression = "not a cron"
                        if name_at and i in name_at:
                            alarm.name = name_at[i]
                        alarms.append(alarm)
                    yield pb.ImportAlarmsRequest(alarms=alarms)
            return generate()

        err = await expect_error(h.stub.ImportAlarms(chunks(5000, bad_index=3456)), grpc.StatusCode.INVALID_ARGUMENT)
        assert "alarms[3456].schedule.cron.expression" in violated_fields(err)
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).total_size == 0

        result = await h.stub.ImportAlarms(chunks(5000, name_at={7: "alarms/named-one"}))
        assert result.imported_count == 5000
        listed = await h.stub.ListAlarms(pb.ListAlarmsRequest(filter='labels.batch = "b1"', page_size=10))
        assert listed.total_size == 5000
        named = await h.stub.GetAlarm(pb.GetAlarmRequest(name="alarms/named-one"))
        assert named.schedule.cron.expression == "*/5 * * * *" and named.next_fire_time.seconds % 300 == 0

        await expect_error(h.stub.ImportAlarms(chunks(2000, name_at={1500: "alarms/named-one"})),
                           grpc.StatusCode.ALREADY_EXISTS)
        assert (await h.stub.ListAlarms(pb.ListAlarmsRequest())).total_size == 5000
