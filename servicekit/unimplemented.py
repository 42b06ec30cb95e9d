"""Servicers for contracts whose RPCs are not implemented yet: every method answers UNIMPLEMENTED, clearly.

grpc's generated ``XServicer`` base already answers UNIMPLEMENTED, but with a bare "Method not implemented!" and
synchronous handlers. :func:`unimplemented_servicer` builds, from the service descriptor, a subclass of the
generated base whose every method raises :class:`servicekit.errors.Unimplemented` (reason ``NOT_IMPLEMENTED``,
metadata ``method``) with a message naming the method; the ``ErrorInterceptor`` turns it into the status::

    labmesh.device.v1.DeviceService/RegisterDevice is not implemented yet in this release

Handlers have the shape grpc.aio expects for their kind, so interceptors treat them like real ones: unary-response
methods are coroutine functions, response-streaming methods are async generators (that raise before yielding).
Request streams are not read. An issue that implements methods subclasses the result and overrides just those::

    class DeviceApi(unimplemented_servicer(SERVICE, device_pb2_grpc.DeviceServiceServicer)):
        async def GetDevice(self, request, context): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc.aio
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from servicekit.errors import Unimplemented

__all__ = ["NOT_IMPLEMENTED", "not_implemented", "unimplemented_servicer"]

#: ``ErrorInfo.reason`` of a method that exists in the contract but not yet in the service.
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"


def not_implemented(method: MethodDescriptor) -> Unimplemented:
    """The error a not-yet-implemented ``method`` ends its call with."""
    full_name = f"{method.containing_service.full_name}/{method.name}"
    return Unimplemented(
        f"{full_name} is not implemented yet in this release",
        reason=NOT_IMPLEMENTED,
        metadata={"method": full_name},
    )


def unimplemented_servicer(service: ServiceDescriptor, base: type, *, name: str | None = None) -> type:
    """A subclass of ``base`` (the generated ``XServicer``) with one UNIMPLEMENTED handler per method of ``service``."""
    missing = [m.name for m in service.methods if not hasattr(base, m.name)]
    if missing:
        raise TypeError(f"{base.__name__} is not the servicer of {service.full_name}: it lacks {', '.join(missing)}")
    namespace: dict[str, Any] = {
        "__doc__": f"{service.full_name}: every RPC answers UNIMPLEMENTED (reason {NOT_IMPLEMENTED}).",
        "__module__": __name__,
    }
    for method in service.methods:
        namespace[method.name] = _handler(method)
    return type(name or f"Unimplemented{service.name}", (base,), namespace)


def _handler(method: MethodDescriptor) -> Callable[..., Any]:
    if method.server_streaming:

        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raise not_implemented(method)
            yield  # pragma: no cover - makes this an async generator, as grpc.aio streaming handlers are

        handler: Callable[..., Any] = stream
    else:

        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
            raise not_implemented(method)

        handler = unary
    handler.__name__ = handler.__qualname__ = method.name
    handler.__doc__ = f"{method.containing_service.full_name}/{method.name}: not implemented yet (UNIMPLEMENTED)."
    return handler
