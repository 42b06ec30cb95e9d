"""The generic proxy: every method of the routed services is forwarded, as raw bytes, to that service's backend.

Nothing is deserialized: handlers are registered with ``request_deserializer=None`` / ``response_serializer=None``
and backend calls are made with identity serializers, so one handler per cardinality serves every method, and a
new field or method in a contract needs no gateway change beyond regenerating ``gen/``. Each method's cardinality
comes from the generated descriptors.

For every call the proxy

* forwards the invocation metadata, minus HTTP/2 pseudo-headers, hop-by-hop headers, ``user-agent``, the
  ``grpc-*`` reserved keys and the W3C ``traceparent``/``tracestate`` (tracing re-injects its own: the gateway's
  CLIENT span becomes the parent of the backend's SERVER span) — see :meth:`Proxy.outgoing_metadata`, the seam
  where authentication, lab isolation and rate limits will go;
* passes the caller's remaining deadline (``context.time_remaining()``) as the backend call's timeout — no
  deadline stays no deadline (fire subscriptions and heartbeats live for days);
* cancels the backend call when the caller cancels (or its deadline expires), and ends the caller's call when the
  backend call ends: its status code, details and trailing metadata — including ``grpc-status-details-bin``, so
  ``ErrorInfo`` / ``BadRequest`` details survive the hop — and its response headers are passed back;
* ends response streams with ``UNAVAILABLE`` / ``SHUTTING_DOWN`` when the gateway drains (like every labmesh
  stream), so clients reconnect to another gateway pod and resume from their cursor.

A backend that cannot be reached at all (a connection failure: ``UNAVAILABLE`` without any status details) is
reported as the gateway's own ``UNAVAILABLE`` with reason ``BACKEND_UNAVAILABLE`` and the service name, instead of
grpc's transport message (which names internal addresses).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor

from servicekit.errors import Unavailable
from servicekit.server import stream_until_draining

__all__ = ["Proxy", "Route", "capture_interceptors", "forward_metadata", "routes_of"]

MetadataItems = list[tuple[str, str | bytes]]

#: Metadata keys never forwarded, in either direction (HTTP/2 connection-level, or set by grpc / tracing itself).
DROPPED_KEYS = frozenset(
    {
        "connection",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "traceparent",
        "tracestate",
    }
)

#: The one reserved ``grpc-*`` key that is passed through (backend -> caller): the rich ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def forward_metadata(
    metadata: Iterable[tuple[str, str | bytes]], *, keep: frozenset[str] = frozenset()
) -> MetadataItems:
    """``metadata`` without pseudo-headers, hop-by-hop keys and reserved ``grpc-*`` keys (except those in ``keep``)."""
    forwarded: MetadataItems = []
    for key, value in metadata:
        key = key.lower()
        if key.startswith(":") or key in DROPPED_KEYS:
            continue
        if key.startswith("grpc-") and key not in keep:
            continue
        forwarded.append((key, value))
    return forwarded


def _response_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> MetadataItems:
    return forward_metadata(metadata or (), keep=frozenset({STATUS_DETAILS_KEY}))


@dataclass(frozen=True)
class Route:
    """One proxied method: its path, its cardinality, and the backend target that serves it."""

    service: str  # full proto service name, e.g. labmesh.scheduler.v1.SchedulerService
    method: str  # method name, e.g. CreateAlarm
    client_streaming: bool
    server_streaming: bool
    target: str

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


def routes_of(service: ServiceDescriptor, target: str) -> list[Route]:
    """One route per method of ``service`` (from its descriptor), all to ``target``."""
    return [Route(service.full_name, m.name, m.client_streaming, m.server_streaming, target) for m in service.methods]


# --- the raw backend call behind the tracing interceptors ------------------------------------------------------

# grpc.aio's intercepted calls cannot cancel an RPC while an interceptor still awaits it (OpenTelemetry's client
# interceptor awaits a unary call's status inside the interceptor task; cancelling that task leaves the RPC
# running). The innermost interceptor therefore hands the real call to the proxy's _BackendCall, found here.
_current: contextvars.ContextVar[_BackendCall] = contextvars.ContextVar("labmesh_gateway_backend_call")

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _record(call: Any) -> Any:
    backend = _current.get(None)
    if backend is not None:
        backend.record(call)
    return call


# One class per kind: grpc.aio files an interceptor under the first kind it implements only.
class _UnaryUnaryCapture(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return _record(await continuation(client_call_details, request))


class _UnaryStreamCapture(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return _record(await continuation(client_call_details, request))


class _StreamUnaryCapture(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return _record(await continuation(client_call_details, request_iterator))


class _StreamStreamCapture(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return _record(await continuation(client_call_details, request_iterator))


def capture_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The innermost interceptors of a backend channel: they hand each real call to the proxy."""
    return [_UnaryUnaryCapture(), _UnaryStreamCapture(), _StreamUnaryCapture(), _StreamStreamCapture()]


