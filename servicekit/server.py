"""The one grpc.aio server bootstrap: every service, and ``labmesh up``, runs inside a :class:`ServiceHost`.

A host owns one ``grpc.aio.Server`` and gives every service on it the same machinery:

* interceptors, outermost first: tracing (``telemetry.server_interceptors``), then ``errors.ErrorInterceptor``,
  then the caller's extras (which therefore may raise ``ServiceError`` and are traced);
* the standard health service (``grpc.health.v1.Health``): ``NOT_SERVING`` while starting, ``SERVING`` for ``""``
  and every service name once the services' background work has started, ``NOT_SERVING`` again the moment
  shutdown begins — Kubernetes' native gRPC probes and the gateway read it;
* server reflection listing every service (grpcurl, ``buf curl`` and k6 discover methods through it);
* graceful shutdown (:meth:`ServiceHost.stop`), see below;
* the Prometheus endpoint (``METRICS_PORT``) and the loop's default executor (``WORKER_THREADS``).

Shutdown, in order (grpc's graceful-shutdown example, plus a signal for long streams):

1. health -> ``NOT_SERVING`` for every name, so load balancers and probes stop sending new calls;
2. ``draining`` is set: server-streaming handlers that wait on it (:func:`stream_until_draining`) end their stream
   with ``UNAVAILABLE`` / ``ErrorInfo.reason = "SHUTTING_DOWN"`` — a clean status the client answers by
   reconnecting (to another pod) and resuming from its last cursor, instead of a cut connection;
3. ``server.stop(grace)``: no new calls; in-flight unary calls get ``grace`` seconds to finish, then are cancelled;
4. each service's ``stop()``, in reverse order, releases engines, pools and channels.

Connection management (``SERVER_OPTIONS``):

* keepalive: the server pings an idle client every 60 s and drops it after 20 s without an answer, so the
  handlers of a vanished instrument are cancelled within ~80 s; it accepts client pings every >= 10 s, with or
  without calls or data (clients ping every 30 s, see ``channels``), so instruments can hold streams for days;
* ``max_connection_age`` 30 min (grpc adds +-10 % jitter): the server then sends GOAWAY, and clients open a new
  connection for their *next* calls — re-resolving DNS and spreading over pods added by a scale-up behind a
  headless Service. The age grace is infinite: calls already running on the old connection, including streams
  that live for days, are never cut by it. Streams move on their own schedule (a pod's shutdown ends them with
  SHUTTING_DOWN and the client resumes by cursor); a finite grace would cut them without a status every 30 min;
* ``so_reuseport`` off: a second process on a busy port fails to bind instead of silently sharing it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from servicekit import telemetry
from servicekit.channels import MAX_MESSAGE_BYTES
from servicekit.config import Settings
from servicekit.errors import ErrorInterceptor, Unavailable
from servicekit.metrics import start_metrics_server

__all__ = ["SERVER_OPTIONS", "Service", "ServiceHost", "shutting_down", "stream_until_draining"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# grpc core reads INT_MAX milliseconds as "infinite" for duration arguments.
_INFINITE_MS = 2**31 - 1

#: Server options (see the module docstring for why each value).
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_connection_age_ms", 30 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", _INFINITE_MS),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class Service(Protocol):
    """What a host needs from a service (scheduler, device, sample, gateway)."""

    #: Full proto service name, e.g. ``labmesh.scheduler.v1.SchedulerService``: health and reflection report it.
    name: str

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer to ``server`` (``add_XServicer_to_server``)."""
        ...

    async def start(self) -> None:
        """Start background work (engines, leases) once the server is bound; health turns SERVING after it."""
        ...

    async def stop(self) -> None:
        """Release resources after the server has stopped accepting calls and in-flight calls ended."""
        ...


def shutting_down(metadata: Mapping[str, str] | None = None) -> Unavailable:
    """The error a long-lived stream ends with when its server drains; `metadata` may carry where to resume."""
    return Unavailable(
        "server is shutting down; reconnect and resume from your last cursor",
        reason="SHUTTING_DOWN",
        metadata=metadata,
        retry_after=1.0,
    )


