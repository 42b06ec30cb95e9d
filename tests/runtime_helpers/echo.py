"""``EchoService``: a test service with one method of each gRPC kind, built from generic handlers.

Messages are JSON objects (no ``gen/`` code needed). ``Echo``'s ``action`` field picks a behaviour, so one method
exercises every error path:

* ``echo`` (default): returns ``{"echo": text, "lab": <caller's lab>, "service": name}``;
* ``invalid``: raises ``InvalidArgument(violations=request["violations"])``;
* ``not_found``: raises ``NotFound`` with reason ``ALARM_NOT_FOUND`` and metadata;
* ``crash``: raises a ``RuntimeError`` whose text must never reach the client;
* ``forward``: calls ``Echo`` on ``forward_to`` (another host) on behalf of the caller's lab, returns its answer;
* ``abort``: ends the call itself with ``context.abort(RESOURCE_EXHAUSTED, "slow down")``;
* ``sleep``: sleeps ``seconds``, then answers (an in-flight call for shutdown tests).

``Ticks`` (server streaming) counts ``0, 1, 2, ...`` every ``interval`` seconds — forever unless ``count`` is given
— and raises ``FailedPrecondition`` at ``fail_at`` or a ``RuntimeError`` at ``crash_at``; it ends with
SHUTTING_DOWN when the host drains. ``Writes`` streams ``count`` messages through ``context.write`` and then
fails if ``fail``. ``Sum`` (client streaming) adds numbers and rejects negatives; ``Chat``
(bidirectional) echoes texts and refuses ``"forbidden"``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from servicekit.channels import open_channel
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from servicekit.server import stream_until_draining
from servicekit.tenancy import lab_metadata, lab_of

SERVICE = "labmesh.test.v1.EchoService"

Json = dict[str, Any]


def encode(message: Json) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> Json:
    return json.loads(data)


class EchoService:
    """Satisfies ``servicekit.server.Service``."""

    def __init__(
        self,
        name: str = SERVICE,
        *,
        draining: asyncio.Event | None = None,
        forward_to: str | None = None,
        default_lab: str = "default",
    ) -> None:
        self.name = name
        self.draining = draining if draining is not None else asyncio.Event()
        self.forward_to = forward_to
        self.default_lab = default_lab
        self.started = False
        self.stopped = False
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(
                self.echo, request_deserializer=decode, response_serializer=encode
            ),
            "Ticks": grpc.unary_stream_rpc_method_handler(
                self.ticks, request_deserializer=decode, response_serializer=encode
            ),
            "Writes": grpc.unary_stream_rpc_method_handler(
                self.writes, request_deserializer=decode, response_serializer=encode
            ),
            "Sum": grpc.stream_unary_rpc_method_handler(
                self.sum, request_deserializer=decode, response_serializer=encode
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat, request_deserializer=decode, response_serializer=encode
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.name, handlers),))

    async def start(self) -> None:
        if self.forward_to is not None:
            self._channel = open_channel(self.forward_to)
        self.started = True

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self.stopped = True

    async def echo(self, request: Json, context: grpc.aio.ServicerContext) -> Json:
        lab = lab_of(context, self.default_lab)
        action = request.get("action", "echo")
        if action == "echo":
            return {"echo": request.get("text"), "lab": lab, "service": self.name}
        if action == "invalid":
            raise InvalidArgument(violations=request["violations"], reason=request.get("reason"))
        if action == "not_found":
            raise NotFound("alarm alarms/42 not found", reason="ALARM_NOT_FOUND", metadata={"alarm": "alarms/42"})
        if action == "crash":
            raise RuntimeError("secret: password=hunter2 in /srv/labmesh/scheduler_svc/engine.py")
        if action == "forward":
            assert self._channel is not None, "EchoService(forward_to=...) is needed for action=forward"
            target = EchoClient(self._channel, request["service"])
            answer = await target.echo({"text": request.get("text")}, metadata=lab_metadata(lab))
            return {"forwarded": answer, "service": self.name}
        if action == "abort":  # a handler may still end a call itself; the interceptor must not interfere
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        if action == "sleep":
            await asyncio.sleep(request["seconds"])
            return {"slept": request["seconds"]}
        raise InvalidArgument(violations={"action": f"unknown action {action!r}"})

    async def ticks(self, request: Json, context: grpc.aio.ServicerContext) -> AsyncIterator[Json]:
        async for n in stream_until_draining(self.draining, self._count(request)):
            yield {"n": n}

    async def _count(self, request: Json) -> AsyncIterator[int]:
        n = 0
        while request.get("count") is None or n < request["count"]:
            if request.get("fail_at") == n:
                raise FailedPrecondition(f"tick {n} failed", reason="TICK_FAILED", metadata={"tick": str(n)})
            if request.get("crash_at") == n:
                raise RuntimeError("secret: stream internals")
            yield n
            n += 1
            await asyncio.sleep(request.get("interval", 0.01))

    async def writes(self, request: Json, context: grpc.aio.ServicerContext) -> None:
        """A streaming handler in grpc's other style: a coroutine writing through the context (like health Watch)."""
        for n in range(request["count"]):
            await context.write({"n": n})
        if request.get("fail"):
            raise FailedPrecondition("written out", reason="WRITES_FAILED")

    async def sum(self, requests: AsyncIterator[Json], context: grpc.aio.ServicerContext) -> Json:
        total = 0
        async for request in requests:
            if request["value"] < 0:
                raise InvalidArgument(violations={"value": "must not be negative"})
            total += request["value"]
        return {"total": total}

    async def chat(self, requests: AsyncIterator[Json], context: grpc.aio.ServicerContext) -> AsyncIterator[Json]:
        async for request in requests:
            if request.get("text") == "forbidden":
                raise PermissionDenied("that word is not allowed here", reason="FORBIDDEN_WORD")
            yield {"echo": request.get("text")}


class EchoClient:
    """Callables for the four methods of an ``EchoService`` named ``service`` on ``channel``."""

    def __init__(self, channel: grpc.aio.Channel, service: str = SERVICE) -> None:
        prefix = f"/{service}/"
        kw: Any = {"request_serializer": encode, "response_deserializer": decode}
        self.echo = channel.unary_unary(prefix + "Echo", **kw)
        self.ticks = channel.unary_stream(prefix + "Ticks", **kw)
        self.writes = channel.unary_stream(prefix + "Writes", **kw)
        self.sum = channel.stream_unary(prefix + "Sum", **kw)
        self.chat = channel.stream_stream(prefix + "Chat", **kw)
