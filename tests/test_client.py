"""labmesh_client against a real SchedulerService: the fire iterator survives a server restart on the same port
and resumes by cursor with no gap and no duplicate; metadata (lab, api key) reaches the server on every call kind."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from labmesh.scheduler.v1 import scheduler_pb2 as pb

import labmesh_client
from tests.scheduler_support import dur, scheduler_server, ts, wait_for

TARGET = "devices/resume-test"


async def _delivered_log(client: labmesh_client.Client, alarm: str) -> dict[int, str]:
    """{cursor: fire_id} of every fire of ``alarm`` that was delivered (on time or late), from the fire log."""
    log: dict[int, str] = {}
    token = ""
    while True:
        page = await client.scheduler.ListFires(
            pb.ListFiresRequest(filter=f'alarm="{alarm}"', page_size=1000, page_token=token)
        )
        for record in page.fires:
            if record.outcome in (pb.FIRE_OUTCOME_ON_TIME, pb.FIRE_OUTCOME_LATE):
                log[int(record.cursor)] = record.fire_id
        token = page.next_page_token
        if not token:
            return log


async def test_fires_resume_across_a_server_restart_without_gap_or_duplicate(migrated_database_url: str) -> None:
    received: list[pb.FireEvent] = []
    async with scheduler_server(migrated_database_url) as first:
        port = first.address.rpartition(":")[2]
        client = labmesh_client.connect(first.address)
        alarm = await client.scheduler.CreateAlarm(pb.CreateAlarmRequest(alarm_id="tick", alarm=pb.Alarm(
            target=TARGET, display_name="tick",
            schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0.2), anchor_time=ts(0.2))),
        )))
        # A second alarm on another target: the filter must keep it out of the stream, also on replay.
        await client.scheduler.CreateAlarm(pb.CreateAlarmRequest(alarm_id="other", alarm=pb.Alarm(
            target="devices/elsewhere", schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0.2))),
        )))
        stream = client.fires({"targets": [TARGET]}, min_backoff=0.05, max_backoff=0.5)

        async def consume() -> None:
            async for event in stream:
                received.append(event)

        consumer = asyncio.create_task(consume())
        await wait_for(lambda: len(received) >= 3, timeout=20)
    # The first server drained (the stream ended with UNAVAILABLE / SHUTTING_DOWN) and is gone; the alarm's
    # occurrences keep falling due while nothing serves.
    before_restart = len(received)
    await asyncio.sleep(1.0)
    assert not consumer.done(), consumer
    async with scheduler_server(migrated_database_url, port=int(port)):
        await wait_for(lambda: len(received) >= before_restart + 8, timeout=30)
        await stream.aclose()
        await asyncio.wait_for(consumer, 10)
        log = await _delivered_log(client, alarm.name)
    await client.close()

    assert stream.reconnects >= 1
    assert {e.alarm.target for e in received} == {TARGET}
    cursors = [int(e.cursor) for e in received]
    assert cursors == sorted(set(cursors)), f"fires out of order or repeated: {cursors}"
    assert len({e.fire_id for e in received}) == len(received), "a fire was delivered twice"
    assert stream.cursor == received[-1].cursor

    expected = {c: f for c, f in log.items() if cursors[0] <= c <= cursors[-1]}
    got = {int(e.cursor): e.fire_id for e in received}
    assert got == expected, f"gap: missing {sorted(set(expected) - set(got))}"
    assert len(received) > before_restart + 4  # fires from before, during (caught up late) and after the outage


async def test_client_sends_lab_and_api_key_on_every_call_kind(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as server:
        async with labmesh_client.connect(server.address, lab="lab-a", api_key="secret") as client:
            # stream-unary (ImportAlarms), unary (ListAlarms) and server-streaming (Fire) all carry the lab.
            call = client.scheduler.ImportAlarms()
            await call.write(pb.ImportAlarmsRequest(alarms=[
                pb.Alarm(name="alarms/imported", target=TARGET,
                         schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0.2)))),
            ]))
            await call.done_writing()
            assert (await call).imported_count == 1
            listed = await client.scheduler.ListAlarms(pb.ListAlarmsRequest())
            assert [a.name for a in listed.alarms] == ["alarms/imported"]
            async with client.fires({"targets": [TARGET]}, consumer_group="bridges", ack_deadline=30) as stream:
                first = await asyncio.wait_for(anext(stream), 10)
            assert first.alarm.name == "alarms/imported"
            acked = await client.acknowledge("bridges", [first.fire_id])
            assert acked.acknowledged_count == 1 and not acked.unknown_fire_ids
        async with labmesh_client.connect(server.address) as default_lab:
            listed = await default_lab.scheduler.ListAlarms(pb.ListAlarmsRequest())
            assert list(listed.alarms) == []


async def test_errors_that_reconnecting_cannot_fix_are_raised(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as server:
        async with labmesh_client.connect(server.address) as client:
            stream = client.fires(cursor="not-a-cursor")
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await asyncio.wait_for(anext(stream), 10)
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # Closing the client ends an open stream instead of reconnecting forever.
            live = client.fires()
            reader = asyncio.create_task(anext(live))
            await asyncio.sleep(0.2)
        with contextlib.suppress(StopAsyncIteration):
            await asyncio.wait_for(reader, 5)
        assert reader.done()