async def stream_until_draining(draining: asyncio.Event, source: AsyncIterable[T]) -> AsyncIterator[T]:
    """Yield from ``source`` until ``draining`` is set, then raise :func:`shutting_down` (UNAVAILABLE).

    The pattern for every long-lived server-streaming handler::

        async def SubscribeFires(self, request, context):
            async for fire in stream_until_draining(self.draining, self.delivery.fires(lab, cursor)):
                yield fire

    ``source`` is closed when the stream ends, whichever way. A source that ends by itself ends the stream OK.
    """
    iterator = aiter(source)
    drained = asyncio.ensure_future(draining.wait())
    step: asyncio.Future[T] | None = None
    try:
        while not draining.is_set():
            step = asyncio.ensure_future(anext(iterator))
            await asyncio.wait((step, drained), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                break
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
        raise shutting_down()
    finally:
        # Runs on drain, on error and when the client cancels: stop the pending read before closing the source.
        drained.cancel()
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait((step,))
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class ServiceHost:
    """Runs ``services`` on one gRPC server bound to ``address``. See the module docstring."""

    def __init__(
        self,
        services: Sequence[Service],
        *,
        address: str,
        settings: Settings,
        extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        reflection_names: Sequence[str] = (),
        health_names: Sequence[str] = (),
        draining: asyncio.Event | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """``draining`` lets services receive the event before the host exists (build both from one event);
        ``options`` are grpc server options that override :data:`SERVER_OPTIONS`;
        ``reflection_names`` / ``health_names`` add names beyond the services' own (e.g. the gateway's backends).
        """
        self.services: tuple[Service, ...] = tuple(services)
        self.address = address
        self.settings = settings
        #: The aio health servicer: others (the gateway) may set statuses of further names on it.
        self.health = HealthServicer()
        #: Set when shutdown begins: long-lived streams watch it and end cleanly.
        self.draining: asyncio.Event = draining if draining is not None else asyncio.Event()
        #: The bound port, once started.
        self.port: int | None = None
        self._extra_interceptors = tuple(extra_interceptors)
        self._reflection_names = tuple(reflection_names)
        self._health_names = tuple(health_names)
        self._options = dict(SERVER_OPTIONS) | dict(options)
        self._server: grpc.aio.Server | None = None
        self._started: list[Service] = []
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def service_names(self) -> list[str]:
        """The proto service names this host serves (its services' and the extra health/reflection names)."""
        return _unique([s.name for s in self.services])

    async def start(self) -> int:
        """Bind (port 0 picks a free port), start the services, turn health SERVING; return the bound port.

        Prints ``listening on HOST:PORT`` on stdout (scripts and tests wait for that line).
        """
        if self._server is not None:
            raise RuntimeError("ServiceHost.start() called twice")
        _install_default_executor(self.settings.worker_threads)
        start_metrics_server(self.settings.metrics_port)

        server = grpc.aio.server(
            interceptors=[*telemetry.server_interceptors(), ErrorInterceptor(), *self._extra_interceptors],
            options=list(self._options.items()),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for service in self.services:
            service.register(server)
        reflection.enable_server_reflection(
            _unique([*self.service_names, *self._reflection_names, _HEALTH_SERVICE, reflection.SERVICE_NAME]),
            server,
            pool=_MethodAwarePool(descriptor_pool.Default()),
        )
        health_names = self._all_health_names()
        for name in health_names:  # until the services have started, probes must not route traffic here
            await self.health.set(name, _NOT_SERVING)
        try:
            port = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise RuntimeError(f"could not bind {self.address}: {exc}") from exc
        await server.start()
        self._server, self.port = server, port

        try:
            for service in self.services:
                await service.start()
                self._started.append(service)
        except BaseException:
            await self.stop(grace=0)
            raise
        for name in health_names:
            await self.health.set(name, _SERVING)

        host = self.address.rpartition(":")[0]
        logger.info("listening on %s:%d (%s)", host, port, ", ".join(self.service_names) or "no services")
        print(f"listening on {host}:{port}", flush=True)
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop (see the module docstring). ``grace`` defaults to ``SHUTDOWN_GRACE``; safe to call twice."""
        if self._server is None:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.settings.shutdown_grace if grace is None else grace
        try:
            await self.health.enter_graceful_shutdown()
            self.draining.set()
            logger.info("draining: waiting up to %gs for in-flight calls", grace)
            await self._server.stop(grace)
        finally:
            for service in reversed(self._started):
                try:
                    await service.stop()
                except Exception:
                    logger.exception("stopping %s failed", service.name)
            self._stopped.set()
            logger.info("stopped")

    async def serve_until_signal(self) -> None:
        """Start, run until SIGTERM or SIGINT, then stop with ``SHUTDOWN_GRACE``.

        After the first signal the handlers are removed, so a second Ctrl-C (or SIGTERM) ends the process at once.
        """
        loop = asyncio.get_running_loop()
        received = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)

        def on_signal(signum: signal.Signals) -> None:
            logger.info("received %s: shutting down", signum.name)
            for sig in signals:
                loop.remove_signal_handler(sig)
            received.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start()
            await received.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self.stop(grace=self.settings.shutdown_grace)

    async def wait_for_termination(self) -> None:
        """Wait until the server has stopped (for callers that manage signals themselves)."""
        if self._server is not None:
            await self._server.wait_for_termination()

    def _all_health_names(self) -> list[str]:
        return _unique(["", *self.service_names, *self._health_names])


class _MethodAwarePool:
    """The default descriptor pool, plus lookups of `Service.Method` symbols.

    With protobuf's upb backend, `FindFileContainingSymbol` finds services, messages and fields but not methods,
    so `grpcurl describe labmesh.scheduler.v1.SchedulerService.Fire` failed with "Symbol not found".
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise KeyError(symbol) from None
            return service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


_configured_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _install_default_executor(threads: int) -> None:
    """Size the running loop's default executor (``asyncio.to_thread``, ``run_in_executor(None, ...)``) once."""
    loop = asyncio.get_running_loop()
    if loop not in _configured_loops:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="labmesh-worker"))
        _configured_loops.add(loop)
