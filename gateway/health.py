"""The gateway's health for each backend service: a mirror of what that backend's own health service says.

For every proxied service name the gateway host's health servicer reports ``SERVING`` only while the backend's
``grpc.health.v1.Health`` says ``SERVING`` for that name, and ``NOT_SERVING`` otherwise: backend down or
unreachable, draining, or not serving the name. A client, probe or ``helm test`` asking the gateway about
``labmesh.scheduler.v1.SchedulerService`` therefore learns whether calls to it can succeed through the gateway.

How: one task per name follows the backend's ``Watch`` stream while the backend is ``SERVING`` (a change reaches
the gateway at once). When the backend says anything else, or the stream fails, the task drops the stream and asks
again every ``interval`` seconds — so a draining backend is never held up by the gateway's open stream (grpc waits
for in-flight calls when a server stops). A backend without ``Watch`` is polled with ``Check``.

Statuses go to the host's servicer with ``set``, which it ignores once the host has entered graceful shutdown
(everything is ``NOT_SERVING`` from then on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

__all__ = ["BackendHealth"]

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BackendHealth:
    """Mirrors ``{service name: backend target}`` onto ``health`` (see the module docstring)."""

    def __init__(
        self,
        health: HealthServicer,
        targets: Mapping[str, str],
        channel: Callable[[str], grpc.aio.Channel],
        *,
        interval: float = 1.0,
        check_timeout: float = 5.0,
    ) -> None:
        self._health = health
        self._targets = dict(targets)
        self._channel = channel
        self._interval = interval
        self._check_timeout = check_timeout
        self._tasks: list[asyncio.Task[None]] = []
        self._last: dict[str, int] = {}

    async def start(self) -> None:
        """Report every name ``NOT_SERVING`` until its backend says otherwise, and start following them."""
        for name in self._targets:
            await self._publish(name, NOT_SERVING)
        for name, target in self._targets.items():
            stub = health_pb2_grpc.HealthStub(self._channel(target))
            self._tasks.append(asyncio.create_task(self._follow(name, stub), name=f"gateway-health:{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _follow(self, name: str, stub: health_pb2_grpc.HealthStub) -> None:
        request = health_pb2.HealthCheckRequest(service=name)
        watch_supported = True
        while True:
            serving = False
            try:
                if watch_supported:
                    serving = await self._watch_while_serving(name, stub, request)
                else:
                    response = await stub.Check(request, timeout=self._check_timeout)
                    serving = response.status == SERVING
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED and watch_supported:
                    watch_supported = False
                    continue
                logger.debug("health of %s from its backend: %s %s", name, err.code().name, err.details())
            await self._publish(name, SERVING if serving else NOT_SERVING)
            await asyncio.sleep(self._interval)

    async def _publish(self, name: str, status: int) -> None:
        if self._last.get(name) != status:
            logger.info("backend of %s is %s", name, health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            self._last[name] = status
        await self._health.set(name, status)

    async def _watch_while_serving(
        self, name: str, stub: health_pb2_grpc.HealthStub, request: health_pb2.HealthCheckRequest
    ) -> bool:
        """Follow ``Watch`` while the backend says SERVING (publishing it); return as soon as it says otherwise."""
        call = stub.Watch(request)
        try:
            async for response in call:
                if response.status != SERVING:
                    return False
                await self._publish(name, SERVING)
            return False  # the backend ended the stream: ask again
        finally:
            call.cancel()
