"""ErrorInterceptor over a real server: every handler kind, rich details, nothing leaked (AIP-193)."""

from __future__ import annotations

import logging
import re

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicekit.channels import open_channel
from servicekit.errors import (
    ERROR_DOMAIN,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
    status_details,
    to_rpc_status,
)
from servicekit.tenancy import LAB_METADATA_KEY
from tests.runtime_helpers.echo import EchoClient, EchoService
from tests.runtime_helpers.hosting import running_host, target

CRON_FIELD = "alarm.schedule.cron.expression"


@pytest.fixture
async def client():
    async with running_host(EchoService()) as host, open_channel(target(host)) as channel:
        yield EchoClient(channel)


async def test_invalid_argument_carries_bad_request_and_error_info(client: EchoClient) -> None:
    request = {"action": "invalid", "violations": {CRON_FIELD: "expected 5 fields, got 4"}}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.echo(request)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert CRON_FIELD in err.details()

    status = rpc_status.from_call(err)
    assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info, bad_request = status_details(err)
    assert info is not None and info.reason == "INVALID_ARGUMENT" and info.domain == ERROR_DOMAIN
    assert bad_request is not None
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        (CRON_FIELD, "expected 5 fields, got 4")
    ]


async def test_reason_and_metadata_reach_the_client(client: EchoClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.echo({"action": "not_found"})
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info, bad_request = status_details(caught.value)
    assert info is not None and info.reason == "ALARM_NOT_FOUND" and dict(info.metadata) == {"alarm": "alarms/42"}
    assert bad_request is None


async def test_unexpected_exception_is_internal_and_leaks_nothing(
    client: EchoClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="servicekit.errors"), pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.echo({"action": "crash"})
    err = caught.value
    assert err.code() == grpc.StatusCode.INTERNAL
    match = re.fullmatch(r"internal error \(id=([0-9a-f]{12})\)", err.details())
    assert match, err.details()
    everything_sent = err.details() + repr(err.trailing_metadata()) + repr(err.debug_error_string())
    for secret in ("hunter2", "engine.py", "RuntimeError", "Traceback"):
        assert secret not in everything_sent
    info, _ = status_details(err)
    assert info is not None and info.reason == "INTERNAL" and info.metadata["incidentId"] == match.group(1)
    # ... while the operator gets the traceback under the same id.
    record = next(r for r in caplog.records if match.group(1) in r.getMessage())
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_handler_may_still_abort_itself(client: EchoClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.echo({"action": "abort"})
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "slow down"


async def test_service_error_mid_stream_ends_with_its_status(client: EchoClient) -> None:
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in client.ticks({"fail_at": 3, "interval": 0}):
            received.append(message["n"])
    assert received == [0, 1, 2]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = status_details(caught.value)
    assert info is not None and info.reason == "TICK_FAILED" and info.metadata["tick"] == "3"


async def test_crash_mid_stream_is_internal(client: EchoClient) -> None:
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in client.ticks({"crash_at": 2, "interval": 0}):
            received.append(message["n"])
    assert received == [0, 1]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()


async def test_streaming_handler_writing_through_the_context(client: EchoClient) -> None:
    assert [m["n"] async for m in client.writes({"count": 3})] == [0, 1, 2]
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in client.writes({"count": 2, "fail": True}):
            received.append(message["n"])
    assert received == [0, 1]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = status_details(caught.value)
    assert info is not None and info.reason == "WRITES_FAILED"


async def test_client_streaming_error(client: EchoClient) -> None:
    assert await client.sum(iter([{"value": 1}, {"value": 2}])) == {"total": 3}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.sum(iter([{"value": 1}, {"value": -1}]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, bad_request = status_details(caught.value)
    assert bad_request is not None and bad_request.field_violations[0].field == "value"


async def test_bidirectional_streaming_error(client: EchoClient) -> None:
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in client.chat(iter([{"text": "hello"}, {"text": "forbidden"}, {"text": "never"}])):
            received.append(message["echo"])
    assert received == ["hello"]
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _ = status_details(caught.value)
    assert info is not None and info.reason == "FORBIDDEN_WORD"


async def test_unknown_method_is_unimplemented() -> None:
    async with running_host(EchoService()) as host, grpc.aio.insecure_channel(target(host)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/labmesh.test.v1.EchoService/Nope")(b"")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_malformed_lab_metadata_names_the_field(client: EchoClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.echo({"text": "hi"}, metadata=((LAB_METADATA_KEY, "Not A Lab!"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, bad_request = status_details(caught.value)
    assert info is not None and info.reason == "INVALID_LAB"
    assert bad_request is not None and bad_request.field_violations[0].field == "metadata.labmesh-lab"


async def test_lab_metadata_is_read_and_defaulted(client: EchoClient) -> None:
    assert (await client.echo({"text": "hi"}))["lab"] == "default"
    assert (await client.echo({"text": "hi"}, metadata=((LAB_METADATA_KEY, "lab-7"),)))["lab"] == "lab-7"


# --- without a server --------------------------------------------------------------------------------------------


def test_violations_collects_everything_in_one_pass() -> None:
    v = Violations()
    v.add("alarm.display_name", "must not be empty")
    schedule = v.nested("alarm.schedule")
    schedule.add("cron.expression", "expected 5 fields")
    schedule.nested("interval").add("seconds", "must be positive")
    assert len(v) == 3 and bool(v)
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any(reason="INVALID_ALARM")
    assert caught.value.reason == "INVALID_ALARM"
    assert caught.value.violations == (
        FieldViolation("alarm.display_name", "must not be empty"),
        FieldViolation("alarm.schedule.cron.expression", "expected 5 fields"),
        FieldViolation("alarm.schedule.interval.seconds", "must be positive"),
    )
    assert caught.value.message == "invalid alarm.display_name: must not be empty (and 2 more)"
    Violations().raise_if_any()  # nothing collected: no error


def test_to_rpc_status_round_trip() -> None:
    status = to_rpc_status(Unavailable("busy", reason="SHUTTING_DOWN", retry_after=1.5))
    assert status.code == grpc.StatusCode.UNAVAILABLE and status.details == "busy"
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    decoded = status_pb2.Status.FromString(value)
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert decoded.details[0].Unpack(info) and info.reason == "SHUTTING_DOWN"
    assert decoded.details[1].Unpack(retry) and retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_reasons_must_be_upper_snake_case() -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        NotFound("x", reason="alarmNotFound")
    assert NotFound().reason == "NOT_FOUND" and NotFound().message == "not found"
    assert InvalidArgument(violations=[("a", "b")]).violations == (FieldViolation("a", "b"),)