class _BackendCall:
    """A backend call started for one proxied call: cancellable however far its interceptors got, and with the
    status the backend really sent.

    The latter works around grpc/grpc#36066 (grpc.aio, still in 1.8x): when a backend ends a request-streaming
    call while the gateway is still forwarding requests, the failed write overwrites the backend's status with
    ``INTERNAL "Internal error from Core"`` — in a proxy, which always forwards with a lag, for ~10 % of early
    errors. The first status set on the call (seen by a done callback, before any overwrite) is the backend's.
    """

    def __init__(self, start: Callable[[], Any]) -> None:
        self._raw: list[Any] = []
        self._first_status: Any = None
        self._headers_sent = False
        token = _current.set(self)
        try:
            self.call = start()  # the interceptors' task copies the context, and so finds this object
        finally:
            _current.reset(token)

    async def send_headers(self, context: grpc.aio.ServicerContext, metadata: Any) -> None:
        """Pass the backend's response headers on to the caller (once; nothing to pass, nothing sent)."""
        headers = _response_metadata(metadata)
        if headers and not self._headers_sent:
            self._headers_sent = True
            await context.send_initial_metadata(headers)

    def record(self, raw: Any) -> None:
        self._raw.append(raw)
        raw.add_done_callback(self._on_done)

    def _on_done(self, raw: Any) -> None:
        if self._first_status is None:  # private grpc attributes: without them the workaround is simply off
            self._first_status = getattr(getattr(raw, "_cython_call", None), "_status", None)

    def cancel(self) -> None:
        if not self.call.done():
            self.call.cancel()
        for raw in self._raw:
            if not raw.done():
                raw.cancel()

    def status_of(self, err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
        """Code, details and trailing metadata the backend ended the call with."""
        first = self._first_status
        if err.code() == grpc.StatusCode.INTERNAL and first is not None:
            code = _STATUS_CODES.get(first.code())
            if code is not None and code not in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL):
                return code, first.details(), tuple(first.trailing_metadata() or ())
        return err.code(), err.details() or "", tuple(err.trailing_metadata() or ())


