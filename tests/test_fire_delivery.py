"""The Fire stream over a real channel: resume without gap or duplicate, retention, consumer groups (acks,
redelivery, dead letters, restarts), backpressure, and the mailer against a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import grpc
import pytest
from aiosmtpd.controller import Controller
from google.protobuf import struct_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

from servicekit.errors import status_details
from tests.scheduler_support import at_alarm, collect, dur, scheduler_server, ts, wait_for


async def fire_all(h, count: int, target: str, *, in_seconds: float = 1.0) -> list[str]:
    """Create `count` one-shot alarms due at the same instant and wait until every one has fired."""
    at = ts(in_seconds)
    names: list[str] = []
    for start in range(0, count, 1000):
        batch = [pb.CreateAlarmRequest(alarm=pb.Alarm(target=target, schedule=pb.Schedule(at=at)))
                 for _ in range(min(1000, count - start))]
        names += [a.name for a in (await h.stub.BatchCreateAlarms(pb.BatchCreateAlarmsRequest(requests=batch))).alarms]

    async def all_fired() -> bool:
        page = await h.stub.ListAlarms(pb.ListAlarmsRequest(filter=f'target = "{target}" AND state = COMPLETED'))
        return page.total_size >= count

    await wait_for(all_fired, timeout=60)
    return names


async def test_reconnect_with_cursor_gets_exactly_what_was_missed_then_live(migrated_database_url: str) -> None:
    target = "devices/liquid-handler"
    async with scheduler_server(migrated_database_url) as h:
        stream = h.stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[target])))
        await asyncio.sleep(0.2)
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.5, target=target)))
        [first] = await collect(stream, 1)
        stream.cancel()  # disconnected

        missed = await fire_all(h, 1000, target)
        # Noise for other targets must not reach this subscriber.
        await fire_all(h, 50, "devices/elsewhere", in_seconds=0.5)

        stream = h.stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[target]), cursor=first.cursor,
                                            max_events_per_message=64))
        replayed = await collect(stream, 1000)
        assert len(replayed) == 1000
        assert sorted(e.alarm.name for e in replayed) == sorted(missed)
        cursors = [int(e.cursor) for e in replayed]
        assert cursors == sorted(cursors) and len(set(cursors)) == 1000
        assert all(e.alarm.target == target for e in replayed)

        live = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.5, target=target)))
        [after] = await collect(stream, 1)
        stream.cancel()
        assert after.alarm.name == live.name  # the next event is the live one: no duplicate at the seam
        assert int(after.cursor) > cursors[-1]


async def test_cursor_past_retention_is_out_of_range(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url, fire_retention=1.0) as h:
        stream = h.stub.Fire(pb.FireRequest())
        await asyncio.sleep(0.2)
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.3)))
        [old] = await collect(stream, 1)
        await asyncio.sleep(1.5)
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.3)))
        [recent] = await collect(stream, 1)
        stream.cancel()
        deleted, _ = await h.service.engine.cleanup()
        assert deleted >= 1

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(h.stub.Fire(pb.FireRequest(cursor=str(int(old.cursor) - 1))), 1)
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        error_info, _ = status_details(info.value)
        assert error_info is not None and error_info.reason == "CURSOR_EXPIRED"
        oldest = error_info.metadata["oldest_cursor"]
        [again] = await collect(h.stub.Fire(pb.FireRequest(cursor=oldest)), 1)
        assert again.fire_id == recent.fire_id


async def test_group_of_three_with_one_member_that_never_acknowledges(migrated_database_url: str) -> None:
    target = "devices/plate-reader"
    group = "readers"
    async with scheduler_server(migrated_database_url) as h:
        received: dict[str, list[pb.FireEvent]] = {"ack-1": [], "ack-2": [], "silent": []}

        async def member(name: str, ack: bool) -> None:
            request = pb.FireRequest(filter=pb.FireFilter(targets=[target]), consumer_group=group,
                                     ack_deadline=dur(1.0), max_attempts=10, subscriber_id=name)
            async for response in h.stub.Fire(request):
                received[name].extend(response.events)
                if ack:
                    await h.stub.AcknowledgeFires(pb.AcknowledgeFiresRequest(
                        consumer_group=group, fire_ids=[e.fire_id for e in response.events]))

        tasks = [asyncio.create_task(member("ack-1", True)), asyncio.create_task(member("ack-2", True)),
                 asyncio.create_task(member("silent", False))]
        await asyncio.sleep(0.3)
        names = await fire_all(h, 60, target)

        async def all_acknowledged() -> bool:
            page = await h.stub.ListFires(pb.ListFiresRequest(
                filter=f'consumer_group = "{group}" AND state = ACKNOWLEDGED', page_size=1000))
            return len(page.fires) == 60

        await wait_for(all_acknowledged, timeout=60)
        stats = await h.stub.GetSchedulerStats(pb.GetSchedulerStatsRequest())
        streams = {s.subscriber_id: s for s in stats.subscriber_stats}
        assert set(streams) == {"ack-1", "ack-2", "silent"}
        assert all(s.consumer_group == group for s in streams.values())
        assert sum(s.events_sent for s in streams.values()) >= 60
        assert streams["silent"].events_sent > 0 and streams["ack-1"].lateness_p99.ToMicroseconds() >= 0
        for task in tasks:
            task.cancel()
        acked_ids = {e.fire_id for n in ("ack-1", "ack-2") for e in received[n]}
        assert {i.split("/fires/")[0] for i in acked_ids} == set(names)  # every alarm's fire reached an acker
        assert received["silent"], "round robin must have handed the silent member some fires"
        redelivered = [e for n in ("ack-1", "ack-2") for e in received[n] if e.attempt > 1]
        assert len(redelivered) >= len({e.fire_id for e in received["silent"]})
        dead = await h.stub.ListFires(
            pb.ListFiresRequest(filter=f'consumer_group = "{group}" AND state = DEAD_LETTERED'))
        assert dead.fires == []


async def test_unacknowledged_fire_is_dead_lettered(migrated_database_url: str) -> None:
    async with scheduler_server(migrated_database_url) as h:
        attempts: list[int] = []

        async def never_acks() -> None:
            request = pb.FireRequest(consumer_group="flaky", ack_deadline=dur(0.4), max_attempts=2)
            async for response in h.stub.Fire(request):
                attempts.extend(e.attempt for e in response.events)

        task = asyncio.create_task(never_acks())
        await asyncio.sleep(0.3)
        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.3)))

        async def dead_lettered() -> list[pb.FireRecord]:
            page = await h.stub.ListFires(pb.ListFiresRequest(
                filter='consumer_group = "flaky" AND state = DEAD_LETTERED'))
            return list(page.fires)

        await wait_for(dead_lettered, timeout=20)
        task.cancel()
        [record] = await dead_lettered()
        assert record.alarm == alarm.name and record.attempts == 2
        assert record.state == pb.DELIVERY_STATE_DEAD_LETTERED
        assert attempts == [1, 2]
        late_ack = await h.stub.AcknowledgeFires(pb.AcknowledgeFiresRequest(consumer_group="flaky",
                                                                            fire_ids=[record.fire_id]))
        assert late_ack.acknowledged_count == 0


async def test_slow_subscriber_is_cut_off_while_a_fast_one_keeps_up(migrated_database_url: str) -> None:
    target = "devices/storm"
    count = 3000
    async with scheduler_server(migrated_database_url, fire_stream_buffer=500) as h:
        # Its own connection, as a real instrument has; BDP probing off keeps its HTTP/2 window at 64 KiB, so a
        # reader that stops reading stalls the stream after a few hundred events instead of megabytes.
        slow_channel = grpc.aio.insecure_channel(h.address, options=[("grpc.http2.bdp_probe", 0)])
        slow_stub = scheduler_pb2_grpc.SchedulerServiceStub(slow_channel)
        slow = slow_stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[target]), max_events_per_message=1))
        fast_events: list[pb.FireEvent] = []

        async def fast() -> None:
            async for response in h.stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[target]))):
                fast_events.extend(response.events)

        fast_task = asyncio.create_task(fast())
        await slow.wait_for_connection()
        await asyncio.sleep(0.3)
        # A steady 1,000 fires per second for three seconds, each carrying a 1 KiB payload.
        payload = struct_pb2.Struct(fields={"blob": struct_pb2.Value(string_value="x" * 1024)})
        start_at = time.time() + 2.0
        for first in range(0, count, 1000):
            await h.stub.BatchCreateAlarms(pb.BatchCreateAlarmsRequest(requests=[
                pb.CreateAlarmRequest(alarm=pb.Alarm(target=target, payload=payload,
                                                     schedule=pb.Schedule(at=ts(at=start_at + i / 1000))))
                for i in range(first, first + 1000)
            ]))
        await wait_for(lambda: len(fast_events) >= count, timeout=60)
        fast_task.cancel()
        assert len({e.fire_id for e in fast_events}) == count

        # The slow one never read: it was cut off, with its resume cursor, after what it had been sent.
        got: list[pb.FireEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in slow:
                got.extend(response.events)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error_info, _ = status_details(info.value)
        assert error_info is not None and error_info.reason == "SUBSCRIBER_OVERFLOW"
        assert len(got) < count
        resumed = await collect(
            h.stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[target]), cursor=error_info.metadata["cursor"])),
            count - len(got),
        )
        assert {e.fire_id for e in got} | {e.fire_id for e in resumed} == {e.fire_id for e in fast_events}
        await slow_channel.close()


async def test_group_resumes_after_a_scheduler_restart(migrated_database_url: str) -> None:
    target = "devices/restart"
    group = "workers"
    received: list[pb.FireEvent] = []

    async def member(h) -> None:
        request = pb.FireRequest(filter=pb.FireFilter(targets=[target]), consumer_group=group,
                                 ack_deadline=dur(1.0))
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in h.stub.Fire(request):
                received.extend(response.events)
                await h.stub.AcknowledgeFires(pb.AcknowledgeFiresRequest(
                    consumer_group=group, fire_ids=[e.fire_id for e in response.events]))

    async with scheduler_server(migrated_database_url) as h:
        task = asyncio.create_task(member(h))
        await asyncio.sleep(0.3)
        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=pb.Alarm(
            target=target, schedule=pb.Schedule(interval=pb.IntervalSchedule(every=dur(0.2))),
            misfire_policy=pb.MisfirePolicy(grace=dur(60), catch_up=pb.CATCH_UP_ALL))))
        await wait_for(lambda: len(received) >= 5)
    await asyncio.wait_for(task, 10)  # the stream ended when the server stopped
    before = len(received)
    await asyncio.sleep(2.0)  # fires fall due while no scheduler runs

    async with scheduler_server(migrated_database_url) as h:
        task = asyncio.create_task(member(h))
        await wait_for(lambda: len(received) >= before + 10)
        await h.stub.PauseAlarm(pb.PauseAlarmRequest(name=alarm.name))

        async def settled() -> bool:
            page = await h.stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{alarm.name}"', page_size=1000))
            states = {f.state for f in (await h.stub.ListFires(pb.ListFiresRequest(
                filter=f'consumer_group = "{group}"', page_size=1000))).fires}
            return page.fires and states == {pb.DELIVERY_STATE_ACKNOWLEDGED}

        await wait_for(settled, timeout=30)
        task.cancel()
        logged = await h.stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{alarm.name}" AND outcome = LATE',
                                                            page_size=1000))
        on_time = await h.stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{alarm.name}" AND outcome = ON_TIME',
                                                             page_size=1000))
        every_fire = {f.fire_id for f in logged.fires} | {f.fire_id for f in on_time.fires}
        assert logged.fires, "occurrences due during the restart were caught up (policy ALL), recorded late"
        assert every_fire <= {e.fire_id for e in received}  # none lost across the restart


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[object] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_mailer_retries_until_the_smtp_server_answers(migrated_database_url: str) -> None:
    port = _free_port()
    async with scheduler_server(migrated_database_url, smtp_host="127.0.0.1", smtp_port=port,
                                smtp_starttls=False, smtp_retry_interval=0.5) as h:
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=pb.Alarm(
            display_name="media change", owner_email="tech@lab.example", notify_owner=True,
            target="devices/bioreactor-2", schedule=pb.Schedule(at=ts(0.3)))))
        await wait_for(lambda: h.service.mailer.failures >= 1)  # SMTP is down: not acknowledged, retried

        inbox = _Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            await wait_for(lambda: inbox.messages, timeout=20)
        finally:
            controller.stop()
        envelope = inbox.messages[0]
        assert envelope.rcpt_tos == ["tech@lab.example"]
        assert b"media change fired" in envelope.content
        await wait_for(lambda: h.service.mailer.sent == 1)
        await asyncio.sleep(1.2)  # longer than the retry interval: an acknowledged fire is not mailed again
        assert len(inbox.messages) == 1
