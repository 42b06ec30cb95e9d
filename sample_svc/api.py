"""The SampleService servicer. Every RPC answers UNIMPLEMENTED for now; implement one by overriding its method."""

from __future__ import annotations

from labmesh.sample.v1 import sample_pb2, sample_pb2_grpc

from servicekit.unimplemented import unimplemented_servicer

#: The contract's service descriptor (its full name is ``labmesh.sample.v1.SampleService``).
SERVICE = sample_pb2.DESCRIPTOR.services_by_name["SampleService"]


class SampleApi(unimplemented_servicer(SERVICE, sample_pb2_grpc.SampleServiceServicer)):
    """The ``labmesh.sample.v1.SampleService`` servicer (no RPC implemented yet)."""
