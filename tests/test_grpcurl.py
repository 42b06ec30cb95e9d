"""The README's grpcurl commands against a real scheduler: discovery through server reflection, CreateAlarm with a
JSON body, the Fire stream printing a fire as JSON, and errors shown with their details."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from tests import tools
from tests.scheduler_support import Harness, scheduler_server, wait_for

SERVICE = "labmesh.scheduler.v1.SchedulerService"
TARGET = "devices/incubator-7"
FIRE_RPC = "rpc Fire ( .labmesh.scheduler.v1.FireRequest ) returns ( stream .labmesh.scheduler.v1.FireResponse );"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def h(migrated_database_url: str) -> AsyncIterator[Harness]:
    async with scheduler_server(migrated_database_url) as harness:
        yield harness


async def grpcurl(address: str, *args: str, data: str | None = None, timeout: float = 15.0) -> tuple[int, str, str]:
    """Run `grpcurl -plaintext [-d data] address args...`; returns (exit code, stdout, stderr)."""
    command = [tools.grpcurl(), "-plaintext", *(["-d", data] if data is not None else []), address, *args]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def rfc3339(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat().replace("+00:00", "Z")


async def read_messages(stream: asyncio.StreamReader, until: Any, timeout: float) -> list[dict[str, Any]]:
    """Decode the pretty-printed JSON messages grpcurl writes for a stream until `until(messages)` holds."""
    decoder = json.JSONDecoder()
    buffer, messages = "", []

    async def read() -> None:
        nonlocal buffer
        while not until(messages):
            chunk = await stream.read(65536)
            if not chunk:
                raise AssertionError(f"grpcurl output ended; messages so far: {messages}")
            buffer += chunk.decode()
            while (text := buffer.lstrip()).startswith("{"):
                try:
                    message, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    break  # incomplete: wait for more output
                messages.append(message)
                buffer = text[end:]

    await asyncio.wait_for(read(), timeout)
    return messages


async def test_list_and_describe_through_reflection(h: Harness) -> None:
    code, out, err = await grpcurl(h.address, "list")
    assert code == 0, err
    assert SERVICE in out.split()

    code, out, err = await grpcurl(h.address, "list", SERVICE)
    assert code == 0, err
    assert f"{SERVICE}.Fire" in out.split() and f"{SERVICE}.CreateAlarm" in out.split()

    code, out, err = await grpcurl(h.address, "describe", SERVICE)
    assert code == 0, err
    assert FIRE_RPC in out

    code, out, err = await grpcurl(h.address, "describe", "labmesh.scheduler.v1.FireRequest")
    assert code == 0, err
    assert "string consumer_group = 2" in out


async def test_describe_a_method(h: Harness) -> None:
    code, out, err = await grpcurl(h.address, "describe", f"{SERVICE}.Fire")
    assert code == 0, err
    assert FIRE_RPC in out


async def test_create_alarm_and_receive_its_fire_on_the_fire_stream(h: Harness) -> None:
    subscriber = await asyncio.create_subprocess_exec(
        tools.grpcurl(), "-plaintext", "-max-time", "30", "-d", json.dumps({"filter": {"targets": [TARGET]}}),
        h.address, f"{SERVICE}/Fire", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async def subscribed() -> bool:
            if subscriber.returncode is not None:
                raise AssertionError(f"grpcurl Fire exited: {(await subscriber.communicate())[1].decode()}")
            return (await h.stub.GetSchedulerStats(pb.GetSchedulerStatsRequest())).subscribers >= 1

        await wait_for(subscribed, timeout=15)

        at = rfc3339(1.0)
        code, out, err = await grpcurl(h.address, f"{SERVICE}/CreateAlarm",
                                       data=json.dumps({"alarm": {"target": TARGET, "schedule": {"at": at}}}))
        assert code == 0, err
        alarm = json.loads(out)
        assert alarm["name"].startswith("alarms/")
        assert alarm["target"] == TARGET
        assert alarm["state"] == "STATE_ACTIVE"
        assert alarm["schedule"] == {"at": at}
        assert alarm["next_fire_time"] == at
        assert (await h.stub.GetAlarm(pb.GetAlarmRequest(name=alarm["name"]))).target == TARGET

        assert subscriber.stdout is not None
        messages = await read_messages(
            subscriber.stdout, lambda ms: any(e["alarm"]["name"] == alarm["name"] for m in ms for e in m["events"]),
            timeout=20,
        )
        [event] = [e for m in messages for e in m["events"] if e["alarm"]["name"] == alarm["name"]]
        assert event["fire_id"].startswith(f"{alarm['name']}/fires/")
        assert event["alarm"]["target"] == TARGET
        assert event["attempt"] == 1
        assert event["outcome"] in ("FIRE_OUTCOME_ON_TIME", "FIRE_OUTCOME_LATE")
    finally:
        if subscriber.returncode is None:
            subscriber.kill()
        await subscriber.wait()


async def test_errors_show_their_details(h: Harness) -> None:
    code, _, err = await grpcurl(h.address, f"{SERVICE}/CreateAlarm",
                                 data=json.dumps({"alarm": {"target": TARGET}}))
    assert code == 64 + 3, err  # grpcurl exits 64 + the status code (INVALID_ARGUMENT = 3)
    assert "Code: InvalidArgument" in err
    assert '"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"labmesh.dev"' in err
    assert '"@type":"type.googleapis.com/google.rpc.BadRequest"' in err and '"field":"alarm.schedule"' in err

    code, _, err = await grpcurl(h.address, f"{SERVICE}/GetAlarm", data='{"name":"alarms/nope"}')
    assert code == 64 + 5, err  # NOT_FOUND
    assert '"reason":"ALARM_NOT_FOUND"' in err
