"""A fire subscription that survives disconnects: :class:`FireStream` (made by ``Client.fires``)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from labmesh.scheduler.v1 import scheduler_pb2

__all__ = ["RETRYABLE_CODES", "FireStream"]

log = logging.getLogger("labmesh_client")

#: Status codes after which the stream reconnects and resumes. Everything else (INVALID_ARGUMENT, OUT_OF_RANGE,
#: FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, UNIMPLEMENTED, ...) is raised to the caller.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,  # server draining (SHUTTING_DOWN), restarting, unreachable; lost connection
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # this subscriber's buffer overflowed (SUBSCRIBER_OVERFLOW), limits
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # a proxy's stream timeout
    grpc.StatusCode.CANCELLED,  # cancelled by the server or a proxy (our own cancellation ends the stream)
})


class FireStream:
    """Async iterator of ``FireEvent``: yields fires in fire-log order, reconnecting and resuming on failures.

    * ``cursor`` — the cursor of the last event yielded (or the one it started from): save it to resume a later
      run with ``client.fires(..., cursor=saved)``;
    * ``pending`` — events already received but not yet yielded (0 = the next ``__anext__`` waits for the server);
    * ``reconnects`` — how many times the stream was re-opened.

    Without a consumer group every reconnect passes ``cursor``, so the server replays exactly the fires after the
    last one yielded; with a group the server keeps the position and no cursor is sent on reconnect.
    """

    def __init__(
        self,
        stub: Any,
        request: scheduler_pb2.FireRequest,
        *,
        min_backoff: float = 0.25,
        max_backoff: float = 30.0,
        address: str = "",
        closed: Callable[[], bool] | None = None,
    ) -> None:
        if min_backoff <= 0 or max_backoff < min_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        self._stub = stub
        self._request = request
        self._group = bool(request.consumer_group)
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._address = address
        self._client_closed = closed or (lambda: False)
        self.cursor: str | None = request.cursor or None
        self.reconnects = 0
        self._buffer: deque[scheduler_pb2.FireEvent] = deque()
        self._call: Any = None
        self._responses: Any = None
        self._opened = False
        self._failures = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Events received but not yet yielded."""
        return len(self._buffer)

    def __aiter__(self) -> FireStream:
        return self

    async def __anext__(self) -> scheduler_pb2.FireEvent:
        while not self._buffer:
            if self._closed or self._client_closed():
                self._drop()
                raise StopAsyncIteration
            await self._receive()
        event = self._buffer.popleft()
        if event.cursor:
            self.cursor = event.cursor
        return event

    async def aclose(self) -> None:
        """Stop the subscription (cancels the call). Iteration then ends."""
        self._closed = True
        self._drop()

    async def __aenter__(self) -> FireStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------------ internals

    def _open(self) -> None:
        request = scheduler_pb2.FireRequest()
        request.CopyFrom(self._request)
        if self._group:
            # The group keeps its own position; a cursor only positions a group that does not exist yet.
            request.cursor = "" if self._opened else self._request.cursor
        else:
            request.cursor = self.cursor or ""
        self._call = self._stub.Fire(request)
        self._responses = self._call.__aiter__()
        self._opened = True

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = self._responses = None

    async def _receive(self) -> None:
        """Read one response into the buffer, or reconnect (after a backoff) when the stream broke."""
        if self._responses is None:
            self._open()
        try:
            response = await anext(self._responses)
        except StopAsyncIteration:
            # A fire stream only ends when something in between (a proxy, a server bug) closes it: resume.
            await self._reconnect(None)
            return
        except grpc.aio.AioRpcError as err:
            if self._closed or self._client_closed():
                self._drop()
                raise StopAsyncIteration from None
            if err.code() not in RETRYABLE_CODES:
                self._drop()
                raise
            await self._reconnect(err)
            return
        except asyncio.CancelledError:
            if self._closed or self._client_closed():  # our own aclose()/close() cancelled the call
                self._drop()
                raise StopAsyncIteration from None
            raise
        if self._failures:
            log.info("fire stream %s resumed after %d attempt(s)", self._address, self._failures)
            self._failures = 0
        self._buffer.extend(response.events)

    async def _reconnect(self, err: grpc.aio.AioRpcError | None) -> None:
        self._drop()
        retry_after = 0.0
        if err is not None:
            metadata, retry_after = _error_hints(err)
            if self.cursor is None and not self._group and metadata.get("cursor"):
                # Nothing yielded yet: the server tells where this subscription stood (its live position).
                self.cursor = metadata["cursor"]
        cap = min(self._max_backoff, self._min_backoff * 2**self._failures)
        delay = max(random.uniform(cap / 2, cap), min(retry_after, self._max_backoff))
        self._failures += 1
        reason = f"{err.code().name}: {err.details()}" if err is not None else "stream ended"
        where = f"cursor {self.cursor}" if not self._group else f"group {self._request.consumer_group}"
        # One warning per outage; the retries of a long one are logged at INFO.
        level = logging.WARNING if self._failures == 1 else logging.INFO
        log.log(level, "fire stream %s interrupted (%s); resuming from %s in %.2fs (attempt %d)", self._address,
                reason, where, delay, self._failures)
        await asyncio.sleep(delay)
        self.reconnects += 1


def _error_hints(err: grpc.aio.AioRpcError) -> tuple[dict[str, str], float]:
    """``ErrorInfo.metadata`` and the ``RetryInfo`` delay (seconds) of a failed call, when the server sent them."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return {}, 0.0
    metadata: dict[str, str] = {}
    retry_after = 0.0
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            metadata.update(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return metadata, retry_after
