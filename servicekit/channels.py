"""Client channels for service-to-service calls and the gateway: one place for the options every caller needs.

``open_channel(target)`` returns a ``grpc.aio.Channel`` with

* tracing: the OpenTelemetry client interceptors, so the callee's spans join the caller's trace;
* the caller's lab (optional): ``lab=`` adds ``labmesh-lab`` metadata to every call that does not set its own.
  A service calling another on behalf of a request passes ``metadata=tenancy.lab_metadata(lab)`` per call instead;
* a default deadline for calls with a single response (``default_timeout``, 30 s). Server-streaming calls get none:
  fire subscriptions and device streams legitimately stay open for days;
* keepalive pings every 30 s (timeout 10 s), also on idle connections and without data — a connection to a pod that
  vanished, or silently dropped by a NAT or load balancer, is noticed within ~40 s instead of at the next call;
  the server's ``http2.min_ping_interval_without_data_ms`` (10 s) allows this rate;
* ``round_robin`` load balancing: with a ``dns:///`` target naming a Kubernetes *headless* Service, the channel
  connects to every pod's address and spreads calls over them (the servers' max_connection_age makes it
  re-resolve, so new pods get traffic too);
* 32 MiB message limits (gRPC's default is 4 MiB), for bulk imports and large list pages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from grpc.aio import ClientCallDetails, Metadata

from servicekit import telemetry
from servicekit.tenancy import LAB_METADATA_KEY, validate_lab

__all__ = ["CLIENT_OPTIONS", "DEFAULT_TIMEOUT", "MAX_MESSAGE_BYTES", "open_channel"]

#: Default deadline (seconds) of unary-response calls made without ``timeout=``.
DEFAULT_TIMEOUT = 30.0

#: Largest message a labmesh client or server sends or accepts.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

#: Channel options (see the module docstring for why each value).
CLIENT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging through a stream that is quiet for hours
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
)


def open_channel(
    target: str,
    *,
    lab: str | None = None,
    default_timeout: float | None = DEFAULT_TIMEOUT,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
    compression: grpc.Compression | None = None,
) -> grpc.aio.Channel:
    """An insecure (in-mesh, plaintext) channel to ``target`` (``host:port`` or ``dns:///name:port``).

    ``options`` are appended after :data:`CLIENT_OPTIONS` and win over them; ``interceptors`` run inside the
    tracing interceptors. Close the channel with ``await channel.close()`` (or ``async with``).
    """
    chain: list[grpc.aio.ClientInterceptor] = []
    if lab is not None or default_timeout is not None:
        chain.extend(_call_defaults(lab=validate_lab(lab) if lab is not None else None, timeout=default_timeout))
    chain.extend(telemetry.client_interceptors())
    chain.extend(interceptors)
    merged = dict(CLIENT_OPTIONS)
    merged.update(options)
    return grpc.aio.insecure_channel(target, options=list(merged.items()), compression=compression, interceptors=chain)


class _CallDefaults:
    """Fills in what a call did not set itself: the ``labmesh-lab`` metadata and, for unary responses, a deadline.

    grpc.aio files each interceptor under the first call kind it implements, so one class implementing all four
    would only ever see unary-unary calls: :func:`_call_defaults` returns one instance per kind instead.
    """

    def __init__(self, *, lab: str | None, timeout: float | None) -> None:
        self._lab = lab
        self._timeout = timeout

    def _complete(self, details: ClientCallDetails, *, unary_response: bool) -> ClientCallDetails:
        metadata = details.metadata
        if self._lab is not None:
            metadata = metadata if isinstance(metadata, Metadata) else Metadata(*(metadata or ()))
            if LAB_METADATA_KEY not in metadata:
                metadata = Metadata(*metadata, (LAB_METADATA_KEY, self._lab))
        timeout = details.timeout
        if timeout is None and unary_response:
            timeout = self._timeout
        return ClientCallDetails(details.method, timeout, metadata, details.credentials, details.wait_for_ready)


class _UnaryUnaryDefaults(_CallDefaults, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._complete(client_call_details, unary_response=True), request)


class _UnaryStreamDefaults(_CallDefaults, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._complete(client_call_details, unary_response=False), request)


class _StreamUnaryDefaults(_CallDefaults, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._complete(client_call_details, unary_response=True), request_iterator)


class _StreamStreamDefaults(_CallDefaults, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(self._complete(client_call_details, unary_response=False), request_iterator)


def _call_defaults(*, lab: str | None, timeout: float | None) -> list[grpc.aio.ClientInterceptor]:
    kinds = (_UnaryUnaryDefaults, _UnaryStreamDefaults, _StreamUnaryDefaults, _StreamStreamDefaults)
    return [kind(lab=lab, timeout=timeout) for kind in kinds]
