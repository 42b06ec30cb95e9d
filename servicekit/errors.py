"""Domain errors, and the one interceptor that turns them into rich gRPC statuses.

Code anywhere below a servicer (stores, engines, validators) raises one of the exceptions below; it never calls
``context.abort`` itself. :class:`ErrorInterceptor` — installed by :class:`servicekit.server.ServiceHost` on every
server — catches them and ends the call with a ``google.rpc.Status`` (AIP-193):

* the status code of the exception class (``NotFound`` -> ``NOT_FOUND``),
* a developer-facing message,
* an ``ErrorInfo`` detail, always: a machine-readable ``reason`` (``UPPER_SNAKE_CASE``, e.g. ``ALARM_NOT_FOUND``),
  the domain ``labmesh.dev`` and string ``metadata`` (e.g. ``{"alarm": "alarms/42"}``) — clients branch on
  ``(domain, reason)``, never on the message,
* a ``BadRequest`` detail listing field violations, for :class:`InvalidArgument`,
* a ``RetryInfo`` detail when :class:`Unavailable` / :class:`ResourceExhausted` know when to retry.

Anything that is not a :class:`ServiceError` is a bug: it is logged with its traceback under a short incident id and
the caller gets ``INTERNAL "internal error (id=...)"`` — no exception text, paths or SQL leak to clients.

Client side, :func:`status_details` unpacks the details of a failed call::

    try:
        await stub.GetAlarm(request)
    except grpc.aio.AioRpcError as err:
        info, bad_request = status_details(err)
        if info is not None and info.reason == "ALARM_NOT_FOUND": ...
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "ERROR_DOMAIN",
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "ErrorInterceptor",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Violations",
    "status_details",
    "to_rpc_status",
]

logger = logging.getLogger(__name__)

#: The ``ErrorInfo.domain`` of every error labmesh raises (AIP-193: the service's DNS-like name).
ERROR_DOMAIN = "labmesh.dev"

# AIP-193: a reason is UPPER_SNAKE_CASE, at most 63 characters.
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,61}[A-Z0-9]")


class ServiceError(Exception):
    """Base of every error a servicer may end a call with.

    Subclasses fix the gRPC ``code``; ``reason`` narrows it for machines (defaults to ``default_reason``),
    ``metadata`` carries the identifiers a client needs to act (resource names, limits), as strings.
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = "UNKNOWN"
    default_message: ClassVar[str] = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.message: str = message or self.default_message
        self.reason: str = reason or self.default_reason
        if not _REASON.fullmatch(self.reason):
            # A programming error: fail loudly where the error is built, not on the client.
            raise ValueError(f"error reason {self.reason!r} must be UPPER_SNAKE_CASE, at most 63 characters")
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in (metadata or {}).items()}
        super().__init__(self.message)

    def details(self) -> list[Message]:
        """The ``google.rpc`` detail messages sent with the status (ErrorInfo first; subclasses add more)."""
        return [error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class FieldViolation(NamedTuple):
    """One bad field of a request: ``field`` is a dotted path (``alarm.schedule.cron.expression``)."""

    field: str
    description: str


class InvalidArgument(ServiceError):
    """The request itself is malformed, whatever the state of the system (AIP-193: add field violations)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"
    default_message = "invalid request"

    def __init__(
        self,
        message: str | None = None,
        *,
        violations: Sequence[FieldViolation] | Sequence[tuple[str, str]] | Mapping[str, str] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        items = violations.items() if isinstance(violations, Mapping) else violations
        self.violations: tuple[FieldViolation, ...] = tuple(FieldViolation(f, d) for f, d in items)
        if message is None and self.violations:
            first = self.violations[0]
            more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
            message = f"invalid {first.field}: {first.description}{more}"
        super().__init__(message, reason=reason, metadata=metadata)

    def details(self) -> list[Message]:
        details = super().details()
        if self.violations:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in self.violations
                    ]
                )
            )
        return details


class NotFound(ServiceError):
    """The named resource does not exist (in the caller's lab)."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"
    default_message = "not found"


class AlreadyExists(ServiceError):
    """A resource with this name (or request id) already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"
    default_message = "already exists"


class Aborted(ServiceError):
    """A concurrency conflict (etag mismatch, lost lease): retry the whole read-modify-write."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"
    default_message = "aborted by a concurrent change"


class FailedPrecondition(ServiceError):
    """The system is not in the state the operation needs (e.g. pausing a deleted alarm); do not retry as is."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"
    default_message = "failed precondition"


class OutOfRange(ServiceError):
    """A valid value beyond the current range (e.g. a cursor older than the retained fires)."""

    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"
    default_message = "out of range"


class Internal(ServiceError):
    """A bug. Raised by :class:`ErrorInterceptor` for unexpected exceptions; rarely useful to raise by hand."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"
    default_message = "internal error"


class Unimplemented(ServiceError):
    """The method exists in the contract but is not implemented yet."""

    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"
    default_message = "not implemented"


class Unauthenticated(ServiceError):
    """The caller did not prove who they are."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"
    default_message = "unauthenticated"


class PermissionDenied(ServiceError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"
    default_message = "permission denied"


class DeadlineExceeded(ServiceError):
    """The work could not finish before the caller's (or a downstream) deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"
    default_message = "deadline exceeded"


class _Retryable(ServiceError):
    """An error the client should retry later; ``retry_after`` (seconds) adds a ``RetryInfo`` detail."""

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after

    def details(self) -> list[Message]:
        details = super().details()
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return details


class ResourceExhausted(_Retryable):
    """A quota or limit is reached (payload too large, too many alarms, too many subscribers)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"
    default_message = "resource exhausted"


class Unavailable(_Retryable):
    """Transient: retry, ideally elsewhere (the server is shutting down, a dependency is down)."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"
    default_message = "unavailable"


class Violations:
    """Collects field violations so a request is validated in one pass and the caller sees every problem at once.

    ::

        v = Violations()
        if not request.alarm.display_name:
            v.add("alarm.display_name", "must not be empty")
        validate_schedule(request.alarm.schedule, v.nested("alarm.schedule"))
        v.raise_if_any()          # InvalidArgument listing all of them, or nothing
    """

    def __init__(self, prefix: str = "", *, _items: list[FieldViolation] | None = None) -> None:
        self._prefix = prefix
        self._items: list[FieldViolation] = [] if _items is None else _items

    def add(self, field: str, description: str) -> None:
        """Record that ``field`` (relative to this collector's prefix) is wrong, and why."""
        full = f"{self._prefix}.{field}" if self._prefix and field else (self._prefix or field)
        self._items.append(FieldViolation(full, description))

    def nested(self, prefix: str) -> Violations:
        """A view that adds to the same list with ``prefix.`` in front: hand it to a sub-message validator."""
        full = f"{self._prefix}.{prefix}" if self._prefix else prefix
        return Violations(full, _items=self._items)

    def raise_if_any(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Raise one :class:`InvalidArgument` with every violation collected so far, if there is any."""
        if self._items:
            raise InvalidArgument(message, violations=list(self._items), reason=reason, metadata=metadata)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[FieldViolation]:
        return iter(list(self._items))


def to_rpc_status(err: ServiceError) -> grpc.Status:
    """The ``grpc.Status`` (code, message, ``grpc-status-details-bin`` trailer) that ends a call for ``err``."""
    status = status_pb2.Status(code=err.code.value[0], message=err.message)
    for detail in err.details():
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def status_details(
    rpc_error: grpc.RpcError,
) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.BadRequest | None]:
    """Unpack the ``ErrorInfo`` and ``BadRequest`` details of a failed call (``None`` where absent).

    Works for ``grpc.aio.AioRpcError`` and for errors of synchronous calls. A status without rich details (e.g. a
    connection failure) gives ``(None, None)``.
    """
    try:
        status = rpc_status.from_call(rpc_error)  # type: ignore[arg-type]
    except ValueError:  # the trailer disagrees with the status line: treat as no details
        return None, None
    info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    for detail in status.details if status is not None else ():
        if info is None and detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif bad_request is None and detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return info, bad_request


# --- the server interceptor ------------------------------------------------------------------------------------


async def _end_call(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    """End the call for an exception a handler raised. Always raises (grpc's AbortError, or ``exc`` itself)."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc  # the handler (or an inner layer) already ended the call with a status
    if not isinstance(exc, ServiceError):
        incident = uuid.uuid4().hex[:12]
        logger.error("unhandled exception in %s (incident id=%s)", method, incident, exc_info=exc)
        exc = Internal(f"internal error (id={incident})", metadata={"incidentId": incident})
    if context.done():
        # The client went away (or the status was already sent): nobody is left to tell.
        logger.debug("%s ended after its call was done: %r", method, exc)
        raise exc
    status = to_rpc_status(exc)
    # Equivalent to context.abort_with_status(status), but through context.abort so that wrappers of the context
    # (OpenTelemetry's records the status code on the server span) see the code.
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort always raises")  # pragma: no cover


Behavior = Callable[..., Any]


def _wrap_unary_response(behavior: Behavior, method: str) -> Behavior:
    """For handlers that are coroutine functions: unary responses, and streaming ones that use context.write."""

    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except Exception as exc:  # CancelledError is a BaseException: it passes through untouched
            await _end_call(exc, context, method)

    return wrapper


def _wrap_stream_response(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Behavior:
    """For streaming handlers that are async generators: an error after N messages still ends with its status."""

    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except Exception as exc:
            await _end_call(exc, context, method)

    return wrapper


def _wrap(behavior: Behavior, method: str) -> Behavior:
    if inspect.isasyncgenfunction(behavior):
        return _wrap_stream_response(behavior, method)
    if inspect.iscoroutinefunction(behavior):
        return _wrap_unary_response(behavior, method)
    # A synchronous handler (run on a thread by grpc): not used in labmesh; leave it alone rather than guess.
    return behavior


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by handlers of all four kinds to statuses (see the module docstring).

    ``ServiceHost`` installs it right after the tracing interceptor, so the server span records the final code and
    interceptors added after it (authentication, ...) may raise :class:`ServiceError` too — from inside the handler
    they return, not from ``intercept_service`` itself.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        if handler.request_streaming and handler.response_streaming:
            factory, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
        elif handler.request_streaming:
            factory, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
        elif handler.response_streaming:
            factory, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
        else:
            factory, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
        return factory(
            _wrap(behavior, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
