"""A real scheduler for tests: SchedulerService on a ServiceHost bound to port 0, and a channel to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

from scheduler_svc.service import SchedulerService
from servicekit.config import Settings
from servicekit.server import ServiceHost


@dataclass
class Harness:
    host: ServiceHost
    service: SchedulerService
    channel: grpc.aio.Channel
    stub: scheduler_pb2_grpc.SchedulerServiceStub
    address: str

    def lab_channel(self, lab: str) -> scheduler_pb2_grpc.SchedulerServiceStub:
        """A stub whose calls carry `labmesh-lab: lab` (as the gateway will set after authentication)."""
        return _LabStub(self.stub, lab)  # type: ignore[return-value]


class _LabStub:
    def __init__(self, stub: Any, lab: str) -> None:
        self._stub, self._lab = stub, lab

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            return method(request, metadata=(("labmesh-lab", self._lab),), **kwargs)

        return call


def settings_for(database_url: str, **overrides: Any) -> Settings:
    base = {"database_url": database_url, "address": "127.0.0.1:0", "lookahead": 5.0, "shutdown_grace": 2.0,
            "min_db_connections": 2, "max_db_connections": 10}
    base.update(overrides)
    return Settings().with_overrides(**base)


@contextlib.asynccontextmanager
async def scheduler_server(database_url: str, port: int = 0, **overrides: Any) -> AsyncIterator[Harness]:
    settings = settings_for(database_url, **overrides)
    draining = asyncio.Event()
    service = SchedulerService(settings, draining)
    host = ServiceHost([service], address=f"127.0.0.1:{port}", settings=settings, draining=draining)
    bound = await host.start()
    address = f"127.0.0.1:{bound}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Harness(host, service, channel, scheduler_pb2_grpc.SchedulerServiceStub(channel), address)
    finally:
        # Server first, as in a real restart: open streams end with UNAVAILABLE (SHUTTING_DOWN), not a cancel.
        await host.stop(grace=1.0)
        await channel.close()


def ts(seconds_from_now: float = 0.0, *, at: float | None = None) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(int(((at if at is not None else time.time()) + seconds_from_now) * 1e6))
    return stamp


def dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMicroseconds(int(seconds * 1e6))
    return d


def at_alarm(seconds_from_now: float, target: str = "devices/t", **fields: Any) -> pb.Alarm:
    return pb.Alarm(target=target, schedule=pb.Schedule(at=ts(seconds_from_now)), **fields)


async def collect(stream: Any, count: int, timeout: float = 20.0) -> list[pb.FireEvent]:
    """Read events from a Fire stream until `count` arrived (or fail after `timeout`)."""
    events: list[pb.FireEvent] = []

    async def read() -> None:
        async for response in stream:
            events.extend(response.events)
            if len(events) >= count:
                return

    await asyncio.wait_for(read(), timeout)
    return events


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
