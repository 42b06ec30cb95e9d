"""open_channel: lab propagation, default deadline for unary responses only, and the shared metrics."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import grpc.aio
import pytest

from servicekit.channels import open_channel
from servicekit.errors import InvalidArgument
from servicekit.metrics import record_pool_usage, start_metrics_server
from servicekit.tenancy import LAB_METADATA_KEY, lab_metadata
from tests.runtime_helpers.echo import EchoClient, EchoService
from tests.runtime_helpers.hosting import free_port, running_host, target


async def test_channel_lab_is_sent_unless_the_call_names_its_own() -> None:
    async with running_host(EchoService()) as host, open_channel(target(host), lab="lab-a") as channel:
        client = EchoClient(channel)
        assert (await client.echo({"text": "x"}))["lab"] == "lab-a"
        assert (await client.echo({"text": "x"}, metadata=lab_metadata("lab-b")))["lab"] == "lab-b"
        assert (await client.echo({"text": "x"}, metadata=(("other", "1"),)))["lab"] == "lab-a"


def test_lab_is_validated_on_the_way_out() -> None:
    with pytest.raises(InvalidArgument):
        open_channel("127.0.0.1:1", lab="Not/A/Lab")
    assert lab_metadata("lab-b") == ((LAB_METADATA_KEY, "lab-b"),)


async def test_default_deadline_applies_to_unary_calls_only() -> None:
    async with running_host(EchoService()) as host, open_channel(target(host), default_timeout=0.2) as channel:
        client = EchoClient(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.echo({"action": "sleep", "seconds": 2})
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # An explicit timeout wins over the default.
        assert await client.echo({"action": "sleep", "seconds": 0.3}, timeout=5) == {"slept": 0.3}
        # Streams outlive the default deadline (fire subscriptions stay open for days).
        received = [m["n"] async for m in client.ticks({"count": 6, "interval": 0.1})]
        assert received == list(range(6))


async def test_metrics_endpoint_serves_the_shared_series() -> None:
    port = free_port()
    server = start_metrics_server(port, addr="127.0.0.1")
    assert server is not None and start_metrics_server(port, addr="127.0.0.1") is server  # idempotent
    assert start_metrics_server(0) is None  # 0 = disabled
    record_pool_usage("scheduler", checked_out=5, capacity=20)
    url = f"http://127.0.0.1:{port}/metrics"
    body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
    assert 'database_connection_pool_usage{service="scheduler"} 0.25' in body
    assert 'labmesh_process_memory_bytes{kind="rss"}' in body
    server.shutdown()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_lab_is_added_to_streaming_calls_too(migrated_database_url: str) -> None:
    """grpc.aio files an interceptor under one call kind only: each kind needs its own instance."""
    from labmesh.scheduler.v1 import scheduler_pb2 as pb
    from labmesh.scheduler.v1 import scheduler_pb2_grpc

    from tests.scheduler_support import at_alarm, collect, scheduler_server

    async with scheduler_server(migrated_database_url) as h, open_channel(h.address, lab="lab-x") as channel:
        stream = scheduler_pb2_grpc.SchedulerServiceStub(channel).Fire(pb.FireRequest())
        await stream.wait_for_connection()
        await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.3), alarm_id="in-default"))
        await h.lab_channel("lab-x").CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(0.6), alarm_id="in-lab-x"))
        [event] = await collect(stream, 1)
        stream.cancel()
        assert event.alarm.name == "alarms/in-lab-x"  # the stream was scoped to lab-x by the channel
