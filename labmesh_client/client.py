"""Connecting to labmesh: :func:`connect` and :class:`Client`."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.protobuf import duration_pb2
from labmesh.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

from labmesh_client.fires import FireStream

__all__ = ["CHANNEL_OPTIONS", "DEFAULT_ADDRESS", "LAB_METADATA_KEY", "Client", "connect"]

#: Where ``labmesh up`` listens by default.
DEFAULT_ADDRESS = "127.0.0.1:50051"

#: Request metadata carrying the caller's lab (the gateway sets it from the caller's identity).
LAB_METADATA_KEY = "labmesh-lab"

_MAX_MESSAGE_BYTES = 32 * 1024 * 1024

#: Channel options (the same as the services' own client channels, ``servicekit.channels``): keepalive pings every
#: 30 s so a dead connection is noticed within ~40 s even on a quiet fire stream, 32 MiB messages for imports and
#: large pages, and a reconnect backoff capped at 5 s so that a restarted server is reached again quickly.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
)


def connect(
    address: str = DEFAULT_ADDRESS,
    *,
    tls: bool = False,
    root_certificates: bytes | None = None,
    api_key: str | None = None,
    lab: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> Client:
    """Open a :class:`Client` to a labmesh server or gateway at ``address`` (``host:port``).

    ``tls`` uses TLS (``root_certificates``: PEM bytes of the CA to trust; default: the system's roots; passing
    ``root_certificates`` implies ``tls``). ``api_key`` is sent as ``authorization: Bearer <key>`` on every call,
    ``lab`` as ``labmesh-lab`` metadata (behind the gateway the lab comes from the key instead). ``options`` are
    extra grpc channel options, applied after :data:`CHANNEL_OPTIONS`.

    Call it from async code; the connection itself is opened lazily by the first call::

        async with labmesh_client.connect("127.0.0.1:50051") as client:
            alarm = await client.scheduler.GetAlarm(GetAlarmRequest(name="alarms/feed-7"))
    """
    metadata: list[tuple[str, str]] = []
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    if lab:
        metadata.append((LAB_METADATA_KEY, lab))
    interceptors = _metadata_interceptors(metadata)
    merged = dict(CHANNEL_OPTIONS)
    merged.update(options)
    if tls or root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        channel = grpc.aio.secure_channel(address, credentials, options=list(merged.items()), interceptors=interceptors)
    else:
        channel = grpc.aio.insecure_channel(address, options=list(merged.items()), interceptors=interceptors)
    return Client(channel, address=address)


class Client:
    """A connection to labmesh: the generated stubs plus a resumable fire subscription.

    ``client.scheduler`` is the ``SchedulerServiceStub`` (every RPC of ``labmesh.scheduler.v1``);
    ``client.device`` and ``client.sample`` are the device and sample stubs. Close the client with
    :meth:`close` or use it as ``async with``.

    Example — feed incubator 7 whenever its alarm fires, surviving server restarts::

        import asyncio, labmesh_client

        async def main():
            async with labmesh_client.connect("127.0.0.1:50051") as client:
                async for fire in client.fires({"targets": ["devices/incubator-7"]}):
                    print(fire.fire_id, fire.alarm.display_name, dict(fire.alarm.labels))

        asyncio.run(main())
    """

    def __init__(self, channel: grpc.aio.Channel, *, address: str = "") -> None:
        self.channel = channel
        self.address = address
        self.scheduler = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        self._device: Any = None
        self._sample: Any = None
        self._closed = False

    @property
    def device(self) -> Any:
        """The ``labmesh.device.v1.DeviceService`` stub."""
        if self._device is None:
            from labmesh.device.v1 import device_pb2_grpc

            self._device = device_pb2_grpc.DeviceServiceStub(self.channel)
        return self._device

    @property
    def sample(self) -> Any:
        """The ``labmesh.sample.v1.SampleService`` stub."""
        if self._sample is None:
            from labmesh.sample.v1 import sample_pb2_grpc

            self._sample = sample_pb2_grpc.SampleServiceStub(self.channel)
        return self._sample

    def fires(
        self,
        filter: scheduler_pb2.FireFilter | Mapping[str, Any] | None = None,
        *,
        consumer_group: str | None = None,
        cursor: str | None = None,
        max_events_per_message: int = 0,
        ack_deadline: float | _dt.timedelta | duration_pb2.Duration | None = None,
        max_attempts: int = 0,
        subscriber_id: str = "",
        min_backoff: float = 0.25,
        max_backoff: float = 30.0,
    ) -> FireStream:
        """Subscribe to fires: an async iterator of ``FireEvent`` that survives disconnects.

        ``filter`` is a ``FireFilter`` or a dict of its fields (``{"targets": [...], "labels": {...},
        "owner_email": ..., "alarms": [...]}``); unset = every fire of the lab. When the stream breaks (server
        shutdown or restart, UNAVAILABLE, an overflowed buffer, INTERNAL, a lost connection) the iterator
        reconnects with exponential backoff and jitter (``min_backoff`` doubling up to ``max_backoff`` seconds,
        reset by every message received) and resumes:

        * without ``consumer_group``: strictly after the last event it yielded (``stream.cursor``), so nothing
          is skipped or repeated. ``cursor`` starts there (e.g. a cursor saved by a previous run); without it the
          stream starts with live fires;
        * with ``consumer_group``: from the group's position kept by the server; each fire goes to one member of
          the group and must be acknowledged with :meth:`acknowledge` within ``ack_deadline`` (seconds) or it is
          redelivered, up to ``max_attempts`` deliveries. ``cursor`` only positions a group created by this call.

        Errors that reconnecting cannot fix (INVALID_ARGUMENT, OUT_OF_RANGE for an expired cursor,
        FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, ...) are raised as ``grpc.aio.AioRpcError``.
        Stop with ``await stream.aclose()`` or by closing the client::

            stream = client.fires({"targets": ["devices/incubator-7"]}, consumer_group="feeders", ack_deadline=60)
            async for fire in stream:
                await feed(fire.alarm.payload)
                await client.acknowledge("feeders", [fire.fire_id])
        """
        request = scheduler_pb2.FireRequest(
            consumer_group=consumer_group or "",
            cursor=cursor or "",
            max_events_per_message=max_events_per_message,
            max_attempts=max_attempts,
            subscriber_id=subscriber_id,
        )
        if filter is not None:
            if isinstance(filter, scheduler_pb2.FireFilter):
                request.filter.CopyFrom(filter)
            else:
                _fill_filter(request.filter, filter)
        if ack_deadline is not None:
            request.ack_deadline.CopyFrom(_duration(ack_deadline))
        return FireStream(self.scheduler, request, min_backoff=min_backoff, max_backoff=max_backoff,
                          address=self.address, closed=lambda: self._closed)

    async def acknowledge(self, consumer_group: str, fire_ids: Iterable[str]) -> scheduler_pb2.AcknowledgeFiresResponse:
        """Acknowledge fires received through ``consumer_group`` so they are not redelivered."""
        return await self.scheduler.AcknowledgeFires(
            scheduler_pb2.AcknowledgeFiresRequest(consumer_group=consumer_group, fire_ids=list(fire_ids))
        )

    async def close(self) -> None:
        """Close the channel; open fire streams end (their iterators stop). Safe to call twice."""
        self._closed = True
        await self.channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"


def _fill_filter(target: scheduler_pb2.FireFilter, spec: Mapping[str, Any]) -> None:
    unknown = set(spec) - {"targets", "labels", "owner_email", "alarms"}
    if unknown:
        raise ValueError(f"unknown fire filter field(s) {sorted(unknown)}: use targets, labels, owner_email, alarms")
    targets = spec.get("targets", ())
    target.targets.extend([targets] if isinstance(targets, str) else targets)
    target.labels.update(spec.get("labels", {}))
    target.owner_email = spec.get("owner_email", "") or ""
    alarms = spec.get("alarms", ())
    target.alarms.extend([alarms] if isinstance(alarms, str) else alarms)


def _duration(value: float | _dt.timedelta | duration_pb2.Duration) -> duration_pb2.Duration:
    if isinstance(value, duration_pb2.Duration):
        return value
    seconds = value.total_seconds() if isinstance(value, _dt.timedelta) else float(value)
    result = duration_pb2.Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result


class _DefaultMetadata:
    """Adds the client's metadata (authorization, lab) to every call that does not set those keys itself.

    grpc.aio files an interceptor object under only the *first* call kind it implements, so one instance per kind
    is installed (:func:`_metadata_interceptors`).
    """

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        existing = details.metadata
        current = existing if isinstance(existing, grpc.aio.Metadata) else grpc.aio.Metadata(*(existing or ()))
        added = [(k, v) for k, v in self._metadata if k not in current]
        if not added:
            return details
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*current, *added), details.credentials,
            details.wait_for_ready,
        )


class _UnaryUnaryMetadata(_DefaultMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamMetadata(_DefaultMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryMetadata(_DefaultMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamMetadata(_DefaultMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def _metadata_interceptors(metadata: Sequence[tuple[str, str]]) -> list[Any]:
    if not metadata:
        return []
    kinds = (_UnaryUnaryMetadata, _UnaryStreamMetadata, _StreamUnaryMetadata, _StreamStreamMetadata)
    return [kind(metadata) for kind in kinds]
