"""Device and sample services, first cut: every RPC of both contracts answers UNIMPLEMENTED, naming the method."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from device_svc.api import SERVICE as DEVICE
from device_svc.service import DeviceService
from sample_svc.api import SERVICE as SAMPLE
from sample_svc.service import SampleService
from servicekit.errors import ERROR_DOMAIN, status_details
from servicekit.server import ServiceHost
from tests.runtime_helpers.hosting import make_settings

METHODS = [m for service in (DEVICE, SAMPLE) for m in service.methods]


async def raw_call(channel: grpc.aio.Channel, method: MethodDescriptor) -> None:
    """Call ``method`` with an empty request (or a stream of one) as raw bytes, whatever its cardinality."""
    path = f"/{method.containing_service.full_name}/{method.name}"

    async def requests() -> AsyncIterator[bytes]:
        yield b""

    if method.client_streaming and method.server_streaming:
        async for _ in channel.stream_stream(path)(requests(), timeout=5):
            pass
    elif method.client_streaming:
        await channel.stream_unary(path)(requests(), timeout=5)
    elif method.server_streaming:
        async for _ in channel.unary_stream(path)(b"", timeout=5):
            pass
    else:
        await channel.unary_unary(path)(b"", timeout=5)


async def assert_unimplemented(channel: grpc.aio.Channel, method: MethodDescriptor) -> None:
    full_name = f"{method.containing_service.full_name}/{method.name}"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(channel, method)
    err = caught.value
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, full_name
    assert err.details() == f"{full_name} is not implemented yet in this release"
    info, _ = status_details(err)
    assert info is not None, f"{full_name}: no ErrorInfo"
    assert (info.reason, info.domain, dict(info.metadata)) == ("NOT_IMPLEMENTED", ERROR_DOMAIN, {"method": full_name})


async def test_every_device_and_sample_rpc_is_unimplemented_with_a_clear_message() -> None:
    assert {m.client_streaming for m in METHODS} == {False, True}  # the loop covers every cardinality
    assert {m.server_streaming for m in METHODS} == {False, True}
    settings = make_settings()
    draining = asyncio.Event()
    host = ServiceHost(
        [DeviceService(settings, draining), SampleService(settings, draining)],
        address=settings.address,
        settings=settings,
        draining=draining,
    )
    await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            for method in METHODS:
                await assert_unimplemented(channel, method)
            health = health_pb2_grpc.HealthStub(channel)
            for name in (DEVICE.full_name, SAMPLE.full_name):
                response = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await host.stop(grace=0)


def test_services_are_named_after_their_contracts() -> None:
    settings = make_settings()
    assert DeviceService(settings, asyncio.Event()).name == "labmesh.device.v1.DeviceService"
    assert SampleService(settings, asyncio.Event()).name == "labmesh.sample.v1.SampleService"
