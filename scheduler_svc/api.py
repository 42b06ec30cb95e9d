"""The SchedulerService servicer: thin on purpose. It reads the caller's lab, hands the request to the logic
(`alarms`, `delivery`, `engine`) and shapes the response; validation and persistence live below it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psutil
import sqlalchemy as sa
from google.protobuf import empty_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

from scheduler_svc.alarms import AlarmService, _dur, _ts
from scheduler_svc.delivery import FireHub, fire_id
from scheduler_svc.engine import Engine
from scheduler_svc.stats import percentile
from scheduler_svc.store import DeliveryStore, fires, group_deliveries
from servicekit import listing
from servicekit.errors import InvalidArgument
from servicekit.tenancy import lab_of

DELIVERY_STATES = {
    "DELIVERED": pb.DELIVERY_STATE_DELIVERED, "ACKNOWLEDGED": pb.DELIVERY_STATE_ACKNOWLEDGED,
    "DEAD_LETTERED": pb.DELIVERY_STATE_DEAD_LETTERED,
}
OUTCOMES = {"ON_TIME": 1, "LATE": 2, "MISSED": 3, "SKIPPED": 4}


class SchedulerApi(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, alarms: AlarmService, hub: FireHub, engine: Engine, deliveries: DeliveryStore,
                 settings: Any, draining: asyncio.Event) -> None:
        self.alarms = alarms
        self.hub = hub
        self.engine = engine
        self.deliveries = deliveries
        self.settings = settings
        self.draining = draining

    def _lab(self, context: grpc.aio.ServicerContext) -> str:
        return lab_of(context, self.settings.default_lab)

    # ------------------------------------------------------------------ alarms

    async def CreateAlarm(self, request: pb.CreateAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        if not request.HasField("alarm"):
            raise InvalidArgument("alarm is required", violations={"alarm": "required"})
        return await self.alarms.create(self._lab(context), request.alarm, request.alarm_id, request.request_id)

    async def BatchCreateAlarms(self, request: pb.BatchCreateAlarmsRequest,
                                context: grpc.aio.ServicerContext) -> pb.BatchCreateAlarmsResponse:
        created = await self.alarms.batch_create(self._lab(context), list(request.requests))
        return pb.BatchCreateAlarmsResponse(alarms=created)

    async def ImportAlarms(self, request_iterator: AsyncIterator[pb.ImportAlarmsRequest],
                           context: grpc.aio.ServicerContext) -> pb.ImportAlarmsResponse:
        async def chunks() -> AsyncIterator[Any]:
            async for request in request_iterator:
                yield request.alarms

        count, elapsed = await self.alarms.import_alarms(self._lab(context), chunks())
        return pb.ImportAlarmsResponse(imported_count=count, elapsed=_dur(int(elapsed * 1e6)))

    async def GetAlarm(self, request: pb.GetAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        return await self.alarms.get(self._lab(context), request.name)

    async def ListAlarms(self, request: pb.ListAlarmsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListAlarmsResponse:
        alarms, token, total = await self.alarms.list(
            self._lab(context), page_size=request.page_size, page_token=request.page_token, filter=request.filter,
            order_by=request.order_by,
        )
        return pb.ListAlarmsResponse(alarms=alarms, next_page_token=token, total_size=total)

    async def UpdateAlarm(self, request: pb.UpdateAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        return await self.alarms.update(self._lab(context), request.alarm, paths)

    async def DeleteAlarm(self, request: pb.DeleteAlarmRequest,
                          context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self.alarms.delete(self._lab(context), request.name, request.etag, request.allow_missing)
        return empty_pb2.Empty()

    async def PauseAlarm(self, request: pb.PauseAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        return await self.alarms.pause(self._lab(context), request.name, request.etag)

    async def ResumeAlarm(self, request: pb.ResumeAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        return await self.alarms.resume(self._lab(context), request.name, request.etag, request.policy)

    async def SnoozeAlarm(self, request: pb.SnoozeAlarmRequest, context: grpc.aio.ServicerContext) -> pb.Alarm:
        return await self.alarms.snooze(self._lab(context), request.name, request.duration, request.etag)

    async def PreviewSchedule(self, request: pb.PreviewScheduleRequest,
                              context: grpc.aio.ServicerContext) -> pb.PreviewScheduleResponse:
        after = request.after if request.HasField("after") else None
        occurrences = self.alarms.preview(request.alarm, after, request.count, self._lab(context))
        return pb.PreviewScheduleResponse(occurrences=[
            pb.Occurrence(nominal_time=_ts(o.nominal_us), scheduled_time=_ts(o.due_us)) for o in occurrences
        ])

    async def GetSchedulerStats(self, request: pb.GetSchedulerStatsRequest,
                                context: grpc.aio.ServicerContext) -> pb.SchedulerStats:
        lab = self._lab(context)
        async with self.alarms.db.connect() as conn:
            by_state = await self.alarms.store.count_by_state(conn, lab)
        engine = self.engine.describe()
        stats = self.engine.stats
        lateness = stats.lateness_percentiles()
        batch = stats.batch_percentiles()
        size, in_use, maximum = self.alarms.db.pool_status()
        return pb.SchedulerStats(
            instance_id=engine["instance_id"],
            total_alarms=sum(by_state.values()), active_alarms=by_state.get("ACTIVE", 0),
            paused_alarms=by_state.get("PAUSED", 0), completed_alarms=by_state.get("COMPLETED", 0),
            shard_count=engine["shard_count"], owned_shards=engine["owned_shards"],
            window_size=engine["window_size"], window_capacity=engine["window_capacity"],
            window_horizon=_dur(engine["window_horizon_us"]),
            fires_per_second_1m=stats.fires_per_second(),
            fires_on_time=stats.outcomes[1], fires_late=stats.outcomes[2], fires_missed=stats.outcomes[3],
            fires_skipped=stats.outcomes[4],
            lateness_p50=_dur(int(lateness["p50"])), lateness_p90=_dur(int(lateness["p90"])),
            lateness_p99=_dur(int(lateness["p99"])), lateness_max=_dur(int(lateness["max"])),
            batch_processing_p50=_dur(int(batch["p50"] * 1e6)), batch_processing_p99=_dur(int(batch["p99"] * 1e6)),
            db_pool_size=size, db_pool_in_use=in_use, db_pool_max=maximum,
            memory_rss_bytes=psutil.Process().memory_info().rss,
            subscribers=self.hub.subscriber_count, consumer_groups=await self.deliveries.count_groups(),
            start_time=_ts(int(stats.start_time * 1e6)),
            subscriber_stats=[_subscriber_stats(sub) for sub in self.hub.streams if sub.lab == lab],
        )

    # ------------------------------------------------------------------ fires

    async def Fire(self, request: pb.FireRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.FireResponse]:
        lab = self._lab(context)
        # Headers go out at once, so a subscriber knows it is subscribed before the first fire (and
        # wait_for_connection() returns); errors found while catching up still end the stream with a status.
        await context.send_initial_metadata((("labmesh-fire-log-head", str(self.hub.last_seq)),))
        async for response in self.hub.stream(lab, request, self.draining):
            yield response

    async def AcknowledgeFires(self, request: pb.AcknowledgeFiresRequest,
                               context: grpc.aio.ServicerContext) -> pb.AcknowledgeFiresResponse:
        count, unknown = await self.hub.acknowledge(self._lab(context), request.consumer_group,
                                                    list(request.fire_ids))
        return pb.AcknowledgeFiresResponse(acknowledged_count=count, unknown_fire_ids=unknown)

    async def ListFires(self, request: pb.ListFiresRequest,
                        context: grpc.aio.ServicerContext) -> pb.ListFiresResponse:
        lab = self._lab(context)
        size = listing.page_size(request.page_size)
        conditions = listing.parse_filter(
            request.filter, allowed=("alarm", "target", "consumer_group", "state", "outcome")
        )
        where: list[Any] = []
        group: str | None = None
        state: str | None = None
        for c in conditions:
            if c.op != "=":
                raise InvalidArgument("only = is supported", violations={"filter": f"{c.field}: use ="},
                                      reason="INVALID_FILTER")
            if c.field == "alarm":
                where.append(fires.c.alarm_id == c.value.removeprefix("alarms/"))
            elif c.field == "target":
                where.append(fires.c.target == c.value)
            elif c.field == "consumer_group":
                group = c.value
            elif c.field == "outcome":
                outcome = OUTCOMES.get(c.value.upper().removeprefix("FIRE_OUTCOME_"))
                if outcome is None:
                    raise InvalidArgument("unknown outcome", violations={"filter": f"outcome {c.value!r}"},
                                          reason="INVALID_FILTER")
                where.append(fires.c.outcome == outcome)
            else:
                state = c.value.upper().removeprefix("DELIVERY_STATE_")
        if state is not None:
            where.append(_state_condition(state, group))
        query = {"filter": request.filter}
        after = listing.decode_page_token(request.page_token, query)
        rows = await self.deliveries.list_fires(lab, where=where, group=group, after_seq=after, limit=size + 1)
        token = listing.encode_page_token(rows[size - 1].seq, query) if len(rows) > size else ""
        return pb.ListFiresResponse(fires=[_record(r, group) for r in rows[:size]], next_page_token=token)


def _subscriber_stats(sub: Any) -> pb.SubscriberStats:
    recent = sorted(sub.lateness_us)
    return pb.SubscriberStats(
        subscriber_id=sub.subscriber_id, consumer_group=sub.group, connect_time=_ts(sub.connect_us),
        events_sent=sub.sent, buffered=len(sub.queue), lateness_p50=_dur(int(percentile(recent, 0.5))),
        lateness_p99=_dur(int(percentile(recent, 0.99))),
    )


def _state_condition(state: str, group: str | None) -> Any:
    if state == "MISSED":
        return fires.c.outcome.in_((3, 4))
    if group is None:
        if state == "DELIVERED":
            return fires.c.outcome.in_((1, 2))
        raise InvalidArgument("delivery states other than DELIVERED and MISSED need a consumer_group",
                              violations={"filter": "add consumer_group = \"...\""}, reason="INVALID_FILTER")
    if state == "PENDING":
        return sa.and_(group_deliveries.c.state.is_(None), fires.c.outcome.in_((1, 2)))
    if state == "REDELIVERED":
        return sa.and_(group_deliveries.c.state == "DELIVERED", group_deliveries.c.attempt > 1)
    if state in DELIVERY_STATES:
        return group_deliveries.c.state == state
    raise InvalidArgument("unknown state", violations={"filter": f"state {state!r}"}, reason="INVALID_FILTER")


def _record(row: Any, group: str | None) -> pb.FireRecord:
    record = pb.FireRecord(
        fire_id=fire_id(row.alarm_id, row.nominal_us), alarm=f"alarms/{row.alarm_id}", target=row.target,
        nominal_time=_ts(row.nominal_us), scheduled_time=_ts(row.due_us), fire_time=_ts(row.fire_us),
        outcome=row.outcome, reason=row.reason or "", consumer_group=group or "", cursor=str(row.seq),
    )
    if row.outcome in (3, 4):
        record.state = pb.DELIVERY_STATE_MISSED
    elif group is None:
        record.state = pb.DELIVERY_STATE_DELIVERED
    elif row.state is None:
        record.state = pb.DELIVERY_STATE_PENDING
    else:
        record.attempts = row.attempt
        record.state = DELIVERY_STATES[row.state]
        if row.state == "DELIVERED" and row.attempt > 1:
            record.state = pb.DELIVERY_STATE_REDELIVERED
        for field, us in (("sent_time", row.sent_us), ("delivered_time", row.delivered_us),
                          ("acknowledged_time", row.acked_us)):
            if us is not None:
                getattr(record, field).CopyFrom(_ts(us))
    return record
