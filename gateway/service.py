"""The gateway as a ``servicekit.server.Service``, and the host it runs on.

Run it with :func:`build_gateway_host`, which wires what a bare ``ServiceHost([GatewayService(...)])`` cannot::

    host = build_gateway_host(Settings.from_env())
    await host.serve_until_signal()

* every method of ``SchedulerService``, ``DeviceService`` and ``SampleService`` is proxied to
  ``SCHEDULER_ADDRESS`` / ``DEVICE_ADDRESS`` / ``SAMPLE_ADDRESS`` (:mod:`gateway.proxy`); a missing address is a
  :class:`~servicekit.config.ConfigError` naming the variable, raised when the gateway is built;
* reflection lists the three services (plus health and reflection): the gateway process imports the generated
  descriptors, so grpcurl, ``buf curl`` and k6 can discover and call every method through it;
* health reports each of the three names as its backend does (:mod:`gateway.health`), and ``""`` for the gateway
  process itself.

The gateway has no proto service of its own. :attr:`GatewayService.name` is therefore the health service's name:
the host puts every service's name into reflection, and a name reflection cannot resolve breaks clients that
describe every listed service (``grpcurl describe``, k6's ``reflect``); the three backend names cannot be it
either, because the host reports its services' names ``SERVING`` regardless of their backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from labmesh.device.v1 import device_pb2
from labmesh.sample.v1 import sample_pb2
from labmesh.scheduler.v1 import scheduler_pb2

from gateway.health import BackendHealth
from gateway.proxy import Proxy, capture_interceptors, routes_of
from servicekit.channels import open_channel
from servicekit.config import ConfigError, Settings
from servicekit.server import ServiceHost

__all__ = ["BACKENDS", "Backend", "BackendChannels", "GatewayService", "backend_targets", "build_gateway_host"]

#: Reconnect quickly to a backend that restarted (grpc's default backoff grows to 120 s).
BACKEND_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


@dataclass(frozen=True)
class Backend:
    """A proxied service and the setting holding its backend's address."""

    service: ServiceDescriptor
    setting: str  # a field of Settings, e.g. "scheduler_address"

    @property
    def name(self) -> str:
        return self.service.full_name

    @property
    def variable(self) -> str:
        """The environment variable of :attr:`setting` (for error messages)."""
        return next(f.metadata["env"] for f in dataclasses.fields(Settings) if f.name == self.setting)


BACKENDS: tuple[Backend, ...] = (
    Backend(scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"], "scheduler_address"),
    Backend(device_pb2.DESCRIPTOR.services_by_name["DeviceService"], "device_address"),
    Backend(sample_pb2.DESCRIPTOR.services_by_name["SampleService"], "sample_address"),
)

_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def backend_targets(settings: Settings, backends: tuple[Backend, ...] = BACKENDS) -> dict[str, str]:
    """``{service name: target}``; :class:`ConfigError` naming the variable of the first missing address."""
    targets = {}
    for backend in backends:
        target = getattr(settings, backend.setting)
        if not target:
            raise ConfigError(
                backend.variable,
                target,
                f"the gRPC target of the {backend.service.name} backend (e.g. {backend.setting.split('_')[0]}:50051):"
                " the gateway forwards every call to it",
            )
        targets[backend.name] = target
    return targets


class BackendChannels:
    """One channel per backend target (several services may share a target), opened on first use."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def __call__(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            # No default deadline: the caller's own deadline (or none) is passed on, see gateway.proxy.
            channel = open_channel(
                target, default_timeout=None, interceptors=capture_interceptors(), options=BACKEND_CHANNEL_OPTIONS
            )
            self._channels[target] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


class GatewayService:
    """Proxies every RPC of :data:`BACKENDS` to its backend. See the module docstring; build with
    :func:`build_gateway_host`, or call :meth:`attach` with the host before it starts."""

    name = _HEALTH_SERVICE

    def __init__(
        self,
        settings: Settings,
        draining: asyncio.Event,
        *,
        health_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.draining = draining
        #: ``{service name: backend target}`` (validated: every address is set).
        self.targets = backend_targets(settings)
        self._channels = BackendChannels()
        self.proxy = Proxy(
            [route for b in BACKENDS for route in routes_of(b.service, self.targets[b.name])],
            self._channels,
            draining,
        )
        self._health_interval = health_interval
        self._health: HealthServicer | None = None
        self._backend_health: BackendHealth | None = None

    @property
    def reflection_names(self) -> list[str]:
        """The proxied services' names, for the host's reflection."""
        return [b.name for b in BACKENDS]

    def attach(self, host: ServiceHost) -> None:
        """Report the backends' health on ``host``'s health service (call before ``host.start()``)."""
        self._health = host.health

    def register(self, server: grpc.aio.Server) -> None:
        self.proxy.register(server)

    async def start(self) -> None:
        if self._health is None:
            raise RuntimeError(
                "GatewayService was not attached to its host: build it with gateway.service.build_gateway_host()"
            )
        self._backend_health = BackendHealth(self._health, self.targets, self._channels, interval=self._health_interval)
        await self._backend_health.start()

    async def stop(self) -> None:
        if self._backend_health is not None:
            await self._backend_health.stop()
        await self._channels.close()


def build_gateway_host(
    settings: Settings,
    *,
    address: str | None = None,
    draining: asyncio.Event | None = None,
    health_interval: float = 1.0,
) -> ServiceHost:
    """A :class:`ServiceHost` running the gateway on ``address`` (default ``settings.address``), not started yet.

    Raises :class:`ConfigError` when a backend address is missing.
    """
    draining = draining if draining is not None else asyncio.Event()
    gateway = GatewayService(settings, draining, health_interval=health_interval)
    host = ServiceHost(
        [gateway],
        address=address or settings.address,
        settings=settings,
        draining=draining,
        reflection_names=gateway.reflection_names,
    )
    gateway.attach(host)
    return host