async def _request_pump(requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


# --- the proxy ---------------------------------------------------------------------------------------------------


class Proxy:
    """Registers one raw handler per route on a server and forwards each call to its route's target.

    ``channel(target)`` returns the (shared) channel to a backend; it should come from
    ``servicekit.channels.open_channel`` with :func:`capture_interceptors`.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        channel: Callable[[str], grpc.aio.Channel],
        draining: asyncio.Event,
    ) -> None:
        self.routes = tuple(routes)
        self._channel = channel
        self._draining = draining

    @property
    def services(self) -> list[str]:
        return list(dict.fromkeys(r.service for r in self.routes))

    def register(self, server: grpc.aio.Server) -> None:
        """Add the handlers, one generic handler per service: only the routed services' paths are claimed, so
        the host's ``grpc.health.v1.Health`` and reflection services are never shadowed."""
        for service in self.services:
            handlers = {r.method: self.method_handler(r) for r in self.routes if r.service == service}
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
            server.add_registered_method_handlers(service, handlers)

    def method_handler(self, route: Route) -> grpc.RpcMethodHandler:
        """The raw-bytes handler forwarding ``route`` (no (de)serializers: requests and responses stay bytes)."""
        if route.client_streaming and route.server_streaming:

            async def stream_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
                async for response in self._stream_response(route, _request_pump(requests), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(stream_stream)
        if route.client_streaming:

            async def stream_unary(requests: AsyncIterator[bytes], context: Any) -> bytes:
                return await self._unary_response(route, _request_pump(requests), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary)
        if route.server_streaming:

            async def unary_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                async for response in self._stream_response(route, request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream)

        async def unary_unary(request: bytes, context: Any) -> bytes:
            return await self._unary_response(route, request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary)

    # --- the seam for the gateway's own policies ---------------------------------------------------------------

    async def outgoing_metadata(self, route: Route, context: grpc.aio.ServicerContext) -> MetadataItems:
        """The metadata the backend call carries.

        Today: the caller's metadata, filtered (:func:`forward_metadata`) — including the ``labmesh-lab`` the
        caller sent, unchecked. Authentication, lab isolation and rate limits (a later issue) go here: authenticate
        the caller, *overwrite* ``labmesh-lab`` with the caller's lab (backends trust that header), refuse with a
        ``servicekit.errors`` exception (``Unauthenticated``, ``PermissionDenied``, ``ResourceExhausted``) —
        the ``ErrorInterceptor`` turns it into the caller's status before any backend is called.
        """
        return forward_metadata(context.invocation_metadata() or ())

    # --- forwarding ------------------------------------------------------------------------------------------

    async def _start(self, route: Route, request: Any, context: grpc.aio.ServicerContext) -> _BackendCall:
        metadata = await self.outgoing_metadata(route, context)
        timeout = context.time_remaining()  # None: the caller set no deadline, and neither do we
        channel = self._channel(route.target)
        if route.client_streaming and route.server_streaming:
            multicallable: Any = channel.stream_stream(route.path)
        elif route.client_streaming:
            multicallable = channel.stream_unary(route.path)
        elif route.server_streaming:
            multicallable = channel.unary_stream(route.path)
        else:
            multicallable = channel.unary_unary(route.path)
        return _BackendCall(lambda: multicallable(request, timeout=timeout, metadata=metadata))

    async def _unary_response(self, route: Route, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        backend = await self._start(route, request, context)
        call = backend.call
        try:
            response = await call
        except grpc.aio.AioRpcError as err:
            await _end_with(route, backend, err, context)
        finally:
            backend.cancel()  # no-op when the call completed; the caller went away otherwise
        await backend.send_headers(context, await call.initial_metadata())
        context.set_trailing_metadata(_response_metadata(await call.trailing_metadata()))
        return response

    async def _stream_response(
        self, route: Route, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        backend = await self._start(route, request, context)
        call = backend.call

        async def responses() -> AsyncIterator[bytes]:
            await backend.send_headers(context, await call.initial_metadata())
            async for response in call:
                yield response

        try:
            async for response in stream_until_draining(self._draining, responses()):
                yield response
        except grpc.aio.AioRpcError as err:
            await _end_with(route, backend, err, context)
        finally:
            backend.cancel()  # caller cancelled, deadline passed, or the gateway drains: end the backend call too
        context.set_trailing_metadata(_response_metadata(await call.trailing_metadata()))


async def _end_with(
    route: Route, backend: _BackendCall, err: grpc.aio.AioRpcError, context: grpc.aio.ServicerContext
) -> NoReturn:
    """End the caller's call with the backend call's status, details, headers and trailers."""
    code, details, trailing = backend.status_of(err)
    trailers = _response_metadata(trailing)
    if code == grpc.StatusCode.UNAVAILABLE and not trailers and not _response_metadata(err.initial_metadata()):
        # Not the backend's answer but a failure to reach it: say so without grpc's transport details.
        raise Unavailable(
            f"{route.service} is unavailable: the gateway cannot reach its backend",
            reason="BACKEND_UNAVAILABLE",
            metadata={"service": route.service},
            retry_after=1.0,
        ) from None
    await backend.send_headers(context, err.initial_metadata())
    await context.abort(code, details, tuple(trailers))
    raise AssertionError("unreachable: context.abort always raises")  # pragma: no cover
