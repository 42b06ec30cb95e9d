"""A Node.js client (@grpc/grpc-js + @grpc/proto-loader reading proto/ directly, tests/node/fire_client.mjs)
subscribes to Fire through a consumer group, receives a fire created from Python and acknowledges it."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from tests import tools
from tests.scheduler_support import at_alarm, scheduler_server

CLIENT = tools.REPO / "tests" / "node" / "fire_client.mjs"
TARGET = "devices/incubator-7"


async def start_client(*args: str) -> asyncio.subprocess.Process:
    tools.node_modules()
    return await asyncio.create_subprocess_exec(
        tools.node(), str(CLIENT), *args, cwd=tools.REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def read_json_line(process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert process.stdout is not None and process.stderr is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    if not line:
        await process.wait()
        stderr = (await process.stderr.read()).decode(errors="replace")
        pytest.fail(f"node client exited ({process.returncode}) without output: {stderr}", pytrace=False)
    return json.loads(line)


async def finish(process: asyncio.subprocess.Process, timeout: float) -> tuple[list[dict[str, Any]], str]:
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    return lines, stderr.decode(errors="replace")


@pytest.fixture
async def cleanup() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes appended here are killed if the test leaves them running."""
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_node_client_receives_and_acknowledges_a_fire(
    migrated_database_url: str, cleanup: list[asyncio.subprocess.Process]
) -> None:
    group = f"node-{uuid.uuid4().hex[:8]}"
    async with scheduler_server(migrated_database_url) as h:
        client = await start_client("--address", h.address, "--group", group, "--target", TARGET,
                                    "--count", "1", "--timeout-ms", "20000")
        cleanup.append(client)
        # The server sends the stream's headers at once: after them the group exists and this member is in it.
        subscribed = await read_json_line(client, timeout=15)
        assert subscribed["type"] == "subscribed", subscribed
        assert "labmesh-fire-log-head" in subscribed["headers"]

        alarm = await h.stub.CreateAlarm(pb.CreateAlarmRequest(alarm=at_alarm(1.0, target=TARGET)))
        lines, stderr = await finish(client, timeout=25)
        assert client.returncode == 0, f"node client failed ({client.returncode}): {stderr}\n{lines}"

        [event] = [line for line in lines if line["type"] == "event"]
        assert event["alarm"] == alarm.name
        assert event["fire_id"].startswith(f"{alarm.name}/fires/")
        assert event["target"] == TARGET
        assert event["attempt"] == 1
        assert event["cursor"].isdigit()
        assert event["outcome"] in ("FIRE_OUTCOME_ON_TIME", "FIRE_OUTCOME_LATE")

        [ack] = [line for line in lines if line["type"] == "ack"]
        assert ack["fire_ids"] == [event["fire_id"]]
        assert ack["acknowledged_count"] == 1
        assert ack["unknown_fire_ids"] == []

        page = await h.stub.ListFires(pb.ListFiresRequest(
            filter=f'consumer_group = "{group}" AND state = ACKNOWLEDGED'))
        [record] = page.fires
        assert record.fire_id == event["fire_id"]
        assert record.alarm == alarm.name
        assert record.consumer_group == group
        assert record.state == pb.DELIVERY_STATE_ACKNOWLEDGED
        assert record.attempts == 1
        assert record.cursor == event["cursor"]
        assert record.HasField("acknowledged_time")


async def test_node_client_exits_1_when_the_server_is_unreachable(
    cleanup: list[asyncio.subprocess.Process]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = await start_client("--address", f"127.0.0.1:{port}", "--group", "g", "--target", TARGET,
                                "--timeout-ms", "10000")
    cleanup.append(client)
    lines, stderr = await finish(client, timeout=15)
    assert client.returncode == 1
    assert lines == []
    assert "UNAVAILABLE" in stderr
