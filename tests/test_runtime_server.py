"""ServiceHost over real sockets: health, reflection, lifecycle, draining, and SIGTERM in a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from servicekit.errors import status_details
from servicekit.server import ServiceHost, stream_until_draining
from tests.runtime_helpers.echo import SERVICE, EchoClient, EchoService
from tests.runtime_helpers.hosting import make_settings, running_host, target

REPO = Path(__file__).resolve().parents[1]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return response.status


async def test_health_is_serving_for_the_server_and_each_service() -> None:
    other = EchoService("labmesh.test.v1.OtherService")
    async with (
        running_host(EchoService(), other, health_names=["labmesh.test.v1.Backend"]) as host,
        grpc.aio.insecure_channel(target(host)) as channel,
    ):
        for name in ("", SERVICE, "labmesh.test.v1.OtherService", "labmesh.test.v1.Backend"):
            assert await check(channel, name) == SERVING, name
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check(channel, "labmesh.test.v1.Unknown")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # The health servicer is public so a gateway can report its backends.
        await host.health.set("labmesh.test.v1.Backend", NOT_SERVING)
        assert await check(channel, "labmesh.test.v1.Backend") == NOT_SERVING


async def test_reflection_lists_every_service() -> None:
    async with (
        running_host(EchoService(), reflection_names=["labmesh.test.v1.Extra"]) as host,
        grpc.aio.insecure_channel(target(host)) as channel,
    ):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        response = await call.read()
        call.cancel()
    names = {s.name for s in response.list_services_response.service}
    assert names == {
        SERVICE,
        "labmesh.test.v1.Extra",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_services_are_started_and_stopped_with_the_host() -> None:
    service = EchoService()
    async with running_host(service) as host:
        assert service.started and not service.stopped
        assert host.port and host.port > 0
    assert service.stopped
    assert host.draining.is_set()


async def test_start_prints_the_listening_line(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_host(EchoService()) as host:
        assert f"listening on 127.0.0.1:{host.port}\n" in capsys.readouterr().out


async def test_a_busy_port_fails_loudly() -> None:
    async with running_host(EchoService()) as host:
        settings = make_settings()
        second = ServiceHost([EchoService()], address=target(host), settings=settings)
        with pytest.raises(RuntimeError, match="could not bind"):
            await second.start()


async def test_stop_drains_streams_and_lets_unary_calls_finish() -> None:
    service = EchoService()
    async with running_host(service) as host, grpc.aio.insecure_channel(target(host)) as channel:
        client = EchoClient(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == SERVING
        stream = client.ticks({"interval": 0.01})
        assert (await stream.read())["n"] == 0
        in_flight = asyncio.ensure_future(client.echo({"action": "sleep", "seconds": 0.3}))
        await asyncio.sleep(0.05)

        stopping = asyncio.ensure_future(host.stop(grace=5))
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                await stream.read()
        assert await in_flight == {"slept": 0.3}  # finished within the grace period
        await asyncio.wait_for(stopping, 5)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info, _ = status_details(caught.value)
    assert info is not None and info.reason == "SHUTTING_DOWN"
    assert service.stopped


async def test_stream_until_draining_passes_items_and_ends_of_the_source() -> None:
    async def numbers(n: int):
        for i in range(n):
            yield i

    assert [i async for i in stream_until_draining(asyncio.Event(), numbers(3))] == [0, 1, 2]

    closed = asyncio.Event()

    async def forever():
        try:
            while True:
                await asyncio.sleep(3600)
                yield 0
        finally:
            closed.set()

    draining = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, draining.set)
    with pytest.raises(Exception, match="shutting down") as caught:
        async for _ in stream_until_draining(draining, forever()):
            pass
    assert caught.value.reason == "SHUTTING_DOWN"  # type: ignore[attr-defined]
    assert closed.is_set()


# --- SIGTERM, in a real process ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    grace = 5.0
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"LABMESH_ADDRESS": "127.0.0.1:0", "SHUTDOWN_GRACE": str(grace), "PYTHONPATH": str(REPO)}
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.runtime_helpers.serve",
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    try:
        address = await asyncio.wait_for(_listening_address(proc), 30)
        async with grpc.aio.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == SERVING
            stream = EchoClient(channel).ticks({"interval": 0.05})  # would stream forever
            assert (await stream.read())["n"] == 0

            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            assert (await asyncio.wait_for(watch.read(), grace)).status == NOT_SERVING
            watch.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                while True:
                    await asyncio.wait_for(stream.read(), grace)
            returncode = await asyncio.wait_for(proc.wait(), grace + 5)
            elapsed = time.monotonic() - sent_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    logs = stderr_path.read_text()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, logs
    info, _ = status_details(caught.value)
    assert info is not None and info.reason == "SHUTTING_DOWN", caught.value
    assert returncode == 0, logs
    assert elapsed < grace, f"took {elapsed:.1f}s to exit"


async def _listening_address(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    while line := (await proc.stdout.readline()).decode():
        if line.startswith("listening on "):
            return line.removeprefix("listening on ").strip()
    raise AssertionError(f"the server exited ({await proc.wait()}) without printing 'listening on'")
