"""The DeviceService servicer. Every RPC answers UNIMPLEMENTED for now; implement one by overriding its method."""

from __future__ import annotations

from labmesh.device.v1 import device_pb2, device_pb2_grpc

from servicekit.unimplemented import unimplemented_servicer

#: The contract's service descriptor (its full name is ``labmesh.device.v1.DeviceService``).
SERVICE = device_pb2.DESCRIPTOR.services_by_name["DeviceService"]


class DeviceApi(unimplemented_servicer(SERVICE, device_pb2_grpc.DeviceServiceServicer)):
    """The ``labmesh.device.v1.DeviceService`` servicer (no RPC implemented yet)."""
